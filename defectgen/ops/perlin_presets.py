"""The published Perlin-noise pseudo-anomaly recipes, exactly: ``draem``, ``glass`` and ``memseg``.

Each is a factory registered as an operator (like ``cutpaste_3way``): it returns an ordinary
:class:`~defectgen.RegionDefect` whose parts carry the published numbers, so ``to_config()`` rebuilds it and
any number can be changed on the parts. :class:`~defectgen.PerlinDefect` is the general operator with
DRAEM's numbers as defaults; these presets follow each reference code where it differs in detail (the
order of the texture augmentations, flips, who is left normal). ``docs/presets.md`` has the table.
"""
from __future__ import annotations

from typing import Optional

from ..blends.opacity import Opacity
from ..masks.perlin import PerlinMask, PerlinPairMask
from ..registry import register_op
from ..sources.base import Source
from ..sources.draem_augment import DraemAugment
from ..sources.either import EitherSource
from ..sources.glass_augment import GlassAugment
from ..sources.shuffle import SelfShuffle
from ..sources.texture import TextureBank, TextureSource
from .region import RegionDefect


def _texture(textures: Optional[TextureBank]) -> Optional[Source]:
    # the reference codes use each texture as read (resized): no random flips
    return None if textures is None else TextureSource(textures, flip=False)


def _texture_or_shuffle(textures: Optional[TextureBank]) -> Source:
    return SelfShuffle() if textures is None else TextureSource(textures, flip=False)


@register_op("draem")
def draem(textures: Optional[TextureBank] = None, p: float = 0.5, label: int = 1, seed: Optional[int] = None,
          foreground: Optional[str] = None) -> RegionDefect:
    """DRAEM's training-time anomalies (Zavrtanik, Kristan, Skocaj, ICCV 2021), as its reference code makes them.

    Reference: github.com/VitjanZ/DRAEM, ``data_loader.py``, ``MVTecDRAEMTrainDataset.augment_image`` and
    ``randAugmenter``:

    - where: Perlin noise with ``2^k`` lattice cells per axis, ``k = torch.randint(0, 6)`` independently per
      axis (0..5), rotated by ``iaa.Affine(rotate=(-90, 90))`` with zeros where the rotated noise image does
      not reach (so no blob in those corners), thresholded at 0.5 (:class:`PerlinMask` with
      ``fill_corners=False``);
    - what: a DTD texture resized to the image, passed through 3 distinct augmenters of DRAEM's 10, drawn
      without replacement and run in the order drawn (:class:`DraemAugment` with ``random_order=True``);
    - how: ``beta = torch.rand(1) * 0.8``, ``beta * image + (1 - beta) * texture`` inside the mask, i.e.
      ``opacity = 1 - beta`` uniform on (0.2, 1] (:class:`Opacity`). The paper states the texture's weight
      uniform on [0.1, 1.0], and anomalib's generator draws that (``Draem(beta=(0.1, 1.0))``); the preset keeps
      the code's interval: set ``op.blend = Opacity(opacity_range=(0.1, 1.0))`` for the paper's / anomalib's;
    - who: ``no_anomaly = torch.rand(1)``; ``no_anomaly > 0.5`` returns the image unchanged, so half the
      samples are normal: ``p=0.5``. An empty mask is labelled normal, as DRAEM's ``has_anomaly`` is.

    Differences from the reference code: the augmentations work on float values (see
    :class:`~defectgen.sources.DraemAugment`); folder textures are read at 256 px and then resized to the batch.
    DRAEM also rotates 30 % of its normal images by up to 90 degrees before anything else; that is data
    augmentation, left to the training pipeline.

    Args:
        textures: a folder of texture images (DRAEM: DTD's ``images``) or a ``(N, C, H, W)`` tensor bank. None
            (not in DRAEM) fills from the image itself, block-shuffled on a random 2..8 grid per axis
            (:class:`~defectgen.sources.SelfShuffle`), then augmented the same way.
        p: probability that a sample gets a defect (DRAEM: 0.5).
        label: class id of the defect.
        seed: seeds the operator's own generator.
        foreground: where defects may land (None in DRAEM; see :class:`~defectgen.DefectOp`).
    """
    fill = _texture_or_shuffle(textures)
    return RegionDefect(mask=PerlinMask(scale_exp_range=(0, 5), threshold=0.5, angle_deg_range=(-90.0, 90.0),
                                        fill_corners=False),
                        source=DraemAugment(fill, count=3, random_order=True),
                        blend=Opacity(opacity_range=(0.2, 1.0)), p=p, label=label, seed=seed, foreground=foreground)


@register_op("glass")
def glass(textures: Optional[TextureBank] = None, p: float = 1.0, label: int = 1, seed: Optional[int] = None,
          foreground: Optional[str] = None) -> RegionDefect:
    """GLASS's image-level anomalies (Chen et al., "A Unified Anomaly Synthesis Strategy with Gradient Ascent
    for Industrial Anomaly Detection and Localization", ECCV 2024), as its reference code makes them.

    Reference: github.com/cqylunlun/GLASS, ``perlin.py`` (``perlin_mask``, ``generate_thr``) and
    ``datasets/mvtec.py`` (``MVTecDataset.__getitem__``, ``rand_augmenter``), with the defaults of ``main.py``
    and ``shell/run-mvtec.sh`` (``--mean 0.5 --std 0.1 --fg 1 --rand_aug 1``):

    - where: two independent DRAEM-style masks (``generate_thr`` called with ``min=0, max=6``:
      ``2^np.random.randint(0, 6)`` cells per axis, rotation ``(-90, 90)`` with zeros where the rotated noise
      does not reach, threshold 0.5), then on one
      ``torch.rand(1)`` their union (> 2/3), intersection (> 1/3) or the first alone, times the foreground
      mask, redrawn while empty (:class:`~defectgen.masks.PerlinPairMask`, 8 tries per sample,
      ``fill_corners=False``);
    - what: a DTD texture through 3 distinct transforms of GLASS's 9 torchvision ones, in the order drawn
      (:class:`~defectgen.sources.GlassAugment`);
    - how: ``beta = clip(N(0.5, 0.1), 0.2, 0.8)``, ``beta * image + (1 - beta) * texture`` inside the mask:
      ``opacity = 1 - beta``, which has the same clipped normal (:class:`Opacity` with ``opacity_std=0.1``);
    - who: every training image gets an anomalous copy: ``p=1``.

    GLASS's foreground masks are files made per object class (``fg_mask/<class>/``, chosen per class by
    ``--fg``); here pass them to each call with ``foreground="given"``, or estimate them with ``"otsu"``.
    Differences from the reference code: at most 8 tries per sample (a sample whose tries are all empty inside
    the foreground is left normal; GLASS would try forever); the augmentations work on float values and rotate
    bilinearly (see :mod:`defectgen.sources.glass_augment`). GLASS's feature-level mask (the pixel mask
    max-pooled by 8) and its feature-space anomalies belong to its model, not to the image synthesis here.

    Args:
        textures: a folder of texture images (GLASS: DTD's ``images``) or a ``(N, C, H, W)`` tensor bank. None
            (not in GLASS) fills from the image itself, block-shuffled on a random 2..8 grid, then augmented.
        p: probability that a sample gets a defect (GLASS: 1).
        label: class id of the defect.
        seed: seeds the operator's own generator.
        foreground: where defects may land: None, ``"given"`` (GLASS's mask files), ``"otsu"``, ...
    """
    fill = _texture_or_shuffle(textures)
    return RegionDefect(mask=PerlinPairMask(scale_exp_range=(0, 5), threshold=0.5, angle_deg_range=(-90.0, 90.0),
                                            union_prob=1 / 3, intersection_prob=1 / 3, attempts=8,
                                            fill_corners=False),
                        source=GlassAugment(fill, count=3),
                        blend=Opacity(opacity_range=(0.2, 0.8), opacity_mean=0.5, opacity_std=0.1),
                        p=p, label=label, seed=seed, foreground=foreground)


@register_op("memseg")
def memseg(textures: Optional[TextureBank] = None, p: float = 0.5, label: int = 1, seed: Optional[int] = None,
           foreground: Optional[str] = "otsu") -> RegionDefect:
    """MemSeg's anomaly simulation (Yang et al., "MemSeg: A semi-supervised method for image surface defect
    detection using differences and commonalities", Eng. Appl. of AI 2023), as the reference code makes it.

    Reference: github.com/TooTouch/MemSeg (a public re-implementation of the paper), ``data/dataset.py``
    (``MemSegDataset.generate_anomaly``, ``generate_perlin_noise_mask``, ``generate_target_foreground_mask``,
    ``anomaly_source``, ``_texture_source``, ``_structure_source``, ``rand_augment``, ``__getitem__``) with
    ``configs.yaml`` (``perlin_scale: 6``, ``min_perlin_scale: 0``, ``perlin_noise_threshold: 0.5``,
    ``structure_grid_size: 8``, ``transparency_range: [0.15, 1.]``):

    - where: Perlin noise with ``2^torch.randint(0, 6)`` cells per axis, rotated by ``(-90, 90)`` degrees with
      zeros where the rotated noise does not reach (DRAEM's imgaug rotation), above 0.5, times the object's
      foreground mask (:class:`PerlinMask` with ``fill_corners=False``, ``foreground="otsu"``);
    - what: per sample with probability 1/2 each (``np.random.uniform() < 0.5``), a DTD texture resized to the
      image, not augmented, or the image itself through 3 of DRAEM's 10 augmenters (in the order drawn) and
      then cut into an 8 x 8 grid whose blocks are shuffled (:class:`~defectgen.sources.EitherSource` of
      :class:`~defectgen.sources.TextureSource` and :class:`~defectgen.sources.SelfShuffle` over
      :class:`~defectgen.sources.DraemAugment`); without textures every sample takes the image branch, as
      the reference code does when it has no texture folder;
    - how: ``factor ~ U[0.15, 1)``, ``factor * source + (1 - factor) * image`` inside the mask: ``opacity``
      uniform on (0.15, 1] (:class:`Opacity`);
    - who: ``__getitem__`` toggles ``anomaly_switch`` on every item, so every other training image is
      synthetic-anomalous and the rest stay normal: ``p=0.5``.

    The foreground: the reference code binarises the grey image with a fixed threshold per class
    (``anomaly_mask.json``: ``bg_threshold``, ``bg_reverse``; no mask at all for the texture classes, and an
    earlier version used Otsu's threshold, keeping the dark class); the paper describes a binarised
    foreground. Here it is Otsu's threshold per image, keeping the class that touches less of the border
    (``"otsu"``; see :mod:`defectgen.foreground`); pass ``foreground=None`` for textures (carpet, grid,
    leather, tile, wood) or ``"given"`` with masks of your own.

    Differences from the reference code: defective samples are drawn independently with probability ``p``
    rather than alternating (wrap in ``OneOf([...], p=0.5, balanced=True)`` for exactly half per batch); a
    mask left empty by the foreground is labelled normal (the reference labels the sample anomalous anyway);
    grids that do not divide the image make blocks that differ by one pixel (the reference asserts that they
    divide); the augmentations work on
    float values (see :class:`~defectgen.sources.DraemAugment`).

    Args:
        textures: a folder of texture images (MemSeg: DTD's ``images``) or a ``(N, C, H, W)`` tensor bank; None
            fills every defect from the image itself (the structure branch).
        p: probability that a sample gets a defect (MemSeg: every other image, 0.5).
        label: class id of the defect.
        seed: seeds the operator's own generator.
        foreground: where defects may land (default ``"otsu"``, see above).
    """
    structure = SelfShuffle(grid_range=(8, 8), source=DraemAugment(None, count=3, random_order=True))
    texture = _texture(textures)
    source = structure if texture is None else EitherSource(texture, structure, first_prob=0.5)
    return RegionDefect(mask=PerlinMask(scale_exp_range=(0, 5), threshold=0.5, angle_deg_range=(-90.0, 90.0),
                                        fill_corners=False),
                        source=source, blend=Opacity(opacity_range=(0.15, 1.0)), p=p, label=label, seed=seed,
                        foreground=foreground)
