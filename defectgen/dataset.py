"""A torch ``Dataset`` of synthetic defects on OK images, for a ``DataLoader`` with worker processes.

Each item is one OK image with a defect drawn by an operator, returned with its mask, boxes and labels;
:func:`collate` stacks items into a :class:`~defectgen.DefectBatch`::

    from torch.utils.data import DataLoader
    from defectgen.dataset import DefectDataset, collate

    data = DefectDataset("ok_images/", "cutpaste", size=256, seed=0)
    loader = DataLoader(data, batch_size=32, shuffle=True, num_workers=4, collate_fn=collate)
    for epoch in range(10):
        data.set_epoch(epoch)             # new defects each epoch, the same ones in every run
        for batch in loader:              # batch.image, batch.mask, batch.label, batch.boxes, batch.box_index
            ...

With a seed, item ``i`` of epoch ``e`` depends only on ``(seed, i, e)``, not on batch size, shuffling or the
number of workers (see :mod:`defectgen.itemwise`), so a validation set of defects is fixed by its seed.

The operator runs on one image at a time here, in the worker processes. To train on the GPU at full speed,
load the OK images alone and call the operator on each batch on the device instead.
"""
from __future__ import annotations

import operator
from pathlib import Path
from typing import Any, List, NamedTuple, Optional, Sequence, Union

import torch
from torch.utils.data import Dataset

from .checks import check_channels, check_images, check_int
from .rng import index_seed
from .registry import resolve_op
from .values import space_arguments
from .io.images import list_images, read_image_as
from .itemwise import apply_itemwise, concat_params
from .result import DefectBatch, Params

__all__ = ["DefectDataset", "DefectItem", "collate"]

#: default side of images read from a folder, as :func:`defectgen.io.images.load_folder` has it
DEFAULT_SIZE = 256


class DefectItem(NamedTuple):
    """One sample of a :class:`DefectDataset`: the fields of a :class:`~defectgen.DefectBatch` for one image."""

    image: torch.Tensor      #: (C, H, W), dtype of the source (uint8 for folders)
    mask: torch.Tensor       #: (1, H, W) bool, True exactly on the defect
    label: torch.Tensor      #: () int64: 0 = left normal, else the operator's class id
    boxes: torch.Tensor      #: (n, 4) float32 xyxy pixel-edge boxes, one per defect instance
    box_label: torch.Tensor  #: (n,) int64 class of each box
    params: Params           #: the operator's params for a batch of one (collate concatenates them)
    target: Optional[torch.Tensor] = None  #: (1, H, W) float32 graded label, or None (see DefectBatch.target)


class DefectDataset(Dataset):
    """OK images with synthetic defects, one per item.

    Args:
        source: a folder of OK images (read recursively, sorted, see :func:`defectgen.io.images.list_images`)
            or a ``(N, C, H, W)`` tensor of images (uint8 or float, ``C`` in {1, 3}).
        op: a defectgen operator, a registered name or a config dict (see :func:`defectgen.create_op`).
            Its ``p`` sets the share of items left normal (label 0).
        size: folder images are resized to ``size x size`` (default 256) so that they batch. A tensor is not
            resized: leave ``size`` None, or give its own square size.
        channels: folder images are converted to 1 (gray) or 3 (RGB) channels (default 3). For a tensor, as
            with ``size``: None or its own channel count.
        seed: with a seed, item ``i`` of epoch ``e`` draws its defect from
            ``index_seed(seed, i, stream=f"epoch{e}")`` alone, so it is the same in every run, whatever the
            batch size, order or number of workers. With None, every access draws a fresh defect from the
            operator's own generator (re-seeded in each worker process).
        value_range, mean, std: the value space of a float ``source`` tensor outside ``[0, 1]`` (see
            :mod:`defectgen.values`); folder images are uint8.

    Items are :class:`DefectItem` tuples; pass :func:`collate` as the DataLoader's ``collate_fn`` (the boxes
    per image vary in number, which the default collate cannot stack).
    """

    def __init__(self, source: Union[str, Path, torch.Tensor], op: Any, size: Optional[int] = None,
                 channels: Optional[int] = None, seed: Optional[int] = None, value_range=None, mean=None, std=None):
        self.op = resolve_op(op)
        self.space = space_arguments(value_range, mean, std)
        self.seed = None if seed is None else check_int(seed, "seed")
        self.epoch = 0
        if size is not None:
            size = check_int(size, "size", 1)
        if channels is not None:
            channels = check_channels(channels)

        if isinstance(source, torch.Tensor):
            count, image_channels, height, width = check_images(source, "source")
            if count == 0:
                raise ValueError("source holds no images (a tensor with batch size 0)")
            if size is not None and (height, width) != (size, size):
                raise ValueError(f"size={size}, but the source tensor's images are {height} x {width}; a tensor "
                                 "is not resized: resize it first or leave size=None")
            if channels is not None and channels != image_channels:
                raise ValueError(f"channels={channels}, but the source tensor has {image_channels}; a tensor is "
                                 "not converted: convert it first or leave channels=None")
            self.images: Optional[torch.Tensor] = source
            self.root: Optional[Path] = None
            self.paths: Optional[List[Path]] = None
            self.size, self.channels = size, image_channels
        elif isinstance(source, (str, Path)):
            self.images = None
            self.root = Path(source)
            self.paths = list_images(source)  # raises a ValueError naming the folder when it holds no images
            self.size = DEFAULT_SIZE if size is None else size
            self.channels = 3 if channels is None else channels
        else:
            raise TypeError(f"source must be a folder (str or Path) or a (N, C, H, W) tensor, "
                            f"got {type(source).__name__}")

    def __len__(self) -> int:
        return len(self.paths) if self.paths is not None else self.images.shape[0]

    def set_epoch(self, epoch: int) -> None:
        """Draw the defects of epoch ``epoch`` (with a seed; without one every access is fresh anyway).

        DataLoader workers hold a copy of the data set made when an epoch's iteration starts, so call this
        before iterating. With ``persistent_workers=True`` the copies are made once and never see it.
        """
        self.epoch = check_int(epoch, "epoch", 0)

    def image(self, index: int) -> torch.Tensor:
        """The OK image of item ``index``, ``(C, H, W)``, before any defect."""
        index = self._check_index(index)
        if self.images is not None:
            return self.images[index]
        array = read_image_as(self.paths[index], self.channels, self.size)
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()

    def __getitem__(self, index: int) -> DefectItem:
        index = self._check_index(index)
        batch = self.image(index).unsqueeze(0)
        if self.seed is None:
            result = self.op(batch, **self.space)
        else:
            result = apply_itemwise(self.op, batch, [index_seed(self.seed, index, stream=f"epoch{self.epoch}")],
                                    **self.space)
        return DefectItem(image=result.image[0], mask=result.mask[0], label=result.label[0], boxes=result.boxes,
                          box_label=result.box_label, params=result.params,
                          target=None if result.target is None else result.target[0])

    def _check_index(self, index: Any) -> int:
        try:
            index = operator.index(index)
        except TypeError:
            raise TypeError(f"DefectDataset index must be an int, got {type(index).__name__}") from None
        count = len(self)
        if not -count <= index < count:
            raise IndexError(f"index {index} is out of range for a DefectDataset of {count} images")
        return index % count

    def __repr__(self) -> str:
        source = f"{len(self)} images" + (f" from {str(self.root)!r}" if self.root is not None else "")
        return (f"DefectDataset({source}, op={self.op!r}, size={self.size}, channels={self.channels}, "
                f"seed={self.seed}, epoch={self.epoch})")


def collate(items: Sequence[DefectItem]) -> DefectBatch:
    """Stack :class:`DefectItem` samples into one :class:`~defectgen.DefectBatch` (a DataLoader ``collate_fn``).

    Images, masks and labels are stacked; the boxes of all items are concatenated with ``box_index`` giving
    each box's position in the batch; the items' params are concatenated, so
    ``op(ok_images, params=batch.params)`` replays the batch. Graded targets are stacked when any item has one
    (an item without one contributes its mask as 0.0 / 1.0), else the batch's target is None.
    """
    if len(items) == 0:
        raise ValueError("collate needs at least one item")
    for item in items:
        if not isinstance(item, DefectItem):
            raise TypeError(f"collate takes DefectItem samples (from DefectDataset), got {type(item).__name__}")
    box_index = torch.cat([torch.full((item.boxes.shape[0],), j, dtype=torch.int64, device=item.boxes.device)
                           for j, item in enumerate(items)])
    return DefectBatch(image=torch.stack([item.image for item in items]),
                       mask=torch.stack([item.mask for item in items]),
                       label=torch.stack([item.label for item in items]),
                       boxes=torch.cat([item.boxes for item in items]),
                       box_index=box_index,
                       box_label=torch.cat([item.box_label for item in items]),
                       params=concat_params([item.params for item in items]),
                       target=_stack_targets(items))


def _stack_targets(items: Sequence[DefectItem]) -> Optional[torch.Tensor]:
    if all(item.target is None for item in items):
        return None
    return torch.stack([item.mask.float() if item.target is None else item.target for item in items])
