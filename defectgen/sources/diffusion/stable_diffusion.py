"""A user's local Stable Diffusion inpainting model as a backend of :class:`~defectgen.DiffusionInpaint`.

defectgen's own :class:`~defectgen.InpaintModel` works in pixel space and must be trained on the user's images;
a Stable Diffusion *inpainting* checkpoint (a diffusers ``StableDiffusionInpaintPipeline`` folder written by
``save_pretrained``) already knows what cracks, scratches and stains look like and is steered by a text
prompt per defect class. This backend runs such a folder with defectgen's own sampling, not the pipeline's
``__call__``, because the pipeline draws its noise from one generator for the whole batch; here:

- the crops are encoded by the VAE (deterministically: the posterior's mode), sampling runs on latents (the
  inpainting UNet sees ``[noisy latents, mask at latent size, masked-image latents]``, 9 channels for SD),
  and the result is decoded back to pixels;
- every sample's noise comes from its own seed (:func:`~defectgen.sources.diffusion.noise.seeded_normal`), so
  a defect replays exactly, alone or in any batch;
- the DDIM loop is the one every backend shares (:func:`~defectgen.sources.diffusion.sampling.denoise`), with
  the noise schedule read from the folder's scheduler config;
- the class prompts are encoded once (or given as embeddings) and the class id picks a row: id 0 is the null
  class, the negative prompt (``""`` by default), used for classifier-free guidance.

Only local files are read (``local_files_only=True``); nothing is downloaded. ``diffusers`` and
``transformers`` are imported when a backend is built, not with defectgen.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import torch
import torch.nn.functional as F

from .backend import NULL_CLASS, InpaintBackend
from .model import CONFIG_FILE, import_diffusers
from .noise import seeded_normal
from .sampling import add_noise, ddim_timesteps, denoise

_INSTALL = "pip install 'defectgen[diffusion]'"


def _import_transformers():
    try:
        import transformers
    except ImportError as error:
        raise ImportError(f"Stable Diffusion prompts need transformers (the text encoder): {_INSTALL}") from error
    return transformers


def _component_ok(path: Path) -> bool:
    """A component folder as ``save_pretrained`` writes it (a config, or the tokenizer's files)."""
    return path.is_dir() and any(path.iterdir())


def check_pipeline_folder(path: Union[str, Path], components: List[str]) -> Path:
    """``path`` as a Path if it is a diffusers pipeline folder holding ``components``; ``ValueError`` naming the
    path and what is wrong otherwise (checked before any import, so the message is about the folder)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"Stable Diffusion folder {str(path)!r} does not exist")
    if not path.is_dir():
        raise ValueError(f"{str(path)!r} is not a Stable Diffusion folder (not a directory)")
    if (path / CONFIG_FILE).is_file():
        raise ValueError(f"{str(path)!r} is a defectgen inpainting model ({CONFIG_FILE}), not a Stable Diffusion "
                         "folder; load it with InpaintModel.load")
    if not (path / "model_index.json").is_file():
        raise ValueError(f"{str(path)!r} is not a diffusers pipeline folder (no model_index.json); save one with "
                         "StableDiffusionInpaintPipeline.save_pretrained")
    missing = [name for name in components if not _component_ok(path / name)]
    if missing:
        raise ValueError(f"Stable Diffusion folder {str(path)!r} lacks {', '.join(f'{m}/' for m in missing)}")
    return path


def _embedding(name: str, value: Any) -> torch.Tensor:
    """A prompt embedding as a float32 CPU ``(L, D)`` tensor (a leading batch dimension of 1 is dropped)."""
    tensor = torch.as_tensor(value).detach()
    if tensor.ndim == 3 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.ndim != 2 or not tensor.is_floating_point():
        raise ValueError(f"the embedding of {name!r} must be a float (L, D) tensor, got {tuple(tensor.shape)} "
                         f"{tensor.dtype}")
    return tensor.to("cpu", torch.float32)


class StableDiffusionInpaint(InpaintBackend):
    """A local Stable Diffusion inpainting folder as an inpainting backend (see the module docstring).

    Args:
        path: the pipeline folder (``model_index.json``, ``vae/``, ``unet/``, ``scheduler/``, and
            ``tokenizer/`` + ``text_encoder/`` when ``prompts`` are given).
        prompts: ``{class name: prompt}``, e.g. ``{"crack": "a thin dark crack on a glass bottle"}``.
        prompt_embeds: ``{class name: (L, D) tensor}`` instead of ``prompts`` (text encoded elsewhere; the
            folder then needs no tokenizer or text encoder).
        negative_prompt: the null class's text (classifier-free guidance pushes away from it).
        negative_prompt_embeds: the null class as an ``(L, D)`` tensor; with ``prompt_embeds`` and no text
            encoder in the folder, guidance other than 1 needs it.
        resolution: crop side in pixels fed to the VAE (a multiple of the VAE's and the UNet's downsampling).
        context: a crop is the mask's bounding box grown by this fraction of its size on every side.
        min_side: smallest crop side, in image pixels.
        device: where the VAE and the UNet run (they follow the images' device on use).

    Attributes:
        vae, unet: the diffusers ``AutoencoderKL`` and ``UNet2DConditionModel`` (float32, eval mode).
        class_names: the prompt keys, in order (class id = index + 1).
        alphas_cumprod: the training noise schedule from the folder's scheduler config.
    """

    channels = 3
    described = "Stable Diffusion backend"  # class ids are prompt rows (0: the negative prompt)

    def __init__(self, path: Union[str, Path], prompts: Optional[Mapping[str, str]] = None,
                 prompt_embeds: Optional[Mapping[str, torch.Tensor]] = None, negative_prompt: str = "",
                 negative_prompt_embeds: Optional[torch.Tensor] = None, resolution: int = 512,
                 context: float = 0.5, min_side: float = 16.0, device: Union[str, torch.device] = "cpu"):
        if (prompts is None) == (prompt_embeds is None):
            raise TypeError("give exactly one of prompts ({class name: prompt text}) and prompt_embeds "
                            "({class name: (L, D) tensor})")
        table = dict(prompts if prompts is not None else prompt_embeds)
        if not table:
            raise ValueError("prompts / prompt_embeds must name at least one class")
        for name in table:
            if not isinstance(name, str) or not name:
                raise ValueError(f"class names must be non-empty strings, got {name!r}")
        if prompts is not None and not all(isinstance(text, str) for text in table.values()):
            raise ValueError("prompts must map class names to prompt strings")
        if not isinstance(negative_prompt, str):
            raise ValueError(f"negative_prompt must be a string, got {type(negative_prompt).__name__}")
        if not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < 8:
            raise ValueError(f"resolution must be a positive multiple of 8, got {resolution!r}")
        if not 0.0 <= float(context) <= 4.0:
            raise ValueError(f"context must be in [0, 4], got {context}")
        if float(min_side) <= 0:
            raise ValueError(f"min_side must be positive, got {min_side}")
        text = prompts is not None
        path = check_pipeline_folder(path, ["vae", "unet", "scheduler"] + (["tokenizer", "text_encoder"] * text))
        self.path = path
        self.class_names: List[str] = list(table)
        self.prompts: Optional[Dict[str, str]] = dict(prompts) if text else None
        self.negative_prompt = negative_prompt
        self.resolution = resolution
        self.context = float(context)
        self.min_side = float(min_side)

        diffusers = import_diffusers()
        load = dict(local_files_only=True, low_cpu_mem_usage=False, torch_dtype=torch.float32)
        self.vae = diffusers.AutoencoderKL.from_pretrained(path / "vae", **load).eval()
        self.unet = diffusers.UNet2DConditionModel.from_pretrained(path / "unet", **load).eval()
        self.vae.requires_grad_(False)
        self.unet.requires_grad_(False)
        scheduler_config = diffusers.DDPMScheduler.load_config(path / "scheduler", local_files_only=True)
        self.scheduler_config = {k: v for k, v in scheduler_config.items() if not k.startswith("_")}
        scheduler = diffusers.DDPMScheduler.from_config(self.scheduler_config)
        self.alphas_cumprod = scheduler.alphas_cumprod.float().clone()
        self.prediction_type = scheduler.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"{str(path)!r}: the scheduler's prediction_type {self.prediction_type!r} is not "
                             "supported (epsilon or v_prediction)")
        self._check_models()

        # the null class is row 0, the classes follow: the class id indexes this table
        if text or (negative_prompt_embeds is None and _component_ok(path / "tokenizer")
                    and _component_ok(path / "text_encoder")):
            encoded = self._encode_texts(([table[c] for c in self.class_names] if text else []) + [negative_prompt])
            rows = list(encoded[:-1]) if text else [_embedding(c, table[c]) for c in self.class_names]
            null = encoded[-1] if negative_prompt_embeds is None else _embedding("negative", negative_prompt_embeds)
        else:
            rows = [_embedding(c, table[c]) for c in self.class_names]
            null = None if negative_prompt_embeds is None else _embedding("negative", negative_prompt_embeds)
        shapes = {tuple(r.shape) for r in rows + ([null] if null is not None else [])}
        if len(shapes) != 1:
            raise ValueError(f"prompt embeddings must all have one (L, D) shape, got {sorted(shapes)}")
        width = self.unet.config.cross_attention_dim
        if next(iter(shapes))[1] != width:
            raise ValueError(f"prompt embeddings have width {next(iter(shapes))[1]}, the UNet attends to "
                             f"{width}")
        self.has_null = null is not None
        self.prompt_table = torch.stack([null if null is not None else torch.zeros_like(rows[0])] + rows)
        self._tables: Dict[torch.device, torch.Tensor] = {}
        self.to(device)

    # -- building -----------------------------------------------------------------------------------------------
    def _check_models(self) -> None:
        """Refuse a folder whose UNet is not an inpainting UNet, or a resolution the models cannot take, at load
        time rather than as a shape error deep inside sampling."""
        latent = int(self.vae.config.latent_channels)
        unet_in, unet_out = int(self.unet.config.in_channels), int(self.unet.config.out_channels)
        if unet_in != 2 * latent + 1 or unet_out != latent:
            raise ValueError(f"{str(self.path)!r} is not a Stable Diffusion *inpainting* model: its UNet takes "
                             f"{unet_in} channels (an inpainting UNet takes {2 * latent + 1}: latents, mask, "
                             f"masked-image latents); use an inpainting checkpoint")
        if int(self.vae.config.in_channels) != self.channels:
            raise ValueError(f"{str(self.path)!r}: the VAE takes {self.vae.config.in_channels} channels, not 3")
        self.vae_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        step = self.vae_factor * 2 ** (len(self.unet.config.down_block_types) - 1)
        if self.resolution % step:
            raise ValueError(f"resolution must be a multiple of {step} for this model (VAE downsampling "
                             f"{self.vae_factor} x UNet downsampling {step // self.vae_factor}), "
                             f"got {self.resolution}")
        self.latent_channels = latent
        self.scaling_factor = float(self.vae.config.scaling_factor)
        shift = getattr(self.vae.config, "shift_factor", None)
        self.shift_factor = float(shift) if shift is not None else 0.0

    def _encode_texts(self, texts: List[str]) -> torch.Tensor:
        """``(len(texts), L, D)`` float32 CPU embeddings, as the diffusers pipeline encodes prompts (padded to the
        tokenizer's length; the text encoder is dropped afterwards: only the embeddings are needed)."""
        transformers = _import_transformers()
        tokenizer = transformers.CLIPTokenizer.from_pretrained(self.path / "tokenizer", local_files_only=True)
        encoder = transformers.CLIPTextModel.from_pretrained(self.path / "text_encoder", local_files_only=True,
                                                             low_cpu_mem_usage=False, torch_dtype=torch.float32)
        length = min(int(tokenizer.model_max_length), int(encoder.config.max_position_embeddings))
        tokens = tokenizer(texts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        mask = tokens.attention_mask if getattr(encoder.config, "use_attention_mask", False) else None
        with torch.no_grad():
            return encoder.eval()(tokens.input_ids, attention_mask=mask)[0].float()

    # -- the backend interface ----------------------------------------------------------------------------------
    def to(self, device: Union[str, torch.device]) -> "StableDiffusionInpaint":
        self.vae.to(device)
        self.unet.to(device)
        return self

    @property
    def defect_classes(self) -> List[str]:
        """Every class is a defect class (there is no ``"normal"`` class: the mask says where to change)."""
        return list(self.class_names)

    def embeddings(self, device: torch.device) -> torch.Tensor:
        """The ``(classes + 1, L, D)`` prompt table on ``device`` (copied once per device)."""
        device = torch.device(device)
        if device not in self._tables:
            self._tables[device] = self.prompt_table.to(device)
        return self._tables[device]

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1] -> scaled latents (the posterior's mode: no sampling, so no unseeded noise)."""
        dtype = self.vae.dtype
        latents = self.vae.encode(images.to(dtype)).latent_dist.mode().float()
        return (latents - self.shift_factor) * self.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> pixels in [-1, 1]."""
        latents = latents / self.scaling_factor + self.shift_factor
        return self.vae.decode(latents.to(self.vae.dtype)).sample.float().clamp(-1.0, 1.0)

    @torch.no_grad()
    def inpaint(self, crops: torch.Tensor, masks: torch.Tensor, classes: torch.Tensor, seeds: torch.Tensor,
                steps: int = 25, guidance: float = 1.0, strength: float = 1.0, resample: int = 1) -> torch.Tensor:
        """Fill ``masks`` of ``crops`` for a whole batch in one latent DDIM loop.

        Args:
            crops: ``(N, 3, R, R)`` in [-1, 1] at :attr:`resolution`.
            masks: ``(N, 1, R, R)`` 1 where the model must generate (binarised at 0.5).
            classes: ``(N,)`` class ids (:meth:`class_id`; 0 = the negative prompt).
            seeds: ``(N,)`` int64 per-sample noise seeds.
            steps: DDIM steps.
            guidance: classifier-free guidance scale (1 = the class prompt alone; otherwise one doubled batch,
                class prompt and negative prompt together).
            strength: start from the encoded crop noised to this fraction of the schedule (1 = pure noise).
            resample: unused: the inpainting UNet sees the known pixels, so there is no RePaint resampling.
        Returns:
            ``(N, 3, R, R)`` in [-1, 1]; outside the mask it is the VAE's reconstruction, not the input.
        """
        n, size = len(crops), self.resolution
        if crops.shape != (n, self.channels, size, size) or masks.shape != (n, 1, size, size):
            raise ValueError(f"crops must be (N, 3, {size}, {size}) and masks (N, 1, {size}, {size}), got "
                             f"{tuple(crops.shape)} and {tuple(masks.shape)}")
        if classes.shape != (n,) or seeds.shape != (n,):
            raise ValueError(f"classes and seeds must be ({n},), got {tuple(classes.shape)} and {tuple(seeds.shape)}")
        guidance = float(guidance)
        device = self.device
        classes = classes.to(device=device, dtype=torch.long)
        if n and (int(classes.min()) < 0 or int(classes.max()) > len(self.class_names)):
            raise ValueError(f"class ids must lie in 0..{len(self.class_names)}, got {classes.tolist()}")
        if not self.has_null and (guidance != 1.0 or (n and bool((classes == NULL_CLASS).any()))):
            raise ValueError("guidance other than 1 (and class id 0) needs the negative prompt: give "
                             "negative_prompt_embeds, or a folder with a tokenizer and text encoder")
        timesteps = ddim_timesteps(len(self.alphas_cumprod), steps, strength)
        if n == 0:
            return crops.new_zeros(crops.shape).float()
        crops = crops.to(device).float()
        known = (masks.to(device).float() < 0.5).float()
        seeds = seeds.to(device)
        alphas = self.alphas_cumprod.to(device)

        masked_latents = self.encode(crops * known)
        # max-pool: a latent cell any part of which is in the mask is generated (a 1 px crack is not lost)
        mask_latent = F.max_pool2d(1.0 - known, self.vae_factor)
        side = size // self.vae_factor
        noise = seeded_normal(seeds, 0, (self.latent_channels, side, side), device=device)
        if strength >= 1.0:
            x = noise
        else:
            x = add_noise(self.encode(crops), noise, alphas, timesteps[0])

        table = self.embeddings(device)
        text = table[classes]
        extra = torch.cat([mask_latent, masked_latents], 1)
        if guidance != 1.0:
            text = torch.cat([text, table[torch.full_like(classes, NULL_CLASS)]])
            extra = torch.cat([extra, extra])
        dtype = self.unet.dtype
        text, extra = text.to(dtype), extra.to(dtype)

        def predict(xt: torch.Tensor, t: int) -> torch.Tensor:
            both = xt if guidance == 1.0 else torch.cat([xt, xt])
            timestep = torch.tensor(t, device=device)
            out = self.unet(torch.cat([both.to(dtype), extra], 1), timestep, encoder_hidden_states=text).sample
            out = out.float()
            if guidance != 1.0:
                conditional, unconditional = out.chunk(2)
                out = unconditional + guidance * (conditional - unconditional)
            if self.prediction_type == "v_prediction":
                a = alphas[t]
                out = a.sqrt() * out + (1 - a).sqrt() * xt
            return out

        latents = denoise(predict, x, alphas, timesteps, seeds, clip=None)
        return self.decode(latents)

    def config(self) -> Dict[str, Any]:
        """Plain data describing the backend (a run's record; prompt embeddings are not repeated here)."""
        return {"kind": "stable_diffusion", "path": str(self.path), "class_names": list(self.class_names),
                "prompts": dict(self.prompts) if self.prompts is not None else None,
                "negative_prompt": self.negative_prompt, "resolution": self.resolution, "context": self.context,
                "min_side": self.min_side}

    def __repr__(self) -> str:
        return (f"StableDiffusionInpaint({str(self.path)!r}, classes={self.class_names}, "
                f"resolution={self.resolution})")

