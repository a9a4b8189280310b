"""What a generation job records: the chosen defect and compact params per item, and the ``job.json`` that pins
the settings (the operator and class names come from :mod:`defectgen.recipe`).

``job.json`` holds everything that decides the output bytes. A resumed run, or another shard of the same
job, must find the same settings there, otherwise its images would not belong to the data set.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Optional, Tuple

import torch

from ..ops.base import DefectOp
from ..pipeline import OneOf

#: bump when the same settings would give different files
JOB_FORMAT = 1


def chosen_defect(op: DefectOp, params: Dict[str, Any]) -> Tuple[Optional[str], Dict[str, Any]]:
    """The name and params of the operator that made a one-sample ``params``'s defect: the chosen branch of a
    :class:`~defectgen.OneOf` (recursively), or ``op`` itself."""
    if isinstance(op, OneOf):
        choice = int(params["choice"][0])
        if choice < 0:
            return None, {}
        return chosen_defect(op.ops[choice], params["branches"][choice])
    return op.config_name or type(op).__name__, params


def compact_params(params: Any, max_values: int = 32) -> Any:
    """One sample's params for the manifest: small tensors as numbers, large ones (noise fields, foreground
    masks) as their shape only; the item's seed regenerates them exactly."""
    if isinstance(params, torch.Tensor):
        value = params[0] if params.ndim and params.shape[0] == 1 else params
        if value.numel() <= max_values:
            data = value.cpu().tolist()
            return _round_floats(data)
        return {"shape": list(value.shape), "dtype": str(value.dtype).replace("torch.", "")}
    if isinstance(params, dict):
        return {k: compact_params(v, max_values) for k, v in params.items()}
    return [compact_params(v, max_values) for v in params]


def _round_floats(data: Any) -> Any:
    if isinstance(data, float):
        return float(f"{data:.6g}")
    if isinstance(data, list):
        return [_round_floats(v) for v in data]
    return data


def write_json_text(data: Any) -> str:
    return json.dumps(data, indent=1, sort_keys=True) + "\n"
