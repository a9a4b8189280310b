"""What every built-in detector offers, so the CLI, the evaluator and the study runner treat them alike.

A detector is built with its settings (:func:`detectors.registry.create_detector`), trained with ``fit``,
asked with ``predict`` (a :class:`~detectors.types.Prediction`: an image score always, maps or boxes where it
makes them), saved to one file with a format tag and loaded back by :func:`detectors.registry.load_detector`.

A detector class is the one place that declares everything about its kind (the detector table): its ``TASK``
(:data:`ANOMALY`: image scores and anomaly maps, trained on normal images; :data:`BOXES`: defect boxes,
trained on labelled defects), a one-line ``HELP``, the options and the run of ``defectgen train <kind>``, and
what a study needs to train it. :class:`AnomalyDetector` and :class:`ObjectDetector` hold what the kinds of a
task share (the object detectors' one ``train`` command, loading a saved model); a new kind is one file with
its class plus its :func:`~detectors.registry.register_detector` line, and ``train``, ``eval``, ``ablate`` and
the evaluator read the rest from the class.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, ClassVar, Dict, Optional, Protocol, Union, runtime_checkable

import torch

from defectgen.checks import resolve_device
from defectgen.grey import luma
from defectgen.values import unit_check

from .registry import ANOMALY, BOXES, TASKS, read_state
from .types import Prediction


@runtime_checkable
class Detector(Protocol):
    """The interface of a detector (a structural type: detectors do not inherit from it)."""

    kind: str          # the registry name ("cutpaste", "fasterrcnn", "yolo")
    FORMAT: str        # the tag its saves carry
    TASK: str          # ANOMALY or BOXES
    image_size: int    # the square side of the images it takes
    channels: int      # 1 or 3

    def fit(self, data: Any, **kwargs: Any) -> "Detector":
        """Train on ``data`` (what each kind accepts is in its docstring); returns ``self``."""

    def predict(self, images: torch.Tensor) -> Prediction:
        """Scores (and maps or boxes) for a ``(B, C, image_size, image_size)`` uint8 or [0, 1] float batch."""

    def save(self, path: Union[str, Path]) -> Path:
        """Write the model to ``path`` atomically; returns the path."""

    def config(self) -> Dict[str, Any]:
        """The constructor settings (JSON-able): ``create_detector(kind, **config())`` rebuilds it untrained."""

    def describe(self) -> Dict[str, Any]:
        """What a report says about the model: its kind, settings and training record."""


def check_images(images: torch.Tensor, image_size: int, what: str = "images") -> None:
    """The input check every detector's ``predict`` makes: a ``(B, 1 or 3, S, S)`` uint8 or float tensor."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor (B, C, H, W), got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"{what} must be (B, 1 or 3, H, W), got shape {tuple(images.shape)}")
    if tuple(images.shape[-2:]) != (image_size, image_size):
        h, w = images.shape[-2:]
        raise ValueError(f"{what} are {h}x{w} px but this model was made for {image_size}x{image_size} px images; "
                         f"resize them (e.g. LabelledSet.resized({image_size}) or defectgen.io.load_folder(..., "
                         f"size={image_size}))")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise TypeError(f"{what} must be uint8 or float in [0, 1], got {images.dtype}")
    unit_check(images, what, "detectors take uint8 images or float in [0, 1]: undo a normalisation first "
                             "(x * std + mean)")


def as_float(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Images as float in [0, 1] with the model's ``channels``: a gray model sees colour as luminance (the same
    conversion at training and prediction); gray input to a colour model keeps its one channel (the networks
    repeat it to three)."""
    x = images.float().div_(255) if images.dtype == torch.uint8 else images.float()
    if channels == 1 and x.shape[1] == 3:
        x = luma(x)
    return x


class BaseDetector:
    """What a detector class declares (see the module docstring) and the loading code every kind shares.

    A subclass sets ``FORMAT`` (the tag its saves carry), ``TASK``, ``HELP`` (one line for ``defectgen train
    --help``) and ``MODEL_NAME`` (how messages name its files), keeps its torch module in ``self.network``,
    saves ``{"format": FORMAT, "config": config(), "history": [...], ...}`` and implements :meth:`_restore`.
    """

    kind: str
    FORMAT: ClassVar[str]
    TASK: ClassVar[str]
    HELP: ClassVar[str]
    MODEL_NAME: ClassVar[str] = "detector"
    _SIZE_HINT: ClassVar[bool] = True  # say how to fix a model loaded for another image size

    # -- the train command ----------------------------------------------------------------------------------------
    @classmethod
    def add_train_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """The options of ``defectgen train <kind>``."""
        raise NotImplementedError

    @classmethod
    def train_command(cls, args: argparse.Namespace) -> int:
        """The run of ``defectgen train <kind>`` with the parsed options; returns the exit code."""
        raise NotImplementedError

    # -- device and loading ---------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def to(self, device: Union[str, torch.device]) -> "BaseDetector":
        """Move the network to ``device`` (``"auto"``: CUDA when available); training happens there too."""
        self.network.to(resolve_device(device))
        return self

    @classmethod
    def read_state(cls, path: Union[str, Path]) -> Dict[str, Any]:
        """The saved dict of one of this class's models (a file, or a training run's folder)."""
        return read_state(path, cls.FORMAT, name=cls.MODEL_NAME)

    @classmethod
    def load(cls, path: Union[str, Path], image_size: Optional[int] = None,
             device: Union[str, torch.device] = "cpu") -> "BaseDetector":
        """Read a model written by ``save`` (a file, or a training run's folder holding ``model.pt``).

        Args:
            image_size: if given, the image size the caller will use; a model made for another size is refused.
            device: where to put the network.

        Raises:
            NotAModelFile: (a ``ValueError``) the file is not a defectgen model of this kind.
            ValueError: the file does not exist, or the model was made for another image size than
                ``image_size``.
        """
        return cls.from_state(cls.read_state(path), path, image_size, device)

    @classmethod
    def from_state(cls, state: Dict[str, Any], path: Union[str, Path] = "<state>", image_size: Optional[int] = None,
                   device: Union[str, torch.device] = "cpu") -> "BaseDetector":
        """A detector from a loaded save (what :func:`detectors.registry.load_detector` calls)."""
        config = dict(state["config"])
        if image_size is not None and int(image_size) != config["image_size"]:
            hint = (f"; use --image-size {config['image_size']} or train a model at {image_size} px"
                    if cls._SIZE_HINT else "")
            raise ValueError(f"{str(path)!r} was made for {config['image_size']} px images, not {image_size} px"
                             + hint)
        det = cls.__new__(cls)
        det._restore(state, config)
        det.history = list(state["history"])
        return det.to(device)

    def _restore(self, state: Dict[str, Any], config: Dict[str, Any]) -> None:
        """Set the settings, the network (with the saved weights, in eval mode) and the training counters of a
        detector made with ``cls.__new__`` from a save (``config`` is ``state["config"]``)."""
        raise NotImplementedError


class AnomalyDetector(BaseDetector):
    """A detector trained on normal images that gives image scores and anomaly maps (``TASK = ANOMALY``).

    A study trains it for a number of steps on its OK images (the recipe's ``steps``, 0 for the untrained
    control), built by :meth:`for_study` from the cell's synthetic defects.
    """

    TASK = ANOMALY

    @classmethod
    def for_study(cls, defects: Any, **settings: Any) -> "AnomalyDetector":
        """A new detector for a study cell: ``defects`` is the cell's family (its operator or pretext spec); a
        kind that learns from synthetic defects takes them, others ignore them."""
        return cls(**settings)


class ObjectDetector(BaseDetector):
    """A detector that finds defect boxes (``TASK = BOXES``), trained on synthetic and/or real labelled defects.

    Every object detector has the same ``train`` command (:mod:`detectors.object_cli`); a kind adds its own
    options (:meth:`add_model_arguments`, :meth:`model_settings`) and says how its ``fit`` keeps state in a run
    folder (:meth:`cli_fit_options`, :meth:`study_fit_options`).
    """

    TASK = BOXES

    @classmethod
    def add_train_arguments(cls, parser: argparse.ArgumentParser) -> None:
        from .object_cli import add_object_arguments

        add_object_arguments(parser, cls)

    @classmethod
    def train_command(cls, args: argparse.Namespace) -> int:
        from .object_cli import run_train_object

        return run_train_object(args, cls)

    @classmethod
    def add_model_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """This kind's own ``train`` options (the network, ...), after the shared ones."""

    @classmethod
    def model_settings(cls, args: argparse.Namespace) -> Dict[str, Any]:
        """The constructor settings this kind's own ``train`` options give."""
        return {}

    @classmethod
    def cli_fit_options(cls, args: argparse.Namespace) -> Dict[str, Any]:
        """The ``fit`` keywords of ``defectgen train``: where it keeps its state in the run folder ``args.out``
        (for ``--resume``), and this kind's own fit options."""
        return {"resume": args.resume}

    @classmethod
    def study_fit_options(cls, folder: Path) -> Dict[str, Any]:
        """The ``fit`` keywords of a study cell whose folder is ``folder`` (a cell is never resumed)."""
        return {}


__all__ = ["Detector", "check_images", "as_float", "ANOMALY", "BOXES", "TASKS", "BaseDetector", "AnomalyDetector",
           "ObjectDetector"]

