#!/usr/bin/env python
"""Time PerlinDefect against a per-image NumPy/OpenCV implementation of the same DRAEM recipe.

Usage::

    python benchmarks/bench_perlin.py                          # 64x3x256x256 float32 on CPU, 10 repeats
    python benchmarks/bench_perlin.py --batch 64 --size 256 --repeats 5 --device cpu
    python benchmarks/bench_perlin.py --json docs/results/bench_perlin_cpu.json   # the raw results file

The reference is written here the way DRAEM's data loader does it, one image at a time: Perlin noise with
``2^U{0..5}`` cells per axis evaluated on the full pixel grid with NumPy in float64, in the style of DRAEM's
``rand_perlin_2d_np`` (random gradient angles, gradients tiled to pixels, four corner dot products, quintic
fade, lerps, times sqrt(2)), rotated by U(-90, 90) degrees with ``cv2.warpAffine``, thresholded at 0.5, a
texture picked from the bank and resized with ``cv2.resize``, blended with ``beta ~ U[0, 0.8)``, and boxed
with ``cv2.connectedComponentsWithStats``. So it returns what PerlinDefect returns: the image, the mask,
the boxes and the label. It gets its images as a list of HWC float32 arrays prepared before the clock
starts, keeps its textures in memory (DRAEM reads one from disk per sample), rotates with OpenCV (DRAEM
uses imgaug) and returns per-image results (no collation): all of which favour it. PerlinDefect runs with
the same texture bank and without DRAEM's texture augmentation, which the reference does not do either;
the default operator (self-shuffle fill, with augmentation) is timed too, for information.

Timing: for each repeat, the batch clone, the reference and the operators are timed in turn (medians
reported); CPU runs use ``bench_ops.py``'s ``warm`` allocator mode. The speed-up is reference time /
operator time for the same batch; the acceptance target is >= 5x on CPU at batch 64, 256 x 256.
It is a benchmark, not a test: the exit status is always 0. ``--json PATH`` writes the raw results file
(``benchmarks/raw_results.py``); ``render_tables(raw)`` renders the table the script prints.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_ops import cpu_memory_mode, device_name, make_timer  # noqa: E402
from raw_results import command_line, markdown_table, write_raw  # noqa: E402

from defectgen import PerlinDefect  # noqa: E402

TARGET_SPEEDUP = 5.0
TEXTURE_COUNT = 16
TEXTURE_SIZE = 320  # not the image size, so both sides resize their textures as DRAEM does


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64, help="batch size B (default: 64)")
    parser.add_argument("--size", type=int, default=256, help="image side H = W (default: 256)")
    parser.add_argument("--repeats", type=int, default=10, help="timed repeats (default: 10)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed repeats first (default: 1)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="device of the operator's batch (the reference always runs on the CPU)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch and OpenCV (default: their own defaults); 1 is steadier on a "
                             "busy machine, where a parallel kernel waits for its slowest thread")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="write the raw results file here (e.g. docs/results/bench_perlin_cpu.json)")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.size < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--batch, --size and --repeats must be >= 1 and --warmup >= 0")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    return args


# -- the per-image reference ----------------------------------------------------------------------------
def _fade(t: np.ndarray) -> np.ndarray:
    return 6 * t ** 5 - 15 * t ** 4 + 10 * t ** 3


def perlin_numpy(shape, res, rng: np.random.Generator) -> np.ndarray:
    """One image of DRAEM's Perlin noise (``res`` lattice cells per axis) in float64, written the way
    ``rand_perlin_2d_np`` is: a ``(H, W, 2)`` grid of in-cell offsets, the corner gradients tiled to pixel
    resolution, one dot product per corner, then the faded lerps."""
    h, w = shape
    angles = 2 * math.pi * rng.random((res[0] + 1, res[1] + 1))
    gradients = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    u, v = np.arange(h) * (res[0] / h), np.arange(w) * (res[1] / w)
    grid = np.stack(np.meshgrid(u % 1, v % 1, indexing="ij"), axis=-1)
    cell_r, cell_c = u.astype(np.int64), v.astype(np.int64)  # np.repeat of the lattice, as index arrays

    def dot(dr, dc):
        tiled = gradients[cell_r + dr][:, cell_c + dc]
        return ((grid - np.array([dr, dc])) * tiled).sum(axis=-1)

    t = _fade(grid)
    n00, n10, n01, n11 = dot(0, 0), dot(1, 0), dot(0, 1), dot(1, 1)
    n0 = n00 + t[..., 0] * (n10 - n00)
    n1 = n01 + t[..., 0] * (n11 - n01)
    return math.sqrt(2) * (n0 + t[..., 1] * (n1 - n0))


def reference_one(image: np.ndarray, textures: List[np.ndarray], rng: np.random.Generator):
    """DRAEM's recipe on one HWC float32 image in [0, 1]: (image, mask, boxes xyxy, label).

    As in DRAEM's data loader the noise, and so the mask, are float64, which makes the blend float64 before
    the result is cast back to float32 (DRAEM then blends a second, redundant time; that is left out)."""
    h, w = image.shape[:2]
    res = (2 ** int(rng.integers(0, 6)), 2 ** int(rng.integers(0, 6)))
    noise = perlin_numpy((h, w), res, rng)
    rotation = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), float(rng.uniform(-90, 90)), 1.0)
    noise = cv2.warpAffine(noise, rotation, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    mask = np.where(noise > 0.5, 1.0, 0.0)[..., None]
    texture = textures[int(rng.integers(len(textures)))]
    texture = cv2.resize(texture, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    beta = float(rng.random()) * 0.8
    out = (image * (1 - mask) + (1 - beta) * texture * mask + beta * image * mask).astype(np.float32)
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask[..., 0].astype(np.uint8), connectivity=8)
    x, y, bw, bh = stats[1:, 0], stats[1:, 1], stats[1:, 2], stats[1:, 3]
    boxes = np.stack([x, y, x + bw, y + bh], axis=1)
    return out, mask, boxes, int(len(boxes) > 0)


def reference_batch(images: List[np.ndarray], textures: List[np.ndarray], seed: int):
    rng = np.random.default_rng(seed)
    return [reference_one(image, textures, rng) for image in images]


# -- the run --------------------------------------------------------------------------------------------
def make_inputs(batch: int, size: int):
    g = torch.Generator().manual_seed(1234)
    images = torch.rand(batch, 3, size, size, generator=g)
    # smooth random textures: a coarse random image, upsampled
    coarse = torch.rand(TEXTURE_COUNT, 3, 8, 8, generator=g)
    bank = torch.nn.functional.interpolate(coarse, size=(TEXTURE_SIZE, TEXTURE_SIZE), mode="bicubic",
                                           align_corners=False)
    bank = (bank.clamp(0, 1) * 255).round().to(torch.uint8)
    np_images = [np.ascontiguousarray(im.permute(1, 2, 0).numpy()) for im in images]
    np_textures = [np.ascontiguousarray(t.permute(1, 2, 0).numpy()) for t in bank]
    return images, bank, np_images, np_textures


def run(args: argparse.Namespace) -> Dict[str, object]:
    device = torch.device(args.device)
    images, bank, np_images, np_textures = make_inputs(args.batch, args.size)
    images = images.to(device)
    ops = {"perlin (textures)": PerlinDefect(textures=bank, augment=False),
           "perlin (default)": PerlinDefect()}
    times: Dict[str, List[float]] = {"clone": [], "reference": [], **{name: [] for name in ops}}
    with cpu_memory_mode("warm" if device.type == "cpu" else "default") as memory_mode:
        time_ms = make_timer(device, memory_mode)
        cpu_time_ms = make_timer(torch.device("cpu"), memory_mode)
        for i in range(args.warmup + args.repeats):
            sample = {"clone": time_ms(images.clone),
                      "reference": cpu_time_ms(lambda i=i: reference_batch(np_images, np_textures, i))}
            for name, op in ops.items():
                sample[name] = time_ms(lambda op=op, i=i: op(images, generator=torch.Generator().manual_seed(i)))
            if i >= args.warmup:
                for key, value in sample.items():
                    times[key].append(value)
    return {"device": device, "memory": memory_mode, "times": times,
            "median": {key: statistics.median(values) for key, values in times.items()}}


def render_tables(raw: Dict[str, object]) -> Dict[str, str]:
    """``perlin``: ms per batch and per image, ratio to the clone and speed-up over the reference, per timed call."""
    results = raw["results"]
    median, b = results["median_ms"], results["batch"]
    ref = median["reference"]
    rows = [[key, f"{value:.2f}", f"{value / b:.3f}", f"{value / median['clone']:.2f}x",
             "-" if key in ("clone", "reference") else f"{ref / value:.2f}x"] for key, value in median.items()]
    return {"perlin": markdown_table(["timed", "ms/batch", "ms/image", "x clone", "speed-up"], rows)}


def raw_results(args: argparse.Namespace, result: Dict[str, object]) -> Dict[str, object]:
    """What ``--json`` keeps of a run: the settings, every timing and the medians."""
    return {"batch": args.batch, "size": args.size, "repeats": args.repeats, "warmup": args.warmup,
            "device": str(result["device"]), "threads": torch.get_num_threads(), "opencv_threads": cv2.getNumThreads(),
            "memory": result["memory"], "target_speedup": TARGET_SPEEDUP, "times_ms": result["times"],
            "median_ms": result["median"]}


def print_report(args: argparse.Namespace, result: Dict[str, object]) -> None:
    median = result["median"]
    b = args.batch
    print(f"== PerlinDefect vs per-image NumPy/OpenCV DRAEM recipe: {result['device']} "
          f"({device_name(result['device'])}) ==")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, opencv {cv2.__version__} "
          f"(threads {cv2.getNumThreads()}), batch {b}x3x{args.size}x{args.size} float32, repeats {args.repeats} "
          f"(+{args.warmup} warmup), memory: {result['memory']}, load avg {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs")
    print(render_tables({"results": raw_results(args, result)})["perlin"])
    ratio = median["reference"] / median["perlin (textures)"]
    verdict = "met" if ratio >= TARGET_SPEEDUP else "MISSED"
    print(f"SUMMARY: PerlinDefect is {ratio:.2f}x faster per image than the per-image reference "
          f"(target >= {TARGET_SPEEDUP:g}x: {verdict})")


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("cuda requested but torch.cuda.is_available() is False; nothing to run")
        return {}
    threads = torch.get_num_threads(), cv2.getNumThreads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    try:
        result = run(args)
        print_report(args, result)
        if args.json:
            write_raw(args.json, "bench_perlin", command_line(__file__, argv), raw_results(args, result))
    finally:
        torch.set_num_threads(threads[0])
        cv2.setNumThreads(threads[1])
    return result


if __name__ == "__main__":
    main()
