"""Diffusion-inpainting defects: a model fills the masked region (DESIGN.md §7: diffusion is a *source*).

``model`` (defectgen's own pixel-space inpainting UNet), ``stable_diffusion`` (a user's local Stable Diffusion
inpainting folder), ``source`` (:class:`DiffusionInpaint`, the batched fill), ``train`` (``defectgen train
inpaint``), ``sampling`` / ``noise`` / ``crops`` (the shared DDIM loop, per-sample seeded noise, windows).
Importing this package does not import diffusers; building or loading a model does.
"""
from .model import InpaintModel
from .source import DiffusionInpaint, load_backend

__all__ = ["InpaintModel", "DiffusionInpaint", "load_backend"]
