"""The operator contract: validation, randomness, replay, and the DefectBatch every operator returns."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

import torch

from ..checks import check_images, check_int, check_probability
from .._config import Configurable
from ..rng import OwnGenerator, resolve_generator
from ..foreground import check_foreground_mask, check_foreground_mode, estimate_foreground
from ..result import DefectBatch, Params
from ..values import value_space


@dataclass
class Painted:
    """What ``paint`` reports: candidate boxes (kept where ``valid``), per-sample labels and, for operators
    with graded labels, the ``(B, 1, H, W)`` float32 target (0 outside the pixels this paint marked; None:
    the mask is the target)."""

    boxes: torch.Tensor      # (M, 4) float32
    box_index: torch.Tensor  # (M,) int64
    box_label: torch.Tensor  # (M,) int64
    valid: torch.Tensor      # (M,) bool
    label: torch.Tensor      # (B,) int64
    target: Optional[torch.Tensor] = None  # (B, 1, H, W) float32 in [0, 1]


class Canvas:
    """The batch being painted: the caller's input until the first in-place write, then a private copy.

    Operators either write into :meth:`writable` (a contiguous copy made once, on first use) or hand a new
    tensor to :meth:`replace` (e.g. one ``torch.where`` over the whole batch, which costs about what a copy
    would). Either way the caller's tensor is never modified.
    """

    def __init__(self, images: torch.Tensor):
        self.image = images
        self._owned = False

    def writable(self) -> torch.Tensor:
        """A contiguous batch of our own: flat-index writes need the standard layout."""
        if not self._owned or not self.image.is_contiguous():
            self.image = self.image.clone(memory_format=torch.contiguous_format)
            self._owned = True
        return self.image

    def replace(self, image: torch.Tensor) -> None:
        self.image = image
        self._owned = True

    def result(self) -> torch.Tensor:
        """The painted batch (contiguous), never the caller's tensor itself."""
        return self.writable()


class DefectOp(Configurable):
    """Base class of every operator.

    Subclasses implement ``sample_params`` (draw every random choice as ``(B, ...)`` tensors from the given
    generator), ``paint`` (write the defects into a :class:`Canvas` and the mask, from params alone) and
    ``gate`` (restrict params to a subset of samples, used by pipelines). ``__call__`` does the rest.

    Calling an operator: ``op(images, generator=None, seed=None, params=None, foreground=None)``. With neither
    ``generator`` nor ``seed``, the operator's own generator is used (seeded by the constructor's ``seed``, or
    by the OS).

    Value ranges: float input is taken to be in ``[0, 1]``; other spaces are declared per call with
    ``value_range=(low, high)`` or the ``mean=`` / ``std=`` of a normalisation (:mod:`defectgen.values`). The
    operator then paints in ``[0, 1]`` and maps the defect back, so fills, jitter and clamps mean the same in
    every space and pixels outside the mask stay the caller's. Float input outside its space, NaN or infinity
    raise a ``ValueError``.

    Foreground placement: with ``foreground`` set at construction (``"otsu"``, ``"otsu_dark"``,
    ``"otsu_bright"`` or ``"given"``; see :mod:`defectgen.foreground`), or a ``(B, 1, H, W)`` mask passed to
    the call, defects land on the foreground only. Subclasses implement it in ``place``. The placement
    ends up in the returned params, so replaying them needs no foreground.
    """

    config_key = "op"

    def __init__(self, p: float = 1.0, label: int = 1, seed: Optional[int] = None,
                 foreground: Optional[str] = None):
        self.p = check_probability(p, "p")
        self.label = check_int(label, "label", 1)
        self.seed = None if seed is None else check_int(seed, "seed")
        self.foreground = check_foreground_mode(foreground)
        self._own_generator = OwnGenerator(self.seed)

    # -- to implement -------------------------------------------------------------------------------------
    def sample_params(self, batch: int, channels: int, height: int, width: int,
                      generator: torch.Generator) -> Params:
        raise NotImplementedError

    def paint(self, canvas: Canvas, mask: torch.Tensor, params: Params) -> Painted:
        raise NotImplementedError

    def gate(self, params: Params, keep: torch.Tensor) -> Params:
        raise NotImplementedError

    def check_replay(self, params: Params, height: int, width: int) -> None:
        """Extra checks that replayed params fit the images (e.g. patch sizes); raise ValueError."""

    def place(self, params: Params, foreground: torch.Tensor, generator: torch.Generator) -> Params:
        """Move the sampled defects onto ``foreground`` (``(B, 1, H, W)`` bool); return the new params."""
        raise NotImplementedError(f"{type(self).__name__} does not support foreground placement")

    # -- foreground ---------------------------------------------------------------------------------------
    def resolve_foreground(self, images: torch.Tensor, given: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """The ``(B, 1, H, W)`` bool foreground for this call, or None when defects may land anywhere."""
        if given is not None:
            return check_foreground_mask(given, images)
        if self.foreground == "given":
            raise ValueError(f"{type(self).__name__} was built with foreground='given': pass the call a "
                             "(B, 1, H, W) mask as foreground=")
        if self.foreground is None:
            return None
        return estimate_foreground(images, self.foreground)

    def place_on_foreground(self, images: torch.Tensor, params: Params, generator: torch.Generator,
                            given: Optional[torch.Tensor]) -> Params:
        foreground = self.resolve_foreground(images, given)
        return params if foreground is None else self.place(params, foreground, generator)

    # -- the contract -------------------------------------------------------------------------------------
    def __call__(self, images: torch.Tensor, generator: Optional[torch.Generator] = None,
                 seed: Optional[int] = None, params: Optional[Params] = None,
                 foreground: Optional[torch.Tensor] = None, value_range=None, mean=None, std=None) -> DefectBatch:
        check_images(images)
        space = value_space(images, value_range, mean, std)
        if space is not None:  # paint in [0, 1], map the defect back, keep the caller's pixels elsewhere
            out = self._paint_call(space.to_unit(images), generator, seed, params, foreground)
            image = torch.where(out.mask, space.from_unit(out.image, images.dtype), images)
            return replace(out, image=image)
        return self._paint_call(images, generator, seed, params, foreground)

    def _paint_call(self, images: torch.Tensor, generator: Optional[torch.Generator], seed: Optional[int],
                    params: Optional[Params], foreground: Optional[torch.Tensor]) -> DefectBatch:
        batch, channels, height, width = images.shape
        device = images.device
        if params is None:
            rng = resolve_generator(generator, seed, self._own_generator)
            params = _to_device(self.sample_params(batch, channels, height, width, rng), device)
            params = self.place_on_foreground(images, params, rng, foreground)
        else:
            if generator is not None or seed is not None or foreground is not None:
                raise ValueError("params= replays a call exactly (placement included); do not also pass "
                                 "generator=, seed= or foreground=")
            schema = self.sample_params(0, channels, height, width, torch.Generator())
            _add_optional_keys(schema, params, height, width)
            params = _check_params(params, schema, batch, device, "params")
            self.check_replay(params, height, width)

        canvas = Canvas(images)
        mask = torch.zeros(batch, 1, height, width, dtype=torch.bool, device=device)
        painted = self.paint(canvas, mask, params)
        keep = painted.valid
        return DefectBatch(image=canvas.result(), mask=mask, label=painted.label, boxes=painted.boxes[keep],
                           box_index=painted.box_index[keep], box_label=painted.box_label[keep], params=params,
                           target=painted.target)

    forward = __call__


#: params an operator adds only when a call has a foreground: (B, 1, H, W) bool
FOREGROUND_KEY = "foreground"


def _add_optional_keys(schema: Any, params: Any, height: int, width: int) -> None:
    """Let replayed params carry a foreground mask where the placement stored one."""
    if isinstance(schema, dict) and isinstance(params, dict):
        if FOREGROUND_KEY in params and FOREGROUND_KEY not in schema:
            schema[FOREGROUND_KEY] = torch.zeros(0, 1, height, width, dtype=torch.bool)
        for key in schema:
            if key in params:
                _add_optional_keys(schema[key], params[key], height, width)
    elif isinstance(schema, list) and isinstance(params, list):
        for s, p in zip(schema, params):
            _add_optional_keys(s, p, height, width)


def _to_device(params: Any, device: torch.device) -> Any:
    if isinstance(params, torch.Tensor):
        return params.to(device)
    if isinstance(params, dict):
        return {k: _to_device(v, device) for k, v in params.items()}
    if isinstance(params, list):
        return [_to_device(v, device) for v in params]
    return params


def _check_params(params: Any, schema: Any, batch: int, device: torch.device, where: str) -> Any:
    """Compare replayed params with the structure an empty-batch draw has; move them to ``device``."""
    if isinstance(schema, dict):
        if not isinstance(params, dict):
            raise TypeError(f"{where} must be a dict of tensors (an earlier call's .params), "
                            f"got {type(params).__name__}")
        if set(params) != set(schema):
            missing, extra = sorted(set(schema) - set(params)), sorted(set(params) - set(schema))
            raise ValueError(f"{where} does not match this operator: missing {missing}, unexpected {extra}")
        return {k: _check_params(params[k], schema[k], batch, device, f"{where}[{k!r}]") for k in schema}
    if isinstance(schema, list):
        if not isinstance(params, list) or len(params) != len(schema):
            raise ValueError(f"{where} must be a list of {len(schema)} branch params")
        return [_check_params(p, s, batch, device, f"{where}[{i}]") for i, (p, s) in enumerate(zip(params, schema))]
    if not isinstance(params, torch.Tensor):
        raise TypeError(f"{where} must be a tensor, got {type(params).__name__}")
    if params.ndim != schema.ndim or params.shape[:1] != (batch,) or params.shape[1:] != schema.shape[1:]:
        raise ValueError(f"{where} must have shape {(batch,) + tuple(schema.shape[1:])} for a batch of {batch}, "
                         f"got {tuple(params.shape)}")
    if params.dtype.is_floating_point != schema.dtype.is_floating_point or (params.dtype == torch.bool) != (
            schema.dtype == torch.bool):
        raise TypeError(f"{where} must have dtype {schema.dtype}, got {params.dtype}")
    if params.dtype.is_floating_point and not torch.isfinite(params).all():
        raise ValueError(f"{where} contains NaN or infinite values")
    return params.to(device=device, dtype=schema.dtype)
