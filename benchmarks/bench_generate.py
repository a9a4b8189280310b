"""Data set generation throughput against writing the same OK images with cv2.imwrite alone.

    python benchmarks/bench_generate.py [--count 512] [--size 256] [--op cutpaste] [--format yolo ...]
    python benchmarks/bench_generate.py --json docs/results/bench_generate.json    # the raw results file

Both are timed in the same run on the same machine: the baseline writes each output's OK image (already
decoded and resized, in memory) with ``cv2.imwrite``, which is the least any tool that writes a data set of
PNGs pays. ``defectgen generate`` additionally reads and resizes the source, synthesises the defect, writes
the image, its mask and the labels, and keeps the resume records. The ratio is generation time / baseline
time; below 2 means synthesis and labels cost less than the image encoding. The best of ``--repeats`` runs
of each is taken, alternating, so a noisy neighbour hurts both alike. ``--json PATH`` writes the raw results
file (``benchmarks/raw_results.py``: every repeat's time, the command, versions and machine);
``render_tables(raw)`` renders the table the script prints.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from defectgen import generate  # noqa: E402
from defectgen.io import default_images  # noqa: E402
from raw_results import command_line, markdown_table, write_raw  # noqa: E402


def write_ok_folder(folder: Path, files: int, size: int) -> None:
    """``files`` distinct OK images (texture tiles, flipped and rolled variants) as PNGs."""
    folder.mkdir(parents=True)
    base = default_images(size, 8).permute(0, 2, 3, 1).numpy()
    for i in range(files):
        image = np.roll(base[i % 8], shift=(i // 8) * 17, axis=1)
        cv2.imwrite(str(folder / f"ok_{i:04d}.png"), np.ascontiguousarray(image[:, :, ::-1]))


def time_imwrite(ok_images, count: int, out: Path) -> float:
    out.mkdir(parents=True)
    start = time.perf_counter()
    for i in range(count):
        cv2.imwrite(str(out / f"{i:06d}.png"), ok_images[i % len(ok_images)])
    return time.perf_counter() - start


def file_costs(folder: Path, image, n: int = 200):
    """(ms to create one small file in a fresh folder, ms to PNG-encode one OK image): the two costs that
    decide the ratio, since generate creates several files per image and imwrite one."""
    folder.mkdir()
    start = time.perf_counter()
    for i in range(n):
        with open(folder / f"{i}.txt", "wb") as handle:
            handle.write(b"0 0.5 0.5 0.1 0.1\n")
    create = (time.perf_counter() - start) / n * 1e3
    start = time.perf_counter()
    for _ in range(n):
        cv2.imencode(".png", image)
    encode = (time.perf_counter() - start) / n * 1e3
    shutil.rmtree(folder)
    return create, encode


def render_tables(raw) -> dict:
    """``generate``: the best time of each side, its rate and their ratio, with where both wrote."""
    r = raw["results"]
    b, g = r["best_imwrite_s"], r["best_generate_s"]
    row = [" + ".join(r["formats"]), r["written_to"], f"{b:.2f} s ({r['count'] / b:.1f} img/s)",
           f"{g:.2f} s ({r['count'] / g:.1f} img/s)", f"{g / b:.2f}x", f"{r['create_file_ms']:.2f} ms",
           f"{r['png_encode_ms']:.2f} ms"]
    header = ["formats", "written to", "cv2.imwrite alone", "defectgen generate", "generate / imwrite",
              "creating a small file", "one PNG encode"]
    return {"generate": markdown_table(header, [row])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=512)
    parser.add_argument("--files", type=int, default=64, help="OK images in the input folder")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--op", action="append", dest="ops")
    parser.add_argument("--format", action="append", dest="formats")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--write-threads", type=int, default=None,
                        help="threads that encode and write files (default: generate's own choice)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None,
                        help="where both write (default: the system temp folder); file creation costs differ a "
                             "lot between file systems, e.g. a disk and /dev/shm")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, default=None,
                        help="write the raw results file here (e.g. docs/results/bench_generate.json)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ops = args.ops or ["cutpaste"]
    formats = args.formats or ["yolo"]
    work = Path(tempfile.mkdtemp(prefix="bench_generate_", dir=args.dir))
    try:
        folder = work / "ok"
        write_ok_folder(folder, args.files, args.size)
        ok_images = [cv2.imread(str(p)) for p in sorted(folder.iterdir())]
        baseline, ours = [], []
        for r in range(args.repeats):
            baseline.append(time_imwrite(ok_images, args.count, work / f"imwrite{r}"))
            start = time.perf_counter()
            generate(folder, work / f"gen{r}", ops, count=args.count, formats=formats, size=args.size,
                     batch_size=args.batch_size, workers=args.workers, device=args.device, progress=False,
                     write_threads=args.write_threads)
            ours.append(time.perf_counter() - start)
            shutil.rmtree(work / f"imwrite{r}")
            shutil.rmtree(work / f"gen{r}")
        b, g = min(baseline), min(ours)
        create_ms, encode_ms = file_costs(work / "costs", ok_images[0])
        print(f"{args.count} images of {args.size} px, ops={ops}, formats={formats}, batch {args.batch_size}, "
              f"workers {args.workers}, device {args.device}, torch threads {torch.get_num_threads()}, "
              f"write threads {args.write_threads or 'default'}")
        print(f"writing to {work}")
        print(f"cv2.imwrite alone : {b:7.2f} s  {args.count / b:7.1f} img/s")
        print(f"defectgen generate: {g:7.2f} s  {args.count / g:7.1f} img/s")
        print(f"ratio generate / imwrite: {g / b:.2f}  (target < 2)")
        print(f"for scale, here: creating a small file {create_ms:.2f} ms, one PNG encode {encode_ms:.2f} ms")
        results = {"count": args.count, "files": args.files, "size": args.size, "ops": ops, "formats": formats,
                   "batch_size": args.batch_size, "workers": args.workers, "device": args.device,
                   "write_threads": args.write_threads, "repeats": args.repeats,
                   "written_to": str(args.dir) if args.dir else f"system temp folder ({tempfile.gettempdir()})",
                   "imwrite_s": baseline, "generate_s": ours, "best_imwrite_s": b, "best_generate_s": g,
                   "ratio": g / b, "create_file_ms": create_ms, "png_encode_ms": encode_ms}
        print(render_tables({"results": results})["generate"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        write_raw(args.json, "bench_generate", command_line(__file__, argv), results)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
