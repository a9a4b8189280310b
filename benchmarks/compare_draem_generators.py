"""What DRAEM's training sees from anomalib's Perlin generator and from defectgen's ``draem`` preset: sampling only.

    python benchmarks/compare_draem_generators.py --json docs/results/draem_generators.json

No training. Both generators are set up as ``benchmarks/bench_anomalib.py`` sets them up (anomalib's
``PerlinAnomalyGenerator`` as ``Draem`` builds it, ``blend_factor=(0.1, 1.0)``; the ``draem`` preset behind
:class:`~defectgen.compat.anomalib.AnomalibGenerator`), over the same texture folder (the DeepPCB templates
standing in for DTD), on batches of MVTec bottle training images in [0, 1] at each ``--sizes`` (64 px: the CPU
bench; 256 px: DRAEM's own size). Per sample it records:

- whether the sample came out anomalous (a non-empty mask) and the mask's area as a fraction of the image;
- the texture's weight inside the mask (anomalib's ``beta``, the preset's ``opacity``), read from the outputs
  alone: the same draw (same seed) is applied to an all-0 and an all-1 image, and inside the mask the two
  outputs differ by exactly ``1 - weight`` for both generators;
- how much the anomaly changes the real image: the mean ``|out - image|`` over the mask's pixels, and the share
  of mask pixels changed by less than 2 grey levels of 255 (labelled anomalous, but invisible);
- the share of the mask's pixels in the image's corners (outside the inscribed circle), which DRAEM's rotation
  of its noise image leaves partly empty; ``draem_fill_corners`` is the preset as it was before it followed
  that (``PerlinMask(fill_corners=True)``: the rotated pattern reaches every pixel);
- for anomalib's noise function alone (``generate_perlin_noise``, unrotated): how often no value exceeds the
  threshold 0.5, the case its generator rescales (and which DRAEM's reference code leaves as an empty mask).

``--json PATH`` writes the raw results file (``benchmarks/raw_results.py``); ``render_tables(raw)`` renders the
table ``draem_generators`` the docs publish (``docs/anomalib.md``).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
from raw_results import command_line, markdown_table, write_raw  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "mvtec_bottle_256"
TEXTURES = ROOT.parent / "shared" / "data" / "deeppcb_400" / "templates"
INVISIBLE = 2 / 255


def _anomalib(textures: Path):
    from anomalib.data.utils.generators.perlin import PerlinAnomalyGenerator

    return PerlinAnomalyGenerator(anomaly_source_path=textures, blend_factor=(0.1, 1.0))


def _run_anomalib(gen, images: torch.Tensor, seed: int):
    """Three calls with the same draws: on all-0 images, all-1 images and the real images."""
    outs = []
    for base in (torch.zeros_like(images), torch.ones_like(images), images):
        torch.manual_seed(seed)
        outs.append(gen(base))
    (zero, m0), (one, m1), (real, mask) = outs
    if not (torch.equal(m0, mask) and torch.equal(m1, mask)):
        raise RuntimeError("anomalib's draws depended on the image content: the weight read-out is invalid")
    return zero, one, real, mask


def _run_draem(textures: Path, images: torch.Tensor, seed: int, op_cache: dict, fill_corners: bool = False):
    from defectgen.compat.anomalib import AnomalibGenerator

    if fill_corners not in op_cache:
        op_cache[fill_corners] = _draem_op(textures)
        op_cache[fill_corners].mask.fill_corners = fill_corners
    gen = AnomalibGenerator(op_cache[fill_corners], seed=seed)
    zero, mask = gen(torch.zeros_like(images))
    params = gen.last.params
    one = gen.op(torch.ones_like(images), params=params)
    real = gen.op(images, params=params)
    if not (torch.equal(one.mask, mask.bool()) and torch.equal(real.mask, mask.bool())):
        raise RuntimeError("the preset's replay changed the mask")
    return zero, one.image, real.image, mask


def _draem_op(textures: Path):
    from defectgen.registry import resolve_op

    return resolve_op({"op": "draem", "textures": str(textures)})


def per_sample(zero, one, real, images, mask) -> list:
    """One record per sample: anomalous, area, texture weight, augmented texture's mean and spread, mean change,
    invisible share and share in the corners (outside the inscribed circle) inside the mask."""
    rows = []
    m = mask.bool().expand_as(images)
    h, w = images.shape[-2:]
    yy, xx = torch.meshgrid((torch.arange(h) + 0.5) / h - 0.5, (torch.arange(w) + 0.5) / w - 0.5, indexing="ij")
    corners = (yy ** 2 + xx ** 2) > 0.25
    for i in range(images.shape[0]):
        inside = m[i]
        n = int(inside[0].sum())
        row = {"anomalous": n > 0, "area": n / inside[0].numel()}
        if n:
            weight = 1 - (one[i] - zero[i])[inside].mean()
            row["weight"] = float(weight)
            texture = zero[i][inside] / weight  # both: texture * weight on an all-0 image
            row["texture_mean"], row["texture_std"] = float(texture.mean()), float(texture.std())
            row["corners"] = float(corners[inside[0]].float().mean())
            change = (real[i] - images[i]).abs()
            row["change"] = float(change[inside].mean())
            row["invisible"] = float((change.amax(0)[inside[0]] < INVISIBLE).float().mean())
        row["out_of_range"] = float(((real[i] < 0) | (real[i] > 1)).float().mean())
        rows.append(row)
    return rows


def noise_never_above(size: int, count: int, seed: int, threshold: float = 0.5) -> float:
    """Share of anomalib's unrotated Perlin noise fields with no value above ``threshold``."""
    from anomalib.data.utils.generators.perlin import generate_perlin_noise

    torch.manual_seed(seed)
    hits = sum(not bool((generate_perlin_noise(size, size, device=torch.device("cpu")) > threshold).any())
               for _ in range(count))
    return hits / count


def summarise(rows: list) -> dict:
    anomalous = [r for r in rows if r["anomalous"]]
    weights = [r["weight"] for r in anomalous]
    areas = [r["area"] for r in anomalous]
    out = {"samples": len(rows), "anomalous_fraction": len(anomalous) / len(rows),
           "area_mean": statistics.mean(areas), "area_median": statistics.median(areas),
           "area_below_1pct": sum(a < 0.01 for a in areas) / len(areas),
           "area_over_25pct": sum(a > 0.25 for a in areas) / len(areas),
           "weight_mean": statistics.mean(weights), "weight_min": min(weights), "weight_max": max(weights),
           "weight_below_0.2": sum(w < 0.2 - 1e-4 for w in weights) / len(weights),
           "texture_mean": statistics.mean(r["texture_mean"] for r in anomalous),
           "texture_std": statistics.mean(r["texture_std"] for r in anomalous),
           "corners_mean": statistics.mean(r["corners"] for r in anomalous),
           "change_mean": statistics.mean(r["change"] for r in anomalous),
           "invisible_mean": statistics.mean(r["invisible"] for r in anomalous),
           "out_of_range_mean": statistics.mean(r["out_of_range"] for r in rows)}
    return out


def measure(size: int, samples: int, batch: int, seed: int, data: Path, textures: Path) -> dict:
    from defectgen.io.images import load_folder

    pool = load_folder(data / "train" / "good", size=size).float().div(255)
    results = {"anomalib": [], "draem": [], "draem_fill_corners": []}
    torch.manual_seed(seed)
    anomalib_gen = _anomalib(textures)  # its solarize threshold is drawn once, here
    cache: dict = {}
    for b in range(0, samples, batch):
        n = min(batch, samples - b)
        index = torch.arange(b, b + n) % pool.shape[0]
        images = pool[index]
        call_seed = seed * 100_003 + b
        zero, one, real, mask = _run_anomalib(anomalib_gen, images, call_seed)
        results["anomalib"] += per_sample(zero, one, real, images, mask)
        zero, one, real, mask = _run_draem(textures, images, call_seed, cache)
        results["draem"] += per_sample(zero, one, real, images, mask)
        zero, one, real, mask = _run_draem(textures, images, call_seed, cache, fill_corners=True)
        results["draem_fill_corners"] += per_sample(zero, one, real, images, mask)
    return {name: summarise(rows) for name, rows in results.items()}


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def render_tables(raw: dict) -> dict:
    """The table ``draem_generators``: one row per size and generator."""
    res = raw["results"]
    rows = []
    for size, by_gen in res["sizes"].items():
        never = res.get("noise_never_above", {}).get(size)
        for name, s in by_gen.items():
            rows.append([f"{size} px", name, _pct(s["anomalous_fraction"]), _pct(s["area_mean"]),
                         _pct(s["area_median"]), _pct(s["area_below_1pct"]), _pct(s["area_over_25pct"]),
                         f"{s['weight_mean']:.3f} [{s['weight_min']:.2f}, {s['weight_max']:.2f}]",
                         _pct(s["weight_below_0.2"]), f"{s['texture_mean']:.2f} / {s['texture_std']:.2f}",
                         f"{255 * s['change_mean']:.1f}", _pct(s["invisible_mean"]), _pct(s["corners_mean"]),
                         _pct(never) if name == "anomalib" and never is not None else "-"])
    header = ["size", "generator", "anomalous samples", "mask area (mean)", "mask area (median)",
              "masks < 1 % of image", "masks > 25 %", "texture weight (mean [min, max])", "weight < 0.2",
              "texture mean / spread", "mean change in mask (/255)", "mask pixels changed < 2/255",
              "mask in corners", "noise never > 0.5 (rescaled)"]
    return {"draem_generators": markdown_table(header, rows)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--samples", type=int, default=512, help="samples per generator and size")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise-count", type=int, default=2000, help="noise fields for the never-above share")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--textures", type=Path, default=TEXTURES)
    parser.add_argument("--json", type=Path, help="write the raw results file here "
                                                  "(published: docs/results/draem_generators.json)")
    args = parser.parse_args(argv)
    for path, what in ((args.data, "--data"), (args.textures, "--textures")):
        if not path.is_dir():
            parser.error(f"{what} {path} is not a folder")
    result = {"samples": args.samples, "seed": args.seed, "sizes": {}, "noise_never_above": {},
              "noise_count": args.noise_count}
    for size in args.sizes:
        result["sizes"][str(size)] = measure(size, args.samples, args.batch, args.seed, args.data, args.textures)
        result["noise_never_above"][str(size)] = noise_never_above(size, args.noise_count, args.seed)
    if args.json:
        write_raw(args.json, "compare_draem_generators", command_line(__file__, argv), result)
    print(render_tables({"results": result})["draem_generators"])
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
