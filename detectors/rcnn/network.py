"""The Faster R-CNN network (torchvision), built offline: random init unless local weight files are given.

torchvision's model builders download ImageNet backbone weights by default; here the backbone is built with
``weights=None`` and, where the user has them, local files are loaded into it. The resize step is set to the
detector's image size (``min_size = max_size = image_size``) so torchvision never rescales our images. Three
choices are made for small defects and training from scratch:

- the feature pyramid starts at stride 8 (torchvision's MobileNet model takes two stages that are both at
  stride 32, where a 10-20 px defect is less than one feature cell), with one anchor size per level from 16 px
  (torchvision's 32-512 px anchors are made for COCO objects in 800 px images);
- a backbone trained from scratch uses group norm, not batch norm (see :func:`_group_norm`); a pretrained one
  keeps torchvision's frozen batch norm.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import mobilenet_backbone, resnet_fpn_backbone
from torchvision.ops.misc import FrozenBatchNorm2d

from ..backbone_file import load_backbone

BACKBONES = ("mobilenet_v3", "resnet50")
TORCHVISION_NAMES = {"mobilenet_v3": "mobilenet_v3_large", "resnet50": "resnet50"}
"""The torchvision classification model each backbone is, whose backbone file it loads."""
DEFAULT_ANCHORS = (16, 32, 64, 128, 256)

# Fewer proposals and sampled regions than torchvision's COCO defaults (2000 proposals, 512 regions per image):
# the box head's first layer costs 12.8 M multiply-adds per region, so at the defaults a 320 px image spends
# most of a CPU step there. A few defects per image need far fewer, as torchvision's own 320 px MobileNet
# model (150 test proposals) shows.
CPU_PRACTICAL = dict(rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=500, rpn_pre_nms_top_n_test=500,
                     rpn_post_nms_top_n_test=300, box_batch_size_per_image=128)


def build_faster_rcnn(num_classes: int, image_size: int, backbone: str = "mobilenet_v3",
                      anchor_sizes: Sequence[int] = DEFAULT_ANCHORS,
                      weights_backbone: Optional[Union[str, Path]] = None,
                      trainable_backbone_layers: Optional[int] = None, box_score_thresh: float = 0.001,
                      detections_per_image: int = 100, frozen_norm: bool = False) -> FasterRCNN:
    """A Faster R-CNN with an FPN over ``backbone``, for ``num_classes`` defect classes (+ background).

    Args:
        weights_backbone: local backbone file with a torchvision ``mobilenet_v3_large`` / ``resnet50``
            classification state_dict, its head optional (the ``backbone.pt`` of ``defectgen pretrain``, or
            ImageNet weights). Then, as torchvision does with pretrained backbones, batch norm is
            frozen and only the last ``trainable_backbone_layers`` blocks train (default 3); without it, every
            layer trains and batch norm learns.
        box_score_thresh: lowest box score kept at prediction (low, so mAP sees the whole precision-recall curve).
        frozen_norm: build the pretrained layout (frozen batch norm, 3 trainable blocks) without loading a file,
            for a saved model of a pretrained backbone.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {list(BACKBONES)}, got {backbone!r}")
    pretrained = weights_backbone is not None or frozen_norm
    norm_layer = FrozenBatchNorm2d if pretrained else _group_norm
    max_layers = 6 if backbone == "mobilenet_v3" else 5
    if trainable_backbone_layers is None:
        trainable_backbone_layers = 3 if pretrained else max_layers
    if not 0 <= trainable_backbone_layers <= max_layers:
        raise ValueError(f"trainable_backbone_layers must be in 0..{max_layers} for {backbone}, "
                         f"got {trainable_backbone_layers}")
    with torch.no_grad():
        if backbone == "mobilenet_v3":
            # FPN levels from stride 8: torchvision's default takes the last two stages, both at stride 32,
            # which leaves a defect of 10-20 px less than a feature cell
            body = mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=None, fpn=True,
                                      norm_layer=norm_layer, trainable_layers=trainable_backbone_layers,
                                      returned_layers=[2, 3, 4, 5])
            prefix = "features."
        else:
            body = resnet_fpn_backbone(backbone_name="resnet50", weights=None, norm_layer=norm_layer,
                                       trainable_layers=trainable_backbone_layers)
            prefix = ""
    if weights_backbone is not None:
        _load_backbone(body.body, weights_backbone, prefix, backbone)
    levels = 5  # feature maps the FPN returns (4 stages + a pooled one); one anchor size each, finest smallest
    if len(anchor_sizes) != levels:
        raise ValueError(f"anchor_sizes must give {levels} sizes (one per FPN level), got {len(anchor_sizes)}")
    sizes = tuple((int(s),) for s in anchor_sizes)
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * levels)
    return FasterRCNN(body, num_classes=num_classes + 1, min_size=image_size, max_size=image_size,
                      rpn_anchor_generator=anchors, box_score_thresh=box_score_thresh,
                      box_detections_per_img=detections_per_image, **CPU_PRACTICAL)


def _group_norm(channels: int) -> nn.GroupNorm:
    """Group norm for a backbone trained from scratch (Wu & He 2018; He et al. 2019 train detectors from scratch
    with it): batch norm's running averages trail the fast-moving weights of a from-scratch run and its
    statistics over a few small images are noisy, so a model that fits its training boxes with batch statistics
    scored every box under 0.01 in eval mode; group norm computes the same thing in training and at prediction."""
    groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def _advice(held: Optional[str]) -> str:
    """What to pass for a backbone file of architecture ``held`` (None: none Faster R-CNN takes)."""
    other = next((b for b, n in TORCHVISION_NAMES.items() if n == held), None)
    if other is not None:
        return f"; use --backbone {other} (backbone={other!r})"
    return "; Faster R-CNN takes " + " or ".join(f"{n} (--backbone {b})" for b, n in TORCHVISION_NAMES.items())


def _load_backbone(body: nn.Module, path: Union[str, Path], prefix: str, backbone: str) -> None:
    """Load a backbone file (:mod:`detectors.backbone_file`: a torchvision classification state_dict, its head
    optional; ``features.*`` for MobileNet, ``conv1/layer*`` for ResNet) into the FPN backbone's body, which holds
    the same modules under shorter names. A file of another architecture is refused in one line that names the
    architectures Faster R-CNN takes."""
    wanted_name = TORCHVISION_NAMES[backbone]
    state = load_backbone(path, wanted_name, "weights_backbone file", advice=_advice)
    wanted = body.state_dict()
    renamed = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    found = {k: v for k, v in renamed.items() if k in wanted}
    missing = sorted(set(wanted) - set(found))
    if missing:  # load_backbone compared every key: this would be a bug, not a bad file
        raise RuntimeError(f"the {wanted_name} FPN body has keys the backbone file lacks: {missing[:3]}")
    body.load_state_dict(found)


__all__ = ["build_faster_rcnn", "BACKBONES", "TORCHVISION_NAMES", "DEFAULT_ANCHORS"]
