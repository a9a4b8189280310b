"""Smoke test for benchmarks/bench_ops.py: a tiny run, so the script cannot silently rot."""
import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_ops.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_ops", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY = ["--batch", "2", "--size", "64", "--repeats", "1", "--warmup", "0", "--device", "cpu"]


def test_tiny_run_returns_and_prints_rows(bench, capsys, tmp_path):
    out = tmp_path / "bench.json"
    results = bench.main(TINY + ["--ops", "cutout", "cutpaste_scar", "--json", str(out)])
    printed = capsys.readouterr().out

    assert len(results) == 1 and results[0]["device"] == "cpu"
    assert results[0]["shape"] == [2, 3, 64, 64] and results[0]["clone_ms"] > 0
    rows = {row["op"]: row for row in results[0]["rows"]}
    assert set(rows) == {"cutout", "cutpaste_scar"}
    for name, row in rows.items():
        assert row["median_ms"] > 0 and row["ratio"] > 0
        assert row["status"] in ("pass", "FAIL")
        assert row["target"] == bench.TARGETS[name]
        line = next(line for line in printed.splitlines() if line.startswith(name + " "))
        assert line.split()[-1] == row["status"]
    assert "clone: median" in printed and "threads" in printed and "2x3x64x64" in printed
    assert results[0]["cpu_memory"] in ("warm", "default (warm needs glibc)")
    assert printed.strip().splitlines()[-2].startswith("SUMMARY:")
    assert json.loads(out.read_text())["results"][0]["rows"][0]["op"] == "cutout"


def test_pipeline_has_no_target_and_bad_op_is_reported_not_raised(bench, capsys):
    results = bench.main(TINY + ["--ops", "cutpaste_union", "no_such_op", "--cpu-memory", "default"])
    printed = capsys.readouterr().out
    rows = {row["op"]: row for row in results[0]["rows"]}
    assert rows["cutpaste_union"]["status"] == "-" and rows["cutpaste_union"]["target"] is None
    assert rows["no_such_op"]["status"] == "error"
    assert "errors: no_such_op@cpu" in printed


def test_every_operator_is_benchmarked_with_arguments_where_it_needs_them(bench):
    from defectgen import list_ops
    from defectgen.cli import NEEDS_ARGUMENTS

    assert bench.default_ops() == [name for name in list_ops() if name not in bench.SEPARATE_BENCHMARK]
    assert set(NEEDS_ARGUMENTS) <= set(bench.BENCH_ARGUMENTS)
    for name in NEEDS_ARGUMENTS:
        assert bench.build_op(name).to_config()["op"] == name


def test_kernel_benchmark_tiny_run(capsys):
    spec = importlib.util.spec_from_file_location("bench_kernels", BENCH.with_name("bench_kernels.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--batch", "2", "--size", "48", "--repeats", "1"])
    assert result["clone"] > 0 and result["cutpaste: take source pixels"] > 0
    assert 0.5 < result["hue_cosine_min"] <= result["hue_cosine_max"] <= 1.0
    assert "kornia HSV hue" in capsys.readouterr().out


def test_bench_generate_runs(capsys, tmp_path):
    spec = importlib.util.spec_from_file_location("bench_generate", BENCH.with_name("bench_generate.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--count", "8", "--files", "4", "--size", "32", "--repeats", "1", "--format", "coco",
                        "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ratio generate / imwrite" in out and "img/s" in out
    assert list(tmp_path.iterdir()) == []  # cleans up after itself


def test_bench_cutpaste_tiny_run(capsys, tmp_path):
    from test_io_mvtec import make_mvtec

    spec = importlib.util.spec_from_file_location("bench_cutpaste", BENCH.with_name("bench_cutpaste.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = make_mvtec(tmp_path / "cat", train=4, good=2, defects={"hole": 2})
    rows = module.main(["--data", str(root), "--pretexts", "cutout", "untrained", "--seeds", "0", "1",
                        "--steps", "1", "--image-size", "32", "--batch-size", "2", "--head-layers", "16",
                        "--json", str(tmp_path / "b.json")])
    assert [row["pretext"] for row in rows] == ["cutout", "untrained"]
    for row in rows:
        assert row["runs"] == 2 and set(module.METRICS) <= set(row)
        assert all(0 <= row[key][0] <= 1 and row[key][1] >= 0 for key in module.METRICS)
    assert rows[1]["final_accuracy"] is None and rows[0]["final_accuracy"] is not None
    printed = capsys.readouterr().out
    assert "| cutout |" in printed and "| untrained |" in printed and "mean ± std over 2 seeds" in printed
    saved = json.loads((tmp_path / "b.json").read_text())
    assert len(saved["runs"]) == 4 and saved["budget"]["steps"] == 1 and "head [16]" in saved["header"]


def test_bench_cutpaste_paper_budget_is_256_epochs(tmp_path):
    from test_io_mvtec import make_mvtec

    spec = importlib.util.spec_from_file_location("bench_cutpaste", BENCH.with_name("bench_cutpaste.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = make_mvtec(tmp_path / "cat", train=40)
    budget = module.settings(module.parse_args(["--data", str(root), "--budget", "paper", "--device", "cpu"]))
    assert budget["steps"] == 320 and budget["image_size"] == 256 and budget["seeds"] == [0, 1, 2, 3, 4]


def _learned_margins():
    spec = importlib.util.spec_from_file_location("learned_margins", BENCH.with_name("learned_margins.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_learned_margins_tiny_run(capsys, tmp_path):
    module = _learned_margins()
    assert module.main(["--tests", "cutpaste_patch_level", "--seeds", "0", "--breakage-seeds", "0",
                        "--json", str(tmp_path / "m.json")]) == 0
    printed = capsys.readouterr().out
    assert "| pixel_auroc | > 0.93 |" in printed and "breakage transposed_maps: seed 0: misses pixel_auroc" in printed
    assert printed.strip().endswith("every breakage misses one")
    saved = json.loads((tmp_path / "m.json").read_text())
    assert set(saved["tests"]["cutpaste_patch_level"]["runs"]["0"]) == {"image_auroc", "pixel_auroc"}


def test_learned_margins_reports_a_missed_limit_and_a_breakage_without_teeth(capsys, monkeypatch):
    module = _learned_margins()

    def measure(seed, breakage=None):  # a "learned" value that ignores the breakage, and misses on seed 1
        return {"auroc": 0.5 if seed == 1 else 0.99}

    monkeypatch.setattr(module, "learned_tests", lambda: {"fake": (measure, {"auroc": (">", 0.9)}, ("negated",))})
    assert module.main(["--seeds", "0", "1", "--breakage-seeds", "0"]) == 1
    printed = capsys.readouterr().out
    assert "fake seed 1: auroc = 0.5000" in printed
    assert "fake: breakage negated passes every limit on seed 0" in printed
