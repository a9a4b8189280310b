"""The diffusion source: a model inpaints the masked region of every sample, one sampling loop per batch."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch

from ...components import mask_boxes
from ...registry import register_part
from ...values import value_scale
from ..base import Source
from .crops import crop, square_boxes, uncrop
from .noise import draw_seeds

Backend = Any  # InpaintModel, StableDiffusionInpaint, or anything with their inpaint() interface


def load_backend(model: Union[str, Path, Backend], prompts: Optional[Mapping[str, str]] = None,
                 device: Union[str, torch.device] = "cpu") -> Backend:
    """A backend from a local folder (dispatching on what the folder holds) or a backend object as is.

    ``defectgen_inpaint.json`` -> :class:`~defectgen.InpaintModel` (conditional or unconditional);
    ``model_index.json`` -> :class:`~defectgen.sources.diffusion.stable_diffusion.StableDiffusionInpaint` with
    ``prompts``. Nothing is downloaded.
    """
    if not isinstance(model, (str, Path)):
        if not callable(getattr(model, "inpaint", None)):
            raise TypeError(f"model must be a model folder or an inpainting backend (InpaintModel, "
                            f"StableDiffusionInpaint), got {type(model).__name__}")
        return model
    path = Path(model)
    from .model import CONFIG_FILE, InpaintModel
    if (path / CONFIG_FILE).is_file():
        if prompts:
            raise ValueError(f"{str(path)!r} is a defectgen inpainting model: it takes class names, not prompts")
        return InpaintModel.load(path, device)
    if (path / "model_index.json").is_file():
        if not prompts:
            raise ValueError(f"{str(path)!r} is a Stable Diffusion folder: give prompts={{class name: prompt}}")
        from .stable_diffusion import StableDiffusionInpaint
        return StableDiffusionInpaint(path, prompts=dict(prompts), device=device)
    raise ValueError(f"{str(path)!r} is not an inpainting model folder: expected defectgen_inpaint.json (written by "
                     "'defectgen train inpaint') or model_index.json (a diffusers Stable Diffusion inpainting "
                     "pipeline)" if path.is_dir() else f"model folder {str(path)!r} does not exist")


@register_part("source", "diffusion")
class DiffusionInpaint(Source):
    """Fill each sample's mask with what a diffusion model inpaints there.

    For the whole batch at once: a square window around each sample's mask (the mask's box grown by the
    model's ``context`` on every side) is resampled to the model's resolution, one DDIM loop fills the masked
    part of every window (classifier-free guidance as one doubled batch), and the result is resampled back.
    The blend then pastes the original back outside the mask, so the outside-mask identity holds although
    diffusion outputs drift everywhere. A sample's noise comes from its own seed (``params["diffusion_seed"]``),
    so replaying params gives the same defect, alone or in any batch.

    Args:
        model: a model folder (``defectgen train inpaint``'s output, or a local Stable Diffusion inpainting
            folder with ``prompts``) or a backend object (:class:`~defectgen.InpaintModel`,
            ``StableDiffusionInpaint``). It is moved to the images' device on use.
        steps: DDIM steps per sample.
        guidance: classifier-free guidance scale (1 = conditional estimate only; unconditional models ignore it).
        classes: the defect classes to draw from, uniformly (default: all of the model's defect classes);
            ``class_names[i]`` gets class id ``label + i`` in the operator's output.
        strength: how far into the noise schedule a sample starts (1 = from pure noise; lower keeps part of
            what was in the masked region: the way an OK-only model makes a defect of the right kind of
            wrongness without any NG image).
        resample: RePaint resamplings per step for an unconditional model (more = better-blended, slower).
        prompts: ``{class name: prompt}`` for a Stable Diffusion folder.
        batch_size: at most this many windows per model call (memory); ``None`` = the whole batch.
    """

    def __init__(self, model: Union[str, Path, Backend], steps: int = 25, guidance: float = 3.0,
                 classes: Optional[Sequence[str]] = None, strength: float = 1.0, resample: int = 1,
                 prompts: Optional[Mapping[str, str]] = None, batch_size: Optional[int] = None):
        for name, value in (("steps", steps), ("resample", resample)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
        if not isinstance(guidance, (int, float)) or not 0.0 <= float(guidance) <= 30.0:
            raise ValueError(f"guidance must be a number in [0, 30], got {guidance!r}")
        if not isinstance(strength, (int, float)) or not 0.0 < float(strength) <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {strength!r}")
        self.backend = load_backend(model, prompts)
        self.model = str(model) if isinstance(model, Path) else model
        self.prompts = dict(prompts) if prompts else None
        self.steps, self.guidance, self.strength = steps, float(guidance), float(strength)
        self.resample, self.batch_size = resample, batch_size
        known = list(self.backend.defect_classes)
        if classes is None:
            self.classes = None
            self.class_names: List[str] = known
        else:
            classes = [classes] if isinstance(classes, str) else [str(c) for c in classes]
            unknown = [c for c in classes if c not in known]
            if unknown or not classes:
                raise ValueError(f"classes {unknown or classes} not among the model's defect classes {known}")
            self.classes = classes
            self.class_names = classes
        if not self.class_names and getattr(self.backend, "conditional", True):
            raise ValueError("the model has no defect classes to draw from")
        # class index (0-based, as in params) -> the backend's class id; an unconditional model has one "class"
        ids = [self.backend.class_id(c) for c in self.class_names] or [0]
        self._class_ids = torch.tensor(ids, dtype=torch.long)

    @property
    def num_classes(self) -> int:
        return len(self._class_ids)

    def sample(self, n, channels, height, width, shape, generator) -> Dict[str, torch.Tensor]:
        classes = torch.randint(0, self.num_classes, (n,), generator=generator, device=generator.device)
        return {"diffusion_seed": draw_seeds(n, generator), "diffusion_class": classes}

    def check_replay(self, params, batch, height, width) -> None:
        for key in ("diffusion_seed", "diffusion_class"):
            if key not in params or params[key].shape != (batch,):
                raise ValueError(f"params[{key!r}] must be a ({batch},) tensor")
        classes = params["diffusion_class"]
        if batch and (int(classes.min()) < 0 or int(classes.max()) >= self.num_classes):
            raise ValueError(f"params['diffusion_class'] must lie in 0..{self.num_classes - 1}")

    def class_offset(self, params) -> torch.Tensor:
        return params["diffusion_class"]

    def render_region(self, images, params, coverage):
        b, c, h, w = images.shape
        max_value = value_scale(images.dtype)
        fill = images.float()
        region = coverage > 0
        boxes, non_empty = mask_boxes(region)
        active = non_empty.nonzero().squeeze(1)  # one sync: the model runs only on samples with a defect
        if active.numel() == 0:
            return fill.clone()
        backend = self.backend
        if backend.device != images.device:
            backend.to(images.device)
        windows = square_boxes(boxes[active], backend.context, backend.min_side)
        size = backend.resolution
        crops = crop(fill[active], windows, size) * (2.0 / max_value) - 1.0
        masks = (crop(region[active].float(), windows, size) > 0).float()  # bilinear > 0: covers the mask
        crops = _match_channels(crops, backend.channels)
        classes = self._class_ids.to(images.device)[params["diffusion_class"][active].to(images.device)]
        seeds = params["diffusion_seed"][active]
        chunk = self.batch_size or len(active)
        outputs = [backend.inpaint(crops[i:i + chunk], masks[i:i + chunk], classes[i:i + chunk], seeds[i:i + chunk],
                                   steps=self.steps, guidance=self.guidance, strength=self.strength,
                                   resample=self.resample) for i in range(0, len(active), chunk)]
        generated = _match_channels(torch.cat(outputs).to(images.device).float(), c)
        generated = (generated.clamp(-1.0, 1.0) + 1.0) * (max_value / 2.0)
        out = fill.clone()
        out[active] = uncrop(generated, windows, h, w)
        return out.clamp_(0.0, max_value)


def _match_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Grey images for a colour model are repeated to 3 channels; a colour model's output for grey images is
    averaged back (and the other way round)."""
    if images.shape[1] == channels:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1)
    return images.mean(1, keepdim=True)
