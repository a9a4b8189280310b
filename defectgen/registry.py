"""Name -> operator (and part) registry, so recipes can name defects in YAML.

``create_op("cutpaste", p=0.5)``, ``create_op({"op": "scar", "width_px_range": [2, 8]})`` and
``list_ops("cut*")`` work like timm's ``create_model`` / ``list_models``. Presets registered as factory
functions (``cutpaste_3way``) build ordinary operators, whose ``to_config()`` rebuilds them.
"""
from __future__ import annotations

import difflib
import fnmatch
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

_REGISTRIES: Dict[str, Dict[str, Callable[..., Any]]] = {"op": {}, "mask": {}, "source": {}, "blend": {}}


def _register(kind: str, name: str) -> Callable:
    def decorator(obj):
        table = _REGISTRIES[kind]
        if name in table and table[name] is not obj:
            raise ValueError(f"a {kind} named {name!r} is already registered")
        table[name] = obj
        if isinstance(obj, type):
            obj.config_name = name
        return obj
    return decorator


def register_op(name: str) -> Callable:
    """Class or factory decorator: make an operator available to :func:`create_op` under ``name``."""
    return _register("op", name)


def register_part(kind: str, name: str) -> Callable:
    """Register a mask sampler (``kind="mask"``), source (``"source"``) or blend (``"blend"``)."""
    if kind not in ("mask", "source", "blend"):
        raise ValueError(f"kind must be 'mask', 'source' or 'blend', got {kind!r}")
    return _register(kind, name)


def list_ops(pattern: Optional[str] = None) -> List[str]:
    """Registered operator names, sorted; ``pattern`` is a shell-style filter such as ``"cut*"``."""
    _load_builtins()
    names = sorted(_REGISTRIES["op"])
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def _build(kind: str, key: str, spec: Union[str, Mapping[str, Any]], overrides: Dict[str, Any]):
    _load_builtins()
    if isinstance(spec, str):
        name, kwargs = spec, {}
    elif isinstance(spec, Mapping):
        kwargs = dict(spec)
        if key not in kwargs:
            raise ValueError(f"a {kind} config needs a {key!r} entry naming the {kind}, got keys {sorted(kwargs)}")
        name = kwargs.pop(key)
    else:
        raise TypeError(f"a {kind} must be given as a name or a config dict, got {type(spec).__name__}")
    kwargs.update(overrides)
    table = _REGISTRIES[kind]
    if name not in table:
        close = difflib.get_close_matches(str(name), table, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown {kind} {name!r}{hint} (known: {', '.join(sorted(table))})")
    try:
        return table[name](**kwargs)
    except TypeError as error:
        raise TypeError(f"{kind} {name!r}: {error}") from error


def create_op(spec: Union[str, Mapping[str, Any]], **overrides: Any):
    """Build an operator from its registered name or a config dict (``{"op": name, **kwargs}``)."""
    return _build("op", "op", spec, overrides)


def resolve_op(op: Any, name: str = "op"):
    """An operator instance as it is, or one built by :func:`create_op` from a registered name or config dict:
    what every API that takes "an operator" accepts."""
    if isinstance(op, _load_builtins().DefectOp):
        return op
    if isinstance(op, (str, Mapping)):
        return create_op(op)
    raise TypeError(f"{name} must be a defectgen operator, a registered operator name or a config dict "
                    f"({{'op': name, ...}}), got {type(op).__name__}")


def create_part(kind: str, spec: Union[str, Mapping[str, Any]], **overrides: Any):
    """Build a registered part from a name or a ``{"type": name, **kwargs}`` config."""
    return _build(kind, "type", spec, overrides)


def _load_builtins():
    """Register the built-in operators and parts (importing them registers them); returns :mod:`defectgen.ops`.

    The one import of the operators here, inside a function: they import this module to register themselves."""
    from . import ops, pipeline  # noqa: F401  (importing registers them)

    return ops
