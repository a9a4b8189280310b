"""The preview grid and the ``defectgen preview`` command."""
import cv2
import numpy as np
import pytest
import torch

import defectgen
from defectgen.cli import NEEDS_ARGUMENTS, main
from defectgen.preview import preview_grid, save_png

GUTTER = 4  # preview_grid's default


def _grid_height(size):
    return 3 * size + 4 * GUTTER


def _default_ops():
    return [name for name in defectgen.list_ops() if name not in NEEDS_ARGUMENTS]


def test_preview_writes_one_grid_per_op(tmp_path, capsys):
    assert main(["preview", "--out-dir", str(tmp_path), "--count", "2", "--size", "64"]) == 0
    names = _default_ops()
    assert sorted(p.stem for p in tmp_path.glob("*.png")) == names
    assert capsys.readouterr().out.split() == [str(tmp_path / f"{name}.png") for name in names]
    widths = set()
    for name in names:
        grid = cv2.imread(str(tmp_path / f"{name}.png"))
        assert grid.shape[0] == _grid_height(64) and grid.shape[2] == 3
        widths.add(grid.shape[1])
    assert len(widths) == 1 and widths.pop() > 2 * (64 + GUTTER)


def test_preview_from_input_folder(tmp_path):
    source = tmp_path / "ok"
    source.mkdir()
    for i in range(3):
        cv2.imwrite(str(source / f"{i}.png"), np.full((40, 50), 60 * i, dtype=np.uint8))
    out = tmp_path / "out"
    assert main(["preview", "--input", str(source), "--op", "cutout", "--op", "scar", "--out-dir", str(out),
                 "--count", "2", "--size", "48"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["cutout.png", "scar.png"]
    assert cv2.imread(str(out / "cutout.png")).shape[0] == _grid_height(48)


@pytest.mark.parametrize("argv, message", [
    (["preview", "--op", "cutpastee"], "unknown op 'cutpastee'"),
    (["preview", "--size", "0"], "--size"),
    (["preview", "--count", "two"], "--count"),
    (["preview", "--input", "MISSING_DIR"], "does not exist"),
    ([], "required"),
])
def test_preview_errors_are_one_line_with_exit_code_2(tmp_path, capsys, argv, message):
    assert main(argv + (["--out-dir", str(tmp_path)] if argv else [])) == 2
    err = capsys.readouterr().err
    assert err.startswith("defectgen: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_unknown_op_lists_known_ops(capsys):
    assert main(["preview", "--op", "nope"]) == 2
    assert "cutpaste_scar" in capsys.readouterr().err


def test_empty_input_folder_is_an_error(tmp_path, capsys):
    assert main(["preview", "--input", str(tmp_path), "--out-dir", str(tmp_path / "out")]) == 2
    assert "holds no images" in capsys.readouterr().err


@pytest.mark.parametrize("channels, dtype", [(1, torch.uint8), (3, torch.float32), (1, torch.float64)])
def test_preview_grid_shapes(channels, dtype):
    images = torch.rand(3, channels, 40, 56, generator=torch.Generator().manual_seed(0))
    if dtype == torch.uint8:
        images = (images * 255).to(torch.uint8)
    else:
        images = images.to(dtype)
    result = defectgen.create_op("cutpaste")(images, generator=torch.Generator().manual_seed(1))
    grid = preview_grid(images, result, class_names=["ok", "cutpaste"])
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3
    assert grid.shape[0] == 3 * 40 + 4 * GUTTER
    one = preview_grid(images[:1], defectgen.create_op("cutpaste")(images[:1], seed=0))
    assert grid.shape[1] - one.shape[1] == 2 * (56 + GUTTER)


def test_preview_grid_marks_mask_and_boxes():
    images = torch.full((1, 1, 64, 64), 0.5)
    result = defectgen.create_op("cutout")(images, seed=0)
    grid = preview_grid(images, result, gutter=0)
    annotated = grid[128:, grid.shape[1] - 64:].astype(int)
    x1, y1, x2, y2 = result.boxes[0].int().tolist()
    assert y2 > 20  # below the label caption in the top-left corner
    assert (annotated[y2 - 1, x1:x2] == [0, 255, 0]).all()  # box drawn on the defect's last row of pixels
    assert (annotated[y2, x1:x2] != [0, 255, 0]).any(axis=1).all()  # and not beyond it (1 px at this size)
    inside = annotated[y1 + 1:y2 - 1, x1 + 1:x2 - 1]
    assert (inside[..., 0] > inside[..., 1] + 50).all()  # tinted red inside the mask
    assert (annotated[-1, -1] == 128).all()  # untouched gray outside it


def test_save_png_creates_folders_and_keeps_rgb_order(tmp_path):
    red = np.zeros((4, 5, 3), dtype=np.uint8)
    red[..., 0] = 255
    path = save_png(red, tmp_path / "a" / "b" / "red.png")
    assert (cv2.imread(str(path))[..., 2] == 255).all()  # BGR on disk
