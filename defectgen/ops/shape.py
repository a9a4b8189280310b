"""Shape defects (Li, Sohn, Yoon, Pfister: "CutPaste: Self-Supervised Learning for Anomaly Detection and
Localization", CVPR 2021, section 5.3 and appendix): a digit, square, ellipse, heart, random polygon or blob
filled with a random colour or with a texture / natural image."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

from ..masks.shapes import KINDS, ShapeMask
from ..registry import register_op
from ..sources.constant import FILLS, ConstantFill
from ..sources.texture import TextureBank, TextureSource
from .region import RegionDefect


@register_op("shape")
class ShapeDefect(RegionDefect):
    """One shape per image, filled with a colour or an image, anti-aliased into the picture.

    CutPaste's shape experiments paint digits, squares, ellipses and hearts with a random colour or with a
    natural image; polygons and blobs add irregular outlines. See :class:`~defectgen.masks.shapes.ShapeMask`
    for the geometry and where its defaults come from. The mask is every pixel the shape touches (edge pixels
    are mixed by their coverage); one box per defective image.

    Args:
        shapes, size_frac_range, aspect_ratio_range, angle_deg_range, vertices_range: the shape, as in
            :class:`~defectgen.masks.shapes.ShapeMask`.
        fill: ``"random"`` (a uniform random colour per sample), ``"random_gray"``, ``"gray"`` or ``"mean"``
            (see :class:`~defectgen.sources.constant.ConstantFill`), or ``"texture"`` to fill from
            ``textures``. None (the default) means ``"texture"`` when ``textures`` is given, else ``"random"``.
        textures: a folder of images or a ``(N, C, H, W)`` tensor bank (uint8, or float in [0, 1]): each
            shape shows a random one, resized to the image and randomly flipped, through its outline
            (CutPaste's "natural image" fill; DTD textures work too).
        p, label, seed, foreground: as in :class:`~defectgen.CutPaste`; with a foreground the shape's centre
            is drawn on it and the shape is clipped to it.
    """

    def __init__(self, shapes: Union[str, Sequence[str]] = KINDS, size_frac_range: Tuple[float, float] = (0.15, 0.4),
                 aspect_ratio_range: Tuple[float, float] = (0.5, 2.0),
                 angle_deg_range: Tuple[float, float] = (-45.0, 45.0), vertices_range: Tuple[int, int] = (3, 8),
                 fill: Optional[str] = None, textures: Optional[TextureBank] = None, p: float = 1.0, label: int = 1,
                 seed: Optional[int] = None, foreground: Optional[str] = None):
        mask = ShapeMask(shapes, size_frac_range, aspect_ratio_range, angle_deg_range, vertices_range)
        super().__init__(mask=mask, source=_source(fill, textures), blend="replace", p=p, label=label, seed=seed,
                         foreground=foreground)
        self.shapes = mask.shapes
        self.size_frac_range = mask.size_frac_range
        self.aspect_ratio_range = mask.aspect_ratio_range
        self.angle_deg_range = mask.angle_deg_range
        self.vertices_range = mask.vertices_range
        self.fill = fill
        self.textures = textures if textures is None else self.source.textures


def _source(fill: Optional[str], textures: Optional[TextureBank]):
    if fill is None:
        fill = "random" if textures is None else "texture"
    if fill == "texture":
        if textures is None:
            raise ValueError("fill='texture' needs textures= (a folder of images or a (N, C, H, W) tensor)")
        return TextureSource(textures)
    if fill not in FILLS:
        raise ValueError(f"fill must be None, 'texture' or one of {FILLS}, got {fill!r}")
    if textures is not None:
        raise ValueError(f"textures= is only used with fill='texture' (or fill=None), got fill={fill!r}")
    return ConstantFill(fill)
