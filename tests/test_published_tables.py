"""Every table the README and docs publish equals a re-render from its committed raw file (docs/render_tables.py)."""
import importlib.util
import json
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
    page = (ROOT / "README.md").read_text()
    match = next(render.MARKER.finditer(page))
    body = match["body"]
    digit = next(i for i, c in enumerate(body) if c.isdigit())
    edited = body[:digit] + str((int(body[digit]) + 1) % 10) + body[digit + 1:]
    tampered = page[:match.start("body")] + edited + page[match.end("body"):]
    _, changed = render.render_page(tampered)
    assert changed == [f"{match['source']}#{match['name']}"]
    fixed, _ = render.render_page(tampered)
    assert fixed == page


def test_raw_files_name_their_command_versions_and_machine():
    for path in sorted((ROOT / "docs" / "results").glob("*.json")):
        raw = json.loads(path.read_text())
        for key in ("benchmark", "command", "date", "versions", "machine", "results"):
            assert key in raw, f"{path.name} has no {key!r}"
        assert raw["command"].startswith(("python ", "OMP_NUM_THREADS", "defectgen ")), path.name
