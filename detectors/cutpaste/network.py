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

from defectgen.io.torch_files import read_local_torch_file

DEFAULT_HEAD = (512,) * 8 + (128,)
EMBEDDING_DIM = 512

# ImageNet statistics: what torchvision's ResNet-18 weights expect, and a harmless fixed scaling for random init
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class CutPasteNet(nn.Module):
    """ResNet-18 (torchvision, no pretrained weights unless a local file is given) + MLP head + classifier.

    Args:
        num_classes: classes of the pretext task (normal + one per defect class).
        head_layers: widths of the projection head's Linear-BatchNorm-ReLU layers.
        weights: optional local file holding a torchvision ResNet-18 ``state_dict`` (e.g. ImageNet weights the
            user downloaded); its ``fc.*`` entries are ignored. Nothing is ever downloaded.

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
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return (images - self.mean) / self.std

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


def load_encoder_weights(encoder: nn.Module, path: Union[str, Path]) -> None:
    """Load a torchvision ResNet-18 ``state_dict`` from a local file into ``encoder`` (``fc`` excluded)."""
    state = read_local_torch_file(path, "weights file", " (weights are never downloaded: pass a local torchvision "
                                  "ResNet-18 state_dict, e.g. saved from resnet18(weights=...).state_dict())")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weights file {str(path)!r} does not hold a state_dict of tensors")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    expected = {k for k in encoder.state_dict() if not k.startswith("fc.")}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"weights file {str(path)!r} is not a ResNet-18 state_dict: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    try:
        encoder.load_state_dict(state, strict=False)
    except RuntimeError as error:
        raise ValueError(f"weights file {str(path)!r} does not fit ResNet-18: {error}") from None
