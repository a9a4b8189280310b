"""PerlinDefect: DRAEM's pseudo-anomalies (Zavrtanik, Kristan, Skocaj: "DRAEM - A Discriminatively Trained
Reconstruction Embedding for Surface Anomaly Detection", ICCV 2021), also used by MemSeg and GLASS."""
from __future__ import annotations

from typing import Optional, Tuple

from ..blends.opacity import Opacity
from ..masks.perlin import PerlinMask
from ..registry import register_op
from ..sources.base import Source
from ..sources.draem_augment import DraemAugment
from ..sources.shuffle import SelfShuffle
from ..sources.texture import TextureBank, TextureSource
from .region import RegionDefect


@register_op("perlin")
class PerlinDefect(RegionDefect):
    """Blend a texture into the image inside thresholded, rotated Perlin-noise blobs.

    Defaults are DRAEM's: Perlin noise with ``2^k`` lattice cells per axis, ``k`` uniform in 0..5 for rows and
    columns independently; noise (in [-1, 1]) above 0.5 is the defect; the pattern is rotated by a uniform
    angle in [-90, 90] degrees; the texture is mixed in as ``image + opacity * (texture - image)`` with
    ``opacity = 1 - beta``, ``beta ~ U[0, 0.8)``, i.e. ``opacity_range=(0.2, 1.0)``. One box per connected blob.
    The sparse threshold leaves some masks empty: those samples come back normal (label 0, no box), as in
    DRAEM.

    The texture is a random image of ``textures`` (DRAEM uses the DTD texture dataset), resized to the batch
    and randomly flipped; without ``textures``, the image itself with its blocks shuffled (MemSeg's structure
    source, see :class:`~defectgen.sources.SelfShuffle`). With ``augment`` (the default, as in DRAEM) the
    texture then gets three random augmentations out of DRAEM's ten (gamma, brightness, sharpness,
    hue/saturation, solarize, posterize, invert, autocontrast, equalize, rotate; see
    :class:`~defectgen.sources.DraemAugment`).

    Differences from DRAEM's reference code: the noise is computed on a canvas larger than the image before
    it is rotated, so the rotated pattern fills the whole image (DRAEM rotates the noise image itself, which
    leaves its corners without defects); the chosen augmentations run in a fixed order. DRAEM also rotates
    30 % of its normal images by up to 90 degrees before anything else: an ordinary data augmentation, left
    to the training pipeline.

    Args:
        textures: a folder of texture images (read recursively at 256 px) or a ``(N, C, H, W)`` tensor bank
            (uint8 or float in [0, 1]); None fills from the image itself, block-shuffled.
        threshold: noise level above which a pixel is defective (noise spans [-1, 1]).
        scale_exp_range: integer exponents ``(lo, hi)``: ``2^k`` lattice cells per axis, ``k`` in ``lo..hi``.
        angle_deg_range: rotation of the noise pattern.
        opacity_range: the texture's weight in the blend (DRAEM's ``1 - beta``).
        augment: apply DRAEM's random texture augmentation (3 of 10 ops per sample) to the fill.
        p: probability that a sample gets a defect. DRAEM leaves half of its training samples normal:
            ``p=0.5`` reproduces that.
        label: class id of this defect in ``label`` and ``box_label``.
        seed: seeds the operator's own generator, used when a call passes neither ``generator`` nor ``seed``.
        foreground: where defects may land: None (anywhere), ``"otsu"``/``"otsu_dark"``/``"otsu_bright"``
            (estimated per image) or ``"given"`` (a mask passed to each call); the blobs are clipped to it.
    """

    def __init__(self, textures: Optional[TextureBank] = None, threshold: float = 0.5,
                 scale_exp_range: Tuple[int, int] = (0, 5), angle_deg_range: Tuple[float, float] = (-90.0, 90.0),
                 opacity_range: Tuple[float, float] = (0.2, 1.0), augment: bool = True, p: float = 1.0,
                 label: int = 1, seed: Optional[int] = None, foreground: Optional[str] = None):
        if not isinstance(augment, bool):
            raise TypeError(f"augment must be True or False, got {augment!r}")
        mask = PerlinMask(scale_exp_range, threshold, angle_deg_range)
        fill: Source = SelfShuffle() if textures is None else TextureSource(textures)
        blend = Opacity(opacity_range)
        source = DraemAugment(fill) if augment else fill
        super().__init__(mask=mask, source=source, blend=blend, p=p, label=label, seed=seed,
                         foreground=foreground)
        self.textures = None if textures is None else fill.textures
        self.threshold = mask.threshold
        self.scale_exp_range = mask.scale_exp_range
        self.angle_deg_range = mask.angle_deg_range
        self.opacity_range = blend.opacity_range
        self.augment = augment
