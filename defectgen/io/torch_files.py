"""Torch files: write a state (tensors and plain data) atomically, read one back safely.

The training loop's checkpoints, the detectors' saved models and the diffusion trainer's checkpoints are all one
``torch.save`` file holding a dict. They are written through a temporary file and a rename (a crash while writing
leaves the previous file) and read with ``weights_only=True`` on the CPU (nothing in a file runs code, and nothing
here downloads).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Dict, Union

import torch

from .atomic import write_bytes_atomic


def save_state(state: Dict[str, Any], path: Union[str, Path]) -> Path:
    """Write a save (tensors and plain data, so it loads with ``weights_only=True``) atomically: a crash while
    writing leaves the previous file."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path = Path(path)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def read_local_torch_file(path: Union[str, Path], what: str, hint: str = "") -> Any:
    """What ``torch.load(path, weights_only=True)`` reads, on the CPU; a ``ValueError`` naming ``what`` and the file
    when it is missing or unreadable (weights are always a local file: nothing here downloads). ``hint`` is added
    to the "does not exist" message."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {str(path)!r} does not exist{hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and torch raise several types for a file that is not one of ours
        raise ValueError(f"{what} {str(path)!r} is not a torch state_dict file "
                         f"(torch.load: {type(error).__name__})") from None


__all__ = ["save_state", "read_local_torch_file"]
