"""The detector registry: build any detector from a name and settings, load any saved model by its format tag.

``create_detector("fasterrcnn", num_classes=2, image_size=320)`` and ``load_detector("run/")`` are what the
CLI and the study runner use, so a new detector kind is one :func:`register_detector` away from both: the
registered class declares the rest (its ``TASK``, ``HELP``, ``train`` options and run; see
:mod:`detectors.base`), and ``defectgen train`` / ``eval`` / ``ablate`` read it from here.

Every saved model is one ``torch.save`` file holding a dict with a ``"format"`` tag (``<module>/<version>``);
:func:`load_detector` reads it once, with ``weights_only=True``, and hands the state to the class registered
for that tag. A training run's folder (``defectgen train ... --out run/``) holds its model as ``model.pt``.
"""
from __future__ import annotations

import fnmatch
import importlib
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Type, Union

import torch

from defectgen.io.torch_files import save_state

from .errors import NotAModelFile

MODEL_FILE = "model.pt"
"""The model's file name inside a training run's folder."""

ANOMALY = "anomaly"
"""The ``TASK`` of a detector that scores images (and maps pixels) after training on normal images only."""
BOXES = "boxes"
"""The ``TASK`` of a detector that finds defect boxes (its image score: the top box score)."""
TASKS = (ANOMALY, BOXES)

_BY_NAME: Dict[str, Type] = {}
_BY_FORMAT: Dict[str, Type] = {}

# built-in kinds, imported on first use so `import detectors` stays light; their modules import without the
# optional libraries (ultralytics, anomalib), which the detector asks for when it is created
_BUILTIN = {"cutpaste": "detectors.cutpaste", "fasterrcnn": "detectors.rcnn", "yolo": "detectors.yolo",
            "anomalib": "detectors.anomalib"}


def register_detector(name: str) -> Callable[[Type], Type]:
    """Class decorator: register a detector class under ``name`` and its ``FORMAT`` tag.

    The class needs ``FORMAT`` (the tag its saves carry), ``TASK`` (:data:`ANOMALY` or :data:`BOXES`), ``HELP``
    (its line in ``defectgen train --help``), a constructor taking its settings as keyword arguments,
    ``from_state(state, path, **kwargs)`` building a detector from a loaded save, and the ``train`` command's
    ``add_train_arguments(parser)`` and ``train_command(args)`` (:class:`detectors.base.AnomalyDetector` and
    :class:`detectors.base.ObjectDetector` give most of it).
    """

    def add(cls: Type) -> Type:
        if not isinstance(getattr(cls, "FORMAT", None), str):
            raise TypeError(f"{cls.__name__} needs a FORMAT string to be registered")
        if not callable(getattr(cls, "from_state", None)):
            raise TypeError(f"{cls.__name__} needs a from_state(state, path, **kwargs) classmethod")
        if getattr(cls, "TASK", None) not in TASKS:
            raise TypeError(f"{cls.__name__} needs a TASK, one of {list(TASKS)}")
        if not isinstance(getattr(cls, "HELP", None), str):
            raise TypeError(f"{cls.__name__} needs a HELP string (its line in 'defectgen train --help')")
        for table, key in ((_BY_NAME, name), (_BY_FORMAT, cls.FORMAT)):
            if key in table and table[key] is not cls:
                raise ValueError(f"detector {key!r} is already registered to {table[key].__name__}")
        _BY_NAME[name] = cls
        _BY_FORMAT[cls.FORMAT] = cls
        cls.kind = name
        return cls

    return add


def _import_builtins(names=None) -> None:
    for name in names or list(_BUILTIN):
        if name in _BUILTIN and name not in _BY_NAME:
            importlib.import_module(_BUILTIN[name])


def list_detectors(pattern: str = "*") -> List[str]:
    """Registered detector names matching the glob ``pattern`` (sorted)."""
    _import_builtins()
    return sorted(name for name in set(_BY_NAME) | set(_BUILTIN) if fnmatch.fnmatch(name, pattern))


def detector_names() -> List[str]:
    """The built-in kinds, then the others registered, in registration order, without importing the built-ins
    (for lists in help and messages)."""
    return list(_BUILTIN) + [name for name in _BY_NAME if name not in _BUILTIN]


def detector_classes(task: Optional[str] = None) -> Dict[str, Type]:
    """Every registered detector class by name (the built-ins first), or those of one ``task``."""
    _import_builtins()
    return {name: _BY_NAME[name] for name in detector_names() if task is None or _BY_NAME[name].TASK == task}


def detector_class(name: str) -> Type:
    """The class registered as ``name``; a ``ValueError`` listing the known names otherwise."""
    _import_builtins([name])
    if name not in _BY_NAME:
        raise ValueError(f"unknown detector {name!r}; known: {', '.join(list_detectors())}")
    return _BY_NAME[name]


def create_detector(name: str, **settings: Any):
    """A new, untrained detector of kind ``name`` with ``settings`` (its constructor's keyword arguments)."""
    return detector_class(name)(**settings)


def model_path(path: Union[str, Path]) -> Path:
    """The model file of ``path``: the file itself, or ``path/model.pt`` for a training run's folder."""
    path = Path(path)
    if path.is_dir():
        if not (path / MODEL_FILE).is_file():
            raise ValueError(f"{str(path)!r} is a folder without a {MODEL_FILE} (not a finished training run)")
        return path / MODEL_FILE
    if not path.is_file():
        raise ValueError(f"model file {str(path)!r} does not exist")
    return path


def read_state(path: Union[str, Path], expected: Optional[str] = None, name: str = "detector") -> Dict[str, Any]:
    """The saved dict in ``path`` (a file or a run folder), read once with ``weights_only=True``.

    Raises :class:`NotAModelFile` when it is not a defectgen detector save (or not of the ``expected`` format);
    ``name`` says what was expected in the message ("CutPaste", "YOLO", ...).
    """
    path = model_path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and torch errors all mean "not a model we wrote"
        detail = str(error).splitlines()[0] if str(error) else ""
        raise NotAModelFile(f"{str(path)!r} is not a defectgen {name} model file "
                            f"({type(error).__name__}: {detail})") from None
    found = state.get("format") if isinstance(state, dict) else None
    if not isinstance(found, str) or (expected is not None and found != expected):
        shown = found if isinstance(state, dict) else type(state).__name__
        wanted = f"expected {expected!r}" if expected else f"known: {', '.join(sorted(_BY_FORMAT)) or 'none'}"
        raise NotAModelFile(f"{str(path)!r} is not a defectgen {name} model file (format {shown!r}, {wanted})")
    return state


def load_detector(path: Union[str, Path], **kwargs: Any):
    """Load any saved detector (a model file or a training run's folder), dispatching on its format tag.

    ``kwargs`` go to the class's ``from_state`` (e.g. ``device=``, ``image_size=`` as a check).
    """
    state = read_state(path)
    _import_builtins()
    cls = _BY_FORMAT.get(state["format"])
    if cls is None:
        raise NotAModelFile(f"{str(path)!r} holds a {state['format']!r} model, which no registered detector reads "
                            f"(known: {', '.join(sorted(_BY_FORMAT))})")
    return cls.from_state(state, model_path(path), **kwargs)


__all__ = ["register_detector", "create_detector", "detector_class", "detector_classes", "detector_names",
           "list_detectors", "load_detector", "read_state", "save_state", "model_path", "MODEL_FILE", "ANOMALY",
           "BOXES", "TASKS"]
