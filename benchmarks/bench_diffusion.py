"""Diffusion-inpainted defects on MVTec bottle: quality against held-out real defects, and speed.

    python benchmarks/bench_diffusion.py                          # CPU budget (about 30 min on 2 cores)
    python benchmarks/bench_diffusion.py --budget gpu --device cuda
    python benchmarks/bench_diffusion.py --model runs/bench_diffusion/cpu/model --json out.json   # no training

1. **Train** defectgen's inpainting model on a third of each defect type (``--shots``; the split is seeded and
   recorded in the model) plus the OK training images, or resume/skip it if ``--out`` already holds it.
2. **Quality.** Every held-out real defect gives ``--variants`` synthetic defects at its own place on OK images
   (bottle images are aligned, so a defect's position is meaningful), by three methods:
   ``diffusion`` (the model inpaints the held-out mask, conditioned on its true type), ``transplant``
   (``DefectTransplant`` pastes a training defect of the same type, centred where the held-out one was) and
   ``cutpaste`` (the held-out mask filled with the same image shifted by a random offset: CutPaste's "a patch
   from elsewhere in the same image"). A window around each defect (the mask's box grown by half its size on
   every side, as the model cuts it) is resampled to 64 px and embedded by the feature network below. Reported:
   - **KID** (torchmetrics, polynomial kernel, 100 subsets) of each method's windows against the held-out real
     windows; two reference rows calibrate the scale: ``real (train third)`` (other real defects: what a
     perfect generator could reach) and ``no defect`` (the OK images' windows at the same places).
   - **diversity**: mean pairwise feature distance between a method's windows (the held-out real: reference).
   - **memorised**: share of windows closer to a training defect's window than the threshold. The threshold is
     the 5th percentile of the held-out real defects' distances to their nearest training defect: a window
     counts as memorised when it is closer to a training defect than 95 % of genuinely new real defects are.
     New real defects therefore score 5 % by construction; a generator copying its training set scores far more.
3. **Speed**: images/s of ``DiffusionDefect`` (25 steps, guidance 3) on a batch of 256 px OK images with Perlin
   masks, next to ``DefectTransplant`` and ``CutPaste`` on the same batch in the same run; peak memory (CUDA:
   ``max_memory_allocated``; CPU: the process's peak resident size, which includes everything before it).

Feature networks (nothing may be downloaded here, so the Inception network KID normally uses is out): two
ResNet-18s, layer-2 and layer-3 activations pooled to their mean and std per channel *over the defect's mask*
(a window is mostly surroundings, which every method keeps), each dimension standardised on reference windows
(real defects and OK windows, never a method's output).
- ``random``: random weights (seeded). No bias towards any method, but on bottle it barely tells a real defect
  from no defect: its ``no defect`` KID is about that of ``real (train third)``.
- ``cutpaste_ssl``: the CutPaste network trained on the OK training images only (3-way pretext, 100 steps,
  about 4 min on 2 cores): it never sees a real defect, and its features are made to single out irregular
  patches. It separates ``no defect`` from real defects where the random one does not, at the price of a bias:
  it was taught what cut-and-paste and scar artefacts look like.
KID's unbiased estimator goes negative when two sets are closer than independent samples would be: here every
method's windows sit at the held-out defects' own places, so all rows share that offset; compare rows, not signs.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from defectgen import CutPaste, DefectBank, DefectTransplant, DiffusionDefect, InpaintModel, RegionDefect  # noqa: E402
from defectgen._checks import resolve_device  # noqa: E402
from defectgen.io.images import load_folder  # noqa: E402
from defectgen.io.mvtec import load_image, load_mask, read_mvtec  # noqa: E402
from defectgen.masks.base import RegionMask  # noqa: E402
from defectgen.masks.components import mask_boxes  # noqa: E402
from defectgen.sources.base import Source  # noqa: E402
from defectgen.sources.diffusion.crops import crop, square_boxes  # noqa: E402
from defectgen.sources.diffusion.train import InpaintTraining, split_shots, subset_bank, train_inpaint  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec_bottle_256"
BUDGETS = {
    # 32 px windows, a small UNet (1.2 M parameters), 3000 steps of 16 windows: about 25 min of training on 2 cores
    "cpu": InpaintTraining(resolution=32, width=32, layers_per_block=1, steps=3000, batch_size=16,
                           learning_rate=5e-4),
    # 64 px windows, the default UNet (width 64, two layers per level), 20000 steps of 32 windows
    "gpu": InpaintTraining(resolution=64, width=64, layers_per_block=2, steps=20000, batch_size=32,
                           learning_rate=2e-4),
}
WINDOW_PX = 64
CONTEXT = 0.5


class GivenMasks(RegionMask):
    """Sample ``i`` of the batch gets mask ``i`` of a fixed stack (the held-out real masks, in order)."""

    instances = "one"

    def __init__(self, masks: torch.Tensor):
        self.masks = masks.float()

    def sample(self, n, height, width, generator):
        return {"given_index": torch.arange(n)}

    def draw(self, params, height, width, device):
        return self.masks[params["given_index"]].to(device)


class ShiftedSelf(Source):
    """CutPaste's fill without its rectangle: the same image, shifted by a random offset (wrapping round)."""

    def sample(self, n, channels, height, width, shape, generator):
        return {"shift": torch.randint(height // 8, height - height // 8, (n, 2), generator=generator)}

    def render_region(self, images, params, coverage):
        rows = (torch.arange(images.shape[-2]).view(1, -1) + params["shift"][:, :1]) % images.shape[-2]
        cols = (torch.arange(images.shape[-1]).view(1, -1) + params["shift"][:, 1:]) % images.shape[-1]
        index = torch.arange(len(images)).view(-1, 1, 1)
        return images.float().permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


class Features(torch.nn.Module):
    """A ResNet-18 (torchvision layout) to layer 3; per channel, the mean and std of layers 2 and 3 over the
    defect's mask; :meth:`standardise` fixes a per-dimension scale from reference windows.

    ``encoder=None`` gives random weights (seeded); otherwise the given ResNet-18 (e.g. the CutPaste network's)."""

    def __init__(self, seed: int = 0, encoder: Optional[torch.nn.Module] = None):
        super().__init__()
        import torchvision

        if encoder is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                encoder = torchvision.models.resnet18(weights=None)
        net = encoder
        self.body = torch.nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2,
                                        net.layer3).eval()
        self.mean = self.scale = None
        self.register_buffer("pixel_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    @torch.no_grad()
    def raw(self, windows: torch.Tensor) -> torch.Tensor:
        """``windows`` ``(N, C + 1, 64, 64)``: the image window and its mask as the last channel."""
        images, masks = windows[:, :-1], windows[:, -1:]
        x = (images.float() - self.pixel_mean) / self.pixel_std  # as the CutPaste network was trained
        x = F.interpolate(x, size=128, mode="bilinear", align_corners=False)
        pooled = []
        for part, mask in zip(x.split(64), masks.split(64)):
            mid = self.body[:6](part)
            deep = self.body[6](mid)
            stats = []
            for maps in (mid, deep):
                # the defect's own statistics: pooled over the (slightly grown) mask only, not the whole window
                weight = F.adaptive_max_pool2d(mask.float(), maps.shape[-2:])
                weight = weight / weight.sum((2, 3), keepdim=True).clamp_min(1.0)
                mean = (maps * weight).sum((2, 3))
                variance = ((maps - mean[..., None, None]) ** 2 * weight).sum((2, 3))
                stats += [mean, variance.clamp_min(0).sqrt()]
            pooled.append(torch.cat(stats, 1))
        return torch.cat(pooled)

    def standardise(self, reference: torch.Tensor) -> None:
        """Zero mean, unit variance per dimension over ``reference`` windows (real defects and OK windows, never
        a method's output), so KID's kernel ``(x.y / d + 1)^3`` sees every dimension on one scale."""
        features = self.raw(reference)
        # dimensions nearly constant on the references (dead channels) would blow up: floor the scale
        spread = features.std(0)
        self.mean, self.scale = features.mean(0), spread + 0.1 * spread.median() + 1e-6

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (self.raw(images) - self.mean) / self.scale


def windows_of(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``(N, C + 1, 64, 64)`` windows around each image's mask (the model's window shape, at 64 px): the pixels
    in [0, 1] and, as the last channel, the mask (the features pool over it)."""
    boxes, _ = mask_boxes(masks.bool())
    squares = square_boxes(boxes.float(), CONTEXT, 16.0)
    pixels = crop(images.float() / 255.0, squares, WINDOW_PX).clamp(0, 1)
    return torch.cat([pixels, (crop(masks.float(), squares, WINDOW_PX) > 0).float()], 1)


def kid(real: torch.Tensor, fake: torch.Tensor, seed: int = 0) -> Dict[str, float]:
    from torchmetrics.image.kid import KernelInceptionDistance

    metric = KernelInceptionDistance(feature=torch.nn.Identity(), subsets=100,
                                     subset_size=min(len(real), len(fake), 40))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return {"kid": float(mean), "kid_std": float(std)}


def diversity(features: torch.Tensor) -> float:
    distances = torch.cdist(features, features)
    n = len(features)
    return float(distances.sum() / (n * (n - 1)))


def nearest(features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    return torch.cdist(features, reference).amin(1)


# -- the benchmark --------------------------------------------------------------------------------------------------
def feature_networks(args, device: str) -> Dict[str, Optional[torch.nn.Module]]:
    """``random``: untrained ResNet-18; ``cutpaste_ssl``: the CutPaste network trained (3-way pretext, 100 steps
    of 16 images at 128 px, the bottle ablation's CPU budget) on the OK training images only: no defect image
    is seen, but its features are made to tell irregular patches from normal bottle."""
    from detectors.cutpaste import CutPasteDetector

    ok = load_folder(args.data / "train" / "good", size=128)
    start = time.perf_counter()
    detector = CutPasteDetector(pretext="3way", image_size=128, head_layers=[512, 128], batch_size=16,
                                seed=args.seed)
    detector.fit(ok, steps=100, device=device, progress=False)
    print(f"feature network cutpaste_ssl trained in {time.perf_counter() - start:.0f} s", flush=True)
    return {"random": None, "cutpaste_ssl": detector.network.encoder.cpu().eval()}


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MVTec-layout category folder")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--out", type=Path, help="run folder (default: runs/bench_diffusion/<budget>)")
    parser.add_argument("--model", type=Path, help="evaluate this model folder instead of training one")
    parser.add_argument("--shots", type=float, default=0.33, help="share of each defect type to train on")
    parser.add_argument("--steps", type=int, help="training steps (default: the budget's)")
    parser.add_argument("--variants", type=int, default=3, help="synthetic defects per held-out real defect")
    parser.add_argument("--sampling-steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--speed-batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    parser.add_argument("--json", type=Path, help="write the results here")
    return parser.parse_args(argv)


def read_defects(data: Path, names: List[str]):
    """The real NG images and full masks of the named defect images (bank entry names are image paths)."""
    layout = read_mvtec(data, require_test=True)
    # by type folder and file name: the recorded paths may spell the data folder differently
    by_name = {Path(item.image).parts[-2:]: item for item in layout.test if item.defect != "good"}
    items = [by_name[Path(name).parts[-2:]] for name in names]
    images = torch.stack([load_image(item) for item in items])
    masks = torch.stack([load_mask(item) for item in items]).bool()
    return images, masks, [item.defect for item in items]


def train_or_load(args, device) -> InpaintModel:
    if args.model is not None:
        return InpaintModel.load(args.model, device)
    settings = BUDGETS[args.budget]
    if args.steps is not None:
        settings = dataclasses.replace(settings, steps=args.steps)
    settings = dataclasses.replace(settings, seed=args.seed)
    full = DefectBank.from_mvtec(args.data, margin_px=256)
    train, held_out = split_shots(full, args.shots, args.seed)
    ok = load_folder(args.data / "train" / "good", size=256)
    info = {"data": str(args.data), "shots": args.shots, "train_defects": [full.names[i] for i in train],
            "held_out_defects": [full.names[i] for i in held_out]}
    start = time.perf_counter()
    model = train_inpaint(args.out / "model", ok, subset_bank(full, train), settings, device=device, info=info,
                          checkpoint_every=250)
    print(f"trained {model.info['steps_done']} steps ({time.perf_counter() - start:.0f} s this run), "
          f"final loss {model.info['final_loss']:.4f}", flush=True)
    return model


def quality(args, model: InpaintModel, bank: DefectBank, device: str) -> Dict[str, Dict[str, float]]:
    train_names, held_names = model.info["train_defects"], model.info["held_out_defects"]
    real, real_masks, real_types = read_defects(args.data, held_names)
    train_images, train_masks, _ = read_defects(args.data, train_names)
    ok = load_folder(args.data / "train" / "good", size=real.shape[-1])
    k, n = args.variants, len(real)
    masks = real_masks.repeat_interleave(k, 0)
    types = [t for t in real_types for _ in range(k)]
    chosen = torch.arange(n * k) * 7 % len(ok)  # OK images spread over the set
    base = ok[chosen]
    generator = torch.Generator().manual_seed(args.seed)
    outputs = {}

    diffusion = DiffusionDefect(model, mask=GivenMasks(masks), steps=args.sampling_steps, guidance=args.guidance)
    params = diffusion.sample_params(len(base), 3, base.shape[-2], base.shape[-1], generator)
    params["diffusion_class"] = torch.tensor([diffusion.class_names.index(t) for t in types])
    start = time.perf_counter()
    outputs["diffusion"] = diffusion(base.to(device), params={k: v.to(device) for k, v in params.items()})
    print(f"diffusion: {len(base)} defects in {time.perf_counter() - start:.1f} s", flush=True)

    entries = {Path(name).parts[-2:]: i for i, name in enumerate(bank.names)}
    train_bank = subset_bank(bank, [entries[Path(name).parts[-2:]] for name in train_names])
    transplant = DefectTransplant(train_bank)
    params = transplant.sample_params(len(base), 3, base.shape[-2], base.shape[-1], generator)
    # a training defect of the held-out one's type, centred where the held-out one was
    per_type = {name: (train_bank.types == i + 1).nonzero().flatten() for i, name in
                enumerate(train_bank.class_names)}
    params["bank_index"] = torch.stack([per_type[t][torch.randint(len(per_type[t]), (1,), generator=generator)][0]
                                        for t in types])
    boxes, _ = mask_boxes(masks)
    params["centre"] = torch.stack([(boxes[:, 1] + boxes[:, 3]) / 2, (boxes[:, 0] + boxes[:, 2]) / 2], 1)
    outputs["transplant"] = transplant(base, params=params)

    cutpaste = RegionDefect(mask=GivenMasks(masks), source=ShiftedSelf(), blend="replace")
    outputs["cutpaste"] = cutpaste(base, generator=generator)

    real_windows = windows_of(real, real_masks)
    train_windows = windows_of(train_images, train_masks)
    none_windows = windows_of(base, masks)
    candidates = {"real (train third)": train_windows, "no defect": none_windows}
    candidates.update({name: windows_of(out.image.cpu(), out.mask.cpu()) for name, out in outputs.items()})
    rows = {name: {"count": len(windows)} for name, windows in candidates.items()}
    rows["real (held out)"] = {"count": n}
    thresholds = {}
    for net_name, encoder in feature_networks(args, device).items():
        features = Features(args.seed, encoder)
        features.standardise(torch.cat([real_windows, train_windows, none_windows]))
        real_features = features(real_windows)
        train_features = features(train_windows)
        nearest_real = nearest(real_features, train_features)
        threshold = float(torch.quantile(nearest_real, 0.05))
        thresholds[net_name] = threshold
        for name, windows in candidates.items():
            feats = features(windows)
            score = kid(real_features, feats, args.seed)
            rows[name].update({f"kid_{net_name}": score["kid"], f"kid_std_{net_name}": score["kid_std"],
                               f"diversity_{net_name}": diversity(feats),
                               f"memorised_{net_name}": float((nearest(feats, train_features) < threshold).float()
                                                              .mean())})
        rows["real (train third)"][f"memorised_{net_name}"] = None  # they are the training defects
        rows["real (held out)"].update({f"diversity_{net_name}": diversity(real_features),
                                        f"memorised_{net_name}": float((nearest_real < threshold).float().mean())})
    rows["_threshold"] = thresholds
    save_grid(args.out / "samples.png", real_windows, candidates, k)
    return rows


def save_grid(path: Path, real_windows, candidates, k):
    """Rows: held-out real, then each method's first variant for the same defects (first 16 defects)."""
    import torchvision

    count = min(16, len(real_windows))
    rows = [real_windows[:count]] + [candidates[name][::k][:count] for name in ("diffusion", "transplant",
                                                                                 "cutpaste", "no defect")]
    path.parent.mkdir(parents=True, exist_ok=True)
    torchvision.utils.save_image(torch.cat(rows)[:, :-1], path, nrow=count, padding=2, pad_value=1.0)
    print(f"samples: {path} (rows: held-out real, diffusion, transplant, cutpaste, no defect)")


def speed(args, model: InpaintModel, bank: DefectBank, device: str) -> Dict[str, Dict[str, float]]:
    ok = load_folder(args.data / "train" / "good", size=256, limit=args.speed_batch).to(device)
    ops = {"diffusion": DiffusionDefect(model, mask="perlin", steps=args.sampling_steps, guidance=args.guidance,
                                        p=1.0),
           "transplant": DefectTransplant(bank), "cutpaste": CutPaste()}
    results = {}
    for name, op in ops.items():
        op(ok[:2], seed=0)  # warm-up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times = []
        for repeat in range(2 if name == "diffusion" else 5):
            start = time.perf_counter()
            out = op(ok, seed=repeat)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        seconds = min(times)
        row = {"images_per_s": len(ok) / seconds, "seconds": seconds,
               "defective": int((out.label > 0).sum())}
        if device.startswith("cuda"):
            row["peak_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
        else:
            row["process_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        results[name] = row
    for name in results:
        results[name]["time_vs_transplant"] = results[name]["seconds"] / results["transplant"]["seconds"]
    return results


def main(argv: Optional[List[str]] = None) -> Dict:
    args = parse_args(argv)
    device = str(resolve_device(args.device))
    if args.out is None:
        args.out = Path("runs") / "bench_diffusion" / args.budget
    print(f"bench_diffusion: budget {args.budget}, device {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.machine()}", flush=True)
    start = time.perf_counter()
    model = train_or_load(args, device)
    params = sum(p.numel() for p in model.unet.parameters())
    print(f"model: {model.config()} ({params / 1e6:.2f} M parameters)", flush=True)
    bank = DefectBank.from_mvtec(args.data, margin_px=8)  # every real defect: transplant's (quality uses its third)
    rows = quality(args, model, bank, device)
    thresholds = rows.pop("_threshold")
    print(f"\nquality on {rows['real (held out)']['count']} held-out real defects; KID x 1000 (± std over subsets) "
          "against them, per feature network; diversity and memorised in cutpaste_ssl features (threshold "
          f"{thresholds['cutpaste_ssl']:.2f}; random: {thresholds['random']:.2f})")
    print("| windows | count | KID random | KID cutpaste_ssl | diversity | memorised |")
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        kids = [f"{1000 * row[f'kid_{net}']:.1f} ± {1000 * row[f'kid_std_{net}']:.1f}" if f"kid_{net}" in row
                else "-" for net in ("random", "cutpaste_ssl")]
        memorised = row["memorised_cutpaste_ssl"]
        memorised = "-" if memorised is None else f"{100 * memorised:.1f} %"
        print(f"| {name} | {row['count']} | {kids[0]} | {kids[1]} | {row['diversity_cutpaste_ssl']:.2f} | "
              f"{memorised} |")
    timing = speed(args, model, bank, device)
    print(f"\nspeed, batch of {args.speed_batch} 256 px images, {args.sampling_steps} steps, guidance {args.guidance}")
    print("| op | images/s | time vs transplant | peak memory (MiB) |")
    print("|---|---|---|---|")
    for name, row in timing.items():
        memory = row.get("peak_mib", row.get("process_peak_rss_mib"))
        print(f"| {name} | {row['images_per_s']:.2f} | {row['time_vs_transplant']:.1f}x | {memory:.0f} |")
    total = time.perf_counter() - start
    print(f"\ntotal {total / 60:.1f} min")
    result = {"budget": args.budget, "device": device, "torch": torch.__version__, "model": model.config(),
              "model_info": {k: v for k, v in model.info.items() if k not in ("train_defects", "held_out_defects",
                                                                              "defects")},
              "parameters": params, "quality": rows, "memorisation_thresholds": thresholds, "speed": timing,
              "minutes": total / 60}
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
