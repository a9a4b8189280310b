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
