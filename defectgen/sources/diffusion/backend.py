"""What the inpainting backends share: a denoising UNet on a device, and a class table whose ids are 1..K.

:class:`~defectgen.InpaintModel` (defectgen's own pixel-space model) and
:class:`~defectgen.sources.diffusion.stable_diffusion.StableDiffusionInpaint` (a local Stable Diffusion folder)
differ in what a class is (a learnt embedding, a prompt) and in how they sample; they look up classes and report
their device the same way.
"""
from __future__ import annotations

from typing import List

import torch

#: the class id of "no class": the unconditional estimate of classifier-free guidance (the negative prompt)
NULL_CLASS = 0


class InpaintBackend:
    """The base of the inpainting backends: subclasses set ``unet`` and ``class_names`` (class id = index + 1)."""

    #: how an unknown-class error names the backend
    described = "model"
    unet: torch.nn.Module
    class_names: List[str]

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def class_id(self, name: str) -> int:
        """The id of a class name: its index in :attr:`class_names` + 1 (0 is the null class)."""
        if name not in self.class_names:
            raise ValueError(f"unknown class {name!r}; this {self.described} knows {self.class_names}")
        return self.class_names.index(name) + 1


__all__ = ["InpaintBackend", "NULL_CLASS"]
