"""Self-supervised backbones for the detectors, at equal total compute: CutPaste on bottle, a frozen-feature
probe, Faster R-CNN on DeepPCB.

    python benchmarks/bench_pretrain.py                                  # CPU budget, every part (hours: see below)
    python benchmarks/bench_pretrain.py --parts cutpaste probe --methods simclr simsiam --views plain negatives \\
        --shard 1/2 --json s1.json                                       # one of two processes; then --merge
    python benchmarks/bench_pretrain.py --merge s1.json s2.json --json docs/results/pretrain_cpu.json
    python benchmarks/bench_pretrain.py --budget gpu --device cuda

**Equal training cost, counted in images seen** (images through the trained network, each view and each defective
copy counted). The random-init detector trains S + R steps; an SSL-initialised one trains S steps from a backbone
pretrained on the images of the R steps it gives up (``--pretrain-share`` R): P = R x (detector images per step) /
(SSL images per step), rounded down. A CutPaste 3way step forwards 3 x batch images (the normals and two defective
copies of each), a Faster R-CNN step its batch; an SSL step forwards 2 x batch views, plus a batch of hard
negatives (``negatives``: 3 x batch) or plus the pretext head's normals and one defective copy per operator
(``pretext``, two operators: 5 x batch). The momentum encoders of BYOL and MoCo (no gradient) are not counted:
their cost is in the seconds each row gives (pretraining + training).

Parts (``--parts``):

- ``cutpaste``: the CutPaste detector (3-way pretext) on bottle (``--data``), random init vs initialised from each
  backbone of ``--methods`` x ``--views``; image AUROC, pixel AUROC and AUPRO (FPR 0.3) of
  :func:`detectors.evaluation.evaluate_detector`, evaluated once at the end of the budget, per seed and
  mean +- std. Pretraining sees bottle's ``train/good`` only, never a test image.
- ``probe``: kNN and linear-probe separability (balanced accuracy, probe AUROC; cross-validated) of bottle's
  real test defects from its defect-free test images, on the frozen pooled features of each backbone of the same
  run (random init and each SSL backbone, per seed), by :mod:`detectors.features`. A diagnostic on test images:
  nothing here may be chosen by it.
- ``fasterrcnn``: Faster R-CNN (MobileNet-v3-large body) on DeepPCB (``--pcb``), trained on 20 real images
  (``choose_real``), on ``recipes/pcb_defects.yaml`` painted on the training templates, and on both, from random
  init vs a ``mobilenet_v3_large`` pretrained on the training templates (DeepPCB's OK images) only; class-agnostic
  mAP@50 on the 100 test pairs (the split and the data of ``bench_object.py``). The most expensive part: its CPU
  budget is small: one seed, 200 detector steps of 4 images at 320 px from random init against 25 pretraining
  steps of 8 templates and 100 detector steps (``bench_object.py``'s CPU budget trains 225), about an hour on one
  core. Its runs go data set by data set (``synth_pcb+real20`` first), so a stopped run has whole rows.

Views (``--views``, or ``--ssl METHOD/VIEW ...`` for a list of backbones): ``plain`` (the method alone),
``negatives`` (hard negatives made with ``cutpaste`` and ``scar``; SimCLR and MoCo only, skipped for the others),
``pretext`` (an auxiliary pretext head on ``cutpaste`` and ``scar``; any method). See docs/pretrain.md.

Budgets (every value has its flag):

- ``cpu``: bottle at 128 px, R = 50 + S = 50 CutPaste steps of 32 images (the random-init row trains 100:
  ``bench_cutpaste.py``'s CPU budget; 9,600 images), so P = 75 plain, 50 with hard negatives, 30 with the
  pretext head, seeds 0 1 2; DeepPCB at 320 px, R = 100 + S = 100 steps of 4 images, pretraining on 8 templates
  per step at 224 px (P = 25 plain), seed 0.
- ``gpu``: bottle at 256 px, R = 1000 + S = 1672 steps (the paper's 256 epochs), seeds 0-4; DeepPCB at 640 px,
  R = 900 + S = 900 steps of 8 images, pretraining on 32 templates per step at 320 px (P = 112 plain), seeds
  0 1 2.

``--reuse RAW`` takes the runs of an earlier raw file that did exactly what a planned run would do (the same id,
steps and settings) instead of running them again, and records where they came from.

Backbones go to ``--work`` (reused when their folder already holds one of the same settings). ``--json PATH``
writes the raw results file (``benchmarks/raw_results.py``) after every finished run; ``--resume`` continues it,
skipping the runs it holds. ``--shard k/N`` runs the k-th of N balanced shares of the runs (a backbone and every
run that uses it stay in one share), for N processes with one thread each; ``--merge A.json B.json --json OUT``
joins their files. ``render_tables(raw)`` renders the tables the script prints.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

from raw_results import command_line, markdown_table, read_raw, write_raw  # noqa: E402

BENCHMARK = "bench_pretrain"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "mvtec_bottle_256"
DEFAULT_PCB = REPO.parent / "shared" / "data" / "deeppcb_400"
PARTS = ("cutpaste", "probe", "fasterrcnn")
METHODS = ("simclr", "byol", "simsiam", "moco")
CONTRASTIVE = ("simclr", "moco")
VIEWS = ("plain", "negatives", "pretext")
DEFECT_OPS = ["cutpaste", "scar"]  # the defect-aware views' operators (hard negatives, pretext head)
METRICS = ("image_auroc", "pixel_auroc", "aupro")
PROBE_METRICS = ("knn_accuracy", "probe_accuracy", "probe_auroc")
PCB_DATA = ("synth_pcb+real20", "real20", "synth_pcb")  # bench_object.py's runs of the same names; the target's first
RANDOM = "random"
RANDOM_SHORT = "random-short"  # a control, not an equal-cost row: random init trained only the S steps an SSL run does
RANDOMS = (RANDOM, RANDOM_SHORT)
BUDGETS: Dict[str, Dict[str, Any]] = {
    "cpu": {"image_size": 128, "pretrain_share": 50, "steps": 50, "batch_size": 32, "seeds": [0, 1, 2],
            "rcnn_image_size": 320, "rcnn_pretrain_size": 224, "rcnn_pretrain_share": 100, "rcnn_steps": 100,
            "rcnn_batch_size": 4, "rcnn_pretrain_batch": 8, "rcnn_seeds": [0], "rcnn_ssl_trainable_layers": 6,
            "rcnn_backbone_norm": "group"},
    "gpu": {"image_size": 256, "pretrain_share": 1000, "steps": 1672, "batch_size": 32, "seeds": [0, 1, 2, 3, 4],
            "rcnn_image_size": 640, "rcnn_pretrain_size": 320, "rcnn_pretrain_share": 900, "rcnn_steps": 900,
            "rcnn_batch_size": 8, "rcnn_pretrain_batch": 32, "rcnn_seeds": [0, 1, 2], "rcnn_ssl_trainable_layers": 6,
            "rcnn_backbone_norm": "group"},
}
RULE = ("equal training cost, counted in images seen: the random-init detector trains S + R steps; an SSL one "
        "pretrains on the images of the R steps it gives up, then trains S (the seconds are in each row)")
CUTPASTE_IMAGES = 3  # images a CutPaste 3way step forwards per batch image: the normal and two defective copies
SSL_IMAGES = {"plain": 2, "negatives": 3, "pretext": 2 + 1 + len(DEFECT_OPS)}  # per batch image, by view
PROBE_NOTE = ("probe: a diagnostic on bottle's TEST images (defect-free vs real defects, frozen features, "
              "cross-validated); nothing may be chosen by it")

# Seconds per step, one torch thread, for the time estimate printed before a run starts. SSL: ResNet-18, 64 px,
# batch 32 (measured for the pretraining work); the CutPaste 3-way step and evaluation at 128 px and the Faster
# R-CNN step at 320 px, batch 4, measured here. Everything scales with pixels x batch.
SSL_STEP_64 = {"simclr": 0.75, "simsiam": 0.75, "moco": 0.97, "byol": 1.02}
NEGATIVES_FACTOR = 1.55  # with hard negatives: ~1.1-1.2 s against SimCLR's 0.75
PRETEXT_EXTRA_64 = 1.0   # the pretext head: 1.74 s against ~0.75
MOBILENET_FACTOR = 0.8   # mobilenet_v3_large against resnet18, same images (depthwise convolutions on CPU)
CUTPASTE_STEP_128 = 4.2
CUTPASTE_EVAL_128 = 8.0  # density fit + evaluation of the 83 test images with maps
PROBE_128 = 10.0
RCNN_STEP_320 = 3.5
RCNN_EVAL_320 = 40.0


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--views", nargs="+", choices=VIEWS, default=list(VIEWS),
                   help="plain, negatives (hard negatives, contrastive methods only), pretext (auxiliary head)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MVTec-layout category (cutpaste, probe)")
    p.add_argument("--pcb", type=Path, default=DEFAULT_PCB, help="DeepPCB folder (fasterrcnn)")
    p.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    p.add_argument("--seeds", nargs="+", type=int, help="cutpaste / probe seeds (default: the budget's)")
    p.add_argument("--ssl", nargs="+", metavar="METHOD/VIEW",
                   help="the SSL backbones of the cutpaste / probe parts (default: every --methods x --views)")
    p.add_argument("--pretrain-share", type=int,
                   help="R, cutpaste / probe: the CutPaste steps whose images an SSL run spends on pretraining "
                        "(default: the budget's)")
    p.add_argument("--steps", type=int, help="S, CutPaste training steps after pretraining (default: the budget's)")
    p.add_argument("--image-size", type=int, help="cutpaste / probe image side (default: the budget's)")
    p.add_argument("--batch-size", type=int, help="OK images per pretraining and CutPaste step (default: budget's)")
    p.add_argument("--rcnn-seeds", nargs="+", type=int, help="fasterrcnn seeds (default: the budget's)")
    p.add_argument("--rcnn-pretrain-share", type=int,
                   help="R of the fasterrcnn part, in detector steps (default: the budget's)")
    p.add_argument("--rcnn-pretrain-batch", type=int, help="templates per pretraining step (default: the budget's)")
    p.add_argument("--rcnn-ssl-trainable-layers", type=int,
                   help="backbone blocks an SSL-initialised Faster R-CNN trains (default: the budget's, all 6)")
    p.add_argument("--rcnn-backbone-norm", choices=("frozen", "group"),
                   help="how an SSL backbone's batch norms enter Faster R-CNN (its backbone_norm; default: the "
                        "budget's, group)")
    p.add_argument("--rcnn-steps", type=int, help="S of the fasterrcnn part, detector steps (default: budget's)")
    p.add_argument("--rcnn-image-size", type=int, help="Faster R-CNN image side (default: the budget's)")
    p.add_argument("--rcnn-pretrain-size", type=int, help="template side when pretraining (default: budget's)")
    p.add_argument("--rcnn-control", action="store_true",
                   help="add a control row to the fasterrcnn part: random init trained only the S steps an SSL run "
                        "trains (separates the steps given up from the starting weights; not an equal-cost row)")
    p.add_argument("--rcnn-ssl", nargs="+", metavar="METHOD/VIEW",
                   help="the SSL backbones of the fasterrcnn part (default: the first --methods entry, plain)")
    p.add_argument("--limit", type=int, help="at most N OK images for pretraining and training, N test pairs "
                                             "(smoke runs)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--work", type=Path, help="where backbones go (default: runs/bench_pretrain/<budget>)")
    p.add_argument("--json", type=Path, help="the raw results file, rewritten after every finished run")
    p.add_argument("--resume", action="store_true", help="continue --json's file, skipping the runs it holds")
    p.add_argument("--reuse", nargs="+", type=Path, metavar="RAW",
                   help="take the runs of these earlier raw files that did exactly what a planned run does")
    p.add_argument("--shard", help="k/N: run the k-th of N balanced shares of the runs (N processes)")
    p.add_argument("--merge", nargs="+", type=Path, metavar="RAW", help="join these raw files into --json; no run")
    return p.parse_args(argv)


def error(message: str) -> None:
    print(f"bench_pretrain: error: {message}", file=sys.stderr)
    raise SystemExit(2)


# -- what to run ----------------------------------------------------------------------------------------------------
def settings(args: argparse.Namespace) -> Dict[str, Any]:
    budget = dict(BUDGETS[args.budget])
    for key in ("seeds", "pretrain_share", "steps", "image_size", "batch_size", "rcnn_seeds", "rcnn_pretrain_share",
                "rcnn_pretrain_batch", "rcnn_steps", "rcnn_image_size", "rcnn_pretrain_size",
                "rcnn_ssl_trainable_layers", "rcnn_backbone_norm"):
        if getattr(args, key) is not None:
            budget[key] = getattr(args, key)
    for key in ("pretrain_share", "steps", "rcnn_pretrain_share", "rcnn_pretrain_batch", "rcnn_steps"):
        if budget[key] < 1:
            error(f"--{key.replace('_', '-')} must be >= 1, got {budget[key]}")
    from defectgen.checks import resolve_device
    from detectors.rcnn.network import GROUP_NORM_CONVERSION

    if budget["rcnn_backbone_norm"] == "group":  # an older conversion's runs are not this one's
        budget["group_norm_conversion"] = GROUP_NORM_CONVERSION
    budget.update(budget=args.budget, device=str(resolve_device(args.device)), limit=args.limit,
                  defect_ops=DEFECT_OPS, rule=RULE, data=str(args.data), pcb=str(args.pcb))
    return budget


def checked_configs(configs: Sequence[str], flag: str) -> List[str]:
    for config in configs:
        method, _, view = config.partition("/")
        if method not in METHODS or view not in VIEWS:
            error(f"{flag} {config!r}: expected METHOD/VIEW with METHOD in {list(METHODS)}, VIEW in {list(VIEWS)}")
        if view == "negatives" and method not in CONTRASTIVE:
            error(f"{flag} {config!r}: hard negatives apply only to {', '.join(CONTRASTIVE)}")
    return list(dict.fromkeys(configs))


def ssl_configs(args: argparse.Namespace) -> List[str]:
    """``method/view`` of every bottle SSL backbone (``--ssl``, else ``--methods`` x ``--views``; hard negatives only
    for the contrastive methods)."""
    if args.ssl:
        return checked_configs(args.ssl, "--ssl")
    return [f"{m}/{v}" for m in args.methods for v in args.views if v != "negatives" or m in CONTRASTIVE]


def rcnn_configs(args: argparse.Namespace) -> List[str]:
    return checked_configs(args.rcnn_ssl or [f"{args.methods[0]}/plain"], "--rcnn-ssl")


def pretrain_steps(init: str, share: int, detector_images: int, batch: int) -> int:
    """P: the SSL steps whose images equal those of ``share`` detector steps of ``detector_images`` images each (0
    for random init)."""
    if init in RANDOMS:
        return 0
    images = SSL_IMAGES[init.split("/")[1]] * batch
    steps = share * detector_images // images
    if steps < 1:
        error(f"{init}: a pretraining share of {share} detector steps ({share * detector_images} images) is less than "
              f"one SSL step ({images} images): raise the share or lower the pretraining batch")
    return steps


def bottle_steps(init: str, s: Dict[str, Any]) -> Tuple[int, int]:
    """``(P, detector steps)`` of a bottle run."""
    if init == RANDOM:
        return 0, s["steps"] + s["pretrain_share"]
    return pretrain_steps(init, s["pretrain_share"], CUTPASTE_IMAGES * s["batch_size"], s["batch_size"]), s["steps"]


def pcb_steps(init: str, s: Dict[str, Any]) -> Tuple[int, int]:
    """``(P, detector steps)`` of a DeepPCB run."""
    if init == RANDOM:
        return 0, s["rcnn_steps"] + s["rcnn_pretrain_share"]
    if init == RANDOM_SHORT:
        return 0, s["rcnn_steps"]
    return (pretrain_steps(init, s["rcnn_pretrain_share"], s["rcnn_batch_size"], s["rcnn_pretrain_batch"]),
            s["rcnn_steps"])


def label(init: str) -> str:
    if init == RANDOM:
        return "random init"
    if init == RANDOM_SHORT:
        return "random init, S steps only (control: an SSL run's detector steps, less cost)"
    method, view = init.split("/")
    name = {"simclr": "SimCLR", "byol": "BYOL", "simsiam": "SimSiam", "moco": "MoCo v3"}[method]
    ops = ", ".join(DEFECT_OPS)
    return name + {"plain": "", "negatives": f" + hard negatives ({ops})", "pretext": f" + pretext head ({ops})"}[view]


def ssl_seconds(init: str, size: int, batch: int, steps: int, mobilenet: bool = False) -> float:
    method, view = init.split("/")
    per = SSL_STEP_64[method] * (NEGATIVES_FACTOR if view == "negatives" else 1.0)
    per += PRETEXT_EXTRA_64 if view == "pretext" else 0.0
    return per * (size / 64) ** 2 * batch / 32 * steps * (MOBILENET_FACTOR if mobilenet else 1.0)


def plan(args: argparse.Namespace, s: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Groups of runs that share a backbone (so a shard keeps a backbone and its users together), with their
    estimated seconds at one thread."""
    groups = []
    bottle = [p for p in ("cutpaste", "probe") if p in args.parts]
    if bottle:
        pixels = (s["image_size"] / 128) ** 2
        for seed in s["seeds"]:
            for init in [RANDOM] + ssl_configs(args):
                ssl_steps, steps = bottle_steps(init, s)
                cost = 0.0 if init == RANDOM else ssl_seconds(init, s["image_size"], s["batch_size"], ssl_steps)
                runs = []
                if "cutpaste" in bottle:
                    runs.append(f"cutpaste|{init}|seed{seed}")
                    cost += pixels * (CUTPASTE_STEP_128 * s["batch_size"] / 32 * steps + CUTPASTE_EVAL_128)
                if "probe" in bottle:
                    runs.append(f"probe|{init}|seed{seed}")
                    cost += pixels * PROBE_128
                groups.append({"id": f"bottle|{init}|seed{seed}", "runs": runs, "seconds": cost})
    if "fasterrcnn" in args.parts:
        pixels = (s["rcnn_image_size"] / 320) ** 2 * s["rcnn_batch_size"] / 4
        for seed in s["rcnn_seeds"]:
            for init in [RANDOM] + ([RANDOM_SHORT] if args.rcnn_control else []) + rcnn_configs(args):
                ssl_steps, steps = pcb_steps(init, s)
                cost = 0.0 if init in RANDOMS else ssl_seconds(init, s["rcnn_pretrain_size"], s["rcnn_pretrain_batch"],
                                                              ssl_steps, mobilenet=True)
                cost += len(PCB_DATA) * (RCNN_STEP_320 * pixels * steps + RCNN_EVAL_320)
                groups.append({"id": f"pcb|{init}|seed{seed}", "seconds": cost,
                               "runs": [f"fasterrcnn|{data}|{init}|seed{seed}" for data in PCB_DATA]})
    return groups


def shard(groups: List[Dict[str, Any]], spec: Optional[str]) -> Tuple[List[Dict[str, Any]], List[float]]:
    """The groups of share ``k/N`` (longest first, each to the least loaded share: the same on every process) and
    every share's estimated seconds."""
    if spec is None:
        return groups, [sum(g["seconds"] for g in groups)]
    try:
        k, n = (int(x) for x in spec.split("/"))
    except ValueError:
        error(f"--shard expects k/N (e.g. 1/2), got {spec!r}")
    if not 1 <= k <= n:
        error(f"--shard {spec}: k must be in 1..N")
    loads, mine = [0.0] * n, []
    for group in sorted(groups, key=lambda g: (-g["seconds"], g["id"])):
        share = loads.index(min(loads))
        loads[share] += group["seconds"]
        if share == k - 1:
            mine.append(group)
    order = {g["id"]: i for i, g in enumerate(groups)}
    return sorted(mine, key=lambda g: order[g["id"]]), loads


# -- runs of earlier files ------------------------------------------------------------------------------------------
BOTTLE_KEYS = ("image_size", "batch_size", "data", "limit", "device", "defect_ops")
PCB_KEYS = ("rcnn_image_size", "rcnn_pretrain_size", "rcnn_batch_size", "rcnn_pretrain_batch", "pcb", "limit",
            "device", "defect_ops")
# how an SSL-initialised Faster R-CNN trains (random init: unused)
PCB_SSL_KEYS = ("rcnn_ssl_trainable_layers", "rcnn_backbone_norm", "group_norm_conversion")


def reusable(paths: Sequence[Path], s: Dict[str, Any]) -> Tuple[Dict[str, Dict[str, Any]], Dict[str, Any]]:
    """The runs of earlier raw files that did exactly what this run's plan does (same id, the settings that shape a
    run, the same pretraining and detector steps), each marked with its file, and their pretraining summaries."""
    found: Dict[str, Dict[str, Any]] = {}
    pretrained: Dict[str, Any] = {}
    for path in paths:
        try:
            raw = read_raw(path)
        except (OSError, ValueError) as exc:
            error(f"--reuse {path}: {exc}")
        if raw["benchmark"] != BENCHMARK:
            error(f"--reuse {path}: a {raw['benchmark']} file, not {BENCHMARK}")
        old = raw["results"]["settings"]
        for run in raw["results"]["runs"]:
            pcb = run["part"] == "fasterrcnn"
            keys = (PCB_KEYS + (PCB_SSL_KEYS if run["init"] not in RANDOMS else ())) if pcb else BOTTLE_KEYS
            if run["id"] in found or any(old.get(k) != s[k] for k in keys):
                continue
            ssl_steps, steps = (pcb_steps if pcb else bottle_steps)(run["init"], s)
            if run["pretrain_steps"] != ssl_steps or run.get("train_steps", steps) != steps:
                continue
            batch, pre_batch = (s["rcnn_batch_size"], s["rcnn_pretrain_batch"]) if pcb else \
                (CUTPASTE_IMAGES * s["batch_size"], s["batch_size"])
            view = run["init"].split("/")[-1]
            run = {**run, "reused_from": str(path)}
            if run["part"] != "probe":
                run["images_seen"] = {"pretrain": ssl_steps * SSL_IMAGES.get(view, 0) * pre_batch,
                                      "train": steps * batch}
            found[run["id"]] = run
            key = f"{'pcb' if pcb else 'bottle'}|{run['init']}|seed{run['seed']}"
            if key in raw["results"].get("pretrained", {}):
                pretrained[key] = raw["results"]["pretrained"][key]
    return found, pretrained


# -- the runs -------------------------------------------------------------------------------------------------------
class Runner:
    def __init__(self, args: argparse.Namespace, s: Dict[str, Any]):
        self.args, self.s = args, s
        self.work = args.work or REPO / "runs" / "bench_pretrain" / args.budget
        self.pretrained: Dict[str, Dict[str, Any]] = {}
        self._cache: Dict[str, Any] = {}

    def cached(self, key: str, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    # backbones
    def backbone(self, init: str, seed: int, ok, arch: str, size: int, steps: int, batch: int, tag: str) -> Path:
        """``backbone.pt`` of SSL config ``init`` pretrained on ``ok`` (reused when its folder holds one with the
        same settings; resumed from its checkpoint when it was stopped)."""
        from detectors.pretrain.trainer import BACKBONE, CHECKPOINT, RECORD, pretrain

        method, view = init.split("/")
        folder = self.work / f"{tag}-{arch}-{method}-{view}-{size}px-{steps}x{batch}-seed{seed}"
        key = f"{tag}|{init}|seed{seed}"
        if (folder / BACKBONE).is_file() and (folder / RECORD).is_file():
            record = json.loads((folder / RECORD).read_text())
            wanted = {"method": method, "backbone": arch, "image_size": size, "steps": steps, "batch_size": batch,
                      "seed": seed}
            if all(record["settings"].get(k) == v for k, v in wanted.items()):
                self.pretrained.setdefault(key, summarise_pretraining(record, reused=True))
                return folder / BACKBONE
            error(f"{folder} holds a backbone of other settings: remove it or pass another --work")
        resume = (folder / CHECKPOINT).is_file()
        extra = {"negatives": DEFECT_OPS} if view == "negatives" else {"pretext": DEFECT_OPS} if view == "pretext" \
            else {}
        print(f"  pretraining {label(init)} ({arch}, {size} px, {steps} steps x {batch}, seed {seed})"
              + (" (resumed)" if resume else ""), flush=True)
        record = pretrain(ok, method=method, backbone=arch, image_size=size, steps=steps, batch_size=batch,
                          seed=seed, out=folder, resume=resume, progress=False, device=self.s["device"], **extra)
        self.pretrained[key] = summarise_pretraining(record, reused=False)
        return folder / BACKBONE

    def bottle_ok(self):
        """bottle's train/good (a tensor when --limit cuts it, else the folder, as bench_cutpaste.py reads it)."""
        if self.s["limit"] is None:
            return self.args.data
        from detectors.data import load_normal_images

        return self.cached("bottle_ok", lambda: load_normal_images(self.args.data, self.s["image_size"], 3,
                                                                   self.s["limit"]))

    def bottle_backbone(self, init: str, seed: int) -> Optional[Path]:
        if init == RANDOM:
            return None
        s = self.s
        return self.backbone(init, seed, self.bottle_ok(), "resnet18", s["image_size"], bottle_steps(init, s)[0],
                             s["batch_size"], "bottle")

    # parts
    def cutpaste(self, init: str, seed: int) -> Dict[str, Any]:
        from detectors.cutpaste import CutPasteDetector
        from detectors.evaluation import evaluate_detector

        s = self.s
        weights = self.bottle_backbone(init, seed)
        ssl_steps, steps = bottle_steps(init, s)
        detector = CutPasteDetector(pretext="3way", image_size=s["image_size"], batch_size=s["batch_size"],
                                    seed=seed, weights=weights)
        start = time.perf_counter()
        detector.fit(self.bottle_ok(), steps=steps, device=s["device"], progress=False)
        train_s = time.perf_counter() - start
        report = evaluate_detector(detector, self.args.data, pixel=True)
        return {"train_steps": steps, "pretrain_steps": ssl_steps,
                "images_seen": {"pretrain": ssl_steps * SSL_IMAGES.get(init.split("/")[-1], 0) * s["batch_size"],
                                "train": steps * CUTPASTE_IMAGES * s["batch_size"]},
                "train_s": round(train_s, 1), "eval_s": report["seconds"], "start": detector.start,
                "overall": report["overall"], "per_defect": report.get("per_defect", {})}

    def probe(self, init: str, seed: int) -> Dict[str, Any]:
        from detectors.features.backbone import backbone_embedder
        from detectors.features.diagnostics import embedding_report
        from detectors.features.groups import real_groups

        weights = self.bottle_backbone(init, seed)
        real, good = self.cached("bottle_test", lambda: real_groups(self.args.data, self.s["image_size"],
                                                                     limit=self.s["limit"]))
        if good is None:
            error(f"{self.args.data} has no defect-free test images to probe against")
        start = time.perf_counter()
        embedder = backbone_embedder("resnet18", weights, seed)
        report, _ = embedding_report([good, real], embedder, device=self.s["device"], seed=seed)
        return {"pretrain_steps": bottle_steps(init, self.s)[0],
                "backbone": embedder.description, "seconds": round(time.perf_counter() - start, 1),
                "groups": report["groups"], "separability": report["separability"]}

    def pcb_bench(self):
        """bench_object.py's DeepPCB split, images and training sources (one copy per process)."""
        def make():
            import bench_object

            ns = argparse.Namespace(data=self.args.pcb, budget=self.args.budget, image_size=self.s["rcnn_image_size"],
                                    box_margin_640=10.0, defects_per_image=4, real_repeat=1, device=self.s["device"])
            bench = bench_object.Bench(ns)
            if self.s["limit"] is not None:
                bench.real_test = bench.real_test.subset(list(range(min(self.s["limit"], len(bench.real_test)))))
            return bench
        return self.cached("pcb", make)

    def fasterrcnn(self, data: str, init: str, seed: int) -> Dict[str, Any]:
        from detectors.evaluation import evaluate_labelled
        from detectors.registry import create_detector

        s, bench = self.s, self.pcb_bench()
        weights = None
        if init not in RANDOMS:
            def templates():
                from defectgen.io import read_pairs
                from defectgen.io.labelled.pairs import read_templates

                # read_templates gives the templates in read_pairs' order
                order = {item.name: k for k, item in enumerate(read_pairs(self.args.pcb))}
                every = read_templates(self.args.pcb, s["rcnn_pretrain_size"])
                chosen = every[[order[i] for i in bench.train_ids]]  # training templates only: never a test pair
                return chosen[:s["limit"]] if s["limit"] else chosen
            ok = self.cached("pcb_templates", templates)
            weights = self.backbone(init, seed, ok, "mobilenet_v3_large", s["rcnn_pretrain_size"],
                                    pcb_steps(init, s)[0], s["rcnn_pretrain_batch"], "pcb")
        ssl_steps, steps = pcb_steps(init, s)
        source = bench.source(data, seed, s["device"])
        # every backbone block trains, as from random init: the pretrained layout's default (3 of 6) freezes the
        # first blocks, which suits ImageNet weights, not a backbone of a few SSL steps; with group norm the SSL
        # network is the random-init one, only its starting weights differ
        layers = None if weights is None else s["rcnn_ssl_trainable_layers"]
        norm = s["rcnn_backbone_norm"] if weights is not None else None  # without a file: recorded as none
        detector = create_detector("fasterrcnn", class_names=list(source.class_names), image_size=bench.size,
                                   batch_size=s["rcnn_batch_size"], seed=seed, weights_backbone=weights,
                                   trainable_backbone_layers=layers, backbone_norm=s["rcnn_backbone_norm"])
        start = time.perf_counter()
        detector.fit(source, images_seen=steps * s["rcnn_batch_size"], device=s["device"], progress=False)
        train_s = time.perf_counter() - start
        report = evaluate_labelled(detector, bench.real_test, agnostic=True)
        return {"train_steps": detector.steps_trained, "pretrain_steps": ssl_steps,
                "images_seen": {"pretrain": ssl_steps * SSL_IMAGES.get(init.split("/")[-1], 0)
                                * s["rcnn_pretrain_batch"], "train": steps * s["rcnn_batch_size"]},
                "trainable_backbone_layers": layers, "backbone_norm": norm,
                "train_s": round(train_s, 1),
                "start": detector.start, "images_per_epoch": len(source),
                "report": report}

    def run(self, run_id: str) -> Dict[str, Any]:
        part, *rest = run_id.split("|")
        seed = int(rest[-1][len("seed"):])
        if part == "fasterrcnn":
            data, init = rest[0], rest[1]
            out = self.fasterrcnn(data, init, seed)
            out.update(data=data)
        else:
            init = rest[0]
            out = self.cutpaste(init, seed) if part == "cutpaste" else self.probe(init, seed)
        tag = "pcb" if part == "fasterrcnn" else "bottle"
        pretraining = self.pretrained.get(f"{tag}|{init}|seed{seed}")
        return {"id": run_id, "part": part, "init": init, "seed": seed, **out,
                "pretrain_s": None if pretraining is None else pretraining["seconds"]}


def summarise_pretraining(record: Dict[str, Any], reused: bool) -> Dict[str, Any]:
    history = record.get("history") or []
    tail = history[-10:]
    out = {"settings": record["settings"], "seconds": record.get("seconds_this_run"), "reused": reused,
           "final_loss": statistics.fmean(h["loss"] for h in tail) if tail else None,
           "final_output_std": tail[-1]["output_std"] if tail else None,
           "healthy_output_std": record.get("healthy_output_std")}
    if tail and "pretext_accuracy" in tail[-1]:
        out["final_pretext_accuracy"] = statistics.fmean(h["pretext_accuracy"] for h in tail)
    return out


# -- tables ---------------------------------------------------------------------------------------------------------
def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _mean_std(values: List[float]) -> str:
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.1f} ± {100 * std:.1f}"


def _inits(runs: List[Dict[str, Any]]) -> List[str]:
    found = list(dict.fromkeys(r["init"] for r in runs))
    return sorted(found, key=lambda i: (i != RANDOM, i != RANDOM_SHORT, found.index(i)))


def _seconds(mine: List[Dict[str, Any]], key: str) -> str:
    pre = [r["pretrain_s"] for r in mine if r.get("pretrain_s") is not None]
    own = statistics.fmean(r[key] for r in mine)
    return f"{statistics.fmean(pre):.0f} + {own:.0f}" if pre else f"{own:.0f}"


def _images(run: Dict[str, Any]) -> str:
    seen = run.get("images_seen")
    return "-" if seen is None else f"{seen['pretrain']:,} + {seen['train']:,}"


def cutpaste_table(runs: List[Dict[str, Any]]) -> str:
    body = []
    for init in _inits(runs):
        mine = sorted((r for r in runs if r["init"] == init), key=lambda r: r["seed"])
        cells = [_mean_std([r["overall"][k] for r in mine if k in r["overall"]]) for k in METRICS]
        seeds = " / ".join(_pct(r["overall"].get("image_auroc")) for r in mine)
        body.append([label(init), f"{mine[0]['pretrain_steps']} + {mine[0]['train_steps']}", _images(mine[0]),
                     *cells, f"{seeds} (seeds {', '.join(str(r['seed']) for r in mine)})", _seconds(mine, "train_s")])
    return markdown_table(["backbone", "steps: pretrain + train", "images seen: pretrain + train", "image AUROC",
                           "pixel AUROC", "AUPRO@0.3",
                           "image AUROC per seed", "s per run: pretrain + train"], body)


def probe_table(runs: List[Dict[str, Any]]) -> str:
    types = sorted({k for r in runs for k in r["separability"] if k.startswith("real:")})
    body = []
    for init in _inits(runs):
        mine = sorted((r for r in runs if r["init"] == init), key=lambda r: r["seed"])
        cells = [_mean_std([r["separability"]["real"][k] for r in mine]) for k in PROBE_METRICS]
        seeds = " / ".join(_pct(r["separability"]["real"]["probe_auroc"]) for r in mine)
        per_type = [_mean_std([r["separability"][t]["probe_auroc"] for r in mine if t in r["separability"]])
                    for t in types]
        body.append([label(init), str(mine[0]["pretrain_steps"]), *cells, seeds, *per_type])
    return markdown_table(["backbone (frozen; diagnostic on test images)", "pretrain steps", "kNN acc.",
                           "probe acc.", "probe AUROC", "probe AUROC per seed",
                           *(f"probe AUROC {t[len('real:'):]}" for t in types)], body)


def fasterrcnn_table(runs: List[Dict[str, Any]]) -> str:
    body = []
    for data in [d for d in PCB_DATA if any(r["data"] == d for r in runs)]:
        for init in _inits([r for r in runs if r["data"] == data]):
            mine = sorted((r for r in runs if r["data"] == data and r["init"] == init), key=lambda r: r["seed"])
            overall = [r["report"]["overall"] for r in mine]
            real = "20" if "real20" in data else "0"
            body.append([data, real, label(init), f"{mine[0]['pretrain_steps']} + {mine[0]['train_steps']}",
                         _images(mine[0]), _mean_std([o.get("map_50", 0.0) for o in overall]),
                         _mean_std([o.get("map_50_95", 0.0) for o in overall]), str(len(mine)),
                         _seconds(mine, "train_s")])
    return markdown_table(["training data", "real labels", "backbone", "steps: pretrain + train",
                           "images seen: pretrain + train", "mAP@50",
                           "mAP@50:95", "seeds", "s per run: pretrain + train"], body)


def render_tables(raw: Dict[str, Any]) -> Dict[str, str]:
    """``cutpaste``, ``probe``, ``fasterrcnn``: one table per part that has runs, as the script prints them."""
    runs = raw["results"]["runs"]
    makers = {"cutpaste": cutpaste_table, "probe": probe_table, "fasterrcnn": fasterrcnn_table}
    return {part: make([r for r in runs if r["part"] == part]) for part, make in makers.items()
            if any(r["part"] == part for r in runs)}


def targets(runs: List[Dict[str, Any]]) -> List[str]:
    """The issue's targets, on seed means: CutPaste image AUROC >= 98 with an SSL backbone; defect-aware views beat
    plain SSL on the linear probe; SSL + 20 real >= random + 20 real + 10 mAP@50."""
    def mean(part, init, get, data=None):
        values = [get(r) for r in runs if r["part"] == part and r["init"] == init and r.get("data") == data]
        return statistics.fmean(values) if values else None

    out = []
    inits = _inits(runs)
    ssl = [i for i in inits if i not in RANDOMS]
    cut = {i: mean("cutpaste", i, lambda r: r["overall"]["image_auroc"]) for i in ssl}
    cut = {i: v for i, v in cut.items() if v is not None}
    if cut:
        best = max(cut, key=cut.get)
        gap = 100 * cut[best] - 98
        out.append(f"cutpaste: best SSL image AUROC {100 * cut[best]:.1f} ({label(best)}) "
                   + ("meets the >= 98 target" if gap >= 0 else f"misses the >= 98 target by {-gap:.1f}"))
    for init in ssl:
        method, view = init.split("/")
        plain = mean("probe", f"{method}/plain", lambda r: r["separability"]["real"]["probe_auroc"])
        aware = mean("probe", init, lambda r: r["separability"]["real"]["probe_auroc"])
        if view != "plain" and plain is not None and aware is not None:
            gain = 100 * (aware - plain)
            out.append(f"probe: {label(init)} {gain:+.1f} probe-AUROC points over {label(method + '/plain')} "
                       + ("(beats it)" if gain > 0 else "(does not beat it)"))
    random20 = mean("fasterrcnn", RANDOM, lambda r: r["report"]["overall"].get("map_50", 0.0), "synth_pcb+real20")
    for init in ssl:
        value = mean("fasterrcnn", init, lambda r: r["report"]["overall"].get("map_50", 0.0), "synth_pcb+real20")
        if value is not None and random20 is not None:
            gain = 100 * (value - random20)
            out.append(f"fasterrcnn: synth_pcb+real20 with {label(init)} {gain:+.1f} mAP@50 over random init "
                       + ("(meets the >= +10 target)" if gain >= 10 else f"(misses the >= +10 target by "
                                                                         f"{10 - gain:.1f})"))
    return out


def print_tables(raw: Dict[str, Any], parts: Sequence[str]) -> None:
    tables = render_tables(raw)
    for part in parts:
        if part in tables:
            print(f"\n{part}:" + (f" ({PROBE_NOTE})" if part == "probe" else f" ({RULE})"))
            print(tables[part], flush=True)


# -- merge, main ----------------------------------------------------------------------------------------------------
def merge(paths: Sequence[Path], out: Optional[Path], argv: Optional[Sequence[str]]) -> Dict[str, Any]:
    if out is None:
        error("--merge needs --json OUT")
    raws = []
    for path in paths:
        try:
            raws.append(read_raw(path))
        except (OSError, ValueError) as exc:
            error(f"--merge {path}: {exc}")
    first = raws[0]["results"]["settings"]
    runs: Dict[str, Dict[str, Any]] = {}
    pretrained: Dict[str, Any] = {}
    commands: List[str] = []
    for path, raw in zip(paths, raws):
        if raw["benchmark"] != BENCHMARK:
            error(f"--merge {path}: a {raw['benchmark']} file, not {BENCHMARK}")
        mine = raw["results"]["settings"]
        differ = sorted(k for k in set(first) | set(mine) if k != "shard" and first.get(k) != mine.get(k))
        if differ:
            error(f"--merge {path}: other settings than {paths[0]} ({', '.join(differ)})")
        for run in raw["results"]["runs"]:
            if run["id"] in runs and runs[run["id"]] != run:
                error(f"--merge: run {run['id']} differs between files")
            runs[run["id"]] = run
        pretrained.update(raw["results"].get("pretrained", {}))
        commands += raw.get("merged_from") or [raw["command"]]
    results = {"settings": {k: v for k, v in first.items() if k != "shard"}, "runs": list(runs.values()),
               "pretrained": pretrained}
    raw = write_raw(out, BENCHMARK, command_line(__file__, argv), results, merged_from=commands,
                    date=max(r["date"] for r in raws), versions=raws[0]["versions"], machine_info=raws[0]["machine"],
                    note=f"{len(paths)} processes' runs (--shard), joined by --merge")
    print_tables(raw, PARTS)
    for line in targets(results["runs"]):
        print(line)
    return raw


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    if args.merge:
        return merge(args.merge, args.json, argv)
    import torch

    from defectgen.environment import describe

    s = settings(args)
    if args.resume and args.json is None:
        error("--resume needs --json (the file to continue)")
    if args.json is not None and args.json.exists() and not args.resume:
        error(f"{args.json} exists: pass --resume to continue it, or another --json path")
    if "fasterrcnn" in args.parts and not (args.pcb / "templates").is_dir():
        error(f"--pcb {args.pcb} is not a DeepPCB-style folder (templates/, images/, labels/)")
    if {"cutpaste", "probe"} & set(args.parts) and not (args.data / "train").is_dir():
        error(f"--data {args.data} is not an MVTec-layout category (train/good, test/, ground_truth/)")
    reused, reused_pretrained = reusable(args.reuse or [], s)
    if args.reuse:
        s["reuse"] = [{"path": str(path), "command": read_raw(path)["command"]} for path in args.reuse]
    groups = plan(args, s)
    for group in groups:  # a group whose runs all come from --reuse costs nothing here
        if all(r in reused for r in group["runs"]):
            group["seconds"] = 0.0
    groups, loads = shard(groups, args.shard)
    s["shard"] = args.shard
    command = command_line(__file__, argv)
    runs: List[Dict[str, Any]] = []
    pretrained: Dict[str, Any] = {}
    if args.resume and args.json.exists():
        previous = read_raw(args.json)
        changed = sorted(k for k in s if previous["results"]["settings"].get(k) != s[k])
        if changed:
            error(f"--resume: {args.json} was made with other settings ({', '.join(changed)})")
        runs, pretrained = previous["results"]["runs"], previous["results"].get("pretrained", {})
        command = previous["command"]  # the same settings (checked above): still that command's runs
    mine = [run for g in groups for run in g["runs"]]
    for run_id in mine:
        if run_id in reused and run_id not in {r["id"] for r in runs}:
            runs.append(reused[run_id])
            tag = "pcb" if reused[run_id]["part"] == "fasterrcnn" else "bottle"
            key = f"{tag}|{reused[run_id]['init']}|seed{reused[run_id]['seed']}"
            if key in reused_pretrained:
                pretrained[key] = reused_pretrained[key]
    done = {r["id"] for r in runs}
    # DeepPCB runs go data set by data set (PCB_DATA's order), so a stopped run leaves whole rows
    todo = sorted((run for run in mine if run not in done),
                  key=lambda r: (PARTS.index(r.split("|")[0]),
                                 PCB_DATA.index(r.split("|")[1]) if r.startswith("fasterrcnn|") else 0))
    print(describe())
    print(f"bench_pretrain, budget {args.budget}: {RULE}.")
    if {"cutpaste", "probe"} & set(args.parts):
        print(f"  bottle ({', '.join(p for p in args.parts if p != 'fasterrcnn')}): {s['image_size']} px, "
              f"R {s['pretrain_share']} + S {s['steps']} CutPaste steps x {s['batch_size']} images, P "
              + ", ".join(f"{i} {bottle_steps(i, s)[0]}" for i in ssl_configs(args)) + f", seeds {s['seeds']}")
    if "fasterrcnn" in args.parts:
        print(f"  DeepPCB (fasterrcnn): {s['rcnn_image_size']} px, R {s['rcnn_pretrain_share']} + S "
              f"{s['rcnn_steps']} steps x {s['rcnn_batch_size']} images; P "
              + ", ".join(f"{i} {pcb_steps(i, s)[0]}" for i in rcnn_configs(args))
              + f" steps x {s['rcnn_pretrain_batch']} templates at {s['rcnn_pretrain_size']} px, "
              f"seeds {s['rcnn_seeds']} "
              "(small: bench_object.py's CPU budget trains 225 steps)")
    print(f"  device {s['device']}, torch threads: {torch.get_num_threads()}")
    left = sum(g["seconds"] for g in groups if any(r not in done for r in g["runs"]))
    shares = "" if len(loads) == 1 else f"; shares {' / '.join(f'{x / 60:.0f}' for x in loads)} min"
    print(f"  {len(todo)} runs to do ({len(done)} already in {args.json} or --reuse); expected time about "
          f"{left / 60:.0f} min at one torch thread (estimated from measured seconds per step{shares})", flush=True)
    runner = Runner(args, s)
    results = {"settings": s, "runs": runs, "pretrained": pretrained}
    raw: Dict[str, Any] = {"results": results}
    start = time.perf_counter()
    for part in PARTS:
        mine = [r for r in todo if r.startswith(part + "|")]
        for run_id in mine:
            run = json.loads(json.dumps(runner.run(run_id), default=str))
            runs.append(run)
            pretrained.update(runner.pretrained)
            print(f"  {run_id}: {headline(run)} ({time.perf_counter() - start:.0f} s so far)", flush=True)
            if args.json is not None:
                raw = write_raw(args.json, BENCHMARK, command, results)
        if any(r["part"] == part for r in runs):
            print_tables({"results": results}, [part])
    for line in targets(runs):
        print(line)
    print(f"total {time.perf_counter() - start:.0f} s this process")
    return raw if args.json is not None else {"results": results}


def headline(run: Dict[str, Any]) -> str:
    if run["part"] == "cutpaste":
        return "  ".join(f"{k} {_pct(run['overall'].get(k))}" for k in METRICS) + f", train {run['train_s']:.0f} s"
    if run["part"] == "probe":
        real = run["separability"]["real"]
        return "  ".join(f"{k} {_pct(real[k])}" for k in PROBE_METRICS)
    return f"mAP@50 {_pct(run['report']['overall'].get('map_50'))}, train {run['train_s']:.0f} s"


if __name__ == "__main__":
    main()
