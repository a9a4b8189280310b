"""Config round-trips: every operator and part can give its constructor arguments back as plain data.

``to_config()`` reads the constructor's signature and the same-named attributes, so a new class gets a
correct config for free as long as it stores each argument under its own name (a test checks the round
trip for every registered operator).
"""
from __future__ import annotations

import inspect
from typing import Any, Dict


def plain(value: Any) -> Any:
    """Tuples to lists and parts to their configs, so the result is YAML/JSON friendly."""
    if isinstance(value, Configurable):
        return value.to_config()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


class Configurable:
    #: name under which the class is registered; set by the registry decorators
    config_name: str = ""
    #: key that carries the name in a config dict ("op" for operators, "type" for parts)
    config_key: str = "type"

    def to_config(self) -> Dict[str, Any]:
        config: Dict[str, Any] = {}
        if self.config_name:
            config[self.config_key] = self.config_name
        for name, prm in inspect.signature(type(self).__init__).parameters.items():
            if name == "self" or prm.kind in (prm.VAR_POSITIONAL, prm.VAR_KEYWORD):
                continue
            config[name] = plain(getattr(self, name))
        return config

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_config().items() if k != self.config_key)
        return f"{type(self).__name__}({args})"
