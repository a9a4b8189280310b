"""What every built-in detector offers, so the CLI, the evaluator and the study runner treat them alike.

A detector is built with its settings (:func:`detectors.registry.create_detector`), trained with ``fit``,
asked with ``predict`` (a :class:`~detectors.types.Prediction`: an image score always, maps or boxes where it
makes them), saved to one file with a format tag and loaded back by :func:`detectors.registry.load_detector`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Protocol, Union, runtime_checkable

import torch

from defectgen.grey import luma
from defectgen.values import unit_check

from .types import Prediction


@runtime_checkable
class Detector(Protocol):
    """The interface of a detector (a structural type: detectors do not inherit from it)."""

    kind: str          # the registry name ("cutpaste", "fasterrcnn", "yolo")
    FORMAT: str        # the tag its saves carry
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


def read_local_torch_file(path: Union[str, Path], what: str, hint: str = "") -> Any:
    """What ``torch.load(path, weights_only=True)`` reads, on the CPU; a ``ValueError`` naming ``what`` and the file
    when it is missing or unreadable (weights are always a local file: nothing here downloads). ``hint`` is added
    to the "does not exist" message."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {str(path)!r} does not exist{hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and torch raise several types for a file that is not one of ours
        raise ValueError(f"{what} {str(path)!r} is not a torch state_dict file "
                         f"(torch.load: {type(error).__name__})") from None


__all__ = ["Detector", "check_images", "as_float", "read_local_torch_file"]

