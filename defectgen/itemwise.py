"""Per-item randomness: each sample's defect drawn from its own seed, then painted as one batch.

An operator called on a batch draws every sample's parameters from one generator, so sample ``i``'s defect
depends on its position in the batch and on the batch size. Data set generation needs more: item ``i`` must
get the same defect however the work is split into batches, shards, worker processes or resumed runs. Here
each sample's parameters are drawn as a batch of one from a generator seeded by that item's own seed (see
:func:`defectgen.rng.index_seed`), the per-sample parameters are concatenated, and the operator replays
them on the whole batch at once, so the painting stays batched.

A batch of one has no other image, so operators whose source is *another* image of the batch
(:class:`~defectgen.PoissonPaste`, ``OtherImagePatch``) take it from the item's own image here.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence

import torch

from .ops.base import DefectOp, _to_device
from .result import BATCH_INDEX_KEYS, DefectBatch, Params
from .values import as_unit


def concat_params(items: Sequence[Params]) -> Params:
    """Stack per-item params (each for a batch of one, or any size) into the params of one batch.

    Every leaf tensor has the batch as its first dimension (the operator contract), so leaves are
    concatenated along it; indices of other samples (:data:`BATCH_INDEX_KEYS`) are shifted by the number of
    samples before them so they keep pointing at the same image.
    """
    if not items:
        raise ValueError("concat_params needs at least one params dict")
    sizes = [_batch_size(p) for p in items]
    offsets = [sum(sizes[:k]) for k in range(len(items))]
    return _concat(list(items), offsets, key=None)


def slice_params(params: Params, index: int) -> Params:
    """Sample ``index``'s params, as params for a batch of one (the inverse of :func:`concat_params`)."""
    if isinstance(params, dict):
        return {k: slice_params(v, index) for k, v in params.items()}
    if isinstance(params, list):
        return [slice_params(v, index) for v in params]
    return params[index:index + 1]


def _batch_size(params: Any) -> int:
    if isinstance(params, torch.Tensor):
        return params.shape[0]
    values = params.values() if isinstance(params, dict) else params
    for value in values:
        size = _batch_size(value)
        if size >= 0:
            return size
    return -1


def _concat(items: List[Any], offsets: List[int], key: Optional[str]) -> Any:
    first = items[0]
    if isinstance(first, torch.Tensor):
        if key in BATCH_INDEX_KEYS:
            items = [t + off for t, off in zip(items, offsets)]
        return torch.cat(items)
    if isinstance(first, dict):
        if any(set(p) != set(first) for p in items):
            raise ValueError("concat_params: the params come from different operators (their keys differ)")
        return {k: _concat([p[k] for p in items], offsets, k) for k in first}
    if isinstance(first, list):
        if any(len(p) != len(first) for p in items):
            raise ValueError("concat_params: the params come from different operators (their branches differ)")
        return [_concat([p[j] for p in items], offsets, key) for j in range(len(first))]
    raise TypeError(f"params leaves must be tensors, got {type(first).__name__}")


def sample_itemwise(op: DefectOp, images: torch.Tensor, seeds: Sequence[int]) -> Params:
    """Draw sample ``j``'s params from ``torch.Generator().manual_seed(seeds[j])`` alone, as a batch of one.

    Foreground placement, when the operator has a foreground mode, is done per item too (it draws from the
    same generator). The result replays on ``images`` with ``op(images, params=...)``.
    """
    if len(seeds) != images.shape[0]:
        raise ValueError(f"need one seed per image: got {len(seeds)} seeds for {images.shape[0]} images")
    _, channels, height, width = images.shape
    per_item = []
    for j, seed in enumerate(seeds):
        generator = torch.Generator().manual_seed(int(seed))
        params = op.sample_params(1, channels, height, width, generator)
        params = _to_device(params, images.device)
        per_item.append(op.place_on_foreground(images[j:j + 1], params, generator, None))
    return concat_params(per_item)


def apply_itemwise(op: DefectOp, images: torch.Tensor, seeds: Sequence[int], **space) -> DefectBatch:
    """``op`` on ``images`` with each sample's defect depending only on its own seed (see the module doc).

    ``apply_itemwise(op, images[j:j+1], [seeds[j]])`` gives sample ``j`` of the batched call (up to the
    float rounding of iterative solvers, which can depend on what else is in the batch). ``space``: the
    ``value_range`` / ``mean`` / ``std`` of the call (:mod:`defectgen.values`); placement sees the images in
    ``[0, 1]``, as a batched call does.
    """
    if images.shape[0] == 0:
        return op(images, generator=torch.Generator().manual_seed(0), **space)
    return op(images, params=sample_itemwise(op, as_unit(images, **space), seeds), **space)

