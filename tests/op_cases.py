"""The one table of registered operators and the arguments the contract tests build them with.

Every name in ``list_ops()`` must have an entry: a new operator without one fails ``test_every_op_has_a_case``.
Entries hold one or more kwarg dicts; each is tested separately.
"""
import torch

OP_CASES = {
    "cutpaste": [{}, {"colour_jitter": 0.0, "area_frac_range": (0.05, 0.1)}],
    "cutpaste_scar": [{}],
    "cutout": [{"fill": "gray"}, {"fill": "mean"}, {"fill": "random"}],
    "scar": [{}, {"fill": "gray", "angle_deg_range": (80, 100)}, {"fill": "random_gray"}],
    "patch": [{"mask": {"type": "scar", "width_px_range": [4, 8]}, "source": {"type": "constant", "fill": "mean"}},
              {"mask": "rectangle", "source": {"type": "self_patch", "colour_jitter": {"hue": 0.3}}}],
    "one_of": [{"ops": ["cutout", {"op": "scar", "label": 3}], "weights": [1, 2], "p": 0.8}],
    "cutpaste_union": [{}],
    "cutpaste_3way": [{}],
    "perlin": [{}, {"textures": torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)),
                     "threshold": 0.3, "opacity_range": (0.5, 0.9), "foreground": "otsu"}],
    "region": [{"mask": {"type": "perlin"}, "source": {"type": "constant", "fill": "random"}, "blend": "replace"}],
}

OP_CASES["confetti"] = [
    {},
    {"sigma_px": 0.0, "mode": "replace", "count_range": (1, 6), "white_prob": 0.0},
    {"size_px_range": (4, 12), "reference_size": None, "sigma_px": 1.0, "foreground": "otsu"},
]
OP_CASES["shape"] = [{}] + [{"shapes": kind} for kind in ("digit", "square", "ellipse", "heart", "polygon", "blob")] + [
    {"textures": torch.rand(2, 3, 20, 20, generator=torch.Generator().manual_seed(1)), "foreground": "otsu"},
    {"shapes": ("digit", "heart"), "fill": "mean", "size_frac_range": (0.5, 0.9), "angle_deg_range": (-180, 180),
     "aspect_ratio_range": (0.3, 3.0)},
]
OP_CASES["region"].append({"mask": {"type": "confetti", "sigma_px": 2.0},
                           "source": {"type": "confetti_colour", "mode": "replace"}})


def _transplant_bank():
    """A tiny in-memory defect bank (discs and bars of two types on 40x40 noise), so the contract runs
    without the real data folder."""
    from defectgen.bank import DefectBank

    images = torch.rand(4, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    rows, cols = torch.meshgrid(torch.arange(40), torch.arange(40), indexing="ij")
    disc = (rows - 20) ** 2 + (cols - 18) ** 2 <= 49
    bar = (rows >= 12) & (rows < 30) & (cols >= 15) & (cols < 21)
    masks = torch.stack([disc, bar, disc.roll(6, 1), bar.roll(-5, 0)]).unsqueeze(1)
    return DefectBank.from_pairs(images, masks, ["dent", "scratch", "dent", "scratch"])


_TRANSPLANT_BANK = _transplant_bank()
OP_CASES["transplant"] = [
    {"bank": _TRANSPLANT_BANK},
    {"bank": _TRANSPLANT_BANK, "blend": "replace", "match_brightness": False, "balance_types": True,
     "flip": False, "angle_deg_range": (0, 0), "scale_range": (0.5, 1.0), "label": 3},
]

OP_CASES["poisson_paste"] = [
    {},
    {"mode": "mixed", "shape": "ellipse"},
    {"mode": "mixed", "side_frac_range": (0.2, 0.5), "scale_range": (1.0, 1.0), "foreground": "otsu", "label": 2},
]



def _tiny_inpaint_models():
    """Random-init inpainting models small enough for the contract (16 px crops, width 8): one conditional
    with two defect classes, one unconditional (RePaint). None without diffusers (the optional extra)."""
    try:
        import diffusers  # noqa: F401
    except ImportError:
        return None
    from defectgen import InpaintModel

    conditional = InpaintModel.create(["crack", "stain"], resolution=16, width=8, layers_per_block=1,
                                      attention=False, seed=0)
    unconditional = InpaintModel.create(conditional=False, resolution=16, width=8, layers_per_block=1, seed=1)
    return conditional, unconditional


_INPAINT = _tiny_inpaint_models()
OP_CASES["diffusion"] = [] if _INPAINT is None else [
    {"model": _INPAINT[0], "steps": 2, "guidance": 2.0},
    {"model": _INPAINT[0], "steps": 2, "guidance": 1.0, "classes": ["stain"], "mask": {"type": "shape"},
     "blend": "replace", "label": 2, "batch_size": 2},
    {"model": _INPAINT[1], "steps": 2, "strength": 0.6, "resample": 2, "foreground": "otsu"},
]

# operators whose pixels come out of a neural network: its batched kernels round differently for different
# batch sizes (about 1e-6), so sample i of a batch equals image i alone only up to that rounding (masks, boxes
# and labels exactly); on one batch, the same seed and replayed params are still bit-identical
NETWORK_PIXELS = {"diffusion"}

# operators whose defect in sample i depends on other samples of the batch (PoissonPaste pastes a patch of
# another image), so sample i of a batch is not what image i alone gives and batched == unbatched cannot hold
CROSS_SAMPLE = {"poisson_paste"}

# operators that place exactly one defect instance on each defective sample
SINGLE_INSTANCE = set(OP_CASES)
SINGLE_INSTANCE -= {"perlin", "region"}  # one box per Perlin blob
SINGLE_INSTANCE -= {"confetti"}  # one box per connected group of blobs
SINGLE_INSTANCE -= {"diffusion"}  # masks from any region sampler


def cases():
    """``pytest.param(name, kwargs)`` for every case in the table."""
    import pytest
    return [pytest.param(name, kwargs, id=f"{name}-{i}")
            for name, kwarg_list in OP_CASES.items() for i, kwargs in enumerate(kwarg_list)]

# the published Perlin recipes (defectgen/ops/perlin_presets.py): one box per blob, so not single-instance
_PRESET_BANK = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
OP_CASES["draem"] = [{}, {"textures": _PRESET_BANK, "foreground": "otsu", "p": 1.0}]
OP_CASES["glass"] = [{}, {"textures": _PRESET_BANK, "foreground": "otsu", "label": 2}]
OP_CASES["memseg"] = [{}, {"textures": _PRESET_BANK, "foreground": None, "p": 1.0}]
SINGLE_INSTANCE -= {"draem", "glass", "memseg"}

# NSA (defectgen/ops/nsa.py): 1-4 patches of another image per sample, one box per patch, graded targets
OP_CASES["nsa"] = [
    {},
    {"mode": "mixed", "max_patches": 4, "scale_range": (0.5, 2.0), "intensity_logistic": (1 / 3, 7.0)},
    {"soft_labels": False, "foreground": "otsu", "label": 2, "half_height_frac_range": (0.05, 0.3)},
]
CROSS_SAMPLE.add("nsa")
SINGLE_INSTANCE.discard("nsa")
