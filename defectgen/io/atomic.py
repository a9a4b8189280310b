"""Atomic file writes: a reader (or a resumed run) sees either the old file or the complete new one.

Data set generation can be killed at any moment; a half-written PNG that looks like a finished one would
poison the data set silently. Each file is written to a temporary name in the same folder and renamed over
the target (``os.replace`` is atomic on POSIX and Windows within one file system). Temporary names start
with ``.`` and end with :data:`TEMP_SUFFIX`, so a killed run's leftovers are easy to find and remove.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Union

import cv2
import numpy as np

PathLike = Union[str, Path]
TEMP_SUFFIX = ".defectgen-tmp"


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")


def write_bytes_atomic(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename; parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_path(path)
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an ``(H, W)``, ``(H, W, 1)`` or RGB ``(H, W, 3)`` uint8 array (lossless, so masks and the
    outside-the-mask pixels stay exact). OpenCV's default compression level, the same as ``cv2.imwrite``."""
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:
        raise ValueError(f"OpenCV could not encode an image of shape {image.shape} as PNG")
    return buffer.tobytes()


def link_or_copy_atomic(source: PathLike, target: PathLike) -> None:
    """Make ``target`` a hard link to ``source`` (no second copy of the bytes), or a copy where the file
    system has no hard links; atomic like the writes above."""
    source, target = Path(source), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:  # a new hard link appears with its whole content at once: no temporary name needed
        os.link(source, target)
        return
    except FileExistsError:
        pass  # replace it atomically below
    except OSError:
        pass  # no hard links here: copy below
    temp = _temp_path(target)
    temp.unlink(missing_ok=True)
    try:
        try:
            os.link(source, temp)
        except OSError:
            shutil.copyfile(source, temp)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def remove_temp_files(root: PathLike) -> int:
    """Delete temporary files a killed run left under ``root``; returns how many."""
    removed = 0
    for path in Path(root).rglob(f".*{TEMP_SUFFIX}"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed
