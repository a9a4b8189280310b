"""The synthetic side of a fit: OK images, and a labelled set of defects the fitted recipe paints on them.

The report compares real and synthetic defects measured by the same :func:`~defectgen.fit.measure_defects`, so
the synthetic set is built the way a training source builds its batches: ``defects_per_image`` operator passes
over each batch, the first seeded by the batch's seed and each further one by ``index_seed(seed, k,
"more-defects")`` (as ``detectors.data.SyntheticSource.make`` does), boxes gathered from every pass and the
masks joined.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import torch

from ..checks import check_int
from ..rng import index_seed
from ..io.labelled import LabelledSet

PathLike = Union[str, Path]


def ok_folder(path: PathLike) -> Path:
    """The folder of OK images under ``path``: an MVTec category's ``train/good``, an aligned-pairs set's
    ``templates``, or ``path`` itself."""
    root = Path(path)
    if (root / "train" / "good").is_dir():
        return root / "train" / "good"
    if (root / "templates").is_dir() and (root / "images").is_dir():
        return root / "templates"
    return root


def load_ok_images(path: PathLike, count: int, size: int, channels: int, seed: int) -> Tuple[torch.Tensor, List[str]]:
    """Up to ``count`` OK images of the folder :func:`ok_folder` finds under ``path``, chosen by ``seed``, read
    at ``size x size``: ``((n, channels, size, size) uint8, file names)``.

    Raises:
        ValueError: naming the folder when it does not exist or holds no image.
    """
    from ..io.images import list_images, read_image_as

    count, size = check_int(count, "count", 1), check_int(size, "size", 1)
    folder = ok_folder(path)
    files = list_images(folder)
    generator = torch.Generator().manual_seed(index_seed(check_int(seed, "seed"), 0, "fit-ok-images"))
    chosen = torch.randperm(len(files), generator=generator)[:count].sort().values.tolist()
    arrays = [read_image_as(files[i], channels, size) for i in chosen]
    images = torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in arrays]).contiguous()
    return images, [files[i].relative_to(folder).as_posix() for i in chosen]


def synthetic_set(op, ok_images: torch.Tensor, count: int, seed: int, class_names: Sequence[str],
                  defects_per_image: int = 1, batch_size: int = 16, device: Union[str, torch.device] = "cpu"
                  ) -> Tuple[LabelledSet, torch.Tensor]:
    """``count`` images with defects painted by ``op`` over ``ok_images`` (cycled in a seeded order).

    Args:
        op: the operator (its class ids must be ids of ``class_names``: a fitted recipe's are the real set's).
        ok_images: ``(N, C, H, W)`` uint8.
        count: images to make.
        seed: seeds the order and the defects.
        class_names: the class names of the result.
        defects_per_image: operator passes per batch (see the module docstring).
        batch_size: images per operator call.
        device: where the operator runs.

    Returns:
        ``(labelled, ok)``: the defective images with boxes, labels and masks, and the OK image each was made from
        (``(count, C, H, W)``, for measuring against).
    """
    count = check_int(count, "count", 1)
    defects_per_image = check_int(defects_per_image, "defects_per_image", 1)
    batch_size = check_int(batch_size, "batch_size", 1)
    if not isinstance(ok_images, torch.Tensor) or ok_images.ndim != 4 or ok_images.dtype != torch.uint8 or \
            len(ok_images) == 0:
        raise ValueError("ok_images must be a non-empty (N, C, H, W) uint8 tensor")
    generator = torch.Generator().manual_seed(index_seed(check_int(seed, "seed"), 0, "fit-synthetic-order"))
    rounds = -(-count // len(ok_images))
    order = torch.cat([torch.randperm(len(ok_images), generator=generator) for _ in range(rounds)])[:count]
    images: List[torch.Tensor] = []
    boxes: List[torch.Tensor] = []
    labels: List[torch.Tensor] = []
    masks: List[torch.Tensor] = []
    for j, start in enumerate(range(0, count, batch_size)):
        indices = order[start:start + batch_size]
        batch = ok_images[indices].to(device)
        batch_seed = index_seed(seed, j, "fit-synthetic")
        found_boxes: List[List[torch.Tensor]] = [[] for _ in indices]
        found_labels: List[List[torch.Tensor]] = [[] for _ in indices]
        union = torch.zeros(len(indices), 1, *batch.shape[-2:], dtype=torch.bool, device=batch.device)
        for k in range(defects_per_image):
            generator = torch.Generator().manual_seed(batch_seed if k == 0 else index_seed(batch_seed, k,
                                                                                             "more-defects"))
            out = op(batch, generator=generator)
            batch = out.image
            union |= out.mask
            split = torch.bincount(out.box_index, minlength=len(indices)).tolist()
            for i, (b, lab) in enumerate(zip(out.boxes.float().cpu().split(split), out.box_label.cpu().split(split))):
                found_boxes[i].append(b)
                found_labels[i].append(lab)
        images.extend(batch.cpu())
        boxes.extend(torch.cat(b) for b in found_boxes)
        labels.extend(torch.cat(lab) for lab in found_labels)
        masks.extend(union.cpu())
    names = tuple(f"synthetic {i}" for i in range(count))
    labelled = LabelledSet(images=images, boxes=boxes, labels=labels, class_names=tuple(class_names), names=names,
                           masks=masks, info={"format": "synthetic", "seed": seed})
    return labelled, ok_images[order]


def optional_ok_source(real_format: str, real_root: str, ok: Optional[PathLike]) -> Optional[Path]:
    """Where the OK images of a fit come from: ``ok`` if given, else the real set's own defect-free images
    (an aligned-pairs set's templates, an MVTec category's ``train/good``), else None (no synthetic side)."""
    if ok is not None:
        return Path(ok)
    root = Path(real_root)
    if real_format == "deeppcb" and (root / "templates").is_dir():
        return root / "templates"
    if real_format == "mvtec" and (root / "train" / "good").is_dir():
        return root / "train" / "good"
    return None
