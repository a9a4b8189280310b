"""Backbone files: a torchvision classification model's ``state_dict`` without its head, read, identified and
recorded for the detectors that start from one.

The format (what ``defectgen pretrain`` writes as ``backbone.pt``, and what a user saves from ImageNet weights):
``torch.save`` of a plain dict of tensors, the ``state_dict()`` of ``torchvision.models.resnet18``, ``resnet50``,
``mobilenet_v3_large`` or ``mobilenet_v3_small`` with or without its classification head (``fc.*`` for
ResNets, ``classifier.*`` for MobileNets), keys as torchvision names them. A dict holding it under
``"state_dict"`` is read too. This module is the one that knows the architectures (:data:`BACKBONES`: their
heads and feature widths) and reads a file against one (:func:`load_backbone`); each detector loads the part it
has (:mod:`detectors.cutpaste.network`, :mod:`detectors.rcnn.network`, :mod:`detectors.yolo.torchvision_backbone`),
``defectgen pretrain`` and ``defectgen features`` the whole. A file of the wrong architecture is refused in one
line that names the file and the architecture it holds. :func:`start_record` is what a model records of the file
it started from (path and a content hash), so a report tells an SSL-initialised model from a randomly
initialised one.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch
from torch import nn

from defectgen.io.torch_files import read_local_torch_file


@dataclass(frozen=True)
class BackboneSpec:
    """A torchvision classification architecture a backbone file may hold."""

    name: str  # the torchvision builder's name
    width: int  # the pooled feature width its classification head receives
    head: str  # the attribute holding that head (its keys, ``head + "."``, may be left out of a file)

    def build(self, **kwargs: Any) -> nn.Module:
        """The torchvision model (pass ``weights=None``: nothing is downloaded)."""
        import torchvision.models as models

        return getattr(models, self.name)(**kwargs)


BACKBONES: Dict[str, BackboneSpec] = {spec.name: spec for spec in (
    BackboneSpec("resnet18", 512, "fc"),
    BackboneSpec("resnet50", 2048, "fc"),
    BackboneSpec("mobilenet_v3_large", 960, "classifier"),
    BackboneSpec("mobilenet_v3_small", 576, "classifier"),
)}
ARCHITECTURES = tuple(BACKBONES)
"""The torchvision classification models a backbone file may hold."""
HEADS = tuple(dict.fromkeys(spec.head + "." for spec in BACKBONES.values()))
"""Key prefixes of the classification heads a backbone file may leave out (ResNet, MobileNet)."""

# ImageNet statistics: what torchvision's backbone weights expect (and torchvision's GeneralizedRCNNTransform uses),
# a harmless fixed scaling for a random init
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class ImageNetNormalise(nn.Module):
    """``(B, 1 or 3, H, W)`` floats in [0, 1] -> three channels scaled with the ImageNet statistics, the input a
    torchvision backbone expects (gray is repeated to RGB)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return (images - self.mean) / self.std


_NEVER_DOWNLOADED = (" (backbone weights are never downloaded: pass a local file, e.g. the backbone.pt that "
                     "'defectgen pretrain' writes, or a torchvision model's state_dict saved with torch.save)")


def check_architecture(name: str, what: str = "backbone") -> str:
    """``name`` when it is one of :data:`ARCHITECTURES`; else a ``ValueError`` listing them."""
    if name not in BACKBONES:
        raise ValueError(f"unknown {what} {name!r} (known: {', '.join(ARCHITECTURES)})")
    return name


def read_backbone_file(path: Union[str, Path], what: str = "backbone file",
                       model_advice: str = "") -> Dict[str, torch.Tensor]:
    """The tensors of a backbone file (a plain state dict, or one under ``"state_dict"``); ``ValueError``
    naming the file when it is missing or holds something else (a defectgen detector model file is named as
    one, followed by ``model_advice``)."""
    state = read_local_torch_file(path, what, _NEVER_DOWNLOADED)
    for _ in range(2):  # the file itself, then what it holds under "state_dict"
        if isinstance(state, dict) and isinstance(state.get("format"), str):
            raise ValueError(f"{what} {str(path)!r} is a defectgen detector model ({state['format']}), not a "
                             f"backbone file{model_advice}")
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{what} {str(path)!r} does not hold a state_dict of tensors (a torchvision model's "
                         "state_dict, saved with torch.save)")
    return state


@lru_cache(maxsize=None)
def _layout(architecture: str) -> Tuple[Tuple[str, Tuple[int, ...]], ...]:
    """``(key, shape)`` of every tensor of ``architecture`` without its head, built on the meta device (no memory,
    no weights: nothing is downloaded)."""
    with torch.device("meta"):
        model = BACKBONES[architecture].build(weights=None)
    return tuple((k, tuple(v.shape)) for k, v in model.state_dict().items() if essential(k))


def essential(key: str) -> bool:
    """Whether a backbone must hold ``key``: not a head's, and not batch norm's step counter (torchvision's own
    ImageNet files predate it; nothing uses it when the momentum is set)."""
    return not key.startswith(HEADS) and not key.endswith("num_batches_tracked")


def architecture_of(state: Dict[str, torch.Tensor]) -> Optional[str]:
    """The torchvision architecture (one of :data:`ARCHITECTURES`) whose headless state dict ``state`` is, key
    for key and shape for shape (batch norm's step counters aside), or None."""
    body = {k: tuple(v.shape) for k, v in state.items() if essential(k)}
    for name in ARCHITECTURES:
        if body == dict(_layout(name)):
            return name
    return None


def describe_contents(state: Dict[str, torch.Tensor]) -> str:
    """What a file holds, for an error: ``"a torchvision resnet18 backbone"`` or ``"no torchvision backbone of
    resnet18, ... (e.g. key ...)"``."""
    name = architecture_of(state)
    if name is not None:
        return f"a torchvision {name} backbone"
    return f"no torchvision backbone of {', '.join(ARCHITECTURES)} (first key {next(iter(state))!r})"


def load_backbone(path: Union[str, Path], architecture: str, what: str = "backbone file",
                  advice: Optional[Callable[[Optional[str]], str]] = None,
                  model_advice: str = "") -> Dict[str, torch.Tensor]:
    """The tensors of backbone file ``path`` for torchvision ``architecture``, head entries dropped (batch norm's
    step counters may be absent: load with ``strict=False``). A ``ValueError`` in one line naming the file when
    it is missing, not a state dict, a detector model file, or not ``architecture``'s keys and shapes: then it
    says what the file holds, followed by ``advice(held architecture or None)``, e.g. the option that picks it."""
    check_architecture(architecture)
    state = read_backbone_file(path, what, model_advice)
    held = architecture_of(state)
    if held != architecture:
        raise ValueError(f"{what} {str(path)!r} is not a torchvision {architecture} backbone: it holds "
                         f"{describe_contents(state)}{advice(held) if advice is not None else ''}")
    return {k: v for k, v in state.items() if not k.startswith(HEADS)}


def file_digest(path: Union[str, Path]) -> str:
    """16 hex digits of the SHA-256 of the file's bytes: the same file content, the same digest."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def start_record(path: Optional[Union[str, Path]], architecture: Optional[str] = None) -> Dict[str, Any]:
    """Where a model's starting weights came from, as its ``describe()`` reports it: ``{"init": "random"}``, or
    ``{"init": "backbone file", "path", "sha256", "architecture"}``."""
    if path is None:
        return {"init": "random"}
    return {"init": "backbone file", "path": str(path), "sha256": file_digest(path), "architecture": architecture}


def saved_start(state: Dict[str, Any], path: Optional[str], architecture: Optional[str]) -> Dict[str, Any]:
    """The start record of a saved model: the one it holds, or, for a file saved before starts were recorded,
    one made from the backbone file ``path`` its settings name (without a hash: the file may have changed)."""
    if state.get("start"):
        return dict(state["start"])
    if path is None:
        return {"init": "random"}
    return {"init": "backbone file", "path": str(path), "sha256": None, "architecture": architecture}


__all__ = ["ImageNetNormalise", "BackboneSpec", "BACKBONES", "ARCHITECTURES", "HEADS", "check_architecture",
           "read_backbone_file", "load_backbone", "essential", "architecture_of", "describe_contents", "file_digest",
           "start_record", "saved_start"]
