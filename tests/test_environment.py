"""defectgen.environment and `defectgen --version`: the versions line that the test log and bug reports carry."""
import platform

import torch

from defectgen import __version__, environment
from defectgen.cli import main


def test_versions_name_every_library_and_python():
    found = environment.versions()
    assert list(found) == ["python", *environment.LIBRARIES]
    assert found["python"] == platform.python_version()
    assert torch.__version__.startswith(found["torch"])
    assert found["kornia"] is not None and found["numpy"] is not None and found["opencv"] is not None


def test_a_missing_library_is_reported_not_raised(monkeypatch):
    monkeypatch.setitem(environment.LIBRARIES, "nothing", ("no-such-distribution-xyz",))
    assert environment.versions()["nothing"] is None
    assert "nothing -" in environment.describe()


def test_describe_has_the_torch_build_and_threads():
    line = environment.describe()
    assert f"torch {torch.__version__}," in line and f"torch {torch.get_num_threads()} threads" in line
    assert ("no GPU" in line) == (not torch.cuda.is_available())


def test_cli_version(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"defectgen {__version__}; python ") and "kornia" in out and out.count("\n") == 1
