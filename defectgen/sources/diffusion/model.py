"""defectgen's own inpainting model: a small pixel-space diffusers UNet, class-conditioned, saved as a folder.

Two kinds share this class:

- **conditional** (trained on a few NG images): the UNet sees the noisy crop, the crop with the masked region
  blanked and the mask (``2C + 1`` input channels), plus a class embedding. Class id 0 is the *null* class
  (dropped conditioning, for classifier-free guidance), 1 is ``"normal"`` (random masks over OK crops: it
  learns to blend with the surroundings), 2.. are the defect types.
- **unconditional** (trained on OK images only): a plain denoiser of crops (``C`` input channels); it
  inpaints by RePaint resampling (:func:`~defectgen.sources.diffusion.sampling.denoise` with ``known``), and
  ``strength`` below 1 keeps part of what was there (SDEdit).

A model folder holds ``unet/`` (diffusers ``save_pretrained``, the EMA weights), ``scheduler/`` (the diffusers
DDPM scheduler config: the training noise schedule) and ``defectgen_inpaint.json`` (format tag, kind, class
names, resolution, crop context, and how it was trained). ``diffusers`` is imported only when a model is built
or loaded (``pip install defectgen[diffusion]``).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import torch

from .backend import NULL_CLASS, InpaintBackend
from .noise import seeded_normal
from .sampling import add_noise, ddim_timesteps, denoise

FORMAT = "defectgen.inpaint/1"
CONFIG_FILE = "defectgen_inpaint.json"
NORMAL = "normal"


def import_diffusers():
    try:
        import diffusers
    except ImportError as error:  # pragma: no cover - the extra is installed in the test environment
        raise ImportError("diffusion inpainting needs diffusers: pip install 'defectgen[diffusion]'") from error
    return diffusers


def unet_config(resolution: int, channels: int, conditional: bool, classes: int, width: int = 64,
                layers_per_block: int = 2, attention: bool = True) -> Dict[str, Any]:
    """The UNet2DModel settings for a crop size: one level per halving down to 8 px (at most 5 levels), channels
    ``width x (1, 2, 2, 4, 4)``, self-attention on the two coarsest levels."""
    if resolution < 16 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two of at least 16, got {resolution}")
    if width < 8 or width % 8:
        raise ValueError(f"width must be a multiple of 8, got {width}")
    levels = min(5, int(math.log2(resolution // 8)) + 1)
    multipliers = (1, 2, 2, 4, 4)[:levels]
    down = ["DownBlock2D"] * levels
    up = ["UpBlock2D"] * levels
    if attention:
        for i in range(max(1, levels - 2), levels):
            down[i] = "AttnDownBlock2D"
            up[levels - 1 - i] = "AttnUpBlock2D"
    config = dict(sample_size=resolution, in_channels=2 * channels + 1 if conditional else channels,
                  out_channels=channels, block_out_channels=tuple(width * m for m in multipliers),
                  layers_per_block=layers_per_block, down_block_types=tuple(down), up_block_types=tuple(up),
                  norm_num_groups=min(32, width), attention_head_dim=min(32, width),
                  add_attention=attention)
    if conditional:
        config["num_class_embeds"] = classes + 1  # + the null class
    return config


class InpaintModel(InpaintBackend):
    """A trained (or freshly initialised) inpainting model; see the module docstring.

    Build one with :meth:`create` (random init) or :meth:`load` (a folder written by ``defectgen train
    inpaint`` or :meth:`save`). It is a *backend* of :class:`~defectgen.DiffusionInpaint`: :meth:`inpaint` fills
    masked crops for a whole batch in one sampling loop.

    Attributes:
        unet: the diffusers ``UNet2DModel``.
        class_names: the classes it was trained on (conditional: ``"normal"`` first, then the defect types;
            unconditional: ``[]``).
        resolution: crop side in pixels the model works at.
        context: a crop is the mask's bounding box grown by this fraction of its size on every side.
        min_side: smallest crop side, in image pixels.
        info: how it was trained (settings, data, held-out images), as saved.
    """

    def __init__(self, unet, alphas_cumprod: torch.Tensor, scheduler_config: Dict[str, Any],
                 class_names: Sequence[str], resolution: int, context: float = 0.5, min_side: float = 16.0,
                 info: Optional[Dict[str, Any]] = None):
        self.unet = unet.eval()
        self.alphas_cumprod = alphas_cumprod.float()
        self.scheduler_config = dict(scheduler_config)
        self.class_names = list(class_names)
        self.resolution = int(resolution)
        self.context = float(context)
        self.min_side = float(min_side)
        self.info = dict(info or {})
        self.conditional = self.unet.config.in_channels != self.unet.config.out_channels
        self.channels = int(self.unet.config.out_channels)
        if self.conditional and (not self.class_names or self.class_names[0] != NORMAL):
            raise ValueError(f"a conditional model's first class must be {NORMAL!r}, got {self.class_names}")

    # -- building ---------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, defect_classes: Sequence[str] = (), resolution: int = 64, channels: int = 3,
               conditional: bool = True, width: int = 64, layers_per_block: int = 2, attention: bool = True,
               context: float = 0.5, min_side: float = 16.0, num_train_timesteps: int = 1000,
               seed: int = 0) -> "InpaintModel":
        """A randomly initialised model (seeded): ``conditional`` with ``"normal"`` plus ``defect_classes``, or
        an unconditional one (``defect_classes`` must then be empty)."""
        diffusers = import_diffusers()
        defect_classes = [str(c) for c in defect_classes]
        if conditional and not defect_classes:
            raise ValueError("a conditional model needs at least one defect class")
        if not conditional and defect_classes:
            raise ValueError("an unconditional model (trained on OK images only) has no defect classes")
        if NORMAL in defect_classes or len(set(defect_classes)) != len(defect_classes):
            raise ValueError(f"defect classes must be distinct and not {NORMAL!r}, got {defect_classes}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if not 0.0 <= float(context) <= 4.0:
            raise ValueError(f"context must be in [0, 4], got {context}")
        class_names = [NORMAL] + defect_classes if conditional else []
        config = unet_config(resolution, channels, conditional, len(class_names), width, layers_per_block, attention)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            unet = diffusers.UNet2DModel(**config)
        scheduler = diffusers.DDPMScheduler(num_train_timesteps=num_train_timesteps,
                                            beta_schedule="squaredcos_cap_v2", prediction_type="epsilon")
        return cls(unet, scheduler.alphas_cumprod, dict(scheduler.config), class_names, resolution, context,
                   min_side)

    def save(self, path: Union[str, Path]) -> Path:
        """Write the model folder (``unet/``, ``scheduler/``, ``defectgen_inpaint.json``)."""
        diffusers = import_diffusers()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.unet.save_pretrained(path / "unet")
        config = {k: v for k, v in self.scheduler_config.items() if not k.startswith("_")}
        diffusers.DDPMScheduler.from_config(config).save_pretrained(path / "scheduler")
        meta = {"format": FORMAT, "kind": "conditional" if self.conditional else "unconditional",
                "class_names": self.class_names, "resolution": self.resolution, "context": self.context,
                "min_side": self.min_side, "channels": self.channels, "info": self.info}
        temporary = path / (CONFIG_FILE + ".tmp")
        temporary.write_text(json.dumps(meta, indent=2) + "\n")
        temporary.replace(path / CONFIG_FILE)
        return path

    @classmethod
    def load(cls, path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> "InpaintModel":
        """Read a model folder (local files only; nothing is downloaded)."""
        path = Path(path)
        meta = read_model_config(path)
        diffusers = import_diffusers()
        # low_cpu_mem_usage=False: the fast path needs the optional `accelerate` package (and warns without it)
        unet = diffusers.UNet2DModel.from_pretrained(path / "unet", local_files_only=True, low_cpu_mem_usage=False)
        scheduler = diffusers.DDPMScheduler.from_pretrained(path / "scheduler", local_files_only=True)
        model = cls(unet, scheduler.alphas_cumprod, dict(scheduler.config), meta["class_names"], meta["resolution"],
                    meta.get("context", 0.5), meta.get("min_side", 16.0), meta.get("info"))
        return model.to(device)

    def to(self, device: Union[str, torch.device]) -> "InpaintModel":
        self.unet.to(device)
        return self

    @property
    def defect_classes(self) -> List[str]:
        """The classes a defect may be drawn from (every class but ``"normal"``, which is class id 1)."""
        return [c for c in self.class_names if c != NORMAL]

    # -- sampling ---------------------------------------------------------------------------------------------
    def predict_noise(self, noisy: torch.Tensor, t, masked: Optional[torch.Tensor], mask: Optional[torch.Tensor],
                      classes: Optional[torch.Tensor]) -> torch.Tensor:
        """The UNet's noise estimate (training and sampling both call this, so they feed it alike)."""
        if self.conditional:
            return self.unet(torch.cat([noisy, masked, mask], 1), t, class_labels=classes).sample
        return self.unet(noisy, t).sample

    @torch.no_grad()
    def inpaint(self, crops: torch.Tensor, masks: torch.Tensor, classes: torch.Tensor, seeds: torch.Tensor,
                steps: int = 25, guidance: float = 1.0, strength: float = 1.0, resample: int = 1) -> torch.Tensor:
        """Fill ``masks`` of ``crops`` for a whole batch in one DDIM loop.

        Args:
            crops: ``(N, C, R, R)`` in [-1, 1] at the model's resolution.
            masks: ``(N, 1, R, R)`` 1 where the model must generate.
            classes: ``(N,)`` class ids (:meth:`class_id`; ignored by an unconditional model).
            seeds: ``(N,)`` int64 per-sample noise seeds.
            steps: DDIM steps.
            guidance: classifier-free guidance scale (1 = the class-conditioned estimate alone; the guided
                estimate is one doubled batch, conditional and null class together).
            strength: start from the crop noised to this fraction of the schedule (1 = pure noise).
            resample: RePaint resamplings per step (each step redone this many times; 1 = none).
        Returns:
            ``(N, C, R, R)`` in [-1, 1].
        """
        device = self.device
        crops, masks = crops.to(device).float(), masks.to(device).float()
        seeds = seeds.to(device)
        timesteps = ddim_timesteps(len(self.alphas_cumprod), steps, strength)
        alphas = self.alphas_cumprod.to(device)
        noise = seeded_normal(seeds, 0, crops.shape[1:], device=device)
        x = noise if strength >= 1.0 else add_noise(crops, noise, alphas, timesteps[0])
        # the known pixels are put back (noised to each step's level) after every step for both kinds: a
        # conditional model sees them as input too, but a trajectory that drifts off the data early (its first
        # steps from pure noise) is otherwise followed rather than corrected, and whole windows come out
        # colour-shifted (seen on the bottle model at the CPU budget: outside-mask error 0.53 at the last step
        # without the replacement)
        if not self.conditional:
            return denoise(lambda xt, t: self.predict_noise(xt, t, None, None, None), x, alphas, timesteps, seeds,
                           known=crops, mask=masks, resample=resample)
        masked = crops * (1 - masks)
        classes = classes.to(device)
        if guidance == 1.0:
            return denoise(lambda xt, t: self.predict_noise(xt, t, masked, masks, classes), x, alphas, timesteps,
                           seeds, known=crops, mask=masks, resample=resample)
        both_masked, both_masks = torch.cat([masked, masked]), torch.cat([masks, masks])
        both_classes = torch.cat([classes, torch.full_like(classes, NULL_CLASS)])

        def guided(xt, t):
            conditional, unconditional = self.predict_noise(torch.cat([xt, xt]), t, both_masked, both_masks,
                                                            both_classes).chunk(2)
            return unconditional + guidance * (conditional - unconditional)

        return denoise(guided, x, alphas, timesteps, seeds, known=crops, mask=masks, resample=resample)

    def config(self) -> Dict[str, Any]:
        return {"kind": "conditional" if self.conditional else "unconditional", "class_names": self.class_names,
                "resolution": self.resolution, "context": self.context, "min_side": self.min_side}


def read_model_config(path: Union[str, Path]) -> Dict[str, Any]:
    """The ``defectgen_inpaint.json`` of a model folder; ``ValueError`` naming what the folder is otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"{str(path)!r} is not a model folder (not a directory)")
    file = path / CONFIG_FILE
    if not file.is_file():
        if (path / "model_index.json").is_file():
            raise ValueError(f"{str(path)!r} is a diffusers pipeline folder, not a defectgen inpainting model; "
                             "load it with StableDiffusionInpaint")
        raise ValueError(f"{str(path)!r} is not a defectgen inpainting model folder (no {CONFIG_FILE})")
    try:
        meta = json.loads(file.read_text())
    except ValueError as error:
        raise ValueError(f"{str(file)!r} is not valid JSON: {error}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{str(file)!r} is not a defectgen inpainting model of format {FORMAT!r} "
                         f"(found {meta.get('format') if isinstance(meta, dict) else meta!r})")
    return meta
