"""The sampling loop every inpainting backend shares: DDIM steps over a whole batch, with optional RePaint
resampling for models that do not see the known pixels.

The maths is written out here (a few lines) instead of calling a ``diffusers`` scheduler, because the noise
must come from per-sample seeds (:func:`~defectgen.sources.diffusion.noise.seeded_normal`) for exact replay,
and a diffusers scheduler draws its own. Schedules (``alphas_cumprod``) still come from the model's saved
diffusers scheduler config, so a model trained elsewhere samples with its own schedule.
"""
from __future__ import annotations

from typing import Callable, List, Optional

import torch

from .noise import seeded_normal

#: ``predict(x_t, t)`` -> the model's noise estimate for the batch ``x_t`` at integer timestep ``t``
Predictor = Callable[[torch.Tensor, int], torch.Tensor]


def ddim_timesteps(num_train_timesteps: int, steps: int, strength: float = 1.0) -> List[int]:
    """Descending timesteps of a ``steps``-step DDIM run ("trailing" spacing: the first is the last training
    step, so a full-strength run starts from pure noise); ``strength < 1`` keeps only the last
    ``round(steps * strength)`` of them (SDEdit: start from the input noised to that level)."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if steps > num_train_timesteps:
        raise ValueError(f"steps must be at most the model's {num_train_timesteps} training timesteps, got {steps}")
    if not 0.0 < float(strength) <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength!r}")
    ratio = num_train_timesteps / steps
    timesteps = [int(round(num_train_timesteps - i * ratio)) - 1 for i in range(steps)]
    keep = max(1, int(round(steps * float(strength))))
    return timesteps[steps - keep:]


def add_noise(x0: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor, t: int) -> torch.Tensor:
    """``x_t`` of the forward process: ``sqrt(a_t) x0 + sqrt(1 - a_t) noise``."""
    a = alphas_cumprod[t]
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def denoise(predict: Predictor, x: torch.Tensor, alphas_cumprod: torch.Tensor, timesteps: List[int],
            seeds: torch.Tensor, known: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None,
            resample: int = 1, clip: Optional[float] = 1.0, counter: int = 1) -> torch.Tensor:
    """Run DDIM (eta 0) from ``x`` at ``timesteps[0]`` down to a clean sample.

    Args:
        predict: the noise estimate (guidance, if any, happens inside it).
        x: ``(N, C, h, w)`` the starting sample at ``timesteps[0]``.
        alphas_cumprod: the model's training schedule, on ``x``'s device, float32.
        seeds: ``(N,)`` per-sample seeds for the noise RePaint draws (unused without ``known``).
        known, mask: RePaint for models that cannot see the known pixels: after every step the pixels where
            ``mask`` is 0 are replaced by ``known`` noised to the new step's level, so the generated region is
            pulled into agreement with its surroundings.
        resample: RePaint's resampling: each step is redone this many times, the result noised back up by one
            step in between (1 = no resampling).
        clip: clamp the predicted clean sample to ``[-clip, clip]`` (pixel models); ``None`` for latents.
        counter: first counter value used for the seeded noise (the caller's initial noise uses others).
    """
    if (known is None) != (mask is None):
        raise ValueError("known and mask go together (RePaint needs both)")
    alphas = alphas_cumprod.to(device=x.device, dtype=torch.float32)
    one = torch.ones((), device=x.device)
    for i, t in enumerate(timesteps):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        a_t = alphas[t]
        a_prev = alphas[t_prev] if t_prev >= 0 else one
        for r in range(resample):
            eps = predict(x, t).float()
            x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
            if clip is not None:
                x0 = x0.clamp(-clip, clip)
                eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()
            x_prev = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
            if known is not None:
                if t_prev >= 0:
                    noise = seeded_normal(seeds, counter, x.shape[1:], device=x.device)
                    counter += 1
                    known_prev = add_noise(known, noise, alphas, t_prev)
                else:
                    known_prev = known
                x_prev = mask * x_prev + (1 - mask) * known_prev
            if r + 1 < resample and t_prev >= 0:
                # back up one step: q(x_t | x_prev) adds exactly the noise the step took away
                ratio = a_t / a_prev
                noise = seeded_normal(seeds, counter, x.shape[1:], device=x.device)
                counter += 1
                x = ratio.sqrt() * x_prev + (1 - ratio).sqrt() * noise
            else:
                x = x_prev
    return x
