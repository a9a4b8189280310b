import contextlib
import io
import socket

import pytest
import torch

CUDA = torch.cuda.is_available()


def make_images(batch=4, channels=3, height=48, width=64, dtype=torch.float32, device="cpu", seed=0):
    """Non-square random images, so height/width mix-ups fail loudly."""
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        x = torch.randint(0, 256, (batch, channels, height, width), generator=g, dtype=torch.uint8)
    else:
        x = torch.rand(batch, channels, height, width, generator=g).to(dtype)
    return x.to(device)


def write_dark_ok_images(folder, rng, count, size=64):
    """``count`` defect-free images ``ok{i}.png`` of dark noise (``size`` px, values 0-39) into ``folder``, drawn
    from ``rng`` in order (the OK images the small study and detector tests train on)."""
    import cv2
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"ok{i}.png"), rng.integers(0, 40, (size, size, 3), dtype=np.uint8))
    return folder


def write_yolo_squares(root, rng, counts):
    """A small real YOLO set under ``root``: per split (``{"train": 3, ...}``), dark noise images of 64 px with a
    bright 16 px square (class ``blob``) on every image but the first, which is defect-free; and ``data.yaml``."""
    import cv2
    import numpy as np

    for split, count in counts.items():
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(count):
            image = rng.integers(0, 40, (64, 64, 3), dtype=np.uint8)
            lines = ""
            if i:
                image[16:32, 20:36] = 230
                lines = "0 0.4375 0.375 0.25 0.25\n"
            cv2.imwrite(str(root / "images" / split / f"{i}.png"), image)
            (root / "labels" / split / f"{i}.txt").write_text(lines)
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/test\ntest: images/test\n"
                                    "names: [blob]\n")


def run_cli(argv):
    """``defectgen.cli.main(argv)`` with stdout and stderr captured: ``(code, stdout, stderr)``."""
    from defectgen.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def pytest_sessionstart(session):
    """Print the library versions first, even with -q: a learned result or a float detail that fails on a fresh
    machine is traced to a release with this line (CI's log has it too)."""
    from defectgen.environment import describe

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"versions: {describe()}")


def pytest_collection_modifyitems(config, items):
    if CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def no_network(monkeypatch):
    """Every socket connect and name lookup raises ``OSError`` for the test's duration; the list it returns
    records each attempt, so a test asserts ``no_network == []`` (an attempt swallowed by a library still
    shows)."""
    return block_network(monkeypatch)


def block_network(monkeypatch):
    """What :func:`no_network` does, on any ``MonkeyPatch`` (a module-scoped one keeps it for a whole set-up, e.g.
    while a local Ray starts); returns the list of attempts."""
    calls = []

    def refuse(name):
        def call(*args, **kwargs):
            calls.append((name, args[:2]))
            raise OSError(f"network blocked in this test ({name})")
        return call

    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect_ex"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    return calls
