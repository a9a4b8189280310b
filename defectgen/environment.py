"""The library versions a run used, in one line: for bug reports, the test log and benchmark headers.

Learned results (an AUROC after training) and float details move with torch, kornia and OpenCV releases, so a
failure is only traceable with the versions beside it. Versions are read from the installed distributions'
metadata, so reporting them imports none of the optional libraries.
"""
from __future__ import annotations

import platform
from importlib import metadata
from typing import Dict, Optional

# what the report names -> the distributions that provide it (the first one installed is reported)
LIBRARIES = {
    "torch": ("torch",),
    "torchvision": ("torchvision",),
    "kornia": ("kornia",),
    "numpy": ("numpy",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless", "opencv-contrib-python"),
    "torchmetrics": ("torchmetrics",),
    "ultralytics": ("ultralytics",),
    "albumentations": ("albumentations",),
    "diffusers": ("diffusers",),
    "transformers": ("transformers",),
    "anomalib": ("anomalib",),
    "ray": ("ray",),
    "submitit": ("submitit",),
}


def _installed(distributions) -> Optional[str]:
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def versions() -> Dict[str, Optional[str]]:
    """``{"python": ..., "torch": ..., ...}`` for every entry of :data:`LIBRARIES`; ``None`` = not installed."""
    return {"python": platform.python_version(), **{name: _installed(dists) for name, dists in LIBRARIES.items()}}


def describe() -> str:
    """One line: each library's version (``-`` where it is not installed), torch's thread count and device."""
    import torch

    found = versions()
    found["torch"] = torch.__version__  # names the build (+cpu, +cu130), which the metadata may not
    device = f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU" if torch.cuda.is_available() else "no GPU"
    parts = [f"{name} {version or '-'}" for name, version in found.items()]
    return ", ".join(parts) + f"; torch {torch.get_num_threads()} threads, {device}"


__all__ = ["LIBRARIES", "versions", "describe"]
