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
    raw = json.loads(out.read_text())
    assert raw["benchmark"] == "bench_ops" and raw["command"].startswith("python benchmarks/bench_ops.py --batch 2")
    assert {"versions", "machine", "date"} <= set(raw)
    assert raw["results"][0]["rows"][0]["op"] == "cutout"
    tables = bench.render_tables(raw)
    assert set(tables) == {"cpu"} and tables["cpu"] in printed  # the script prints the rendered table
    assert tables["cpu"].splitlines()[0] == "| operator | target | warm: x clone |"
    assert tables["cpu"].splitlines()[2].startswith("| cutout | <= 2x | ")


def test_memory_regimes_are_columns_of_one_table(bench, capsys, tmp_path):
    out = tmp_path / "bench.json"
    results = bench.main(TINY + ["--ops", "cutout", "shape", "--cpu-memory", "warm", "default", "--json", str(out)])
    printed = capsys.readouterr().out
    assert [r["cpu_memory"] for r in results] in (["warm", "default"], ["default (warm needs glibc)", "default"])
    tables = bench.render_tables(json.loads(out.read_text()))
    assert set(tables) == {"cpu", "cpu_others"} and all(table in printed for table in tables.values())
    assert tables["cpu"].splitlines()[0].endswith("| default allocator: x clone |")
    assert tables["cpu_others"].splitlines()[2].startswith("| shape | ")


def _published_files():
    results = Path(__file__).resolve().parents[1] / "docs" / "results"
    return {p.name: p.stat().st_mtime_ns for p in results.glob("*")} if results.is_dir() else {}


def test_pipeline_has_no_target_and_bad_op_is_reported_not_raised(bench, capsys):
    published = _published_files()
    results = bench.main(TINY + ["--ops", "cutpaste_union", "no_such_op", "--cpu-memory", "default"])
    printed = capsys.readouterr().out
    rows = {row["op"]: row for row in results[0]["rows"]}
    assert rows["cutpaste_union"]["status"] == "-" and rows["cutpaste_union"]["target"] is None
    assert rows["no_such_op"]["status"] == "error"
    assert "errors: no_such_op@cpu" in printed
    assert "| cutpaste_union | – | " in printed and "| no_such_op | error | error |" in printed
    assert _published_files() == published  # without --json nothing is written, docs/results/ least of all


def test_every_operator_is_benchmarked_with_arguments_where_it_needs_them(bench):
    from defectgen import list_ops
    from defectgen.cli import NEEDS_ARGUMENTS

    assert bench.default_ops() == [name for name in list_ops() if name not in bench.SEPARATE_BENCHMARK]
    assert set(NEEDS_ARGUMENTS) <= set(bench.BENCH_ARGUMENTS)
    for name in NEEDS_ARGUMENTS:
        assert bench.build_op(name).to_config()["op"] == name


def test_kernel_benchmark_tiny_run(capsys, tmp_path):
    spec = importlib.util.spec_from_file_location("bench_kernels", BENCH.with_name("bench_kernels.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--batch", "2", "--size", "48", "--repeats", "1", "--json", str(tmp_path / "k.json")])
    assert result["clone"] > 0 and result["cutpaste: take source pixels"] > 0
    assert 0.5 < result["hue_cosine_min"] <= result["hue_cosine_max"] <= 1.0
    printed = capsys.readouterr().out
    assert "kornia HSV hue" in printed
    raw = json.loads((tmp_path / "k.json").read_text())
    assert raw["benchmark"] == "bench_kernels" and raw["results"]["medians_ms"]["clone"] == result["clone"]
    table = module.render_tables(raw)["kernels"]
    assert table in printed and "| cutpaste: take source pixels | " in table


def test_perlin_benchmark_writes_raw_results_and_prints_their_table(capsys, tmp_path):
    spec = importlib.util.spec_from_file_location("bench_perlin", BENCH.with_name("bench_perlin.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--batch", "2", "--size", "64", "--repeats", "1", "--warmup", "0", "--json", str(tmp_path / "p.json")])
    printed = capsys.readouterr().out
    raw = json.loads((tmp_path / "p.json").read_text())
    assert raw["benchmark"] == "bench_perlin" and raw["results"]["batch"] == 2
    table = module.render_tables(raw)["perlin"]
    assert table in printed and "| perlin (textures) | " in table
    assert printed.strip().splitlines()[-1].startswith("SUMMARY")


def test_bench_generate_runs(capsys, tmp_path):
    spec = importlib.util.spec_from_file_location("bench_generate", BENCH.with_name("bench_generate.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    work, raw_file = tmp_path / "work", tmp_path / "g.json"
    work.mkdir()
    assert module.main(["--count", "8", "--files", "4", "--size", "32", "--repeats", "1", "--format", "coco",
                        "--dir", str(work), "--json", str(raw_file)]) == 0
    out = capsys.readouterr().out
    assert "ratio generate / imwrite" in out and "img/s" in out
    assert list(work.iterdir()) == []  # cleans up after itself
    raw = json.loads(raw_file.read_text())
    assert raw["benchmark"] == "bench_generate" and len(raw["results"]["generate_s"]) == 1
    table = module.render_tables(raw)["generate"]
    assert table in out and table.splitlines()[2].startswith(f"| coco | {work} | ")


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
    assert "| control: cutout |" in printed and "| control: untrained |" in printed
    assert "mean ± std over 2 seeds" in printed
    raw = json.loads((tmp_path / "b.json").read_text())
    assert raw["benchmark"] == "bench_cutpaste" and raw["command"].startswith("python benchmarks/bench_cutpaste.py")
    saved = raw["results"]
    assert len(saved["runs"]) == 4 and saved["budget"]["steps"] == 1 and "head [16]" in saved["header"]
    table = module.render_tables(raw)["pretexts"]
    assert table in printed and table.startswith("| pretext, head (16) | image AUROC |")


def test_bench_cutpaste_paper_budget_is_256_epochs(tmp_path):
    from test_io_mvtec import make_mvtec

    spec = importlib.util.spec_from_file_location("bench_cutpaste", BENCH.with_name("bench_cutpaste.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = make_mvtec(tmp_path / "cat", train=40)
    budget = module.settings(module.parse_args(["--data", str(root), "--budget", "paper", "--device", "cpu"]))
    assert budget["steps"] == 320 and budget["image_size"] == 256 and budget["seeds"] == [0, 1, 2, 3, 4]


def _module(name):
    spec = importlib.util.spec_from_file_location(name, BENCH.with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_object_renders_its_raw_file_and_names_a_continuing_command(tmp_path):
    """Training needs DeepPCB and an hour: the raw file's table and the resume bookkeeping are checked on a
    made-up run report."""
    module = _module("bench_object")
    from raw_results import write_raw

    report = {"overall": {"map_50": 0.5071, "map_50_95": 0.1824},
              "per_true_class": {"open": {"ap_50": 0.15}, "pin_hole": {"ap_50": 0.647}}}
    row = {"detector": "fasterrcnn", "run": "synth_pcb", "seed": 0, "epochs": 3, "images_per_epoch": 300,
           "train_seconds": 499.2, "report": report}
    path = tmp_path / "o.json"
    raw = write_raw(path, "bench_object", "python benchmarks/bench_object.py --json o.json",
                    {"budget": "cpu", "size": 320, "rows": [row]})
    table = module.render_tables(raw)["deeppcb"].splitlines()
    assert table[0].startswith("| detector | training data | real labels | mAP@50 | mAP@50:95 | open | short |")
    assert table[2] == "| fasterrcnn | synth_pcb | 0 | 50.7 | 18.2 | 15.0 | - | - | - | - | 64.7 | 499 |"
    previous = module.previous_runs(path)
    assert previous["rows"] == [row] and previous["commands"] == ["python benchmarks/bench_object.py --json o.json"]
    assert module.previous_runs(tmp_path / "none.json") == {"rows": [], "commands": []}


def test_bench_anomalib_merge_writes_one_raw_file_and_its_readme_table(tmp_path, capsys):
    """--merge without anomalib: two processes' raw files become one, naming both commands; the README's table
    (ratio to anomalib's generator, the first one 'faster') comes from it."""
    module = _module("bench_anomalib")
    from raw_results import write_raw

    def run(generator, seed, auroc):
        return {"generator": generator, "seed": seed, "image_auroc": auroc, "pixel_auroc": 0.7, "aupro": 0.5,
                "step_s": 6.6, "generator_s": 0.02, "steps": 200, "train_s": 1300.0}

    parts = []
    for seed, timing in ((0, {}), (1, {"anomalib": 0.3384, "draem": 0.2171, "cutpaste_3way": 0.02905})):
        runs = [run("anomalib", seed, 0.88), run("draem", seed, 0.9 - seed / 10), run("cutpaste_3way", seed, 0.7)]
        result = {"budget": {"size": 64, "steps": 200, "batch": 8, "seeds": [seed]}, "device": "cpu", "threads": 1,
                  "timing_batch": 64, "timing_repeats": 20, "timing_threads": 1, "generator_seconds": timing,
                  "runs": runs, "table": module.summarise(runs, ["anomalib", "draem", "cutpaste_3way"])}
        parts.append(tmp_path / f"s{seed}.json")
        write_raw(parts[-1], "bench_anomalib", f"python benchmarks/bench_anomalib.py --seeds {seed}", result,
                  date=f"2026-11-2{seed}")
    merged = tmp_path / "merged.json"
    module.main(["--merge", *map(str, parts), "--json", str(merged)])
    printed = capsys.readouterr().out
    raw = json.loads(merged.read_text())
    assert raw["merged_from"] == ["python benchmarks/bench_anomalib.py --seeds 0",
                                  "python benchmarks/bench_anomalib.py --seeds 1"]
    assert raw["date"] == "2026-11-21" and raw["command"].startswith("python benchmarks/bench_anomalib.py --merge")
    assert raw["results"]["budget"]["seeds"] == [0, 1] and len(raw["results"]["runs"]) == 6
    tables = module.render_tables(raw)
    assert tables["draem"] in printed and tables["timing"] in printed
    readme = tables["readme"].splitlines()
    assert readme[0] == "| generator | image AUROC | pixel AUROC | AUPRO | generator ms per (64, 3, 256, 256) batch |"
    assert readme[2] == "| anomalib's `PerlinAnomalyGenerator` | 88.0 ± 0.0 | 70.0 ± 0.0 | 50.0 ± 0.0 | 338 |"
    assert readme[3].startswith("| `draem` (same textures) | 85.0 ± 7.1 |")
    assert readme[3].endswith("| 217 (1.56x faster) |")
    assert readme[4].endswith("| 29 (11.6x) |")
    assert module.BUDGETS["cpu"]["seeds"] == [0, 1]  # the default command is the published one, both seeds
    # --replace: a changed generator's new runs (here seed 0 only) replace all of its earlier ones
    fixed = tmp_path / "fixed.json"
    write_raw(fixed, "bench_anomalib", "python benchmarks/bench_anomalib.py --generators draem --seeds 0",
              {"budget": {"size": 64, "steps": 200, "batch": 8, "seeds": [0]}, "device": "cpu", "threads": 1,
               "runs": [run("draem", 0, 0.5)], "table": module.summarise([run("draem", 0, 0.5)], ["draem"])},
              date="2026-11-23")
    module.main(["--merge", str(fixed), *map(str, parts), "--replace", "draem", "--json", str(merged)])
    runs = json.loads(merged.read_text())["results"]["runs"]
    assert sorted((r["generator"], r["seed"], r["image_auroc"]) for r in runs if r["generator"] == "draem") == \
        [("draem", 0, 0.5)]
    assert len(runs) == 5  # the other generators' runs of both seeds stay


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
    assert "breakage transposed_maps seed 0: misses pixel_auroc" in printed
    assert printed.strip().endswith("every breakage misses one")
    raw = json.loads((tmp_path / "m.json").read_text())
    assert raw["benchmark"] == "learned_margins" and {"versions", "machine", "date"} <= set(raw)
    assert raw["command"].startswith("python benchmarks/learned_margins.py --tests cutpaste_patch_level")
    test = raw["results"]["tests"]["cutpaste_patch_level"]
    assert set(test["runs"]["0"]) == {"image_auroc", "pixel_auroc", "image_auroc_control", "pixel_auroc_control"}
    tables = module.render_tables(raw)
    assert set(tables) == {"summary", "cost"} and all(t in printed for t in tables.values())
    assert "| `pixel_auroc` | > 0.93 |" in tables["summary"]


def test_learned_margins_writes_the_published_file_only_for_a_full_run(monkeypatch, tmp_path):
    module = _learned_margins()
    assert module.DEFAULT_JSON == Path(__file__).resolve().parents[1] / "docs" / "results" / "learned_margins.json"
    assert module.parse_args([]).seeds == [0, 1, 2, 3, 4] and module.parse_args([]).threads == 1

    def measure(seed, breakage=None):
        return {"auroc": 0.5 if breakage else 0.99}

    published = tmp_path / "learned_margins.json"
    monkeypatch.setattr(module, "DEFAULT_JSON", published)
    monkeypatch.setattr(module, "learned_tests", lambda: {"fake": (measure, {"auroc": (">", 0.9)}, ("negated",))})
    few = ["--seeds", "0", "--breakage-seeds", "0"]
    assert module.main(few + ["--tests", "fake"]) == 0 and not published.exists()  # a chosen subset: no file
    assert module.main(few) == 0 and published.is_file()  # every test: the published file


def test_learned_margins_reports_a_missed_limit_and_a_breakage_without_teeth(capsys, monkeypatch):
    module = _learned_margins()

    def measure(seed, breakage=None):  # a "learned" value that ignores the breakage, and misses on seed 1
        return {"auroc": 0.5 if seed == 1 else 0.99}

    monkeypatch.setattr(module, "learned_tests", lambda: {"fake": (measure, {"auroc": (">", 0.9)}, ("negated",))})
    assert module.main(["--seeds", "0", "1", "--breakage-seeds", "0", "--no-json"]) == 1
    printed = capsys.readouterr().out
    assert "fake seed 1: auroc = 0.5000" in printed
    assert "fake: breakage negated passes every limit on seed 0" in printed


def test_learned_margins_shows_trained_control_and_gain(capsys, monkeypatch, tmp_path):
    module = _learned_margins()

    def measure(seed, breakage=None):  # trained 12-13 hits where the untrained network finds 1; "untrained": 1
        hits = 1.0 if breakage == "untrained" else 12.0 + seed
        return {"hits": hits, "hits_control": 1.0, "hits_gain": hits - 1.0}

    limits = {"hits": (">", 9.5), "hits_gain": (">", 8.5)}
    monkeypatch.setattr(module, "learned_tests", lambda: {"fake": (measure, limits, ("untrained",))})
    assert module.main(["--seeds", "0", "1", "--breakage-seeds", "0", "--json", str(tmp_path / "m.json")]) == 0
    summary = module.render_tables(json.loads((tmp_path / "m.json").read_text()))["summary"]
    assert "| `fake` | `hits` | > 9.5 | 12 / 12.5 / 13 | none | 1 / 1 / 1 | untrained: 1 |" in summary
    assert "|  | `hits_gain` | > 8.5 | 11 / 11.5 / 12 | none |  | untrained: 0 |" in summary
    assert summary in capsys.readouterr().out


# -- bench_diffusion.py ---------------------------------------------------------------------------------------------
def _bench_diffusion():
    spec = importlib.util.spec_from_file_location("bench_diffusion", BENCH.with_name("bench_diffusion.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_tiny_bottle(root: Path, size: int = 48) -> Path:
    """A tiny MVTec-layout "bottle": noisy dark discs on white (so the bench's otsu_dark foreground is the disc),
    and per defect type three images with a bright blob of its own shape inside the disc, with its mask."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.4 * size) ** 2

    def ok_image():
        image = np.full((size, size, 3), 235, np.uint8)
        image[disc] = rng.integers(30, 60, (int(disc.sum()), 3))
        return image

    def write(path, array):
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), array)

    for i in range(6):
        write(root / "train" / "good" / f"{i:03d}.png", ok_image())
    write(root / "test" / "good" / "000.png", ok_image())
    for kind, (h, w) in {"crack": (3, 9), "hole": (5, 5)}.items():
        for i in range(3):
            image, mask = ok_image(), np.zeros((size, size), np.uint8)
            y, x = rng.integers(size // 3, 2 * size // 3 - h), rng.integers(size // 3, 2 * size // 3 - w)
            mask[y:y + h, x:x + w] = 255
            image[mask > 0] = 200
            write(root / "test" / kind / f"{i:03d}.png", image)
            write(root / "ground_truth" / kind / f"{i:03d}_mask.png", mask)
    return root


def test_bench_diffusion_tiny_run_writes_raw_results_and_prints_their_tables(capsys, tmp_path):
    module = _bench_diffusion()
    root = _write_tiny_bottle(tmp_path / "bottle")
    out, raw_file = tmp_path / "run", tmp_path / "raw.json"
    tiny = ["--data", str(root), "--out", str(out), "--json", str(raw_file), "--variants", "2",
            "--sampling-steps", "2", "--feature-steps", "1", "--speed-batch", "2", "--copy-angles", "4",
            "--copy-size", "16", "--device", "cpu"]
    module.main(tiny + ["--steps", "2"])
    printed = capsys.readouterr().out
    raw = json.loads(raw_file.read_text())

    assert raw["benchmark"] == "bench_diffusion" and raw["command"].startswith("python benchmarks/bench_diffusion.py")
    assert {"versions", "machine", "date"} <= set(raw)
    results = raw["results"]
    model = results["model"]
    assert model["trained_this_run"] and model["training_seconds_this_run"] > 0 and model["steps_done"] == 2
    assert len(model["train_defects"]) == 2 and len(model["held_out_defects"]) == 4  # a third of 3 per type
    assert all(name.startswith("test/") for name in model["train_defects"] + model["held_out_defects"])
    assert f"model folder: {model['folder']}" in printed
    tables = module.render_tables(raw)
    assert set(tables) == {"held_out_masks", "own_masks", "readme", "speed"}
    for table in tables.values():
        assert table in printed  # the script prints exactly the rendered tables
    for protocol in module.PROTOCOLS:
        rows = results["quality"]["protocols"][protocol]
        assert set(rows) == set(module.ROW_ORDER)
        assert rows["real (held out)"]["count"] == 4
        for name in ("no defect",) + module.METHODS:
            row = rows[name]
            assert row["count"] + row["dropped_off_foreground"] == 8
            assert row["kid_cutpaste_ssl"] is not None and 0 <= row["copies_pixels"] <= 1
            assert 0 <= row["copies_features"] <= 1
        assert rows["real (train third)"]["copies_pixels"] is None
    assert set(results["quality"]["copy_thresholds"]) == {"pixels", "features"}
    assert (out / "samples.png").is_file() and (out / "model").is_dir()

    # a model trained on another split is refused, before any work
    with pytest.raises(SystemExit, match="not trained on"):
        module.main(tiny + ["--model", str(out / "model"), "--seed", "1"])


def test_bench_diffusion_protocol_masks():
    """held_out_masks: transplant fills exactly the given mask; own_masks: every row anchored at the held-out
    centres, the cutpaste fill and no-defect rows in the diffusion row's drawn masks."""
    import torch

    from defectgen import DefectBank, RegionDefect

    module = _bench_diffusion()
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 255, (4, 3, 40, 40), generator=g, dtype=torch.uint8)
    masks = torch.zeros(4, 1, 40, 40, dtype=torch.bool)
    masks[0, 0, 5:9, 10:22] = masks[1, 0, 20:32, 20:24] = masks[2, 0, 8:14, 8:14] = masks[3, 0, 30:34, 2:12] = True
    bank = DefectBank.from_pairs(images, masks, ["a", "b", "a", "b"], margin_px=4)
    held = torch.zeros(3, 1, 40, 40, dtype=torch.bool)
    held[0, 0, 10:30, 12:16] = held[1, 0, 4:8, 4:30] = held[2, 0, 15:25, 15:25] = True
    op = RegionDefect(mask=module.GivenMasks(held), source=module.FittedTransplant(bank, held, ["a", "b", "a"]),
                      blend="replace")
    out = op(images[:3], seed=0)
    assert torch.equal(out.mask, held)
    # the tall held-out box gets the wide training defect turned by 90 degrees, scaled to cover the box
    params = out.params
    assert params["angle_deg"].tolist()[:2] == [90.0, 0.0]
    assert torch.equal(params["centre"], module.box_centres(held))


def test_bench_diffusion_copy_test_finds_a_moved_turned_rescaled_copy():
    import torch
    import torch.nn.functional as F

    module = _bench_diffusion()
    g = torch.Generator().manual_seed(0)

    def pattern(height, width):  # smooth, as real defects are at this scale: resampling must not decide
        return F.interpolate(torch.rand(1, 3, 3, 4, generator=g), size=(height, width), mode="bilinear",
                             align_corners=False)[0] * 200 + 40

    train = torch.full((3, 3, 64, 64), 40.0)
    masks = torch.zeros(3, 1, 64, 64, dtype=torch.bool)
    for i, (y, x) in enumerate([(10, 12), (30, 30), (40, 8)]):
        train[i, :, y:y + 8, x:x + 14] = pattern(8, 14)
        masks[i, 0, y:y + 8, x:x + 14] = True
    reference, _ = module.training_variants(train, masks, 4, 16)
    assert len(reference) == 3 * 8
    # defect 0, turned a quarter, flipped, doubled in size, brighter by 30 and put elsewhere on another image
    patch = train[0, :, 10:18, 12:26].rot90(1, (1, 2)).flip(2)
    patch = F.interpolate(patch[None], scale_factor=2, mode="nearest")[0] + 30
    copy = torch.full((1, 3, 64, 64), 90.0)
    copy_mask = torch.zeros(1, 1, 64, 64, dtype=torch.bool)
    copy[0, :, 20:48, 30:46] = patch
    copy_mask[0, 0, 20:48, 30:46] = True
    new = copy.clone()
    new[0, :, 20:48, 30:46] = pattern(28, 16)
    distance = module.aligned_distance(module.defect_crops(torch.cat([copy, new]), torch.cat([copy_mask] * 2), 16),
                                       reference)
    # resampling 28 rows down and 8 up leaves some difference (about 0.13); an unrelated pattern is about 0.55,
    # and on bottle the threshold from held-out real defects is about 0.45
    assert distance[0] < 0.2 and distance[1] > 0.4, distance


# -- bench_pretrain.py ----------------------------------------------------------------------------------------------
def test_bench_pretrain_tiny_run_shards_resumes_and_merges(capsys, tmp_path):
    """Every part at 32-64 px, 2 steps, one seed: equal images seen (random init trains S + R steps, an SSL run
    pretrains on R steps' images), the SSL backbones are pretrained once and reused by the probe, a shard of two
    leaves the other's runs out, --resume skips finished runs, --merge joins the two shares into the tables a
    single run prints, --reuse takes an earlier file's runs only where they did exactly the same."""
    from test_io_mvtec import make_mvtec
    from test_study_fewshot import write_pairs

    module = _module("bench_pretrain")
    bottle = make_mvtec(tmp_path / "cat", train=6, good=3, defects={"hole": 3, "crack": 2})
    write_pairs(tmp_path / "pcb", count=28, size=64)  # 21 training pairs: room for choose_real's 20
    tiny = ["--data", str(bottle), "--pcb", str(tmp_path / "pcb"), "--methods", "simclr", "simsiam", "--views",
            "plain", "negatives", "--seeds", "0", "--pretrain-share", "2", "--steps", "2", "--image-size", "32",
            "--batch-size", "4", "--rcnn-pretrain-share", "1", "--rcnn-pretrain-batch", "2", "--rcnn-steps", "2",
            "--rcnn-image-size", "64", "--rcnn-pretrain-size", "32", "--limit", "8", "--work", str(tmp_path / "work")]
    shares = [tmp_path / "s1.json", tmp_path / "s2.json"]
    for k, path in enumerate(shares, 1):
        module.main(tiny + ["--shard", f"{k}/2", "--json", str(path)])
    printed = capsys.readouterr().out
    assert "expected time about" in printed and module.RULE in printed and module.PROBE_NOTE in printed
    ids = [{r["id"] for r in json.loads(p.read_text())["results"]["runs"]} for p in shares]
    assert ids[0] and ids[1] and not ids[0] & ids[1]
    everything = ids[0] | ids[1]
    # simsiam has no negatives: 3 inits per bottle part; fasterrcnn: random and simclr/plain on 3 data sets
    inits = {"random", "simclr/plain", "simclr/negatives", "simsiam/plain"}
    assert everything == {f"{p}|{i}|seed0" for p in ("cutpaste", "probe") for i in inits} | {
        f"fasterrcnn|{d}|{i}|seed0" for d in module.PCB_DATA for i in ("random", "simclr/plain")}
    # resuming a finished share runs nothing and keeps its runs
    module.main(tiny + ["--shard", "1/2", "--json", str(shares[0]), "--resume"])
    assert "0 runs to do" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        module.main(tiny + ["--json", str(shares[0])])  # an existing file without --resume is refused
    merged = tmp_path / "m.json"
    raw = module.main(["--merge", *map(str, shares), "--json", str(merged)])
    printed = capsys.readouterr().out
    assert raw["benchmark"] == "bench_pretrain" and len(raw["merged_from"]) == 2
    runs = {r["id"]: r for r in raw["results"]["runs"]}
    assert set(runs) == everything and "shard" not in raw["results"]["settings"]
    assert runs["cutpaste|random|seed0"]["train_steps"] == 4 and runs["cutpaste|random|seed0"]["pretrain_s"] is None
    ssl = runs["cutpaste|simclr/negatives|seed0"]
    assert ssl["train_steps"] == 2 and ssl["pretrain_steps"] == 2 and ssl["pretrain_s"] > 0
    # 2 shared CutPaste steps x 3 x 4 images = 24 images: 3 plain SSL steps (8 views), 2 with negatives (12)
    assert runs["cutpaste|simclr/plain|seed0"]["pretrain_steps"] == 3
    for run_id, run in runs.items():
        if run["part"] == "cutpaste":
            assert run["images_seen"]["pretrain"] + run["images_seen"]["train"] == 48, run_id
    assert ssl["start"]["init"] == "backbone file" and runs["cutpaste|random|seed0"]["start"] == {"init": "random"}
    assert runs["probe|simclr/negatives|seed0"]["backbone"].startswith("resnet18 from backbone.pt")
    assert runs["fasterrcnn|real20|random|seed0"]["train_steps"] == 3 and \
        runs["fasterrcnn|real20|simclr/plain|seed0"]["train_steps"] == 2
    assert raw["results"]["pretrained"]["bottle|simclr/negatives|seed0"]["settings"]["negatives"]
    tables = module.render_tables(json.loads(merged.read_text()))
    assert set(tables) == {"cutpaste", "probe", "fasterrcnn"} and all(t in printed for t in tables.values())
    assert "| random init | 0 + 4 | 0 + 48 |" in tables["cutpaste"]
    assert "| SimCLR + hard negatives (cutpaste, scar) | 2 + 2 | 24 + 24 |" in tables["cutpaste"]
    assert tables["probe"].startswith("| backbone (frozen; diagnostic on test images) |")
    assert "| synth_pcb+real20 | 20 | random init | 0 + 3 | 0 + 12 |" in tables["fasterrcnn"]
    assert "| synth_pcb+real20 | 20 | SimCLR | 1 + 2 | 4 + 8 |" in tables["fasterrcnn"]
    # --reuse: the same plan takes every run from the merged file; another share of steps takes none
    again = module.main(tiny + ["--json", str(tmp_path / "again.json"), "--reuse", str(merged)])
    assert f"0 runs to do ({len(everything)} already" in capsys.readouterr().out
    assert {r["id"] for r in again["results"]["runs"]} == everything
    assert all(r["reused_from"] == str(merged) for r in again["results"]["runs"])
    assert again["results"]["settings"]["reuse"][0]["path"] == str(merged)
    other = [a if a != "2" or tiny[k - 1] != "--pretrain-share" else "3" for k, a in enumerate(tiny)]
    none = module.main(other + ["--parts", "cutpaste", "--json", str(tmp_path / "none.json"), "--reuse", str(merged)])
    assert not any("reused_from" in r for r in none["results"]["runs"])


def test_pairs_as_mvtec_splits_by_board_and_draws_box_masks(tmp_path, capsys):
    import cv2
    import numpy as np

    spec = importlib.util.spec_from_file_location("pairs_as_mvtec", BENCH.with_name("pairs_as_mvtec.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pairs = tmp_path / "pairs"
    for folder in ("images", "templates", "labels"):
        (pairs / folder).mkdir(parents=True)
    for k in range(6):
        name = f"{k:04d}"
        cv2.imwrite(str(pairs / "templates" / f"{name}.jpg"), np.full((40, 40, 3), 10 * k, np.uint8))
        cv2.imwrite(str(pairs / "images" / f"{name}.jpg"), np.full((40, 40, 3), 200, np.uint8))
        box = "" if k == 5 else "0 0 20 10 1\n"  # the last tested image has no labelled defect
        (pairs / "labels" / f"{name}.txt").write_text(box)
    out = tmp_path / "category"
    assert module.main(["--pairs", str(pairs), "--out", str(out), "--size", "20", "--train", "2",
                        "--test-good", "1"]) == 0
    names = {folder: sorted(p.stem for p in (out / folder).iterdir())
             for folder in ("train/good", "test/good", "test/pcb_defect", "ground_truth/pcb_defect")}
    assert names == {"train/good": ["0000", "0001"], "test/good": ["0002"], "test/pcb_defect": ["0003", "0004"],
                     "ground_truth/pcb_defect": ["0003_mask", "0004_mask"]}
    mask = cv2.imread(str(out / "ground_truth/pcb_defect/0003_mask.png"), cv2.IMREAD_GRAYSCALE)
    # the 20 x 10 box at half size (read_pairs makes DeepPCB's inclusive x2 / y2 one past: a pixel more)
    assert set(np.unique(mask)) == {0, 255} and mask[:5, :10].all()
    assert not mask[6:].any() and not mask[:, 11:].any()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        module.main(["--pairs", str(pairs), "--out", str(tmp_path / "other"), "--train", "5", "--test-good", "1"])
    assert exit_.value.code == 2 and "must leave defective test pairs" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a written category is not overwritten
        module.main(["--pairs", str(pairs), "--out", str(out)])
