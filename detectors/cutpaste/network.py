"""The CutPaste network: a ResNet-18 encoder, an MLP projection head and a linear classifier.

The encoder's pooled 512-d features are the embedding the Gaussian density is fitted on; the head and the
classifier exist only to train the encoder on the pretext task (normal vs synthetic defect), as in the paper
(Li et al., CVPR 2021) and its reference code, whose head is eight 512-unit layers and a 128-unit one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18

from ..backbone_file import ImageNetNormalise, essential, load_backbone

DEFAULT_HEAD = (512,) * 8 + (128,)
EMBEDDING_DIM = 512


class CutPasteNet(nn.Module):
    """ResNet-18 (torchvision, no pretrained weights unless a local file is given) + MLP head + classifier.

    Args:
        num_classes: classes of the pretext task (normal + one per defect class).
        head_layers: widths of the projection head's Linear-BatchNorm-ReLU layers.
        weights: optional local backbone file holding a torchvision ResNet-18 ``state_dict`` (e.g. the
            ``backbone.pt`` of ``defectgen pretrain``, or ImageNet weights the user downloaded); its ``fc.*``
            entries, if any, are ignored. Nothing is ever downloaded.

    Input: ``(B, 1 or 3, H, W)`` float images in [0, 1]; gray images are repeated to three channels.
    """

    def __init__(self, num_classes: int, head_layers: Sequence[int] = DEFAULT_HEAD,
                 weights: Optional[Union[str, Path]] = None):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (normal + at least one defect class), got {num_classes}")
        if not head_layers or any(int(w) < 1 for w in head_layers):
            raise ValueError(f"head_layers must be a non-empty list of positive widths, got {list(head_layers)}")
        self.encoder = resnet18(weights=None)
        self.encoder.fc = nn.Identity()
        if weights is not None:
            load_encoder_weights(self.encoder, weights)
        layers, width = [], EMBEDDING_DIM
        for out in head_layers:
            layers += [nn.Linear(width, int(out)), nn.BatchNorm1d(int(out)), nn.ReLU(inplace=True)]
            width = int(out)
        self.head = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)
        self.normalise = ImageNetNormalise()

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """The last convolutional block's output ``(B, 512, h, w)`` (what Grad-CAM weighs)."""
        e = self.encoder
        x = e.maxpool(e.relu(e.bn1(e.conv1(self.normalise(images)))))
        return e.layer4(e.layer3(e.layer2(e.layer1(x))))

    @staticmethod
    def pool(feature_map: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(feature_map, 1).flatten(1)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled encoder features ``(B, 512)``: the representation the density estimator models."""
        return self.pool(self.feature_map(images))

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(logits, embedding)`` of a batch."""
        embedding = self.embed(images)
        return self.classifier(self.head(embedding)), embedding


_RESNET18_ONLY = " (the CutPaste encoder is a ResNet-18: pretrain with --backbone resnet18)"


def load_encoder_weights(encoder: nn.Module, path: Union[str, Path]) -> None:
    """Load a backbone file (:mod:`detectors.backbone_file`: a torchvision ResNet-18 ``state_dict``, with or
    without ``fc.*``, e.g. the ``backbone.pt`` of ``defectgen pretrain --backbone resnet18``) into ``encoder``.

    A file of another architecture is refused in one line naming the file and what it holds.
    """
    state = load_backbone(path, "resnet18", "weights file", advice=lambda held: _RESNET18_ONLY)
    encoder.load_state_dict(state, strict=False)
    missing = [k for k in encoder.state_dict() if k not in state and essential(k)]
    if missing:  # load_backbone compared every key: this would be a bug, not a bad file
        raise RuntimeError(f"the ResNet-18 encoder has keys the backbone file lacks: {missing[:3]}")
