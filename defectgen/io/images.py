"""Reading "OK" (defect-free) images from disk into the ``(B, C, H, W)`` uint8 batches the operators take.

Industrial cameras write 8- or 16-bit, grayscale or colour, sometimes with an alpha channel; everything is
normalised here to uint8 RGB (or gray) so the operators and previews see one format. A small embedded set
of textures (:func:`default_images`) lets the CLI and examples run with no data set at hand.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Union

import cv2
import numpy as np
import skimage.data
import torch

from ..checks import check_channels, check_int

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
"""File extensions :func:`list_images` picks up (compared case-insensitively)."""

PathLike = Union[str, Path]


def list_images(folder: PathLike) -> List[Path]:
    """All image files under ``folder`` (recursively), sorted so that batches are reproducible across runs.

    Raises:
        ValueError: if ``folder`` is not a directory or holds no image with one of :data:`IMAGE_EXTENSIONS`,
            so a typo in a path fails loudly instead of yielding an empty data set.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"image folder {str(root)!r} does not exist or is not a directory")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise ValueError(f"image folder {str(root)!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return paths


def read_image(path: PathLike) -> np.ndarray:
    """Read one image as an ``(H, W, 1)`` (grayscale) or ``(H, W, 3)`` (RGB) uint8 array.

    16-bit images are scaled to 8 bits (``round(v / 257)``, so 65535 maps to 255), BGR is turned into RGB and
    an alpha channel is dropped: defects are synthesised on the visible pixels only.

    Raises:
        ValueError: naming ``path`` if OpenCV cannot decode it or its format is not 8/16-bit gray/colour.
    """
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"cannot read image {str(path)!r} (missing, unreadable or not an image)")
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"image {str(path)!r} has unsupported pixel type {image.dtype}; expected 8 or 16 bit")
    if image.ndim == 2:
        return image[:, :, None]
    channels = image.shape[2]
    if channels == 1:
        return image
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise ValueError(f"image {str(path)!r} has {channels} channels; expected 1 (gray), 3 (colour) or 4 (with alpha)")


def _to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Convert an ``(H, W, 1|3)`` uint8 image to ``channels`` (1 or 3) channels."""
    if image.shape[2] == channels:
        return image
    if channels == 3:
        return np.repeat(image, 3, axis=2)
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None]


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an ``(H, W, C)`` image to ``size x size``: INTER_AREA when shrinking (no aliasing), else linear."""
    height, width = image.shape[:2]
    if height == size and width == size:
        return image
    shrinking = size <= height and size <= width
    resized = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return resized.reshape(size, size, image.shape[2])  # cv2 drops a single channel axis


def read_image_as(path: PathLike, channels: int, size: Optional[int] = None) -> np.ndarray:
    """:func:`read_image`, converted to ``channels`` (1 or 3) and resized to ``size x size`` unless ``size`` is
    None: the ``(H, W, channels)`` uint8 array every reader of OK images wants."""
    image = _to_channels(read_image(path), channels)
    return image if size is None else resize_square(image, size)


def _stack(images: List[np.ndarray]) -> torch.Tensor:
    """``(H, W, C)`` arrays -> a contiguous ``(B, C, H, W)`` uint8 tensor."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def load_folder(folder: PathLike, size: int = 256, limit: Optional[int] = None, channels: int = 3) -> torch.Tensor:
    """Load the images under ``folder`` as one ``(B, channels, size, size)`` uint8 batch.

    Every image is resized to a square (aspect ratio is not kept) so images of different shapes stack into
    one batch; crop beforehand if the aspect ratio matters. Gray images are repeated to RGB and colour
    images converted to gray as ``channels`` asks.

    Args:
        folder: searched recursively; files are taken in :func:`list_images` order.
        size: side of the output images in pixels.
        limit: read at most this many images (the first ones in sorted order); ``None`` reads all.
        channels: 1 (grayscale) or 3 (RGB).
    """
    size = check_int(size, "size", 1)
    if limit is not None:
        limit = check_int(limit, "limit", 1)
    channels = check_channels(channels)
    paths = list_images(folder)[:limit]
    return _stack([read_image_as(p, channels, size) for p in paths])


_TEXTURES = ("brick", "grass", "gravel", "immunohistochemistry")
_TILE = 256


def default_images(size: int = 256, count: int = 8) -> torch.Tensor:
    """The embedded "OK" images: ``(count, 3, size, size)`` uint8, identical on every call and machine.

    They are 256 x 256 tiles cut from the 512 x 512 textures that scikit-image bundles (so they load offline):
    ``skimage.data.brick()``, ``grass()``, ``gravel()`` (grayscale, replicated to RGB) and
    ``immunohistochemistry()`` (colour). The top-left tile of each texture comes first, then the bottom-right
    tile of each, so a handful of images already covers all four textures. Tiles are resized to ``size`` if
    needed and repeated cyclically when ``count`` exceeds the 8 tiles.
    """
    size = check_int(size, "size", 1)
    count = check_int(count, "count", 1)
    textures = [_to_channels(np.atleast_3d(getattr(skimage.data, name)()), 3) for name in _TEXTURES]
    tiles = [t[:_TILE, :_TILE] for t in textures] + [t[-_TILE:, -_TILE:] for t in textures]
    tiles = [resize_square(np.ascontiguousarray(t), size) for t in tiles[:count]]
    return _stack([tiles[i % len(tiles)] for i in range(count)])
