#!/usr/bin/env python
"""Where an operator's time goes: its kernels and the alternatives we chose between, against a clone.

Usage::

    python benchmarks/bench_kernels.py                      # 64x3x256x256, CPU, reused buffers
    python benchmarks/bench_kernels.py --device cuda --cpu-memory default
    python benchmarks/bench_kernels.py --json docs/results/bench_kernels_cpu.json     # the raw results file

``bench_ops.py`` says how fast each operator is; this script says why, and backs the design notes in the
code with numbers a reader can reproduce:

- ``Cutout`` is one whole-batch ``torch.where`` (``Replace.fill``); on uint8 it is a wrap-around
  ``x + (c - x) * m`` instead, because ``torch.where`` on uint8 is far slower on CPU.
- ``CutPaste`` is a rasterised pixel list, a gather of the source pixels (``take``), the colour jitter and
  a scatter of the result (``put_``).
- The colour jitter is a per-sample 3x3 matrix, not an exact HSV hue shift (kornia's ``adjust_hue``), for
  speed; the script also prints how closely its hue follows torchvision's (cosine of the two colour changes).

Times are medians over ``--repeats``, interleaved with ``images.clone()`` of the same batch (timed the same way,
with the same ``--cpu-memory`` regime as ``bench_ops.py``); ``x clone`` divides by the clone's median.
``--json PATH`` writes the raw results file (``benchmarks/raw_results.py``); ``render_tables(raw)`` renders
the table the script prints.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torchvision.transforms.v2.functional as TF

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ops import cpu_memory_mode, make_timer  # noqa: E402  (the sibling script's timing set-up)
from raw_results import command_line, markdown_table, write_raw  # noqa: E402

from defectgen import CutPaste  # noqa: E402
from defectgen.io import default_images  # noqa: E402
from defectgen.masks.geometry import rasterize_rotated_rectangles, rectangle_masks  # noqa: E402
from defectgen.sources.colour_jitter import ColourJitter  # noqa: E402

HUES = (-0.1, -0.05, 0.05, 0.1)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cpu-memory", choices=("warm", "cold", "default"), default="warm")
    parser.add_argument("--json", type=Path, default=None,
                        help="write the raw results file here (e.g. docs/results/bench_kernels_cpu.json)")
    return parser.parse_args(argv)


def kernels(images: torch.Tensor) -> Dict[str, Callable[[], object]]:
    """The timed steps, each a no-argument callable over precomputed inputs of a CutPaste call."""
    batch, channels, height, width = images.shape
    params = CutPaste()(images, seed=0).params
    shape = (params["height_px"], params["width_px"])
    pixels = rasterize_rotated_rectangles(*shape, params["angle_deg"], params["top"], params["left"],
                                          params["applied"], (height, width), axis_aligned=True)
    shift = (params["src_top"] - params["top"]) * width + (params["src_left"] - params["left"])
    source_index = pixels.channel_index(channels, shift)
    target_index = pixels.channel_index(channels)
    values = images.reshape(-1).take(source_index)
    region = rectangle_masks(params["top"], params["left"], *shape, params["applied"], (height, width))
    colour = torch.rand(batch, channels, 1, 1, device=images.device)
    images_u8 = (images * 255).to(torch.uint8)
    colour_u8 = (colour * 255).to(torch.uint8)
    canvas = images.clone()

    # the jitter's 90 ms alternative: kornia's exact HSV hue shift, on CutPaste's largest patch windows
    window = min(height, width, 182)
    patches = images[:, :, :window, :window].contiguous()
    one = torch.ones(batch, dtype=torch.long, device=images.device)
    window_pixels = rasterize_rotated_rectangles(one * window, one * window, torch.zeros(batch, device=images.device),
                                                 0 * one, 0 * one, one.bool(), (window, window), axis_aligned=True)
    window_values = patches.reshape(-1).take(window_pixels.channel_index(channels))
    hue = (torch.rand(batch, device=images.device) - 0.5) * 0.2

    import kornia  # a core dependency; imported here so the CutPaste rows do not depend on it
    return {
        "cutout: where over the batch (float32)": lambda: torch.where(region, colour, images),
        "cutout: where over the batch (uint8)": lambda: torch.where(region, colour_u8, images_u8),
        "cutout: wrap-around select (uint8)": lambda: images_u8 + (colour_u8 - images_u8) * region,
        f"cutpaste: rasterise ({pixels.count} px)": lambda: rasterize_rotated_rectangles(
            *shape, params["angle_deg"], params["top"], params["left"], params["applied"], (height, width),
            axis_aligned=True),
        "cutpaste: take source pixels": lambda: images.reshape(-1).take(source_index),
        "cutpaste: colour jitter": lambda: ColourJitter.apply(values.clone(), pixels, params, 1.0),
        "cutpaste: put_ into the copy": lambda: canvas.view(-1).put_(target_index, values),
        f"jitter, {window}x{window} windows: 3x3 matrix": lambda: ColourJitter.apply(
            window_values.clone(), window_pixels, params, 1.0),
        f"jitter, {window}x{window} windows: kornia HSV hue": lambda: kornia.enhance.adjust_hue(
            patches, hue * 6.283185307179586),
    }


def hue_agreement(device: torch.device) -> List[float]:
    """Cosine between our hue rotation's colour change and torchvision's HSV shift, per hue and image."""
    tiles = default_images(size=128, count=8)[[3, 7]].float().div(255)  # the two colour (IHC) tiles
    noise = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    cosines = []
    for image in torch.cat([tiles, noise]).to(device):
        c, h, w = image.shape
        one = torch.ones(1, dtype=torch.long, device=device)
        pixels = rasterize_rotated_rectangles(one * h, one * w, torch.zeros(1, device=device), 0 * one, 0 * one,
                                              one.bool(), (h, w), axis_aligned=True)
        for hue in HUES:
            params = {k: torch.ones(1, device=device) for k in ("brightness", "contrast", "saturation")}
            params["hue"] = torch.full((1,), hue, device=device)
            ours = ColourJitter.apply(image.reshape(c, -1).clone(), pixels, params, 1.0).reshape(c, h, w)
            theirs = TF.adjust_hue(image, hue)
            cosines.append(float(torch.nn.functional.cosine_similarity(
                (ours - image).flatten(), (theirs - image).flatten(), dim=0)))
    return cosines


def render_tables(raw: Dict) -> Dict[str, str]:
    """``kernels``: each kernel's median ms and its ratio to the clone of the same batch."""
    medians = raw["results"]["medians_ms"]
    clone = medians["clone"]
    rows = [[name, f"{value:.3f}", f"{value / clone:.2f}x"] for name, value in medians.items() if name != "clone"]
    return {"kernels": markdown_table(["kernel", "median ms", "x clone"], [["clone", f"{clone:.3f}", "1.00x"]] + rows)}


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
    args = parse_args(argv)
    device = torch.device(args.device)
    images = torch.rand(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(device)
    steps = kernels(images)
    with cpu_memory_mode(args.cpu_memory if device.type == "cpu" else "default") as mode:
        time_ms = make_timer(device, mode if mode in ("warm", "cold") else "default")
        times: Dict[str, List[float]] = {"clone": [], **{name: [] for name in steps}}
        for _ in range(args.repeats + 1):  # the first round warms up and is dropped
            for name, fn in [("clone", images.clone), *steps.items()]:
                times[name].append(time_ms(fn))
    medians = {name: statistics.median(values[1:] or values) for name, values in times.items()}
    clone = medians["clone"]
    print(f"torch {torch.__version__}, {device}, threads {torch.get_num_threads()}, batch "
          f"{args.batch}x3x{args.size}x{args.size} float32, repeats {args.repeats}, memory: {mode}")
    print(f"clone: median {clone:.3f} ms")
    cosines = hue_agreement(device)
    results = {"batch": args.batch, "size": args.size, "device": str(device), "repeats": args.repeats,
               "memory": mode, "medians_ms": medians, "times_ms": times,
               "hue_cosine_min": min(cosines), "hue_cosine_max": max(cosines)}
    print(render_tables({"results": results})["kernels"])
    print(f"hue rotation vs torchvision adjust_hue, cosine of the colour changes over hues {HUES} on the two "
          f"colour default tiles and uniform noise: min {min(cosines):.2f}, max {max(cosines):.2f}")
    if args.json:
        write_raw(args.json, "bench_kernels", command_line(__file__, argv), results)
        print(f"wrote {args.json}")
    return {**medians, "hue_cosine_min": min(cosines), "hue_cosine_max": max(cosines)}


if __name__ == "__main__":
    main()
