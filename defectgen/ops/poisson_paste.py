"""PoissonPaste: NSA's seamlessly blended patches from other images (Schlüter, Tan, Hou, Kainz: "Natural
Synthetic Anomalies for Self-Supervised Anomaly Detection and Localization", ECCV 2022)."""
from __future__ import annotations

from typing import Optional, Tuple

from ..blends.poisson import Poisson
from ..masks.patch_region import PatchRegion
from ..registry import register_op
from ..sources.other_image import OtherImagePatch
from .region import RegionDefect


@register_op("poisson_paste")
class PoissonPaste(RegionDefect):
    """Cut a patch from another image of the batch, resize it, and Poisson-blend it somewhere in this image.

    NSA's recipe with its defaults: each side of the pasted patch is ``0.06 + Gamma(2, 0.1)`` of the image side,
    clipped to 6-80 % (NSA's half-widths ``0.03 + Gamma(2, 0.05)`` in ``[0.03, 0.4]``); its content is cut from
    a different image of the batch (the sample's partner, drawn uniformly; a batch of one uses itself) and
    resized by ``clip(N(1, 0.5), 0.7, 1.3)``; the position is uniform, 1 px clear of the border; the patch is
    blended with a Poisson "seamless clone" (:class:`~defectgen.blends.Poisson`). The mask is the blended patch
    (rectangle, or the inscribed ellipse), with one box per image.

    ``mode="normal"`` (the default, as in NSA's main configuration) keeps the patch's own gradients, so the
    pasted structure stays visible: the choice for objects. ``mode="mixed"`` keeps, per pixel and direction,
    the stronger of the patch's and the image's gradients, as in NSA's ``-M`` variants: the choice for
    textures, where the destination's texture should show through the flat parts of the patch. NSA further
    restricts patches to the object with a brightness threshold; here pass ``foreground=`` (e.g. ``"otsu"``) to
    centre patches on the object and clip them to it. NSA's several patches per image and its intensity-based
    soft labels are not reproduced: one patch per image, binary masks.

    Because each defect comes from another sample, sample ``i`` of a batch is not what image ``i`` alone gives.

    Args:
        mode: ``"normal"`` or ``"mixed"`` Poisson clone.
        side_frac_range: clip range of each patch side as a fraction of the image side.
        side_frac_scale: scale of the Gamma(2, .) added to the smallest side fraction.
        scale_range: clip range of the resize factor (pasted size / cut size).
        scale_std: standard deviation of the normal the resize factor is drawn from, around 1.
        shape: ``"rectangle"`` or ``"ellipse"`` (inscribed in the rectangle).
        p: probability that a sample gets a defect; the others come back untouched with label 0.
        label: class id of this defect in ``label`` and ``box_label``.
        seed: seeds the operator's own generator, used when a call passes neither ``generator`` nor ``seed``.
        foreground: where defects may land: None (anywhere), ``"otsu"``/``"otsu_dark"``/``"otsu_bright"``
            (estimated per image) or ``"given"`` (a mask passed to each call); see :mod:`defectgen.foreground`.
    """

    def __init__(self, mode: str = "normal", side_frac_range: Tuple[float, float] = (0.06, 0.8),
                 side_frac_scale: float = 0.1, scale_range: Tuple[float, float] = (0.7, 1.3),
                 scale_std: float = 0.5, shape: str = "rectangle", p: float = 1.0, label: int = 1,
                 seed: Optional[int] = None, foreground: Optional[str] = None):
        mask = PatchRegion(side_frac_range, side_frac_scale, shape)
        source = OtherImagePatch(scale_range, scale_std)
        super().__init__(mask=mask, source=source, blend=Poisson(mode), p=p, label=label, seed=seed,
                         foreground=foreground)
        self.mode = self.blend.mode
        self.side_frac_range = mask.side_frac_range
        self.side_frac_scale = mask.side_frac_scale
        self.scale_range = source.scale_range
        self.scale_std = source.scale_std
        self.shape = mask.shape
