"""A YOLO network on a torchvision backbone, so that the YOLO detector can start from a backbone file.

ultralytics' own YOLO backbones (``Conv`` / ``C2f`` / ``C3k2`` / ``SPPF`` rows of the model yaml) share no layer
with a torchvision classification model, so a torchvision state dict has nothing to load into them. ultralytics
(8.3.x and later) has a ``TorchVision`` yaml block that wraps a torchvision model inside a YOLO network; this
module builds such a network from a YOLO detection yaml (v8, 11, 26: any whose head reads backbone rows 4, 6
and the last one):

- row 0 is ``TorchVision`` with ``weights`` set to None (its default, ``"DEFAULT"``, would download ImageNet
  weights), the model unwrapped into its stages and the pooling + classifier cut off, returning every stage's
  output (``split``);
- the next rows are ``Index`` rows (no weights) that put the stride-8, stride-16 and stride-32 outputs where the
  yaml's head reads its P3 (row 4) and P4 (row 6), and an ``SPPF`` over the stride-32 output as the last
  backbone row (P5), as YOLOv8's backbone ends; the head is the yaml's own.

The backbone file (:mod:`detectors.backbone_file`) is then copied into row 0, tensor for tensor. ultralytics
sets every batch norm to ``eps=1e-3, momentum=0.03`` when it builds a network; the torchvision rows get back
the values their architecture was trained with (:func:`restore_torchvision_norm`). The images keep YOLO's
[0, 1] input (no ImageNet normalisation): ImageNet's scaling is nearly the same on the three channels, so the
first batch norm, which trains, absorbs it.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Sequence, Tuple

import torch
from torch import nn

from ..backbone_file import ARCHITECTURES, essential

STRIDES = (8, 16, 32)
_P3_ROW, _P4_ROW = 4, 6  # the backbone rows a YOLOv8 / 11 / 26 head concatenates (P5: the last backbone row)
_TRUNCATE = 2  # the pooling and classifier rows of every ARCHITECTURES model, cut off


def _stages(architecture: str, model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(torchvision name, module)`` of the stages ultralytics' ``TorchVision(unwrap=True)`` keeps, in its order
    (a first ``nn.Sequential`` child, MobileNet's ``features``, is unwrapped one level)."""
    children = list(model.named_children())
    if isinstance(children[0][1], nn.Sequential):
        head, rest = children[0], children[1:]
        children = [(f"{head[0]}.{name}", child) for name, child in head[1].named_children()] + rest
    return children[:-_TRUNCATE]


def _reference(architecture: str, device: str = "meta") -> nn.Module:
    import torchvision.models as models

    if architecture not in ARCHITECTURES:
        raise ValueError(f"backbone must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}")
    with torch.device(device):
        return getattr(models, architecture)(weights=None)


def _taps(architecture: str) -> Dict[int, Tuple[int, int]]:
    """``{stride: (index in TorchVision's split output, channels)}``: the last stage at each of :data:`STRIDES`
    (the split output is the input, then each stage's)."""
    x = torch.empty(1, 3, 64, 64, device="meta")
    taps = {}
    for i, (_, stage) in enumerate(_stages(architecture, _reference(architecture))):
        x = stage(x)
        stride = 64 // x.shape[-1]
        if stride in STRIDES:
            taps[stride] = (i + 1, int(x.shape[1]))
    return taps


def torchvision_yaml(cfg: Dict[str, Any], architecture: str, model: str) -> Dict[str, Any]:
    """``cfg`` (a loaded YOLO detection yaml, named ``model`` in errors) with its backbone replaced by
    ``architecture`` (see the module docstring)."""
    backbone, head = cfg.get("backbone"), cfg.get("head")
    if not backbone or not head:
        raise ValueError(f"model yaml {model!r} has no backbone and head to put a torchvision backbone under")
    last = len(backbone) - 1
    read = set()
    for i, row in enumerate(head):
        sources = row[0] if isinstance(row[0], list) else [row[0]]
        read |= {len(backbone) + i + s if s < 0 else s for s in sources}
    read = {s for s in read if s <= last}
    if not read <= {_P3_ROW, _P4_ROW, last} or last - 1 <= _P4_ROW:
        raise ValueError(f"model yaml {model!r}: its head reads backbone rows {sorted(read)}; a torchvision backbone "
                         f"goes under heads that read rows {_P3_ROW}, {_P4_ROW} and the last (YOLOv8, YOLO11, YOLO26 "
                         "detection yamls, e.g. yolov8n.yaml)")
    _check_ultralytics_blocks()
    taps = _taps(architecture)
    rows: List[List[Any]] = [[-1, 1, "TorchVision", [taps[32][1], architecture, None, True, _TRUNCATE, True]]]
    for row in range(1, last):
        stride = {_P3_ROW: 8, _P4_ROW: 16, last - 1: 32}.get(row, 32)  # unread rows: any output; keep the deepest
        index, channels = taps[stride][0], taps[stride][1]
        rows.append([0, 1, "Index", [channels, index]])
    rows.append([-1, 1, "SPPF", [1024, 5]])  # P5, as YOLOv8's backbone ends (scaled by the yaml's width)
    return dict(copy.deepcopy(cfg), backbone=rows)


def _check_ultralytics_blocks() -> None:
    """The installed ultralytics has the blocks this needs: ``TorchVision`` with ``split``, and ``Index``."""
    import inspect

    import ultralytics

    try:
        from ultralytics.nn.modules import Index, TorchVision  # noqa: F401
    except ImportError:
        TorchVision = None
    if TorchVision is None or "split" not in inspect.signature(TorchVision.__init__).parameters:
        raise ValueError(f"a torchvision backbone needs ultralytics' TorchVision block with split outputs and its "
                         f"Index block, which ultralytics {ultralytics.__version__} lacks: upgrade ultralytics")


def check_torchvision_rows(cfg: Dict[str, Any], model: str) -> None:
    """Refuse a yaml whose ``TorchVision`` rows would download weights (their ``weights`` argument, whose default
    is ``"DEFAULT"``, not None)."""
    for section in ("backbone", "head"):
        for row in cfg.get(section) or []:
            if len(row) > 3 and row[2] == "TorchVision":
                args = list(row[3])
                if len(args) < 3 or args[2] not in (None, "None", False, "False"):
                    raise ValueError(f"model yaml {model!r}: its TorchVision row {row} would download weights; set "
                                     "its third argument (weights) to None and start from a local file with "
                                     "weights_backbone=")


def _torchvision_rows(network: nn.Module) -> List[Tuple[nn.Module, str]]:
    """``(TorchVision module, architecture)`` of each torchvision row of an ultralytics network."""
    rows = []
    for row, module in zip(network.yaml.get("backbone", []) + network.yaml.get("head", []), network.model):
        if row[2] == "TorchVision" and str(row[3][1]) in ARCHITECTURES:
            rows.append((module, str(row[3][1])))
    return rows


def restore_torchvision_norm(network: nn.Module) -> None:
    """Give the torchvision rows' batch norms the ``eps`` and ``momentum`` torchvision builds them with (ultralytics
    sets its own on every batch norm; ``eps`` is not in a state dict, so a saved model needs this again)."""
    for module, architecture in _torchvision_rows(network):
        reference = nn.Sequential(*(m for _, m in _stages(architecture, _reference(architecture))))
        ours = [m for m in module.m.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        theirs = [m for m in reference.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for mine, original in zip(ours, theirs):
            mine.eps, mine.momentum = original.eps, original.momentum


def load_torchvision_backbone(network: nn.Module, state: Dict[str, torch.Tensor], architecture: str) -> int:
    """Copy a backbone file's tensors (``state``, of ``architecture``) into the network's torchvision row;
    returns the number of tensors copied."""
    rows = [module for module, name in _torchvision_rows(network) if name == architecture]
    if len(rows) != 1:
        raise ValueError(f"the network has {len(rows)} torchvision {architecture} rows, not one")
    names = [name for name, _ in _stages(architecture, _reference(architecture))]
    renamed = {}
    for key, value in state.items():
        stage = next((i for i, name in enumerate(names) if key.startswith(name + ".")), None)
        if stage is not None:
            renamed[f"{stage}.{key[len(names[stage]) + 1:]}"] = value
    wanted = rows[0].m.state_dict()
    missing = [k for k in wanted if k not in renamed and essential(k)]
    if missing:
        raise ValueError(f"the backbone file lacks {len(missing)} tensors of the {architecture} backbone "
                         f"(e.g. {missing[0]!r})")
    rows[0].m.load_state_dict({k: v for k, v in renamed.items() if k in wanted}, strict=False)
    return len([k for k in renamed if k in wanted])


def stage_names(architecture: str) -> Sequence[str]:
    """The torchvision names of the stages the torchvision row holds, in its order (``m.0``, ``m.1``...)."""
    return [name for name, _ in _stages(architecture, _reference(architecture))]


__all__ = ["torchvision_yaml", "check_torchvision_rows", "restore_torchvision_norm", "load_torchvision_backbone",
           "stage_names", "STRIDES"]
