"""The YOLO detector's network on ultralytics: built from its model yaml (seeded), layers copied in from a weights
file, and ultralytics' NMS with the options the installed version takes.

Importing this module does not import ultralytics; each function does, when called.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Dict, Union

import torch

from .offline import quiet_offline
from .torchvision_backbone import check_torchvision_rows, restore_torchvision_norm


def network_from_yaml(cfg: Dict[str, Any], num_classes: int, seed: int):
    """``(DetectionModel, its yaml as plain data)``, initialised from ``seed`` without touching the global stream.

    A yaml may hold ``TorchVision`` rows (a torchvision backbone, :mod:`.torchvision_backbone`) whose weights are
    None; one that would download weights is refused.
    """
    from ultralytics.nn.tasks import DetectionModel

    check_torchvision_rows(cfg, str(cfg.get("yaml_file", "<yaml>")))
    with quiet_offline(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = DetectionModel(copy.deepcopy(dict(cfg)), ch=3, nc=num_classes, verbose=False)
    restore_torchvision_norm(network)
    plain = json.loads(json.dumps(network.yaml, default=str))  # lists, numbers and strings: weights_only-safe
    return network, plain


def transfer_weights(network: torch.nn.Module, path: Union[str, Path], own_format: str) -> None:
    """Copy the layers of ``path`` whose names and shapes match into ``network``.

    ``path`` is a defectgen YOLO model (a save whose ``"format"`` is ``own_format``), a state dict, or an
    ultralytics checkpoint (a pickle, read the way ultralytics reads it).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"weights file {str(path)!r} does not exist (the yolo detector never downloads weights: "
                         "pass a local .pt file)")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not plain tensors: an ultralytics checkpoint, read the way ultralytics reads it
        loaded = None
    if isinstance(loaded, dict) and loaded.get("format") == own_format:
        source = loaded["state_dict"]
    elif isinstance(loaded, dict) and loaded and all(isinstance(v, torch.Tensor) for v in loaded.values()):
        source = loaded
    else:
        from ultralytics.nn.tasks import load_checkpoint

        try:
            with quiet_offline():
                model, _ = load_checkpoint(str(path))
        except Exception as error:
            raise ValueError(f"{str(path)!r} is neither an ultralytics checkpoint nor a state dict "
                             f"({type(error).__name__}: {error})") from None
        source = model.float().state_dict()
    own = network.state_dict()
    matched = {k: v for k, v in source.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if not matched:
        raise ValueError(f"no layer of {str(path)!r} fits this network (another architecture?)")
    network.load_state_dict(matched, strict=False)


def nms():
    """ultralytics' NMS function (``utils.nms`` in 8.3+, ``utils.ops`` before) and the options it takes."""
    import inspect

    try:
        from ultralytics.utils.nms import non_max_suppression
    except ImportError:
        from ultralytics.utils.ops import non_max_suppression
    accepted = set(inspect.signature(non_max_suppression).parameters)
    options = {"multi_label": False, "agnostic": False}
    if "max_time_img" in accepted:
        options["max_time_img"] = 1e9  # no time limit: the boxes must not depend on the machine's speed
    options.update({name: None for name in ("nc", "end2end") if name in accepted})
    return non_max_suppression, options
