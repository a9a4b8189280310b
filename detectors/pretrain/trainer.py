"""The pretraining run: OK images -> a self-supervised backbone in a folder, with checkpoints and resume.

:func:`pretrain` reads the OK images, builds the trunk (:mod:`.backbones`), the method's heads
(:mod:`.methods`), the views (:mod:`.views`) and the optional defect-aware parts (:mod:`.defect_aware`), and
trains them with :class:`defectgen.training.TrainingLoop` (AdamW, linear warm-up then cosine decay). Every random
draw of step ``i`` (which images, their views, their defects) comes from seeds derived from ``(seed, i)``
(:func:`defectgen.rng.index_seed`), and the network, optimiser, schedule and momentum encoders are in the
checkpoint, so a resumed run ends with the backbone an uninterrupted one gives.

The folder ``out`` gets ``backbone.pt`` (the trunk, torchvision layout: see :mod:`.backbones`),
``pretrain.json`` (settings, per-step history, images seen), ``report.md`` with ``curves.png``, and
``checkpoint.pt``. Each step records the loss, the self-supervised loss, the collapse guard ``output_std``
(:func:`.methods.output_std`) and, with a pretext head, its loss and accuracy; BYOL and MoCo add the momentum.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from defectgen.checks import check_int, check_number, resolve_device
from defectgen.result import DefectBatch
from defectgen.rng import index_seed
from defectgen.run_folder import differing_keys, name_keys, write_record
from defectgen.training import TrainingLoop, cosine_schedule

from ..data import load_normal_images
from .backbones import build_trunk, check_backbone_name, recalibrate_batch_norm, save_backbone
from .defect_aware import HardNegatives, PretextTask, check_negatives_method
from .methods import Negatives, check_method_name, create_method, output_std
from .report import write_report
from .views import TwoViews

DEFAULT_LR = 1e-3
WEIGHT_DECAY = 1e-4
CHECKPOINT, BACKBONE, RECORD = "checkpoint.pt", "backbone.pt", "pretrain.json"


class PretrainNet(nn.Module):
    """Everything that trains: the trunk, the method's heads (and momentum encoder), the optional pretext head."""

    def __init__(self, trunk: nn.Module, method: nn.Module, pretext: Optional[PretextTask]):
        super().__init__()
        self.trunk, self.method, self.pretext = trunk, method, pretext


class StepBatches:
    """Step ``i``'s inputs from ``(seed, i)`` alone: ``batch(i) -> (view1, view2, negatives, defects)``.

    ``images``: ``(N, C, H, W)`` OK images (uint8, or float in [0, 1]) on the training device. Each step takes
    ``batch_size`` distinct images (with replacement only when there are fewer), two views of them and, with
    ``negatives``, each view 1's defective copy (``defects`` is the operator's result, whose params replay it).
    """

    def __init__(self, images: torch.Tensor, batch_size: int, image_size: int, seed: int,
                 negatives: Optional[HardNegatives] = None):
        self.images, self.batch_size, self.seed, self.negatives = images, batch_size, seed, negatives
        self.views = TwoViews(image_size)

    def generator(self, step: int, stream: str) -> torch.Generator:
        return torch.Generator().manual_seed(index_seed(self.seed, step, stream))

    def batch(self, step: int) -> Tuple[torch.Tensor, torch.Tensor, Optional[Negatives], Optional[DefectBatch]]:
        n, g = len(self.images), self.generator(step, "images")
        index = torch.randperm(n, generator=g)[:self.batch_size] if n >= self.batch_size else \
            torch.randint(n, (self.batch_size,), generator=g)
        chosen = self.images[index.to(self.images.device)]
        clean = chosen.float() / 255 if chosen.dtype == torch.uint8 else chosen.float()  # a tensor may be [0, 1]
        view1, view2 = self.views(clean, index_seed(self.seed, step, "views"))
        if self.negatives is None:
            return view1, view2, None, None
        negatives, defects = self.negatives(view1, self.generator(step, "negatives"))
        return view1, view2, negatives, defects


def check_out_folder(out: Path, resume: bool) -> None:
    """``out`` must be new or empty, or hold the checkpoint of the run to resume."""
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise ValueError(f"resume: {str(out)!r} holds no {CHECKPOINT} to resume from")
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"out folder {str(out)!r} is not empty (resume=True continues the run it holds)")


def pretrain(ok: Union[str, Path, torch.Tensor], method: str = "simsiam", backbone: str = "resnet18",
             image_size: int = 224, steps: int = 5000, batch_size: int = 64, lr: Optional[float] = None,
             seed: int = 0, out: Union[str, Path] = "pretrain", negatives: Optional[Sequence[Any]] = None,
             negatives_recipe: Optional[Union[str, Path]] = None, negative_weight: float = 1.0,
             pretext: Optional[Sequence[Any]] = None, pretext_recipe: Optional[Union[str, Path]] = None,
             pretext_weight: float = 1.0, weights: Optional[Union[str, Path]] = None, channels: int = 3,
             checkpoint_every: int = 100, resume: bool = False, progress: Optional[bool] = None,
             device: Union[str, torch.device] = "auto", callback: Optional[Callable[[Dict[str, float]], None]] = None,
             ) -> Dict[str, Any]:
    """Pretrain ``backbone`` on the OK images ``ok`` with ``method``; write the folder ``out``; return its record.

    Args:
        ok: OK images: an MVTec category (its ``train/good``), any folder of images, or a ``(N, C, S, S)`` tensor.
        method: ``simclr``, ``byol``, ``simsiam`` or ``moco`` (MoCo v3).
        backbone: ``resnet18``, ``resnet50``, ``mobilenet_v3_large`` or ``mobilenet_v3_small``.
        image_size: images are resized to this square side; the views have it too.
        lr: AdamW's peak learning rate (default 1e-3), reached after a linear warm-up over 10 % of the steps
            (at most 500), then decayed on a cosine.
        negatives / negatives_recipe: operator names (configs) or a recipe file: hard negatives, SimCLR and MoCo
            only; ``negative_weight``: their weight in the denominator.
        pretext / pretext_recipe: operators of the auxiliary pretext head (one class each), any method;
            ``pretext_weight``: its loss's factor.
        weights: a local backbone file to start from (default: random initialisation, seeded by ``seed``).
        checkpoint_every: write ``checkpoint.pt`` every this many steps (and after the last).
        resume: continue the run whose checkpoint ``out`` holds (same settings); ends as the uninterrupted run.
        callback: called after every step with its record.
    """
    method = check_method_name(method)
    backbone = check_backbone_name(backbone)
    steps, seed = check_int(steps, "steps", 1), check_int(seed, "seed")
    batch_size, image_size = check_int(batch_size, "batch_size", 2), check_int(image_size, "image_size", 16)
    checkpoint_every, channels = check_int(checkpoint_every, "checkpoint_every", 0), check_int(channels, "channels")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    lr = DEFAULT_LR if lr is None else check_number(lr, "learning_rate", 0.0, low_open=True)
    hard = None
    if negatives or negatives_recipe is not None:
        check_negatives_method(method)
        hard = HardNegatives(negatives, negatives_recipe, negative_weight)
    out = Path(out)
    check_out_folder(out, resume)
    device = resolve_device(device)
    images = load_normal_images(ok, image_size, channels).to(device)

    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the global stream
        torch.manual_seed(seed)
        trunk = build_trunk(backbone, weights)
        heads = create_method(method, trunk, trunk.width)
        task = None
        if pretext or pretext_recipe is not None:
            task = PretextTask(trunk.width, pretext, pretext_recipe, pretext_weight)
    network = PretrainNet(trunk, heads, task).to(device)
    settings = {"method": method, "backbone": backbone, "image_size": image_size, "steps": steps,
                "batch_size": batch_size, "learning_rate": lr, "weight_decay": WEIGHT_DECAY, "seed": seed,
                "channels": channels, "ok": str(ok) if not isinstance(ok, torch.Tensor) else "tensor",
                "ok_images": len(images), "weights": None if weights is None else str(weights),
                "negatives": None if hard is None else hard.describe(),
                "pretext": None if task is None else task.describe()}

    batches = StepBatches(images, batch_size, image_size, seed, hard)
    optimiser = torch.optim.AdamW([p for p in network.parameters() if p.requires_grad], lr=lr,
                                  weight_decay=WEIGHT_DECAY)
    warmup = max(1, min(steps // 10, 500))
    loop = TrainingLoop(network, optimiser, cosine_schedule(optimiser, steps, warmup), label=f"pretrain {method}",
                        progress=progress, checkpoint=out / CHECKPOINT, checkpoint_every=checkpoint_every,
                        extra_state=lambda: {"settings": settings}, postfix=_postfix)
    if resume:
        extra = loop.restore()
        changed = differing_keys(extra["settings"], settings)
        if changed:
            raise ValueError(f"resume: {str(out)!r} was started with other settings ({name_keys(changed, 5)})")

    def step(i: int):
        view1, view2, hard_negatives, _ = batches.batch(i)
        result = network.method(network.trunk, view1, view2, hard_negatives)
        extras: Dict[str, Any] = {"ssl_loss": result.loss.detach(), "output_std": output_std(result.outputs)}
        loss = result.loss
        if network.pretext is not None:
            pretext_loss, accuracy = network.pretext(network.trunk, view1, batches.generator(i, "pretext"))
            loss = loss + network.pretext.weight * pretext_loss
            extras.update(pretext_loss=pretext_loss.detach(), pretext_accuracy=accuracy)
        return loss, extras

    def after_step(record: Dict[str, float]) -> None:  # after the optimiser's step, before the checkpoint
        momentum = network.method.after_step(network.trunk, loop.step, steps)
        if momentum is not None:
            record["momentum"] = momentum  # the history holds this very dict
        if callback is not None:
            callback(record)

    loop.callback = after_step
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    loop.run(steps, step)
    seconds = time.perf_counter() - started

    recalibrated = recalibrate_batch_norm(trunk, images, batch_size)  # statistics that match the saved weights
    save_backbone(trunk, out / BACKBONE)
    record = {"settings": settings, "history": loop.history, "images_seen": steps * batch_size,
              "views_seen": 2 * steps * batch_size, "feature_width": trunk.width,
              "healthy_output_std": 1 / math.sqrt(heads.output_dim), "batch_norm_recalibrated_on": recalibrated,
              "seconds_this_run": round(seconds, 3), "backbone": BACKBONE}
    write_record(out / RECORD, record, indent=1)
    write_report(out, record)
    return record


def _postfix(record: Dict[str, float]) -> str:
    text = f"loss {record['loss']:.3f} std {record['output_std']:.3f}"
    if "pretext_accuracy" in record:
        text += f" pretext acc {record['pretext_accuracy']:.2f}"
    return text


__all__ = ["pretrain", "PretrainNet", "StepBatches", "check_out_folder", "DEFAULT_LR", "CHECKPOINT", "BACKBONE",
           "RECORD"]
