"""Recipes: an operator (or several) and its class names from operator names, configs, objects or a YAML file.

A recipe is the registry's YAML operator config plus two top-level keys that are not operator arguments:
``class_names`` (a list for classes 1..K, or a ``{id: name}`` mapping) and ``defects_per_image`` (how many defects
a consumer paints per image). ``generate``, ``preview``, ``fit``, the training sources and the study all build
their operators here, so one recipe means the same defects everywhere.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import yaml

from ._config import plain
from .ops.base import DefectOp
from .pipeline import OneOf
from .registry import create_op, resolve_op

OpSpec = Union[str, Mapping[str, Any], DefectOp]


def build_op(ops: Union[OpSpec, Sequence[OpSpec], None], recipe: Optional[Union[str, Path]]):
    """The operator and explicit class names (or None) from ``ops`` and/or a recipe file.

    Several ops become a :class:`~defectgen.OneOf` with equal weights and classes 1..K in the order given.
    A recipe is a YAML operator config (the registry's format); it may carry a top-level ``class_names``
    (a list for classes 1..K, or a ``{id: name}`` mapping) and ``defects_per_image`` (see
    :func:`recipe_defects_per_image`), which are not operator arguments.
    """
    if (ops is None or ops == []) == (recipe is None):
        raise ValueError("give the defects either as ops (operator names, configs or objects) or as a recipe file, "
                         "not both and not neither")
    names = None
    if recipe is not None:
        config = load_recipe(recipe)
        names = config.pop("class_names", None)
        config.pop("defects_per_image", None)  # how many defects a consumer paints per image, not the operator's
        try:
            op = create_op(config)
        except (ValueError, TypeError) as error:
            raise ValueError(f"recipe {str(recipe)!r}: {error}") from error
        return op, names
    if isinstance(ops, (str, Mapping, DefectOp)):
        ops = [ops]
    built = [resolve_op(op) for op in ops]
    if len(built) == 1:
        return built[0], None
    return OneOf(built, labels=list(range(1, len(built) + 1))), None


def recipe_defects_per_image(path: Union[str, Path]) -> Optional[int]:
    """The recipe's top-level ``defects_per_image`` (how many defects a training source or generator should paint
    on each image; ``defectgen fit`` writes the real median there), or None when the recipe has none.

    Raises:
        ValueError: naming the recipe when it cannot be read, or the value is not an integer >= 1.
    """
    value = load_recipe(path).get("defects_per_image")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"recipe {str(path)!r}: defects_per_image must be an integer >= 1, got {value!r}")
    return value


def load_recipe(path: Union[str, Path]) -> Dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ValueError(f"cannot read recipe {str(path)!r}: {error.strerror or error}") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"recipe {str(path)!r} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(config, dict) or "op" not in config:
        raise ValueError(f"recipe {str(path)!r} must be a mapping with an 'op' entry naming the operator "
                         "(the registry's config format, e.g. 'op: one_of' with 'ops: [...]')")
    return config


def class_names(op: DefectOp, explicit: Optional[Union[Sequence[str], Mapping[int, str]]] = None) -> Dict[int, str]:
    """``{class id: name}`` for every defect class ``op`` can produce.

    Names come from the operators (the registry name; a defect bank's type names for transplants; branch
    names joined by ``+`` where a :class:`~defectgen.OneOf` merges branches into one class) unless given.
    Names are made unique, and safe as folder names for the MVTec layout.
    """
    derived = _derived_names(op)
    if explicit is not None:
        if isinstance(explicit, Mapping):
            given = {int(k): str(v) for k, v in explicit.items()}
        elif isinstance(explicit, Sequence) and not isinstance(explicit, str):
            given = {i + 1: str(v) for i, v in enumerate(explicit)}
        else:
            raise TypeError(f"class_names must be a list or a {{id: name}} mapping, got {explicit!r}")
        unknown = sorted(set(given) - set(derived))
        if unknown:
            raise ValueError(f"class_names names classes {unknown} that the operator does not produce "
                             f"(its classes: {sorted(derived)})")
        derived.update(given)
    out: Dict[int, str] = {}
    for cid, name in sorted(derived.items()):
        name = re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("._") or "defect"
        if name == "good":
            name = "good_defect"  # "good" means normal in the MVTec layout
        out[cid] = name
    counts: Dict[str, int] = {}
    for name in out.values():
        counts[name] = counts.get(name, 0) + 1
    return {cid: (f"{name}_{cid}" if counts[name] > 1 else name) for cid, name in out.items()}


def _derived_names(op: DefectOp) -> Dict[int, str]:
    if hasattr(op, "class_ids"):
        return dict(op.class_ids)
    if isinstance(op, OneOf):
        merged: Dict[int, List[str]] = {}
        for k, branch in enumerate(op.ops):
            branch_names = _derived_names(branch)
            if op.labels is not None:
                branch_names = {op.labels[k]: "+".join(dict.fromkeys(branch_names.values()))}
            for cid, name in branch_names.items():
                merged.setdefault(cid, [])
                if name not in merged[cid]:
                    merged[cid].append(name)
        return {cid: "+".join(names) for cid, names in merged.items()}
    return {op.label: op.config_name or type(op).__name__.lower()}


def jsonable(value: Any) -> Any:
    """Plain JSON data from an operator config; tensors and arrays become a shape + sha256 fingerprint, so a
    job built from Python objects still has a stable identity."""
    value = plain(value)
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().contiguous().numpy()
    if isinstance(value, np.ndarray):
        return {"array_shape": list(value.shape), "dtype": str(value.dtype),
                "sha256": hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "fingerprint"):
        return {"object": type(value).__name__, "fingerprint": value.fingerprint()}
    return {"object": type(value).__name__}


__all__ = ["OpSpec", "build_op", "recipe_defects_per_image", "load_recipe", "class_names", "jsonable"]
