"""The image groups ``defectgen features`` embeds: normal images, one synthetic-defect group per family, and
real defects.

- normal: an MVTec-layout root (its ``train/good``) or any folder of images (:func:`load_normal_images`);
- synthetic: a defectgen operator or recipe applied with probability 1 to the normal images, so every image of
  the group is the defective copy of one normal image (:func:`make_family`); seeded, batched, on any device;
- real: the defective images of a labelled set (MVTec-layout ``test/<type>``, or YOLO / COCO / VOC / DeepPCB
  through :func:`defectgen.io.labelled.read_labelled`), each with its defect type, plus the set's defect-free
  images (the default normal group when no other is given).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch

from defectgen.rng import index_seed

from ..data import load_normal_images

NORMAL = "normal"
SYNTHETIC = "synthetic"
REAL = "real"


@dataclass
class Group:
    """One group of images: ``name`` (the legend's), ``kind`` (normal, synthetic or real), the ``(N, C, S, S)``
    uint8 ``images``; ``types`` holds each real image's defect type; ``pairs`` each synthetic image's index in
    the normal group it was made from (cross-validation keeps the two in the same fold)."""

    name: str
    kind: str
    images: torch.Tensor
    source: str
    types: Optional[List[str]] = None
    pairs: Optional[torch.Tensor] = None
    info: Dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)


def subsample(count: int, limit: Optional[int], seed: int, stream: str) -> Optional[torch.Tensor]:
    """Sorted indices of a seeded random ``limit`` of ``count`` items, or None to keep them all."""
    if limit is None or limit >= count:
        return None
    generator = torch.Generator().manual_seed(index_seed(seed, 0, stream))
    return torch.randperm(count, generator=generator)[:limit].sort().values


def normal_group(source: Union[str, Path], size: int, limit: Optional[int] = None, seed: int = 0) -> Group:
    """The normal images of an MVTec-layout root (``train/good``) or any folder, at ``size``; at most ``limit``
    of them (a seeded random choice)."""
    images = load_normal_images(source, size, 3)
    keep = subsample(len(images), limit, seed, "features-normal")
    return Group(NORMAL, NORMAL, images if keep is None else images[keep], str(source))


def real_groups(root: Union[str, Path], size: int, fmt: str = "auto", split: Optional[str] = None,
                limit: Optional[int] = None, seed: int = 0) -> tuple:
    """``(real, good)``: the defective images of the labelled set at ``root`` with their defect types, and its
    defect-free images (None when it has none), at ``size``; at most ``limit`` of each (seeded random choice).

    MVTec-layout folders give each image its ``test/<type>`` folder as type; other formats the most frequent
    class of its boxes (as ``defectgen eval`` files them), or ``"defect"`` when the set has a single class.
    """
    from defectgen.io.labelled import detect_format, read_labelled

    from ..data import load_test_set
    from ..evaluation import image_types

    fmt = detect_format(root) if fmt == "auto" else fmt
    if fmt == "mvtec":
        test = load_test_set(root, size, 3)
        images, defective, types = test.images, test.anomalous, list(test.defects)
    else:
        labelled = read_labelled(root, fmt, split=split, size=size, channels=3)
        if len(labelled) == 0:
            raise ValueError(f"--real {str(root)!r} holds no images")
        images, defective = torch.stack(list(labelled.images)), labelled.defective
        types = image_types(labelled) or ["good" if not d else "defect" for d in defective.tolist()]
    if not defective.any():
        raise ValueError(f"--real {str(root)!r} holds no defective image")
    bad = defective.nonzero().flatten()
    keep = subsample(len(bad), limit, seed, "features-real")
    bad = bad if keep is None else bad[keep]
    real = Group(REAL, REAL, images[bad], str(root), types=[types[i] for i in bad.tolist()], info={"format": fmt})
    good = (~defective).nonzero().flatten()
    if len(good) == 0:
        return real, None
    keep = subsample(len(good), limit, seed, "features-normal")
    good = good if keep is None else good[keep]
    return real, Group(NORMAL, NORMAL, images[good], f"{root} (defect-free test images)")


def family_op(spec: str):
    """The operator of ``--family NAME=SPEC``: a registered operator name or a recipe file (``.yaml``/``.yml``
    or an existing file), made to apply to every image (``p=1``)."""
    from defectgen.recipe import build_op

    is_recipe = spec.endswith((".yaml", ".yml")) or Path(spec).is_file()
    if is_recipe and not Path(spec).is_file():
        raise ValueError(f"recipe file {spec!r} does not exist")
    op, _ = build_op(None, spec) if is_recipe else build_op(spec, None)
    op.p = 1.0  # every image of the group is defective: the group is the family, not a mix with normals
    return op


@torch.no_grad()
def make_family(name: str, op, normal: Group, seed: int = 0, batch_size: int = 64,
                device: Union[str, torch.device] = "cpu") -> Group:
    """The synthetic group ``name``: ``op`` applied to every normal image, ``batch_size`` at a time on
    ``device``. Batch ``b`` draws from a generator seeded with ``index_seed(seed, b, name)``, so the group
    depends only on the seed, the name, the batch size and the images (not on other families).

    ``info["defective_fraction"]`` is the fraction the operator changed: below 1 when it leaves an image
    alone (no room on the foreground, a ``p`` inside a pipeline), which the separability then understates.
    """
    out, changed = [], []
    for b, chunk in enumerate(normal.images.split(batch_size)):
        generator = torch.Generator().manual_seed(index_seed(seed, b, f"features-family:{name}"))
        result = op(chunk.to(device), generator=generator)
        out.append(result.image.cpu())
        changed.append((result.label.cpu() > 0) & result.mask.flatten(1).any(1).cpu())
    changed_all = torch.cat(changed)
    return Group(name, SYNTHETIC, torch.cat(out), type(op).__name__, pairs=torch.arange(len(normal)),
                 info={"defective_fraction": round(float(changed_all.float().mean()), 4)})


__all__ = ["Group", "NORMAL", "SYNTHETIC", "REAL", "normal_group", "real_groups", "family_op", "make_family",
           "subsample"]
