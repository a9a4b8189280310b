"""Importing and running ultralytics without the network, without its integrations and without touching the
user's settings.

ultralytics reaches for the network in many places: at import it resolves two host names to decide whether it
is online (``ONLINE``); ``check_det_dataset`` asks for the ``Arial.ttf`` font (an HTTP HEAD even offline);
plots download that font; the AMP check downloads ``yolo26n.pt``; ``Model.train`` checks PyPI for a newer
version; ``check_requirements`` pip-installs what it misses; and every trainer gets analytics (Google
Analytics events), Ultralytics Platform streaming (with an API key) and whichever of ClearML, Comet, DVC,
MLflow, Ray Tune, TensorBoard and W&B are installed and enabled in its settings file, auto-attached as callbacks.
The YOLO detector never needs any of it. What it does about each:

- :func:`import_ultralytics` imports ultralytics with ``YOLO_OFFLINE=1`` (no host-name lookups; ``ONLINE`` is
  False, which also turns analytics off) and ``YOLO_AUTOINSTALL=0`` (no pip), and, unless the user chose one with
  ``YOLO_CONFIG_DIR``, with a private configuration folder (a temporary folder removed at exit) so that the
  settings file ultralytics creates on first import does not land in the user's ``~/.config``. The environment
  is restored right after the import: these variables are only read at import time. When ultralytics was
  already imported by someone else, their choices stand and the measures below still apply.
- :func:`quiet_offline` (around every training) switches the integration flags and ``sync`` off *in memory
  only* (the settings file is never rewritten, so nothing leaks into the user's own settings) and lowers
  ultralytics' console output to warnings unless ``verbose``.
- The trainer (:mod:`.dataset`) drops every callback ultralytics attached itself (analytics, Platform,
  integrations) before any of them runs, builds its data dictionary itself instead of calling
  ``check_det_dataset`` (the font request), skips the final re-validation of ``best.pt`` (which calls it
  again) and always runs with ``plots=False`` and ``amp=False``.
"""
from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from typing import Iterator, Optional

MISSING = "the yolo detector needs ultralytics (AGPL-3.0): pip install 'defectgen[yolo]'"
"""The message of the ``ImportError`` raised when ultralytics is not installed."""

_INTEGRATION_SETTINGS = ("sync", "clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb")
_private_dir: Optional[str] = None


def _private_config_dir() -> str:
    global _private_dir
    if _private_dir is None:
        _private_dir = tempfile.mkdtemp(prefix="defectgen-ultralytics-")
        atexit.register(shutil.rmtree, _private_dir, True)
    return _private_dir


class _BelowWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def import_ultralytics():
    """The ``ultralytics`` module, imported offline on first use (see the module docstring).

    Raises:
        ImportError: ultralytics is not installed (with the install command).
    """
    if sys.modules.get("ultralytics") is not None:
        import ultralytics
        return ultralytics
    chosen = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0"}
    if not os.environ.get("YOLO_CONFIG_DIR"):
        chosen["YOLO_CONFIG_DIR"] = _private_config_dir()
    saved = {key: os.environ.get(key) for key in chosen}
    os.environ.update(chosen)
    logger = logging.getLogger("ultralytics")
    hush = _BelowWarnings()
    logger.addFilter(hush)  # "Creating new Ultralytics Settings file" in the private folder is not news
    try:
        import ultralytics
    except ImportError as error:
        raise ImportError(f"{MISSING} ({error})") from None
    finally:
        logger.removeFilter(hush)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return ultralytics


def ultralytics_available() -> bool:
    """Whether ultralytics can be imported (without importing it)."""
    import importlib.util

    if "ultralytics" in sys.modules:
        return sys.modules["ultralytics"] is not None
    try:
        return importlib.util.find_spec("ultralytics") is not None
    except (ImportError, ValueError):
        return False


@contextmanager
def quiet_offline(verbose: bool = False) -> Iterator[None]:
    """Integrations and analytics off (in memory), ultralytics' console output at warnings unless ``verbose``."""
    import_ultralytics()
    from ultralytics.utils import LOGGER, SETTINGS

    saved = {key: SETTINGS[key] for key in _INTEGRATION_SETTINGS if key in SETTINGS}
    for key in saved:
        dict.__setitem__(SETTINGS, key, False)  # dict's own setter: SettingsManager's would rewrite the file
    level = LOGGER.level
    if not verbose:
        LOGGER.setLevel(logging.WARNING)  # also hides ultralytics' progress bars (they follow the logger level)
    try:
        yield
    finally:
        for key, value in saved.items():
            dict.__setitem__(SETTINGS, key, value)
        LOGGER.setLevel(level)


def is_ultralytics_integration(callback) -> bool:
    """A callback ultralytics attached itself (analytics, Platform, logging integrations), not a no-op default."""
    module = getattr(callback, "__module__", "") or ""
    return module.startswith("ultralytics.") and module != "ultralytics.utils.callbacks.base"


__all__ = ["MISSING", "import_ultralytics", "ultralytics_available", "quiet_offline", "is_ultralytics_integration"]
