"""A local backbone file into the networks of an anomalib model that asked timm for pretrained weights.

The file is a torchvision-layout state dict (:mod:`detectors.backbone_file`: what ``defectgen pretrain``
writes, or ImageNet weights saved from torchvision). timm's ResNets name their tensors as torchvision does
(``conv1.weight``, ``layer1.0.bn1.running_mean``, ...), and anomalib's feature extractors keep only the stages
they use, so a file fills a network when it holds every tensor the network has, with the same shape; extra
tensors (``layer4`` of a three-stage extractor, a classifier head) are left aside. Anything missing is refused,
naming the keys, rather than leaving part of a network random.

The value :data:`RANDOM` (``backbone_weights: random``) is the explicit opt-in to random features for a model
that would otherwise start from ImageNet weights; :func:`backbone_start` records which one a model used.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch
from torch import nn

from ..backbone_file import HEADS, architecture_of, file_digest, read_backbone_file

RANDOM = "random"
"""``backbone_weights`` value that accepts randomly initialised features where the model wants pretrained ones."""


def _needed(key: str) -> bool:
    # batch norm's step counters are missing from torchvision's own ImageNet files and unused with a momentum
    return not key.endswith("num_batches_tracked") and not key.startswith(HEADS)


def load_backbone_into(networks: List[nn.Module], path: Union[str, Path], model_name: str) -> int:
    """Copy the file's tensors into each of ``networks`` (timm modules); returns the number of tensors copied.

    Raises ``ValueError`` naming ``backbone_weights`` and the file when it is not a state dict or lacks (or has
    another shape for) a tensor a network needs.
    """
    state = read_backbone_file(path, "backbone_weights file")
    copied = 0
    for network in networks:
        own = network.state_dict()
        needed = [key for key in own if _needed(key)]
        missing = [key for key in needed if key not in state]
        wrong = [key for key in needed if key in state and tuple(state[key].shape) != tuple(own[key].shape)]
        if missing or wrong:
            held = architecture_of(state)
            holds = f"a torchvision {held} backbone" if held else f"{len(state)} tensors"
            problem = (f"lacks {len(missing)} of its tensors (e.g. {', '.join(missing[:3])})" if missing else
                       f"has other shapes for {len(wrong)} of them (e.g. {wrong[0]}: "
                       f"{tuple(state[wrong[0]].shape)} in the file, {tuple(own[wrong[0]].shape)} in the network)")
            raise ValueError(f"backbone_weights file {str(path)!r} ({holds}) does not fit {model_name}'s "
                             f"{type(network).__name__} backbone: it {problem}; give a file of the model's "
                             "backbone architecture in torchvision layout")
        network.load_state_dict({key: state[key] for key in needed}, strict=False)
        copied += len(needed)
    return copied


def backbone_start(backbone_weights: Optional[str], wanted: int, backbone: Optional[str]) -> Dict[str, Any]:
    """What :meth:`~detectors.anomalib.detector.AnomalibDetector.describe` says about the starting weights of
    the ``wanted`` networks that asked for pretrained ones."""
    if wanted == 0:
        return {"init": "no pretrained backbone asked by the model"}
    if backbone_weights is None or backbone_weights == RANDOM:
        return {"init": "random", "opt_in": "backbone_weights: random", "backbone": backbone}
    return {"init": "backbone file", "path": str(backbone_weights), "sha256": file_digest(backbone_weights),
            "backbone": backbone, "networks": wanted}


def same_tensors(network: nn.Module, path: Union[str, Path]) -> bool:
    """Whether every tensor ``network`` needs equals the file's (a check for tests and reports)."""
    state = read_backbone_file(path, "backbone_weights file")
    return all(torch.equal(value.cpu(), state[key]) for key, value in network.state_dict().items() if _needed(key))


__all__ = ["RANDOM", "load_backbone_into", "backbone_start", "same_tensors"]
