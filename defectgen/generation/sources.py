"""The OK images a generation job draws from: listing, tiling, the train/val split and per-item choice.

Everything here depends only on the input folder's files and the seed, never on how the job is split into
batches, shards or processes, so every process of a job agrees on which source image item ``i`` uses.
"""
from __future__ import annotations

import hashlib
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ..rng import index_seed
from ..io.images import resize_square, _to_channels, list_images, read_image


@dataclass(frozen=True)
class Source:
    """One OK image, or one tile of it (``tile`` = (top, left) pixel of a ``tile_px`` square)."""

    file: int                          # index into OkSources.files
    tile: Optional[Tuple[int, int]] = None


class OkSources:
    """The OK images under ``folder`` (recursive, sorted), optionally cut into tiles, with a split.

    Args:
        folder: the input folder.
        size: resize every image (or tile) to ``size x size``; None keeps the native size.
        tile: cut every image into non-overlapping ``tile x tile`` squares (the remainder at the right and
            bottom edges is dropped). Listing tiles reads every image once, to learn its size.
        channels: 1 (gray) or 3 (RGB) output channels.
        seed: seeds the split and the order in which items cycle through the sources.
        val_fraction: share of the input *files* held out for validation. Whole files, not tiles or
            outputs, go to one split, so no background appears in both.

    Unreadable files are skipped with a warning and listed in :attr:`skipped` (a file found corrupt only
    while generating is added there too), so one bad file never stops a run.
    """

    #: decoded sources kept in memory per process: a job makes several outputs per OK image, and decoding
    #: a PNG costs about as much as encoding one (bench_generate.py)
    CACHE_BYTES = 512 * 2**20

    def __init__(self, folder: Path, size: Optional[int], tile: Optional[int], channels: int, seed: int,
                 val_fraction: float):
        self._cache: "OrderedDict[Source, np.ndarray]" = OrderedDict()
        self._cached_bytes = 0
        self._lock = threading.Lock()  # writer threads load OK copies while the main thread picks sources
        self.folder = Path(folder)
        self.files = list_images(self.folder)
        self.relative = [p.relative_to(self.folder).as_posix() for p in self.files]
        self.size, self.tile_px, self.channels = size, tile, channels
        self.skipped: Dict[str, str] = {}
        if tile is None:
            entries = [Source(k) for k in range(len(self.files))]
        else:
            entries = []
            for k, path in enumerate(self.files):
                try:
                    height, width = read_image(path).shape[:2]
                except ValueError as error:
                    self.mark_bad(k, error)
                    continue
                entries += [Source(k, (top, left)) for top in range(0, height - tile + 1, tile)
                            for left in range(0, width - tile + 1, tile)]
                if height < tile or width < tile:
                    self.mark_bad(k, f"{height}x{width} px is smaller than one {tile} px tile")
        if not entries:
            raise ValueError(f"no readable OK image in {str(self.folder)!r}"
                             + (f" large enough for {tile} px tiles" if tile else ""))
        self.entries = entries
        self.splits = self._split(seed, val_fraction)
        # per split: its sources in a seeded order; item j of a split uses entry j mod n of that order
        self.order: Dict[str, List[Source]] = {}
        for split in ("train", "val"):
            members = [e for e in entries if self.splits[e.file] == split]
            perm = torch.randperm(len(members), generator=torch.Generator().manual_seed(
                index_seed(seed, 0, f"order-{split}"))).tolist()
            self.order[split] = [members[i] for i in perm]
        if not self.order["train"]:
            raise ValueError("every readable OK image fell into the validation split; lower val_fraction")
        if val_fraction > 0 and not self.order["val"]:
            raise ValueError("no readable OK image fell into the validation split; raise val_fraction or add images")

    def _split(self, seed: int, val_fraction: float) -> List[str]:
        n = len(self.files)
        if val_fraction == 0:
            return ["train"] * n
        if n < 2:
            raise ValueError(f"val_fraction > 0 needs at least 2 OK images to split by file, found {n}")
        n_val = min(n - 1, max(1, round(val_fraction * n)))
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(index_seed(seed, 0, "split"))).tolist()
        val = set(perm[:n_val])
        return ["val" if k in val else "train" for k in range(n)]

    def fingerprint(self) -> str:
        """Identifies the input by relative paths and file sizes (not modification times, so a copied
        folder on another machine is the same input)."""
        digest = hashlib.sha256()
        for rel, path in zip(self.relative, self.files):
            digest.update(f"{rel}\0{path.stat().st_size}\n".encode())
        return digest.hexdigest()

    def mark_bad(self, file: int, error: object) -> None:
        rel = self.relative[file]
        if rel not in self.skipped:
            self.skipped[rel] = str(error)
            warnings.warn(f"skipping unreadable OK image {rel!r}: {error}", stacklevel=2)

    def name(self, source: Source) -> str:
        """A flat, unique file name stem for a source (its relative path, ``/`` -> ``__``, plus the tile)."""
        stem = self.relative[source.file].rsplit(".", 1)[0].replace("/", "__")
        return stem if source.tile is None else f"{stem}_y{source.tile[0]}_x{source.tile[1]}"

    def describe(self, source: Source) -> Dict[str, object]:
        out: Dict[str, object] = {"file": self.relative[source.file]}
        if source.tile is not None:
            out["tile"] = [source.tile[0], source.tile[1], self.tile_px]
        return out

    def load(self, source: Source) -> np.ndarray:
        """The source as a read-only ``(H, W, C)`` uint8 array; ValueError if the file cannot be read."""
        with self._lock:
            if source in self._cache:
                self._cache.move_to_end(source)
                return self._cache[source]
        image = self._read(source)
        image.flags.writeable = False
        with self._lock:
            if source not in self._cache:
                self._cache[source] = image
                self._cached_bytes += image.nbytes
            while self._cached_bytes > self.CACHE_BYTES and len(self._cache) > 1:
                self._cached_bytes -= self._cache.popitem(last=False)[1].nbytes
        return image

    def __getstate__(self):  # worker processes start with an empty cache and their own lock
        return {k: v for k, v in self.__dict__.items() if k not in ("_cache", "_cached_bytes", "_lock")}

    def __setstate__(self, state):
        self.__dict__.update(state, _cache=OrderedDict(), _cached_bytes=0, _lock=threading.Lock())

    def _read(self, source: Source) -> np.ndarray:
        image = read_image(self.files[source.file])
        if source.tile is not None:
            top, left = source.tile
            image = image[top:top + self.tile_px, left:left + self.tile_px]
            if image.shape[0] != self.tile_px or image.shape[1] != self.tile_px:
                raise ValueError(f"image changed size since it was listed (tile at {source.tile} is cut off)")
        image = _to_channels(np.ascontiguousarray(image), self.channels)
        image = image if self.size is None else resize_square(image, self.size)
        return image if image.flags.owndata else image.copy()  # a crop must not pin its whole file in the cache

    def pick(self, split: str, position: int) -> Tuple[Source, np.ndarray]:
        """The source of the ``position``-th item of ``split``, loaded. An unreadable source is replaced by
        the next readable one in the split's order, the same way in every process."""
        order = self.order[split]
        for step in range(len(order)):
            source = order[(position + step) % len(order)]
            if self.relative[source.file] in self.skipped:
                continue
            try:
                return source, self.load(source)
            except ValueError as error:
                self.mark_bad(source.file, error)
        raise ValueError(f"no readable OK image left in the {split} split of {str(self.folder)!r}")
