"""Training defectgen's inpainting model (``defectgen train inpaint``).

A batch mixes two kinds of examples, both cut exactly as :class:`~defectgen.DiffusionInpaint` cuts windows at
generation (a square around the mask, grown by ``context``, resampled to the model's resolution):

- **defects**: windows around the real defects of a :class:`~defectgen.DefectBank` (a few NG images, read from
  an MVTec folder, image + mask pairs or aligned pairs), jittered in position and size and flipped, labelled
  with their defect type;
- **normal**: random shape masks over OK images, labelled ``"normal"``; the target is the OK pixels, so the
  model learns to continue the surroundings, which is what makes its defects blend in.

The loss is the noise-prediction error, weighted 1 inside the mask and ``outside_weight`` outside it (the model
sees the outside pixels; what matters is what it invents). The class is dropped to the null class with
probability ``class_dropout``, for classifier-free guidance. An EMA of the weights is what gets saved. An
unconditional model (``kind="unconditional"``) learns plain denoising of OK windows of the same sizes.

Training runs on :class:`defectgen.training.TrainingLoop` (the loop every built-in model shares: progress bar
with loss and ETA, atomic checkpoints, exact resume); the batch generator's state and the EMA are part of each
checkpoint, so an interrupted run resumes to the model an uninterrupted run gives.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from ...bank import DefectBank
from ...io.mvtec import split_by_type
from ...components import mask_boxes
from ...masks.shapes import ShapeMask
from ...training import TrainingLoop
from .crops import crop, square_boxes
from .model import NORMAL, InpaintModel

SETTINGS_FILE = "train.json"
CHECKPOINT_FILE = "checkpoint.pt"


@dataclasses.dataclass(frozen=True)
class InpaintTraining:
    """How an inpainting model is trained (every field is recorded with the model and checked on resume).

    Attributes:
        kind: ``"conditional"`` (defects from a bank, plus normal) or ``"unconditional"`` (OK images only).
        resolution: the model's window side in pixels (a power of two, at least 16).
        steps, batch_size, learning_rate, warmup: the optimisation (AdamW, linear warm-up, then constant).
        ema_decay: decay of the saved exponential moving average of the weights.
        width, layers_per_block, attention: the UNet's size (see :func:`model.unet_config`).
        context: a window is the mask's box grown by this fraction of its size on every side.
        min_side: smallest window side, in image pixels.
        normal_fraction: share of each batch that is normal examples (conditional models).
        class_dropout: probability of training a sample with the null class (for guidance).
        outside_weight: loss weight of pixels outside the mask.
        seed: seeds the initial weights and every batch.
    """

    kind: str = "conditional"
    resolution: int = 64
    steps: int = 20000
    batch_size: int = 16
    learning_rate: float = 2e-4
    warmup: int = 200
    ema_decay: float = 0.999
    width: int = 64
    layers_per_block: int = 2
    attention: bool = True
    context: float = 0.5
    min_side: float = 16.0
    normal_fraction: float = 0.25
    class_dropout: float = 0.1
    outside_weight: float = 0.1
    seed: int = 0

    def __post_init__(self):
        if self.kind not in ("conditional", "unconditional"):
            raise ValueError(f"kind must be 'conditional' or 'unconditional', got {self.kind!r}")
        for name in ("steps", "batch_size", "resolution", "width", "layers_per_block"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        for name in ("ema_decay", "normal_fraction", "class_dropout", "outside_weight"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.kind == "conditional" and self.batch_size < 2 and 0 < self.normal_fraction < 1:
            raise ValueError("batch_size must be at least 2 to mix defects and normal examples")


def split_shots(bank: DefectBank, shots: Union[int, float], seed: int = 0) -> Tuple[List[int], List[int]]:
    """Entries of ``bank`` to train on and to hold out: ``shots`` < 1 is a fraction of each defect type (at
    least one), ``shots`` >= 1 a count per type; the choice is a seeded permutation within each type.

    The rule is :func:`defectgen.io.mvtec.split_by_type`, the one behind ``DefectBank.from_mvtec(split=...)``
    and a study's ``data.defect_split``: for a bank read from a whole MVTec folder (no empty mask), the
    training entries are the images ``DefectBank.from_mvtec(root, split="train", shots=shots, split_seed=seed)``
    reads."""
    return split_by_type(bank.types.tolist(), shots, seed)


def subset_bank(bank: DefectBank, entries: Sequence[int]) -> DefectBank:
    """The bank's ``entries`` (sorted by type, as a bank must be), with the same class names."""
    index = torch.tensor(sorted(entries, key=lambda i: (int(bank.types[i]), i)), dtype=torch.long)
    if len(index) == 0:
        raise ValueError("no defect left to train on")
    return DefectBank(bank.images[index], bank.masks[index], bank.rings[index], bank.anchors[index],
                      bank.sizes[index], bank.types[index], bank.background[index], bank.source_sizes[index],
                      bank.class_names, [bank.names[i] for i in index.tolist()])


class _Batches:
    """Draws training batches (windows, masks, class ids) from the bank and OK images; every draw goes through
    one CPU generator, whose state is checkpointed."""

    def __init__(self, settings: InpaintTraining, ok_images: torch.Tensor, bank: Optional[DefectBank],
                 model: InpaintModel):
        self.s, self.model = settings, model
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.ok = ok_images
        self.bank = bank
        if bank is not None:
            self.bank_images = bank.images.float()
            self.bank_masks = bank.masks.float()
            self.bank_boxes, _ = mask_boxes(bank.masks.bool())
            extent = torch.maximum(self.bank_boxes[:, 2] - self.bank_boxes[:, 0],
                                   self.bank_boxes[:, 3] - self.bank_boxes[:, 1])
            # normal examples get shapes of the real defects' sizes (relative to their source images)
            relative = extent / bank.source_sizes.float().amax(1)
            low, high = float(relative.min()), float(relative.max())
        else:
            low, high = 0.1, 0.4
        self.shapes = ShapeMask(shapes=("ellipse", "polygon", "blob"),
                                size_frac_range=(max(low, 0.02), min(max(high, low * 1.5, 0.05), 1.0)))

    def _uniform(self, n: int, low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=self.generator) * (high - low) + low

    def _flip(self, *tensors: torch.Tensor) -> List[torch.Tensor]:
        n = tensors[0].shape[0]
        horizontal = (torch.rand(n, generator=self.generator) < 0.5).view(-1, 1, 1, 1)
        vertical = (torch.rand(n, generator=self.generator) < 0.5).view(-1, 1, 1, 1)
        out = []
        for t in tensors:
            t = torch.where(horizontal, t.flip(-1), t)
            out.append(torch.where(vertical, t.flip(-2), t))
        return out

    def _jitter(self, boxes: torch.Tensor) -> torch.Tensor:
        """Windows around ``boxes`` with the context scaled by 0.8-1.25 and the centre moved by up to 10 %."""
        n = boxes.shape[0]
        windows = square_boxes(boxes, self.s.context, self.s.min_side)
        side = windows[:, 2] - windows[:, 0]
        scale = torch.exp(self._uniform(n, math.log(0.8), math.log(1.25)))
        shift = (torch.rand(n, 2, generator=self.generator) - 0.5) * 0.2 * side[:, None]
        centre = (windows[:, :2] + windows[:, 2:]) / 2 + shift
        half = (side * scale / 2)[:, None]
        return torch.cat([centre - half, centre + half], 1)

    def defects(self, n: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        entries = torch.randint(0, len(self.bank), (n,), generator=self.generator)
        windows = self._jitter(self.bank_boxes[entries])
        size = self.s.resolution
        images = crop(self.bank_images[entries], windows, size) / 127.5 - 1
        masks = (crop(self.bank_masks[entries], windows, size) > 0.5).float()
        masks = F.max_pool2d(masks, 3, 1, 1)  # one pixel of margin: the defect's own edge is generated too
        images, masks = self._flip(images, masks)
        classes = self.bank.types[entries] + 1  # bank type k -> model class id k + 1 ("normal" is 1)
        return images, masks, classes

    def normal(self, n: int) -> Tuple[torch.Tensor, torch.Tensor]:
        chosen = torch.randint(0, len(self.ok), (n,), generator=self.generator)
        images = self.ok[chosen].float()
        height, width = images.shape[-2:]
        params = self.shapes.sample(n, height, width, self.generator)
        coverage = self.shapes.draw(params, height, width, images.device) > 0
        boxes, non_empty = mask_boxes(coverage)
        # a shape that missed the image (rare) becomes a centred box of the smallest window
        fallback = torch.tensor([width / 2 - 4, height / 2 - 4, width / 2 + 4, height / 2 + 4])
        boxes = torch.where(non_empty[:, None], boxes, fallback)
        coverage = coverage | ~non_empty.view(-1, 1, 1, 1) & _box_mask(fallback, height, width)
        windows = self._jitter(boxes)
        size = self.s.resolution
        crops = crop(images, windows, size) / 127.5 - 1
        masks = (crop(coverage.float(), windows, size) > 0).float()
        crops, masks = self._flip(crops, masks)
        return crops, masks

    def windows(self, n: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Plain OK windows (unconditional models): sizes as for normal examples, no mask, no class."""
        crops, masks = self.normal(n)
        return crops, torch.ones_like(masks), torch.zeros(n, dtype=torch.long)

    def draw(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch = self.s.batch_size
        if self.s.kind == "unconditional":
            return self.windows(batch)
        normal = int(round(batch * self.s.normal_fraction))
        parts = [self.defects(batch - normal)]
        if normal:
            parts.append((*self.normal(normal), torch.full((normal,), self.model.class_id(NORMAL), dtype=torch.long)))
        crops, masks, classes = (torch.cat(x) for x in zip(*parts))
        dropped = torch.rand(batch, generator=self.generator) < self.s.class_dropout
        return crops, masks, torch.where(dropped, 0, classes)

    def noise(self, crops: torch.Tensor, timesteps: int) -> Tuple[torch.Tensor, torch.Tensor]:
        t = torch.randint(0, timesteps, (crops.shape[0],), generator=self.generator)
        return t, torch.randn(crops.shape, generator=self.generator)


def _box_mask(box: torch.Tensor, height: int, width: int) -> torch.Tensor:
    rows = torch.arange(height).view(-1, 1) + 0.5
    cols = torch.arange(width).view(1, -1) + 0.5
    return ((cols >= box[0]) & (cols < box[2]) & (rows >= box[1]) & (rows < box[3])).view(1, 1, height, width)


def train_inpaint(out: Union[str, Path], ok_images: torch.Tensor, bank: Optional[DefectBank] = None,
                  settings: InpaintTraining = InpaintTraining(), device: Union[str, torch.device] = "cpu",
                  progress: Optional[bool] = None, info: Optional[Dict[str, Any]] = None,
                  checkpoint_every: int = 500, resume: bool = True) -> InpaintModel:
    """Train an inpainting model and write its folder to ``out`` (loadable with :meth:`InpaintModel.load`).

    Args:
        out: the model folder; it also holds ``train.json`` (the settings) and ``checkpoint.pt``.
        ok_images: ``(N, C, H, W)`` uint8 OK images (normal examples; all examples of an unconditional model).
        bank: the real defects (conditional models); see :func:`split_shots` / :func:`subset_bank` to hold some out.
        settings: see :class:`InpaintTraining`.
        device: where to train.
        progress: show the progress bar (``None``: when stderr is a terminal).
        info: extra facts recorded in the model's ``info`` (e.g. the data and the held-out images).
        checkpoint_every: steps between checkpoints (and one after the last step).
        resume: continue from ``out/checkpoint.pt`` when it exists and was written with the same settings and
            data; ``ValueError`` naming the differing keys when the settings differ.
    """
    if not isinstance(ok_images, torch.Tensor) or ok_images.ndim != 4 or ok_images.dtype != torch.uint8 or \
            ok_images.shape[1] not in (1, 3) or len(ok_images) == 0:
        raise ValueError("ok_images must be a non-empty (N, C, H, W) uint8 tensor with C in (1, 3)")
    height, width = ok_images.shape[-2:]
    if min(height, width) < settings.resolution:
        raise ValueError(f"the OK images are {height}x{width} px, smaller than the model's {settings.resolution} px "
                         "windows; train at a smaller resolution")
    if settings.kind == "conditional" and bank is None:
        raise ValueError("a conditional model needs a bank of real defects (or train kind='unconditional')")
    if settings.kind == "unconditional":
        bank = None
    channels = ok_images.shape[1] if bank is None else bank.channels
    if ok_images.shape[1] != channels:
        ok_images = ok_images.expand(-1, 3, -1, -1).contiguous() if channels == 3 else \
            ok_images.float().mean(1, keepdim=True).round().to(torch.uint8)
    out = Path(out)
    record = {"settings": dataclasses.asdict(settings), "channels": channels,
              "defects": None if bank is None else bank.names, "ok_images": int(len(ok_images))}
    _check_resume(out, record, resume)
    model = InpaintModel.create(bank.class_names if bank is not None else (), resolution=settings.resolution,
                                channels=channels, conditional=settings.kind == "conditional",
                                width=settings.width, layers_per_block=settings.layers_per_block,
                                attention=settings.attention, context=settings.context, min_side=settings.min_side,
                                seed=settings.seed)
    model.to(device)
    unet = model.unet
    ema = copy.deepcopy(unet).requires_grad_(False)
    batches = _Batches(settings, ok_images, bank, model)
    optimiser = torch.optim.AdamW(unet.parameters(), lr=settings.learning_rate, weight_decay=0.0)
    warmup = max(settings.warmup, 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda t: min(1.0, (t + 1) / warmup))
    alphas = model.alphas_cumprod.to(device)
    timesteps = len(alphas)

    def step(i: int):
        crops, masks, classes = batches.draw()
        t, noise = batches.noise(crops, timesteps)
        crops, masks, classes, t, noise = (x.to(device) for x in (crops, masks, classes, t, noise))
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * crops + (1 - a).sqrt() * noise
        predicted = model.predict_noise(noisy, t, crops * (1 - masks), masks, classes)
        if settings.kind == "unconditional":
            return F.mse_loss(predicted.float(), noise), {}
        weight = masks + settings.outside_weight * (1 - masks)
        loss = (weight * (predicted.float() - noise) ** 2).mean() / weight.mean()
        return loss, {}

    def update_ema(record):
        decay = min(settings.ema_decay, (1 + loop.step) / (10 + loop.step))
        with torch.no_grad():
            for average, current in zip(ema.parameters(), unet.parameters()):
                average.lerp_(current, 1 - decay)

    def extra_state():
        return {"ema": {k: v.detach().cpu() for k, v in ema.state_dict().items()},
                "generator": batches.generator.get_state()}

    loop = TrainingLoop(unet, optimiser, schedule, label="train inpaint", progress=progress, callback=update_ema,
                        checkpoint=out / CHECKPOINT_FILE, checkpoint_every=checkpoint_every, extra_state=extra_state)
    out.mkdir(parents=True, exist_ok=True)
    if resume and (out / CHECKPOINT_FILE).is_file():
        extra = loop.restore()
        ema.load_state_dict(extra["ema"])
        batches.generator.set_state(extra["generator"])
    else:
        (out / SETTINGS_FILE).write_text(json.dumps(record, indent=2) + "\n")
    loop.run(settings.steps, step)
    losses = [r["loss"] for r in loop.history]
    tail = losses[-max(1, len(losses) // 10):]
    trained = InpaintModel(ema.eval(), model.alphas_cumprod, model.scheduler_config, model.class_names,
                           settings.resolution, settings.context, settings.min_side,
                           info={**(info or {}), "training": dataclasses.asdict(settings), "steps_done": loop.step,
                                 "final_loss": sum(tail) / len(tail) if tail else None,
                                 "defects": record["defects"], "ok_images": record["ok_images"]})
    trained.save(out)
    return trained


def _check_resume(out: Path, record: Dict[str, Any], resume: bool) -> None:
    file = out / SETTINGS_FILE
    if not (resume and file.is_file() and (out / CHECKPOINT_FILE).is_file()):
        return
    previous = json.loads(file.read_text())
    old, new = dict(previous), dict(record)
    old_settings, new_settings = old.pop("settings", {}), new.pop("settings", {})
    # more steps continue a finished run; anything else is another model
    old_settings.pop("steps", None)
    new_settings.pop("steps", None)
    differing = sorted(k for k in set(old_settings) | set(new_settings) if old_settings.get(k) != new_settings.get(k))
    differing += sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if differing:
        raise ValueError(f"{str(out)!r} holds a training run with other settings ({', '.join(differing)} differ); "
                         "use another --out folder or delete it")
