"""The backbones pretraining trains, and writing the file every detector loads them from (the format, the
architectures and the reading are :mod:`detectors.backbone_file`'s).

A backbone is a torchvision classification network built with ``weights=None`` (nothing is downloaded) whose
classification head is replaced by the identity, so it returns pooled features ``(B, width)``: the "trunk" the
self-supervised heads sit on. It is saved as ``backbone.pt``: ``torch.save`` of a plain dict of tensors, the
torchvision model's ``state_dict()`` without its head (``fc.*`` for ResNets, ``classifier.*`` for MobileNets),
keys exactly as torchvision names them, so ``resnet18(weights=None).load_state_dict(state, strict=False)``,
the CutPaste detector's ``--weights`` and Faster R-CNN's ``--weights-backbone`` read it as it is.

Images enter as floats in ``[0, 1]`` and are normalised with the ImageNet statistics inside the trunk, as the
CutPaste network and torchvision's detection transform do, so features mean the same when a detector loads them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional, Union

import torch
from torch import nn

from defectgen.io.torch_files import save_state

from ..backbone_file import BACKBONES, ImageNetNormalise, load_backbone
from ..backbone_file import check_architecture as check_backbone_name

class Trunk(nn.Module):
    """A torchvision classification network without its head: ``(B, 1 or 3, H, W)`` floats in [0, 1] ->
    pooled features ``(B, width)``, or the last feature map before pooling (:meth:`feature_map`). ``model`` is
    the torchvision module itself, so its ``state_dict()`` has torchvision's key names."""

    def __init__(self, name: str):
        super().__init__()
        spec = BACKBONES[check_backbone_name(name)]
        self.name, self.width, self.head = name, spec.width, spec.head
        self.model = spec.build(weights=None)
        setattr(self.model, spec.head, nn.Identity())  # ResNet: fc; MobileNet: the classifier after pooling
        self.normalise = ImageNetNormalise()  # as CutPasteNet and torchvision's detection transform do

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalise(images))

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """The last convolutional block's output ``(B, width, h, w)``: what :meth:`forward` pools."""
        m, x = self.model, self.normalise(images)
        if hasattr(m, "features"):  # MobileNet
            return m.features(x)
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        return m.layer4(m.layer3(m.layer2(m.layer1(x))))

    def backbone_state(self) -> Dict[str, torch.Tensor]:
        """The ``backbone.pt`` dict: torchvision's keys, no head, CPU copies."""
        prefix = self.head + "."
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items() if not k.startswith(prefix)}


def build_trunk(name: str, weights: Optional[Union[str, Path]] = None,
                advice: Optional[Callable[[Optional[str]], str]] = None, model_advice: str = "") -> Trunk:
    """A :class:`Trunk` of backbone ``name`` with random weights, or a local backbone file's (see the module
    docstring; a full torchvision state dict with its head works too, the head is ignored). ``advice`` and
    ``model_advice`` end the error for a file that does not fit (:func:`detectors.backbone_file.load_backbone`)."""
    trunk = Trunk(name)
    if weights is not None:
        state = load_backbone(weights, name, advice=advice, model_advice=model_advice)
        trunk.model.load_state_dict(state, strict=False)  # every key but batch norm's step counters was checked
    return trunk


def save_backbone(trunk: Trunk, path: Union[str, Path]) -> Path:
    """Write ``trunk``'s backbone file atomically (a crash while writing leaves the previous file)."""
    return save_state(trunk.backbone_state(), path)


@torch.no_grad()
def recalibrate_batch_norm(trunk: nn.Module, images: torch.Tensor, batch_size: int = 64) -> int:
    """Recompute every batch norm's running mean and variance over ``images`` (the clean OK images, uint8 or
    float in [0, 1]) with the trained weights; returns how many images were used.

    Why: the running statistics are an exponential average over training steps (momentum 0.1 for ResNets, 0.01
    for MobileNet-v3), so after a short run they still sit near their initial 0 / 1 while the weights have moved
    far (25 MobileNet steps update them by 22 %), and they were taken on augmented views. A detector that freezes
    batch norm with a loaded backbone (Faster R-CNN's pretrained layout) would normalise every layer with them. So
    the saved backbone gets statistics that match its weights: a cumulative average of the batch statistics over
    every image (``momentum=None``), the "precise BN" of detection codebases.
    """
    norms = [m for m in trunk.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or len(images) == 0:
        return 0
    momenta, training = [m.momentum for m in norms], trunk.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    trunk.train()
    try:
        for chunk in images.split(batch_size):
            trunk(chunk.float() / 255 if chunk.dtype == torch.uint8 else chunk.float())
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        trunk.train(training)
    return len(images)


__all__ = ["BACKBONES", "Trunk", "build_trunk", "save_backbone", "load_backbone", "check_backbone_name",
           "recalibrate_batch_norm"]
