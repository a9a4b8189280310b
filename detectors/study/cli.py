"""``defectgen ablate``: run a study recipe into a folder, resume it, run a shard of it, or re-render its report.

    defectgen ablate recipes/ablation_deeppcb.yaml --out runs/pcb --budget cpu
    defectgen ablate recipes/ablation_bottle.yaml --out runs/bottle --budget gpu --shard 3/8
    defectgen ablate recipes/ablation_bottle.yaml --out runs/bottle --resume
    defectgen ablate recipes/methods_bottle.yaml --out runs/methods_cable --data-root mvtec/cable --budget cpu
    defectgen ablate --report runs/bottle
    defectgen ablate recipes/ablation_bottle.yaml --out runs/bottle --budget gpu --executor ray   # all local GPUs
    defectgen ablate recipes/ablation_bottle.yaml --out /shared/runs --executor slurm --partition gpu

Exit codes: 0 when every cell of this run finished, 1 when some failed (the study went on; the report marks
them), 2 for a usage error (bad recipe key, missing path, a regime the data cannot support, a folder holding
another study, executor flags that do not go together, a missing optional extra), always before any training
starts; 130 when interrupted with an executor (its outstanding tasks cancelled, finished cells kept).
``defectgen`` finds :data:`ABLATE` through the ``defectgen.commands`` entry points.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, Optional

from defectgen.cli_support import CliError, Command, add_device_argument, resolve_device
from defectgen.executors.options import add_executor_arguments

INTERRUPTED = 130


def add_ablate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", metavar="RECIPE.yaml", type=Path, nargs="?",
                        help="the study recipe (see docs/ablate.md and recipes/ablation_*.yaml)")
    parser.add_argument("--out", metavar="DIR", type=Path,
                        help="the study folder: one folder per cell, results.jsonl / .csv, table.md, heatmaps/")
    parser.add_argument("--budget", metavar="NAME",
                        help="a named budget of the recipe (e.g. cpu, gpu); default: the one the study folder was "
                             "run with, else the recipe's settings as written")
    parser.add_argument("--data-root", metavar="DIR",
                        help="replace the recipe's data.root: the same recipe on another data set of its format "
                             "(e.g. another MVTec category); give it again with --resume")
    parser.add_argument("--resume", action="store_true",
                        help="continue a study folder that holds finished cells (after a crash, or to merge "
                             "shards); finished cells are never run again, a changed recipe is refused")
    parser.add_argument("--shard", metavar="K/N",
                        help="run only the K-th of N shares of the cells (0 <= K < N), e.g. one per SLURM array "
                             "task into one shared --out")
    parser.add_argument("--retry-failed", action="store_true", help="run cells recorded as failed again")
    parser.add_argument("--plan", action="store_true", help="print the cells (id, family, regime, detector, seed) "
                                                            "and exit without training")
    parser.add_argument("--report", metavar="DIR", type=Path,
                        help="only re-render the report (tables, heatmaps) of the study folder DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    add_device_argument(parser)
    add_executor_arguments(parser, "cell")


def run_ablate(args: argparse.Namespace) -> int:
    from defectgen.executors.base import ExecutorError
    from defectgen.executors.options import executor_options
    from defectgen.run_folder import interleaved_share, read_json

    from .folder import STUDY_FILE, parse_shard
    from .plan import expand
    from .recipe import load_study
    from .runner import run_study
    from .schema import RecipeError

    if args.report is not None:
        if args.recipe is not None or args.out is not None:
            raise CliError("--report DIR re-renders a finished study folder; give no recipe or --out with it")
        return _report_only(args.report)
    if args.recipe is None:
        raise CliError("give a study recipe (RECIPE.yaml), or --report DIR")
    budget = args.budget
    try:
        if budget is None and args.out is not None:  # a resumed study keeps the budget it was started with
            existing = read_json(args.out / STUDY_FILE)
            budget = (existing or {}).get("budget")
        study = load_study(args.recipe, budget, data_root=args.data_root)
        shard = parse_shard(args.shard) if args.shard else None
        if args.plan:
            cells = interleaved_share(expand(study), shard)
            for cell in cells:
                print(f"{cell.id}  {cell.family:16s} {cell.regime:14s} {cell.detector:12s} seed {cell.seed}")
            print(f"{len(cells)} cells", file=sys.stderr)
            return 0
        if args.out is None:
            raise CliError("--out DIR is required: the study folder")
        options = executor_options(args)
        if options.local:
            counts = run_study(study, args.out, device=resolve_device(args.device), shard=shard,
                               resume=args.resume, retry_failed=args.retry_failed, progress=not args.quiet)
        else:
            if shard is not None:
                raise CliError(f"--shard runs one share of the cells in this process; --executor "
                               f"{options.executor} places every cell itself: drop --shard")
            counts = _run_on_executor(study, args, options)
            if counts is None:
                return INTERRUPTED
    except (RecipeError, ExecutorError) as error:
        raise CliError(str(error)) from None
    print(f"{counts['done']} cells done, {counts['failed']} failed, {counts['skipped']} already finished; report: "
          f"{args.out / 'table.md'}")
    return 1 if counts["failed"] else 0


def _run_on_executor(study, args: argparse.Namespace, options) -> Optional[Dict[str, int]]:
    """The study's cells as tasks of the executor the options name; None when interrupted (Ctrl-C cancelled the
    outstanding tasks; finished cells are kept and ``--resume`` continues anywhere)."""
    from defectgen.checks import parse_device
    from defectgen.executors.options import make_executor

    from .runner import run_study

    if args.device != "auto":  # resolved where each cell runs; only its spelling can be checked here
        try:
            parse_device(args.device)
        except ValueError as error:
            raise CliError(f"--device: {error}") from None
    executor = make_executor(options, slurm_folder=args.out / "slurm")
    try:
        return run_study(study, args.out, device=args.device, resume=args.resume, retry_failed=args.retry_failed,
                         progress=not args.quiet, executor=executor, retries=options.retries,
                         resources=options.resource_overrides())
    except KeyboardInterrupt:
        print(f"interrupted: finished cells are kept in {args.out}; --resume runs the rest", file=sys.stderr)
        return None
    finally:
        executor.close()


def _report_only(folder: Path) -> int:
    from .report import render_report

    try:
        paths = render_report(folder)
    except ValueError as error:
        raise CliError(str(error)) from None
    plots = f" and {len(paths['method_plots'])} method-ranking plots" if paths["method_plots"] else ""
    print(f"wrote {paths['table']}, {paths['jsonl']}, {paths['csv']}, {len(paths['heatmaps'])} heatmaps{plots}")
    return 0


ABLATE = Command("ablate", "run a study: which synthetic defect families, in which detectors, find which real "
                           "defects (a YAML recipe expanded into resumable, shardable cells; tables and heatmaps)",
                 add_ablate_arguments, run_ablate, order=60)
