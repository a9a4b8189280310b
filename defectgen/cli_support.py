"""What both command lines share: the usage-error type, the parser that raises it, argument types and the
device, folder and library-error helpers.

``defectgen.cli`` (preview, generate) and ``detectors.cli`` (train, eval) both import this module, so the
dependency stays one way (``detectors -> defectgen``) and neither imports the other's internals. It imports
no torch at module level: building the parser (``defectgen --help``) stays fast.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Dict, NoReturn

EXIT_USAGE = 2


class CliError(Exception):
    """A user error: reported as one ``defectgen: error: ...`` line on stderr, with exit code 2."""


class Parser(argparse.ArgumentParser):
    """Raise :class:`CliError` instead of exiting, so every usage error is reported the same way."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see '{self.prog} --help')")


def int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse ``type=`` that parses an integer >= ``minimum`` and names ``what`` it expected."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


positive_int = int_at_least(1, "a positive integer")
non_negative_int = int_at_least(0, "a non-negative integer")


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when present), cpu, cuda or cuda:N (default: %(default)s)")


def resolve_device(device: str) -> str:
    """``--device`` as a device string (``"auto"`` picks CUDA when present); a :class:`CliError` if unusable."""
    from .checks import resolve_device as resolve

    try:
        return str(resolve(device))
    except ValueError as error:
        raise CliError(f"--device: {error}") from None


def check_folder(path: Path, what: str) -> None:
    """A :class:`CliError` unless ``path`` is an existing folder (``what`` names the option)."""
    if not path.exists():
        raise CliError(f"{what} folder {str(path)!r} does not exist")
    if not path.is_dir():
        raise CliError(f"{what} {str(path)!r} is not a folder")


# the library's argument names as the user typed them, for messages such as "learning_rate must be >= 0.0"
FLAGS: Dict[str, str] = {
    "learning_rate": "--lr", "image_size": "--image-size", "patch_size": "--patch-size",
    "patch_stride": "--patch-stride", "batch_size": "--batch-size", "steps": "--steps", "seed": "--seed",
    "stride": "--stride", "fpr_limit": "--fpr-limit", "epochs": "--epochs", "real_count": "--real-count",
}

LIBRARY_ERRORS = (ValueError, TypeError, FileNotFoundError, FloatingPointError)
"""The exceptions a library call raises for bad input; the CLIs turn them into one-line usage errors."""


def library_error(error: BaseException) -> CliError:
    """A library exception as a one-line :class:`CliError`, naming options by their flags."""
    text = str(error).strip() or type(error).__name__
    if isinstance(error, OSError) and error.filename and error.strerror:
        text = f"{error.strerror}: {error.filename}"
    text = " ".join(text.split())  # one line, whatever the library wrote
    name = text.split(" ", 1)[0]
    if name in FLAGS:
        text = FLAGS[name] + text[len(name):]
    return CliError(text)


__all__ = ["EXIT_USAGE", "CliError", "Parser", "int_at_least", "positive_int", "non_negative_int",
           "add_device_argument", "resolve_device", "check_folder", "FLAGS", "LIBRARY_ERRORS", "library_error"]
