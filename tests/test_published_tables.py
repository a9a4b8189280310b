"""Every table the README and docs publish equals a re-render from its committed raw file (docs/render_tables.py)."""
import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def render():
    spec = importlib.util.spec_from_file_location("render_tables", ROOT / "docs" / "render_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_tables_equal_their_re_render(render):
    stale = []
    for page in render.PAGES:
        _, changed = render.render_page((ROOT / page).read_text())
        stale += [f"{page}: {c}" for c in changed]
    assert stale == [], "run `python docs/render_tables.py` (or fix the raw file): " + "; ".join(stale)


def test_published_tables_are_marked(render):
    """The pages hold generated tables at all, and every marker names a raw file that exists."""
    count = 0
    for page in render.PAGES:
        for match in render.MARKER.finditer((ROOT / page).read_text()):
            count += 1
            source = match["source"]
            path = (ROOT / "docs" / source / "results.jsonl") if source.startswith("ablation/") else \
                (ROOT / "docs" / source)
            assert path.is_file(), f"{page}: {source} has no raw file"
    assert count >= 2


def test_a_hand_edited_number_is_caught(render):
    page = (ROOT / "docs" / "results.md").read_text()  # the README's measured results moved there
    match = next(render.MARKER.finditer(page))
    body = match["body"]
    digit = next(i for i, c in enumerate(body) if c.isdigit())
    edited = body[:digit] + str((int(body[digit]) + 1) % 10) + body[digit + 1:]
    tampered = page[:match.start("body")] + edited + page[match.end("body"):]
    _, changed = render.render_page(tampered)
    assert changed == [f"{match['source']}#{match['name']}"]
    fixed, _ = render.render_page(tampered)
    assert fixed == page


def test_readme_results_at_a_glance_copy_published_numbers(render):
    """The README's summary table is not rendered: each of its measured numbers (those with a decimal point) must
    appear in a table that is, so a number edited by hand or left behind by a re-run fails here."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Results at a glance", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|") and not line.startswith("|---")][1:]
    assert rows, "the README lost its results-at-a-glance table"
    published = "\n".join(match["body"] for page in render.PAGES
                          for match in render.MARKER.finditer((ROOT / page).read_text()))
    for row in rows:
        cells = row.split("|")[3]  # the result column
        for number in re.findall(r"\d+\.\d+", cells):
            assert re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", published), f"{number} ({cells.strip()})"


def test_raw_files_name_their_command_versions_and_machine():
    for path in sorted((ROOT / "docs" / "results").glob("*.json")):
        raw = json.loads(path.read_text())
        for key in ("benchmark", "command", "date", "versions", "machine", "results"):
            assert key in raw, f"{path.name} has no {key!r}"
        assert raw["command"].startswith(("python ", "OMP_NUM_THREADS", "defectgen ")), path.name


def test_real_images_worth_interpolates_the_k_alone_curve_in_log_k(render):
    curve = {5: [0.20, 0.22], 10: [0.30], 50: [0.50]}
    assert render.real_images_worth(curve, 0.30) == "10"
    assert render.real_images_worth(curve, 0.40) == "22"        # exp(mean(log 10, log 50)) = 22.4
    assert render.real_images_worth(curve, 0.10) == "< 5"
    assert render.real_images_worth(curve, 0.60) == "> 50"
    assert render.real_images_worth({}, 0.3) == "-"


def test_fewshot_summary_compares_each_family_with_k_real_alone(render, tmp_path, monkeypatch):
    rows = []
    for seed, (alone, fit) in enumerate([((0.2, 0.3, 0.5), (0.4, 0.5, 0.5)), ((0.2, 0.3, 0.5), (0.4, 0.5, 0.5))]):
        for family, values in (("none", alone), ("fit", fit)):
            for k, value in zip((5, 10, 50), values):
                rows.append({"family": family, "regime": f"synthetic+{k}", "detector": "yolo", "test_set": "real",
                             "status": "done", "seed": seed, "cell": f"{family}{k}{seed}",
                             "metrics": {"map_50": value}, "timings": {"cell_seconds": 60},
                             "versions": "torch 2.14.1, numpy"})
    folder = tmp_path / "ablation" / "toy"
    folder.mkdir(parents=True)
    (folder / "results.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    monkeypatch.setattr(render, "DOCS", tmp_path)
    table = render.fewshot_summary("toy")
    assert "| K real alone | 20.0 ± 0.0 | 30.0 ± 0.0 | 50.0 ± 0.0 | - / - / - | - |" in table
    assert "| fit + K real | 40.0 ± 0.0 | 50.0 ± 0.0 | 50.0 ± 0.0 | +20.0 / +20.0 / +0.0 | 50 |" in table
