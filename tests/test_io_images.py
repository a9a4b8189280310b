"""Image reading: bit depths, channel layouts, colour order, folder loading and the embedded default set."""
import cv2
import numpy as np
import pytest
import torch

from defectgen.io import default_images, list_images, load_folder, read_image


@pytest.fixture
def image_folder(tmp_path):
    """A folder with one image of each layout a camera may write, one in a subfolder, plus a non-image."""
    gray8 = np.tile(np.arange(40, dtype=np.uint8) * 6, (30, 1))
    cv2.imwrite(str(tmp_path / "a_gray8.png"), gray8)
    cv2.imwrite(str(tmp_path / "b_gray16.PNG"), np.full((30, 40), 65535, dtype=np.uint16))
    red = np.zeros((30, 40, 3), dtype=np.uint8)
    red[..., 0] = 255  # RGB red
    cv2.imwrite(str(tmp_path / "c_rgb.png"), cv2.cvtColor(red, cv2.COLOR_RGB2BGR))
    (tmp_path / "sub").mkdir()
    rgba = np.zeros((30, 40, 4), dtype=np.uint8)
    rgba[..., 2] = 200  # RGB(A) blue
    rgba[..., 3] = 10   # nearly transparent: alpha must be dropped, not multiplied in
    cv2.imwrite(str(tmp_path / "sub" / "d_rgba.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_list_images_is_recursive_sorted_and_case_insensitive(image_folder):
    names = [p.relative_to(image_folder).as_posix() for p in list_images(image_folder)]
    assert names == ["a_gray8.png", "b_gray16.PNG", "c_rgb.png", "sub/d_rgba.png"]


def test_list_images_rejects_missing_and_empty_folders(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        list_images(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="holds no images"):
        list_images(tmp_path)


def test_read_image_layouts(image_folder):
    gray8 = read_image(image_folder / "a_gray8.png")
    assert gray8.shape == (30, 40, 1) and gray8.dtype == np.uint8 and gray8[0, 39, 0] == 234

    gray16 = read_image(image_folder / "b_gray16.PNG")
    assert gray16.shape == (30, 40, 1) and gray16.dtype == np.uint8 and (gray16 == 255).all()

    rgb = read_image(image_folder / "c_rgb.png")
    assert rgb.shape == (30, 40, 3) and (rgb[..., 0] == 255).all() and (rgb[..., 1:] == 0).all()

    rgba = read_image(image_folder / "sub" / "d_rgba.png")
    assert rgba.shape == (30, 40, 3) and (rgba[..., 2] == 200).all() and (rgba[..., :2] == 0).all()


def test_read_image_scales_16_bit_by_rounding(tmp_path):
    values = np.array([[0, 128, 129, 257, 32896, 65535]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "ramp.png"), values)
    assert read_image(tmp_path / "ramp.png")[0, :, 0].tolist() == [0, 0, 1, 1, 128, 255]


def test_read_image_names_the_unreadable_path(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        read_image(bad)


def test_load_folder_resizes_and_converts_channels(image_folder):
    rgb = load_folder(image_folder, size=16)
    assert rgb.shape == (4, 3, 16, 16) and rgb.dtype == torch.uint8
    assert (rgb[0, 0] == rgb[0, 1]).all() and (rgb[0, 1] == rgb[0, 2]).all()  # gray repeated
    assert (rgb[2, 0] == 255).all() and (rgb[2, 1:] == 0).all()  # red stays red after resizing

    gray = load_folder(image_folder, size=50, limit=3, channels=1)  # enlarging: linear interpolation
    assert gray.shape == (3, 1, 50, 50)
    assert abs(int(gray[2].float().mean()) - 76) <= 1  # pure red -> luma 0.299 * 255


def test_load_folder_validates_arguments(image_folder, tmp_path):
    with pytest.raises(ValueError, match="channels"):
        load_folder(image_folder, channels=2)
    with pytest.raises(ValueError, match="size"):
        load_folder(image_folder, size=0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        load_folder(empty)


def test_default_images_shape_and_determinism():
    images = default_images()
    assert images.shape == (8, 3, 256, 256) and images.dtype == torch.uint8
    assert torch.equal(images, default_images())
    assert len({tuple(img.flatten()[:4096].tolist()) for img in images}) == 8  # 8 distinct tiles

    small = default_images(size=32, count=10)
    assert small.shape == (10, 3, 32, 32)
    assert torch.equal(small[8:], small[:2])  # cycles past the 8 tiles
    assert (small[0, 0] == small[0, 2]).all()  # brick is gray, replicated to RGB
    assert not (small[3, 0] == small[3, 2]).all()  # immunohistochemistry is in colour
