"""The Faster R-CNN network (torchvision), built offline: random init unless local weight files are given.

torchvision's model builders download ImageNet backbone weights by default; here the backbone is built with
``weights=None`` and, where the user has them, local files are loaded into it. The resize step is set to the
detector's image size (``min_size = max_size = image_size``) so torchvision never rescales our images. Three
choices are made for small defects and training from scratch:

- the feature pyramid starts at stride 8 (torchvision's MobileNet model takes two stages that are both at
  stride 32, where a 10-20 px defect is less than one feature cell), with one anchor size per level from 16 px
  (torchvision's 32-512 px anchors are made for COCO objects in 800 px images);
- a backbone trained from scratch uses group norm, not batch norm (see :func:`_group_norm`); a backbone file
  is loaded either into torchvision's pretrained layout (``backbone_norm="frozen"``: batch norm frozen with the
  file's statistics, the first blocks frozen) or into that same group-norm network (``backbone_norm="group"``:
  the file's batch norms converted to group norms that compute what they did, see
  :func:`batch_norm_to_group_norm`, and every layer trains). Frozen is torchvision's convention for ImageNet
  weights; group is the one measured to work for the short self-supervised runs of ``defectgen pretrain``
  (docs/pretrain.md), whose features a frozen normalisation cannot adapt.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

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
BATCH_NORM_EPS = {"mobilenet_v3": 1e-3, "resnet50": 1e-5}
"""The eps of torchvision's batch norms in each architecture (a state dict does not hold it)."""
BACKBONE_NORMS = ("frozen", "group")
"""How a backbone file's batch norms enter the network (see the module docstring)."""
GROUP_NORM_CONVERSION = 2
"""The version of :func:`batch_norm_to_group_norm`, raised whenever its output changes (a benchmark records it, so
results of an older conversion are never reused as this one's). 2: each convolution keeps its weight norm."""

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
                      detections_per_image: int = 100, frozen_norm: bool = False,
                      backbone_norm: str = "frozen") -> FasterRCNN:
    """A Faster R-CNN with an FPN over ``backbone``, for ``num_classes`` defect classes (+ background).

    Args:
        weights_backbone: local backbone file with a torchvision ``mobilenet_v3_large`` / ``resnet50``
            classification state_dict, its head optional (the ``backbone.pt`` of ``defectgen pretrain``, or
            ImageNet weights). With ``backbone_norm="frozen"``, as torchvision does with pretrained backbones,
            batch norm is frozen and only the last ``trainable_backbone_layers`` blocks train (default 3); with
            ``"group"`` or without a file, the backbone uses group norm and every layer trains (default).
        backbone_norm: ``"frozen"`` or ``"group"``: how a backbone file's batch norms enter the network (module
            docstring); ignored without a file.
        box_score_thresh: lowest box score kept at prediction (low, so mAP sees the whole precision-recall curve).
        frozen_norm: build the pretrained layout (frozen batch norm, 3 trainable blocks) without loading a file,
            for a saved model of a pretrained backbone.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {list(BACKBONES)}, got {backbone!r}")
    if backbone_norm not in BACKBONE_NORMS:
        raise ValueError(f"backbone_norm must be one of {list(BACKBONE_NORMS)}, got {backbone_norm!r}")
    pretrained = (weights_backbone is not None and backbone_norm == "frozen") or frozen_norm
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
        _load_backbone(body.body, weights_backbone, prefix, backbone, convert_norm=not pretrained)
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


def _load_backbone(body: nn.Module, path: Union[str, Path], prefix: str, backbone: str,
                   convert_norm: bool = False) -> None:
    """Load a backbone file (:mod:`detectors.backbone_file`: a torchvision classification state_dict, its head
    optional; ``features.*`` for MobileNet, ``conv1/layer*`` for ResNet) into the FPN backbone's body, which holds
    the same modules under shorter names; ``convert_norm``: the body has group norms where the file has batch
    norms (:func:`batch_norm_to_group_norm`). A file of another architecture is refused in one line that names
    the architectures Faster R-CNN takes."""
    wanted_name = TORCHVISION_NAMES[backbone]
    state = load_backbone(path, wanted_name, "weights_backbone file", advice=_advice)
    wanted = body.state_dict()
    renamed = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if convert_norm:
        renamed = batch_norm_to_group_norm(renamed, body, eps=BATCH_NORM_EPS[backbone])
    found = {k: v for k, v in renamed.items() if k in wanted}
    missing = sorted(set(wanted) - set(found))
    if missing:  # load_backbone compared every key: this would be a bug, not a bad file
        raise RuntimeError(f"the {wanted_name} FPN body has keys the backbone file lacks: {missing[:3]}")
    body.load_state_dict(found)


def conv_norm_pairs(network: nn.Module) -> List[Tuple[str, str]]:
    """``(convolution, normalisation)`` module names of ``network``, each normalisation paired with the
    convolution registered just before it (how torchvision's ResNets and MobileNets are built: conv then norm in
    every block; MobileNet's squeeze-excitation convolutions have no norm and come before the projection's conv)."""
    pairs, last_conv = [], None
    for name, module in network.named_modules():
        if isinstance(module, nn.Conv2d):
            last_conv = name
        elif isinstance(module, (nn.GroupNorm, nn.modules.batchnorm._BatchNorm, FrozenBatchNorm2d)):
            if last_conv is None:
                raise RuntimeError(f"normalisation {name!r} has no convolution before it")
            pairs.append((last_conv, name))
            last_conv = None
    return pairs


@torch.no_grad()
def batch_norm_to_group_norm(state: Dict[str, torch.Tensor], network: nn.Module,
                             eps: float = 1e-5) -> Dict[str, torch.Tensor]:
    """A batch-norm state dict made the state dict of ``network``, the same architecture with group norms.

    Batch norm normalises each channel with fixed statistics (mean m, variance v); group norm normalises each
    group of channels with one image's own statistics. For each conv -> norm pair the conversion
    1. divides the convolution's output channel c by s_c = sqrt(v_c + eps), so every channel has unit variance
       over the data (u_c = v_c / s_c^2, 1 but for eps) and no channel dominates its group (its mean becomes
       mu_c = m_c / s_c);
    2. sets the group norm's affine parameters so that, where an image's group statistics equal the data's
       (mean M = mean of mu_c in the group, std S = sqrt(mean (u_c + mu_c^2) - M^2)), it outputs exactly what
       batch norm did: gamma' = gamma * S, beta' = beta - gamma * (mu_c - M).
    What differs is only each image's departure from the data's statistics, which group norm removes (that is
    what it is for). Each convolution keeps its overall weight norm (step 1 only rebalances its channels): group
    norm ignores one common factor, and an optimiser with fixed-size steps (Adam) learns at the speed it would
    from the file's scale. The batch norm's statistics must match its weights (``defectgen pretrain`` recomputes them
    before saving); ``eps`` is the batch norm's. Keys other than conv / norm pass through; batch norm's buffers
    are dropped.
    """
    modules = dict(network.named_modules())
    out = dict(state)
    for conv, norm in conv_norm_pairs(network):
        module = modules[norm]
        if not isinstance(module, nn.GroupNorm):
            continue
        mean, var = state[f"{norm}.running_mean"].double(), state[f"{norm}.running_var"].double()
        gamma, beta = state[f"{norm}.weight"].double(), state[f"{norm}.bias"].double()
        scale = (var + eps).sqrt()
        weight = state[f"{conv}.weight"]
        folded = weight.double() / scale.view(-1, *[1] * (weight.dim() - 1))
        # then the file's overall scale again: one factor on every channel changes nothing group norm outputs,
        # but Adam's steps are a fixed size, so a layer scaled up 10x (depthwise convolutions are, by 1 / s_c)
        # would learn 10x slower than from random init
        folded *= weight.double().norm() / folded.norm().clamp_min(1e-12)
        out[f"{conv}.weight"] = folded.to(weight.dtype)
        mu = (mean / scale).view(module.num_groups, -1)  # channels are grouped in contiguous runs
        unit = (var / (var + eps)).view(module.num_groups, -1)  # each scaled channel's variance (1 but for eps)
        group_mean = mu.mean(1, keepdim=True)
        group_std = ((unit + mu ** 2).mean(1, keepdim=True) - group_mean ** 2 + module.eps).sqrt()
        dtype = state[f"{norm}.weight"].dtype
        out[f"{norm}.weight"] = (gamma * group_std.expand_as(mu).reshape(-1)).to(dtype)
        out[f"{norm}.bias"] = (beta - gamma * (mu - group_mean).reshape(-1)).to(dtype)
        for buffer in ("running_mean", "running_var", "num_batches_tracked"):
            out.pop(f"{norm}.{buffer}", None)
    return out


__all__ = ["build_faster_rcnn", "batch_norm_to_group_norm", "conv_norm_pairs", "BACKBONE_NORMS",
           "GROUP_NORM_CONVERSION", "BACKBONES", "TORCHVISION_NAMES", "DEFAULT_ANCHORS"]
