"""The self-supervised methods: one module each, holding only its heads and loss (:mod:`.common` has the
interface and what they share). :data:`METHODS` is the table the trainer and the CLI build from."""
from __future__ import annotations

from typing import Any, Dict, Type

from torch import nn

from .byol import BYOL
from .common import Method, MethodOutput, Negatives, cosine_momentum, output_std
from .moco import MoCoV3
from .simclr import SimCLR
from .simsiam import SimSiam

METHODS: Dict[str, Type[Method]] = {cls.name: cls for cls in (SimCLR, BYOL, SimSiam, MoCoV3)}
CONTRASTIVE = tuple(name for name, cls in METHODS.items() if cls.contrastive)
NEEDS_TRUNK = (BYOL, MoCoV3)  # they copy the trunk into their momentum encoder


def check_method_name(name: str) -> str:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r} (known: {', '.join(METHODS)})")
    return name


def create_method(name: str, trunk: nn.Module, width: int, **options: Any) -> Method:
    """Method ``name``'s heads (and momentum encoder) for a trunk of feature width ``width``."""
    cls = METHODS[check_method_name(name)]
    return cls(trunk, width, **options) if cls in NEEDS_TRUNK else cls(width, **options)


__all__ = ["METHODS", "CONTRASTIVE", "Method", "MethodOutput", "Negatives", "create_method", "check_method_name",
           "cosine_momentum", "output_std", "SimCLR", "BYOL", "SimSiam", "MoCoV3"]
