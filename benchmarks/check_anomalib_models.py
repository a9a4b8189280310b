"""Which anomalib image models train offline through ``AnomalibDetector``, and how long each takes.

    OMP_NUM_THREADS=1 python benchmarks/check_anomalib_models.py --json docs/results/anomalib_models_cpu.json
    python benchmarks/check_anomalib_models.py --models Padim Dfm --count 8 --size 32     # smoke run

Needs ``pip install 'defectgen[anomalib]'``. For every model (default: every name of
``detectors.anomalib.models.image_model_names()``, the ones defectgen refuses included, so the table says why;
or ``--models``) the script builds ``AnomalibDetector(model=NAME, ...)``, fits it on ``--count`` seeded normal
images (dark uniform noise, ``--size`` px, the recipe of ``tests/test_detectors_anomalib.py``) with
``--batch`` images per step and ``--steps`` optimiser steps for models trained by gradient (memory-bank models
make their one pass), then predicts ``--count`` other seeded images of the same kind. While a model is built,
fitted and used, **every socket connect and name lookup raises** (as the ``no_network`` fixture of
``tests/conftest.py`` does) and each attempt is recorded, so "trains offline" is measured, not assumed.

What each model is given:

- ``backbone="resnet18"`` where its constructor takes a ``backbone`` whose default is a ResNet (timm's
  ``resnet50``, ``wide_resnet50_2``, ...); other models keep their default backbone;
- ``backbone_weights=FILE``: a torchvision resnet18 state dict without ``fc.*``, randomly initialised with
  ``--seed`` and written to a temporary folder by this script (no weights are read from anywhere else); a model
  that asks for no pretrained backbone is built again without the file (defectgen refuses an unused file);
- ``generator="draem"`` (defectgen's DRAEM preset) for the models that make synthetic anomalies (DRAEM, GLASS).

Recorded per model: the status (``trains offline``; ``refused by defectgen``: a ``ValueError`` raised by
defectgen's own code, with its message; ``fails``: any other exception, with its one-line message;
``timed out`` after ``--timeout`` seconds), the stage it stopped at, build / fit / predict seconds (build
excludes importing anomalib, which is timed once as ``import_seconds``), the optimiser steps trained, whether it
gives anomaly maps, its backbone start from ``describe()`` and the connection attempts that were blocked.

``--json PATH`` writes the raw results file (``benchmarks/raw_results.py``), rewritten after every model so a
stopped run keeps what it finished; ``render_tables(raw)`` renders the tables the script prints and
``docs/anomalib_methods.md`` publishes (``models`` and ``messages``).
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import signal
import socket
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
from raw_results import command_line, markdown_table, write_raw  # noqa: E402

BENCHMARK = "check_anomalib_models"
GENERATOR = "draem"
OURS = (ROOT / "defectgen", ROOT / "detectors")  # code whose ValueError is a refusal by defectgen


class ModelTimeout(Exception):
    """A model ran past ``--timeout`` seconds."""


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", metavar="NAME",
                        help="anomalib class names (default: every image model anomalib has)")
    parser.add_argument("--size", type=int, default=64, help="image side in px (default: %(default)s)")
    parser.add_argument("--count", type=int, default=16,
                        help="normal training images, and as many images predicted (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=8, help="training images per step (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=10,
                        help="optimiser steps for models trained by gradient (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the images, the backbone file and the models (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="where to fit and predict (default: %(default)s)")
    parser.add_argument("--timeout", type=int, default=300,
                        help="seconds one model may take, build to prediction (default: %(default)s)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the raw results file here")
    return parser.parse_args(argv)


# -- the network, blocked ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def no_network() -> Iterator[List[str]]:
    """Within the block every socket connect and name lookup raises ``OSError``; yields the list of attempts
    (``"getaddrinfo huggingface.co"``, ...), which a library that swallows the error still fills."""
    calls: List[str] = []

    def refuse(name):
        def call(*args, **kwargs):
            target = args[1] if name in ("connect", "connect_ex") and len(args) > 1 else (args[0] if args else "")
            calls.append(f"{name} {target}")
            raise OSError(f"network blocked by check_anomalib_models ({name})")
        return call

    patches = [(socket.socket, "connect"), (socket.socket, "connect_ex"), (socket, "create_connection"),
               (socket, "getaddrinfo")]
    saved = [(owner, name, getattr(owner, name)) for owner, name in patches]
    for owner, name in patches:
        setattr(owner, name, refuse(name))
    try:
        yield calls
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Raise :class:`ModelTimeout` after ``seconds`` (POSIX main thread; elsewhere no limit)."""
    if seconds <= 0 or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum, frame):
        raise ModelTimeout(f"ran past --timeout {seconds} s")

    try:
        previous = signal.signal(signal.SIGALRM, expire)
    except ValueError:  # not the main thread
        yield
        return
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# -- inputs ---------------------------------------------------------------------------------------------------------
def normal_images(count: int, size: int, seed: int):
    """Dark uniform noise, uint8 ``(count, 3, size, size)``: the tests' normal images."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randint(20, 60, (count, 3, size, size), generator=generator, dtype=torch.uint8)


def write_backbone_file(folder: Path, seed: int) -> Path:
    """A seeded, randomly initialised torchvision resnet18 state dict without ``fc.*``."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    state = {k: v for k, v in torchvision.models.resnet18(weights=None).state_dict().items()
             if not k.startswith("fc.")}
    path = folder / "resnet18_random.pt"
    torch.save(state, path)
    return path


def settings_for(name: str, backbone_file: Path) -> Dict[str, Any]:
    """The constructor arguments this check gives model ``name`` (see the module docstring)."""
    import inspect

    import anomalib.models as models

    from detectors.anomalib.models import takes_generator

    out: Dict[str, Any] = {"model": name, "backbone_weights": str(backbone_file)}
    cls = getattr(models, name, None)
    if cls is not None:
        parameter = inspect.signature(cls.__init__).parameters.get("backbone")
        if parameter is not None and isinstance(parameter.default, str) and "resnet" in parameter.default:
            out["backbone"] = "resnet18"
    if takes_generator(name):
        out["generator"] = GENERATOR
    return out


# -- one model --------------------------------------------------------------------------------------------------------
def one_line(error: BaseException, folder: Path) -> str:
    """``Type: message`` on one line, the temporary folder of the backbone file written as ``TMP``."""
    text = " ".join(str(error).split()).replace(str(folder), "TMP") or "(no message)"
    return f"{type(error).__name__}: {text}"


def raised_by_defectgen(error: BaseException) -> bool:
    """A ``ValueError`` whose innermost frame is defectgen's own code: a deliberate refusal."""
    if not isinstance(error, ValueError) or error.__traceback__ is None:
        return False
    filename = Path(traceback.extract_tb(error.__traceback__)[-1].filename).resolve()
    return any(folder in filename.parents for folder in OURS)


def _unused_file(error: BaseException) -> bool:
    return isinstance(error, ValueError) and "asks for no pretrained backbone" in str(error)


def check_model(name: str, args: argparse.Namespace, backbone_file: Path) -> Dict[str, Any]:
    """Build, fit and predict one model with the network blocked; its record."""
    import torch

    from detectors.anomalib import AnomalibDetector

    row: Dict[str, Any] = {"model": name, "status": None, "stage": "build", "message": None, "settings": None,
                           "build_seconds": None, "fit_seconds": None, "predict_seconds": None,
                           "steps_trained": None, "maps": None, "start": None, "connection_attempts": []}
    train = normal_images(args.count, args.size, args.seed)
    test = normal_images(args.count, args.size, args.seed + 1)
    detector = None
    with no_network() as attempts, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with time_limit(args.timeout):
                settings = settings_for(name, backbone_file)
                common = {"image_size": args.size, "batch_size": args.batch, "seed": args.seed}
                start = time.perf_counter()
                try:
                    detector = AnomalibDetector(**settings, **common)
                except ValueError as error:
                    if not _unused_file(error):
                        raise
                    settings.pop("backbone_weights")  # the model asks for no pretrained backbone
                    start = time.perf_counter()
                    detector = AnomalibDetector(**settings, **common)
                row["build_seconds"] = time.perf_counter() - start
                row["settings"] = {k: v for k, v in settings.items() if k != "model"}
                row["start"] = detector.describe()["start"]
                row["stage"] = "fit"
                start = time.perf_counter()
                detector.fit(train, steps=args.steps, device=args.device)
                row["fit_seconds"] = time.perf_counter() - start
                row["steps_trained"] = detector.steps_trained
                row["stage"] = "predict"
                start = time.perf_counter()
                prediction = detector.predict(test.to(args.device))
                if args.device != "cpu" and torch.cuda.is_available():
                    torch.cuda.synchronize()
                row["predict_seconds"] = time.perf_counter() - start
                row["maps"] = prediction.maps is not None
                if prediction.scores.shape != (args.count,) or not bool(torch.isfinite(prediction.scores).all()):
                    raise ValueError(f"scores of shape {tuple(prediction.scores.shape)}, finite: "
                                     f"{bool(torch.isfinite(prediction.scores).all())}")
                row["stage"] = "done"
                row["status"] = "trains offline" if not attempts else "trains, network attempted"
        except ModelTimeout as error:
            row["status"], row["message"] = "timed out", str(error)
        except Exception as error:  # noqa: BLE001 - every failure is a result here
            row["status"] = "refused by defectgen" if raised_by_defectgen(error) else "fails"
            row["message"] = one_line(error, backbone_file.parent)
        row["connection_attempts"] = list(dict.fromkeys(attempts))  # in order, once each
        row["connection_attempt_count"] = len(attempts)
    del detector
    gc.collect()
    return row


# -- tables -----------------------------------------------------------------------------------------------------------
def _seconds(value: Optional[float]) -> str:
    if value is None:
        return ""
    return f"{value:.2f}" if round(value, 2) < 1 else f"{value:.1f}"


def _backbone(row: Dict[str, Any]) -> str:
    start = row.get("start")
    if not start:
        return ""
    if start["init"] == "backbone file":
        return f"{start.get('backbone') or 'default'} file"
    if start["init"] == "random":
        return "random (opt-in)"
    return "none asked"


def _result(row: Dict[str, Any]) -> str:
    status = row["status"]
    if status in ("trains offline", "trains, network attempted"):
        return status
    stage = {"build": "at build", "fit": "in fit", "predict": "in predict"}.get(row["stage"], "")
    kind = (row["message"] or "").split(":", 1)[0] if status == "fails" else ""
    return " ".join(part for part in (status, stage, f"({kind})" if kind else "") if part)


def models_table(raw: Dict[str, Any]) -> str:
    results = raw["results"]
    s = results["settings"]
    header = ["model", "result", "build (s)", f"fit (s), {s['steps']} steps or one pass",
              f"predict {s['count']} images (s)", "maps", "backbone", "connection attempts"]
    rows = []
    for r in results["models"]:
        fit = _seconds(r["fit_seconds"])
        if fit and r["steps_trained"] is not None:
            fit += " (one pass)" if r["steps_trained"] == 0 else f" ({r['steps_trained']} steps)"
        name = r["model"] + (f" (`generator: {r['settings']['generator']}`)"
                             if (r.get("settings") or {}).get("generator") else "")
        maps = "" if r["maps"] is None else ("yes" if r["maps"] else "no (image only)")
        rows.append([name, _result(r), _seconds(r["build_seconds"]), fit, _seconds(r["predict_seconds"]), maps,
                     _backbone(r), r.get("connection_attempt_count", len(r["connection_attempts"]))])
    return markdown_table(header, rows)


def messages_table(raw: Dict[str, Any]) -> str:
    rows = [[r["model"], r["stage"], (r["message"] or "").replace("|", "\\|")]
            for r in raw["results"]["models"] if r["message"]]
    return markdown_table(["model", "stopped at", "message"], rows)


def render_tables(raw: Dict[str, Any]) -> Dict[str, str]:
    """``models``: one row per model (status, seconds, maps, backbone start, connection attempts);
    ``messages``: the one-line message of every model that did not train."""
    return {"models": models_table(raw), "messages": messages_table(raw)}


def _libraries() -> Dict[str, Optional[str]]:
    """Versions of the libraries anomalib builds its models with (write_raw records torch and anomalib)."""
    from importlib import metadata

    out: Dict[str, Optional[str]] = {}
    for name in ("timm", "lightning", "huggingface_hub", "open_clip_torch"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# -- the run ----------------------------------------------------------------------------------------------------------
def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    command = command_line(__file__, argv)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from detectors.anomalib.models import image_model_names

        names = image_model_names()  # imports anomalib.models
    import_seconds = time.perf_counter() - start
    models = list(args.models) if args.models else names
    settings = {"size": args.size, "count": args.count, "batch": args.batch, "steps": args.steps,
                "seed": args.seed, "device": args.device, "timeout": args.timeout, "generator": GENERATOR,
                "images": "uniform noise in [20, 60), uint8, seeded (train: seed, predict: seed + 1)",
                "backbone_file": "torchvision resnet18, random init seeded with --seed, fc.* left out"}
    results: Dict[str, Any] = {"settings": settings, "libraries": _libraries(), "import_seconds": import_seconds,
                               "models": []}
    raw: Dict[str, Any] = {"results": results}
    with tempfile.TemporaryDirectory(prefix="check-anomalib-") as folder:
        backbone_file = write_backbone_file(Path(folder), args.seed)
        for name in models:
            row = check_model(name, args, backbone_file)
            if row["start"] and row["start"].get("path"):
                row["start"]["path"] = "TMP/" + backbone_file.name  # the folder is gone after the run
            results["models"].append(row)
            print(f"{name}: {row['status']}" + (f" ({row['message']})" if row["message"] else "")
                  + f" [{time.perf_counter() - start:.0f} s]", flush=True)
            if args.json is not None:
                raw = write_raw(args.json, BENCHMARK, command, results)
    tables = render_tables(raw if args.json is not None else {"results": results})
    print()
    print(tables["models"])
    print()
    print(tables["messages"])
    return raw


if __name__ == "__main__":
    main()
