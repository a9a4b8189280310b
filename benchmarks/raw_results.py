"""The one format of a benchmark's raw results file, under ``docs/results/``.

Every number the README and docs publish is rendered from such a file by ``python docs/render_tables.py``, so a
table can always be traced to the run that made it: the file holds the exact command, the library versions, the
machine and the date beside the results. A benchmark calls :func:`write_raw` once at its end (or after each unit
of work, so a stopped run keeps what it finished) and exposes ``render_tables(raw) -> {name: markdown}``, which
the render script calls; the benchmark prints the same tables, so the published and the printed tables are one
piece of code.

Layout of a raw file::

    {"benchmark": "bench_ops", "command": "python benchmarks/bench_ops.py ...", "date": "2026-12-07",
     "versions": {...}, "machine": {...}, "merged_from": [...optional...], "note": "...optional...",
     "results": {...whatever the benchmark measures...}}
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


def machine() -> Dict[str, Any]:
    """Where the run happened: processor, core count, torch threads and device."""
    import torch

    info = {"system": platform.system(), "machine": platform.machine(), "processor": _cpu_name(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def command_line(script: str, argv: Optional[Sequence[str]]) -> str:
    """The command that reproduces the run, as typed from the repository root."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python", f"benchmarks/{Path(script).name}", *map(shlex.quote, args)])


def write_raw(path: Path, benchmark: str, command: str, results: Any, *, merged_from: Optional[List[str]] = None,
              note: Optional[str] = None, date: Optional[str] = None, versions: Optional[Dict[str, Any]] = None,
              machine_info: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Write (atomically) and return the raw results file at ``path``.

    ``versions`` and ``machine_info`` default to this process's; a merge of runs made elsewhere passes theirs."""
    if versions is None:
        from defectgen.environment import versions as installed

        import torch

        versions = installed()
        versions["torch"] = torch.__version__
    raw: Dict[str, Any] = {"benchmark": benchmark, "command": command,
                           "date": date or datetime.date.today().isoformat(), "versions": versions,
                           "machine": machine() if machine_info is None else machine_info}
    if merged_from:
        raw["merged_from"] = list(merged_from)
    if note:
        raw["note"] = note
    raw["results"] = results
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(raw, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return raw


def read_raw(path: Path) -> Dict[str, Any]:
    raw = json.loads(Path(path).read_text())
    for key in ("benchmark", "command", "date", "versions", "machine", "results"):
        if key not in raw:
            raise ValueError(f"{path}: not a raw results file (no {key!r})")
    return raw


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; cells are written with ``str``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _count(n: Optional[int], what: str) -> Optional[str]:
    return None if n is None else f"{n} {what}" + ("" if n == 1 else "s")


def provenance(raw: Dict[str, Any]) -> str:
    """One italic line under a published table: the command, date, machine and torch release of its raw file."""
    m = raw.get("machine") or {}  # transcribed old numbers may know only part of it (null: unknown)
    parts = [_count(m.get("cpu_count"), "CPU core"), m.get("gpu"), _count(m.get("torch_threads"), "torch thread"),
             f"torch {(raw.get('versions') or {}).get('torch')}" if (raw.get("versions") or {}).get("torch") else None,
             f"merged from {len(raw['merged_from'])} runs" if raw.get("merged_from") else None]
    where = ", ".join(part for part in parts if part)
    return f"*`{raw['command']}` on {raw['date']}" + (f" ({where})" if where else "") + ".*"


__all__ = ["RESULTS", "machine", "command_line", "write_raw", "read_raw", "markdown_table", "provenance"]
