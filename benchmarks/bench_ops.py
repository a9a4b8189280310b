#!/usr/bin/env python
"""Time every registered defect operator against ``images.clone()`` of the same batch.

Usage::

    python benchmarks/bench_ops.py                       # 64x3x256x256 float32, cpu (+ cuda if available)
    python benchmarks/bench_ops.py --device cuda --dtype uint8 --ops cutout scar --json out.json
    python benchmarks/bench_ops.py --cpu-memory warm default --json docs/results/bench_ops_cpu.json   # the published

The baseline is ``images.clone()``: every operator returns a fresh copy of the batch, so a copy is the
floor an operator cannot beat, and the ratio ``op / clone`` is what the spec's targets are written in.
Clone and operators are timed with the same method and interleaved (for each repeat: clone, then every
operator), so machine noise lands on both; the median over repeats is reported.

Randomness: each timed call gets ``torch.Generator().manual_seed(repeat_index)``, a *CPU* generator, on
every device. defectgen samples per-sample parameters on the generator's device and moves them to the
images' device, so a CPU generator gives the same defects (and the same amount of work) on CPU and CUDA,
and every operator sees the same seeds in the same repeat. The small host-to-device copy of the
parameters is part of the measured time, as it is in real use with a CPU generator.

CPU memory (``--cpu-memory``): a 64x3x256x256 float32 batch is 50 MB, and with glibc's default malloc
a fresh 50 MB buffer is either served from already-touched heap memory (clone = a ~2 ms memcpy here) or
freshly mmap'ed and page-faulted on first write (clone ~10 ms) depending on what ran before, so the
baseline, and every ratio, would change with the set of ``--ops``. ``warm`` (default) tells glibc to
keep freed memory (``mallopt``: no mmap, no trimming), as PyTorch's CUDA caching allocator does, so
buffers are reused and the ratios measure the operators' work; ``cold`` releases free memory
(``malloc_trim``) before every timed call, so every call pays its page faults; ``default`` leaves the
allocator alone. The mode is printed in the header; compare only runs with the same mode. Several modes
(``--cpu-memory warm default``) run one after the other in the same process, one column each in the table.

``--json PATH`` writes the raw results file (``benchmarks/raw_results.py``: the command, versions, machine and
every timing); ``render_tables(raw)`` renders its Markdown tables, the ones the script prints and the ones
``docs/render_tables.py`` publishes from ``docs/results/``. Nothing is written without ``--json``.

It is a benchmark, not a test: the exit status is always 0; missed targets are listed in the last line.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import defectgen  # noqa: E402
from defectgen import create_op, list_ops  # noqa: E402
from raw_results import command_line, markdown_table, write_raw  # noqa: E402

# Spec targets, as a multiple of the clone's median time. None: no target (printed "-").
TARGETS: Dict[str, Optional[float]] = {
    "cutout": 2.0,
    "cutpaste": 4.0,          # with its default colour jitter
    "scar": 10.0,             # rotated
    "cutpaste_scar": 10.0,    # rotated
    "cutpaste_union": None,   # pipelines: informational only
    "cutpaste_3way": None,
}
# operators that need constructor arguments are benchmarked with these (see build_op)
BENCH_ARGUMENTS: Dict[str, Callable[[], Dict[str, object]]] = {
    "patch": lambda: {"mask": "scar", "source": "constant"},
    "region": lambda: {"mask": "perlin", "source": "constant"},
    "one_of": lambda: {"ops": ["cutout", "scar"]},
    "transplant": lambda: {"bank": synthetic_bank()},
    # the CPU-budget bottle model's architecture (32 px windows, width 32), random weights: the same work as a
    # trained one; only when named (--ops diffusion): bench_diffusion.py measures it against real defects
    "diffusion": lambda: {"model": _inpaint_model(), "steps": 25, "guidance": 3.0},
}
# operators not in the default list: a batch of 64 takes them seconds per call, and they have their own benchmark
SEPARATE_BENCHMARK = {"diffusion": "benchmarks/bench_diffusion.py"}
DTYPES = {"float32": torch.float32, "uint8": torch.uint8, "float16": torch.float16}
CLONE = "clone"


def default_ops() -> List[str]:
    return [name for name in list_ops() if name not in SEPARATE_BENCHMARK]


def _inpaint_model():
    from defectgen import InpaintModel

    return InpaintModel.create(["defect"], resolution=32, width=32, layers_per_block=1)


def synthetic_bank():
    """A defect bank made offline: eight discs and bars cut from the embedded default images, with two
    defect types, about the size of real MVTec defects at 256 px (4-25 % of the crop)."""
    from defectgen.bank import DefectBank
    from defectgen.io.images import default_images

    images = default_images(128, 8)
    rows, cols = torch.meshgrid(torch.arange(128), torch.arange(128), indexing="ij")
    radius = torch.arange(8).view(8, 1, 1) * 4 + 10
    discs = (rows - 64) ** 2 + (cols - 64) ** 2 <= radius ** 2
    bars = ((rows - 64).abs() <= radius) & ((cols - 64).abs() <= 3)
    masks = torch.where(torch.arange(8).view(8, 1, 1) % 2 == 0, discs, bars)
    return DefectBank.from_pairs(images, masks, ["dent" if i % 2 == 0 else "scratch" for i in range(8)])


def build_op(name: str):
    """The operator ``name`` with its default arguments, or the benchmark's arguments where it needs some."""
    return create_op(name, **BENCH_ARGUMENTS[name]()) if name in BENCH_ARGUMENTS else create_op(name)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64, help="batch size B (default: 64)")
    parser.add_argument("--size", type=int, default=256, help="image side H = W (default: 256)")
    parser.add_argument("--channels", type=int, default=3, choices=(1, 3), help="C (default: 3)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="image dtype (default: float32)")
    parser.add_argument("--repeats", type=int, default=20, help="timed repeats per op (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed repeats first (default: 3)")
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all",
                        help="cpu, cuda, or all (default: all = cpu, plus cuda when available)")
    parser.add_argument("--ops", nargs="+", metavar="NAME", default=None,
                        help="operator names from defectgen.list_ops() (default: all; those that need "
                             f"arguments ({', '.join(BENCH_ARGUMENTS)}) get the ones in BENCH_ARGUMENTS)")
    parser.add_argument("--cpu-memory", choices=("warm", "cold", "default"), nargs="+", default=["warm"],
                        help="glibc allocator regime(s) for CPU runs, each a column (default: warm; see the module "
                             "docstring)")
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="also write the raw results file here (the published one: docs/results/"
                             "bench_ops_cpu.json)")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.size < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--batch, --size and --repeats must be >= 1 and --warmup >= 0")
    return args


def make_images(batch: int, channels: int, size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(1234)
    if dtype == torch.uint8:
        images = torch.randint(0, 256, (batch, channels, size, size), generator=g, dtype=torch.uint8)
    else:
        images = torch.rand(batch, channels, size, size, generator=g).to(dtype)
    return images.to(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4   # glibc mallopt parameters
_GLIBC_DEFAULTS = {_M_TRIM_THRESHOLD: 128 * 1024, _M_MMAP_MAX: 65536}  # restored after (glibc's static defaults)


def _libc():
    """glibc with mallopt/malloc_trim, or None (other libcs / platforms)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018  (AttributeError if not glibc)
        return libc
    except (OSError, AttributeError):
        return None


@contextlib.contextmanager
def cpu_memory_mode(mode: str):
    """Put glibc's malloc in the requested regime for the duration; yields the mode actually in force."""
    libc = _libc() if mode != "default" else None
    if libc is None:
        yield "default" if mode == "default" else f"default ({mode} needs glibc)"
        return
    if mode == "warm":
        libc.mallopt(_M_MMAP_MAX, 0)               # big buffers come from the heap ...
        libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)  # ... and stay there when freed (C int)
    try:
        yield mode
    finally:
        if mode == "warm":
            for param, value in _GLIBC_DEFAULTS.items():
                libc.mallopt(param, value)
            libc.malloc_trim(0)


def _before_call(device: torch.device, memory_mode: str) -> Callable[[], None]:
    """Untimed step before every timed call: in ``cold`` mode, hand free memory back to the OS."""
    libc = _libc() if device.type == "cpu" and memory_mode == "cold" else None
    if libc is None:
        return lambda: None
    return lambda: libc.malloc_trim(0)


def make_timer(device: torch.device, memory_mode: str = "default") -> Callable[[Callable[[], object]], float]:
    """Return ``time_ms(fn)``: wall-clock ms of one call, synchronising around it on CUDA."""
    before = _before_call(device, memory_mode)
    if device.type == "cuda":
        def time_ms(fn):
            torch.cuda.synchronize(device)
            start = time.perf_counter()
            out = fn()
            torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - start
            del out
            return elapsed * 1e3
    else:
        def time_ms(fn):
            before()
            start = time.perf_counter()
            out = fn()
            elapsed = time.perf_counter() - start
            del out
            return elapsed * 1e3
    return time_ms


def _quantile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def bench_device(device: torch.device, names: Sequence[str], args: argparse.Namespace,
                 memory_mode: str = "default") -> Dict[str, object]:
    dtype = DTYPES[args.dtype]
    images = make_images(args.batch, args.channels, args.size, dtype, device)
    ops: Dict[str, object] = {}
    errors: Dict[str, str] = {}
    for name in names:
        try:
            ops[name] = build_op(name)
        except Exception as error:  # report, keep benchmarking the others
            errors[name] = f"{type(error).__name__}: {error}"

    load_before = _loadavg()
    time_ms = make_timer(device, memory_mode)
    times: Dict[str, List[float]] = {CLONE: [], **{name: [] for name in ops}}
    for i in range(args.warmup + args.repeats):
        record = i >= args.warmup
        t = time_ms(images.clone)
        if record:
            times[CLONE].append(t)
        for name in list(ops):
            op = ops[name]
            try:
                # a fresh CPU generator per call: every op sees the same seed in repeat i, on every device
                t = time_ms(lambda op=op, i=i: op(images, generator=torch.Generator().manual_seed(i)))
            except Exception as error:
                errors[name] = f"{type(error).__name__}: {error}"
                del ops[name]
                continue
            if record:
                times[name].append(t)

    clone_ms = statistics.median(times[CLONE])
    rows = []
    for name in names:
        target = TARGETS.get(name)
        row: Dict[str, object] = {"op": name, "target": target}
        if name in errors:
            row.update(median_ms=None, ratio=None, status="error", error=errors[name])
        else:
            samples = times[name]
            median = statistics.median(samples)
            ratio = median / clone_ms
            status = "-" if target is None else ("pass" if ratio <= target else "FAIL")
            row.update(median_ms=median, ratio=ratio, status=status,
                       p25_ms=_quantile(samples, 0.25), p75_ms=_quantile(samples, 0.75), min_ms=min(samples),
                       # median of per-repeat op/clone ratios: robust to slow drift of the machine
                       paired_ratio=statistics.median(o / c for o, c in zip(samples, times[CLONE])),
                       times_ms=samples)
        rows.append(row)

    return {
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "defectgen": defectgen.__version__,
        "threads": torch.get_num_threads(),
        "shape": list(images.shape),
        "dtype": args.dtype,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "loadavg_1min": [load_before, _loadavg()],
        "cpu_memory": memory_mode if device.type == "cpu" else "cuda caching allocator",
        "clone_ms": clone_ms,
        "clone_times_ms": times[CLONE],
        "rows": rows,
    }


def _loadavg() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def _fmt_target(target: Optional[float]) -> str:
    return "-" if target is None else f"<= {target:g}x"


def print_report(result: Dict[str, object], file=None) -> None:
    file = file or sys.stdout
    p = lambda *a: print(*a, file=file)  # noqa: E731
    shape = "x".join(str(s) for s in result["shape"])
    p(f"== {result['device']} ({result['device_name']}) ==")
    p(f"torch {result['torch']}, defectgen {result['defectgen']}, threads {result['threads']}, "
      f"batch {shape} {result['dtype']}, repeats {result['repeats']} (+{result['warmup']} warmup), "
      f"memory: {result['cpu_memory']}")
    load = result["loadavg_1min"]
    p(f"clone: median {result['clone_ms']:.3f} ms   (1-min load avg before/after: {load[0]}/{load[1]} "
      f"on {os.cpu_count()} CPUs)")
    header = f"{'op':<16} {'median ms':>10} {'x clone':>8} {'target':>9}  {'result':<6}"
    p(header)
    p("-" * len(header))
    for row in result["rows"]:
        if row["status"] == "error":
            p(f"{row['op']:<16} {'-':>10} {'-':>8} {_fmt_target(row['target']):>9}  error: {row['error']}")
            continue
        p(f"{row['op']:<16} {row['median_ms']:>10.3f} {row['ratio']:>7.2f}x {_fmt_target(row['target']):>9}  "
          f"{row['status']}")


MEMORY_LABELS = {"warm": "warm", "cold": "cold", "default": "default allocator"}


def _column(result: Dict[str, object]) -> str:
    """A run's column label: its allocator regime on the CPU (one run per ``--cpu-memory`` mode)."""
    if result["device"] != "cpu":
        return str(result["device"])
    mode = str(result["cpu_memory"])
    return MEMORY_LABELS.get(mode, mode)


def render_tables(raw: Dict[str, object]) -> Dict[str, str]:
    """The Markdown tables of a raw results file, per device: ``DEVICE`` holds the operators with a target (and the
    pipelines), ratio to the clone per allocator regime, a missed target in bold; ``DEVICE_others`` the rest, in ms
    per batch and ratio."""
    results = raw["results"]
    tables: Dict[str, str] = {}
    for device in dict.fromkeys(r["device"] for r in results):
        runs = [r for r in results if r["device"] == device]
        rows = [{row["op"]: row for row in r["rows"]} for r in runs]
        names = list(dict.fromkeys(row["op"] for r in runs for row in r["rows"]))

        def ratio(row, digits=2):
            if row is None or row["status"] == "error":
                return "error" if row is not None else "-"
            text = f"{row['ratio']:.{digits}f}x"
            return f"**{text}**" if row["status"] == "FAIL" else text

        targeted = [n for n in names if n in TARGETS]
        if targeted:
            header = ["operator", "target"] + [f"{_column(r)}: x clone" for r in runs]
            body = [[n, "–" if TARGETS[n] is None else f"<= {TARGETS[n]:g}x"] + [ratio(by.get(n)) for by in rows]
                    for n in targeted]
            tables[str(device)] = markdown_table(header, body)
        others = [n for n in names if n not in TARGETS]
        if others:
            batch = runs[0]["shape"][0]
            header = ["operator"]
            for r in runs:
                header += [f"{_column(r)}: ms per batch of {batch}", f"{_column(r)}: x clone"]
            body = []
            for n in others:
                cells = [n]
                for by in rows:
                    row = by.get(n)
                    ok = row is not None and row["status"] != "error"
                    cells += [f"{row['median_ms']:.1f}" if ok else "error", ratio(row, 1)]
                body.append(cells)
            tables[f"{device}_others"] = markdown_table(header, body)
    return tables


def main(argv: Optional[Sequence[str]] = None) -> List[Dict[str, object]]:
    """Run the benchmark; print one report per device and allocator regime, the Markdown tables, and return the
    per-run results."""
    args = parse_args(argv)
    names = list(args.ops) if args.ops else default_ops()
    devices = []
    if args.device in ("cpu", "all"):
        devices.append(torch.device("cpu"))
    if args.device in ("cuda", "all"):
        if torch.cuda.is_available():
            devices.append(torch.device("cuda"))
        elif args.device == "cuda":
            print("cuda requested but torch.cuda.is_available() is False; nothing to run")

    results = []
    for device in devices:
        for mode in args.cpu_memory if device.type == "cpu" else ["default"]:
            with cpu_memory_mode(mode) as memory_mode:
                result = bench_device(device, names, args, memory_mode)
            print_report(result)
            print()
            results.append(result)
    for name, text in render_tables({"results": results}).items():
        print(f"{name}:\n{text}\n")

    missed, errors = [], []
    for res in results:
        for r in res["rows"]:
            if r["status"] == "FAIL":
                missed.append(f"{r['op']}@{res['device']} {r['ratio']:.2f}x > {r['target']:g}x")
            elif r["status"] == "error":
                errors.append(f"{r['op']}@{res['device']}")
    checked = sum(r["target"] is not None for res in results for r in res["rows"])
    line = (f"SUMMARY: {len(missed)} of {checked} targets missed: " + "; ".join(missed) if missed
            else f"SUMMARY: all {checked} targets met")
    if errors:
        line += f"; errors: {', '.join(errors)}"
    print(line)

    if args.json:
        write_raw(Path(args.json), "bench_ops", command_line(__file__, argv), results)
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
    sys.exit(0)
