"""What every ``defectgen`` command shares: the command type, the usage-error type, the parser that raises it,
argument types, the options several commands take, and the device, folder and library-error helpers.

``defectgen.cli`` (preview, generate, fit) and the commands other packages contribute (``detectors``: train,
eval, ablate, found through the ``defectgen.commands`` entry points) all import this module, so the dependency
stays one way (``detectors -> defectgen``) and ``defectgen`` never names them. It imports no torch at module
level: building the parser (``defectgen --help``) stays fast.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, NoReturn, Optional

EXIT_USAGE = 2


class CliError(Exception):
    """A user error: reported as one ``defectgen: error: ...`` line on stderr, with exit code 2."""


@dataclass(frozen=True)
class Command:
    """One ``defectgen`` subcommand: ``defectgen NAME ...`` (``--help`` shows ``help``), its options, its run.

    ``defectgen`` lists its commands by ``order`` (then name). Another package contributes one by naming a
    ``Command`` in its ``defectgen.commands`` entry points (``train = "detectors.cli:TRAIN"``); the module it
    names is imported to build ``defectgen --help``, so it must be light: ``add_arguments`` is called only
    when the command is chosen, and heavy imports belong inside it or ``run``.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    order: int = 1000


class Subcommands(argparse._SubParsersAction):
    """Subcommands whose options are added only when one of them is chosen: building one command's options may
    import what only that command needs (a detector's module), and ``defectgen --help`` needs none of them."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._deferred: Dict[str, Callable[[argparse.ArgumentParser], None]] = {}

    def add_command(self, name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None],
                    **defaults: Any) -> argparse.ArgumentParser:
        """A subcommand ``name``; ``add_arguments(its parser)`` and its ``defaults`` are applied if it is chosen."""
        parser = self.add_parser(name, help=help, description=help)

        def complete(sub: argparse.ArgumentParser) -> None:
            add_arguments(sub)
            sub.set_defaults(**defaults)

        self._deferred[name] = complete
        return parser

    def __call__(self, parser, namespace, values, option_string=None):
        complete = self._deferred.pop(values[0], None)
        if complete is not None:
            complete(self._name_parser_map[values[0]])
        super().__call__(parser, namespace, values, option_string)


class Parser(argparse.ArgumentParser):
    """Raise :class:`CliError` instead of exiting, so every usage error is reported the same way; its
    ``add_subparsers`` gives :class:`Subcommands`."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", Subcommands)

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


# -- options several commands take (each says what they mean for it) -------------------------------------------
def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when present), cpu, cuda or cuda:N (default: %(default)s)")


def add_seed_argument(parser: argparse.ArgumentParser, help: str, type: Callable[[str], int] = int) -> None:
    """``--seed S`` (default 0); ``help`` says what it seeds."""
    parser.add_argument("--seed", metavar="S", type=type, default=0, help=help)


def add_image_size_argument(parser: argparse.ArgumentParser, help: str, default: Optional[int] = None,
                            flag: str = "--image-size") -> None:
    """``--image-size PX`` (or ``flag``, e.g. ``--size``): the square side images are resized to."""
    parser.add_argument(flag, metavar="PX", type=positive_int, default=default, help=help)


def add_batch_size_argument(parser: argparse.ArgumentParser, help: str, default: Optional[int] = None) -> None:
    parser.add_argument("--batch-size", metavar="N", type=positive_int, default=default, help=help)


def add_learning_rate_argument(parser: argparse.ArgumentParser, help: str, default: Optional[float] = None) -> None:
    parser.add_argument("--lr", metavar="X", type=float, default=default, help=help)


def add_gray_argument(parser: argparse.ArgumentParser, help: str = "train on grayscale images (default: RGB)") -> None:
    parser.add_argument("--gray", action="store_true", help=help)


def add_progress_argument(parser: argparse.ArgumentParser,
                          help: str = "progress bar with loss and ETA on stderr (default: on when stderr is a "
                                      "terminal)") -> None:
    """``--progress`` / ``--no-progress``: None (the default) lets the progress bar decide (on a terminal)."""
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help=help)


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


__all__ = ["EXIT_USAGE", "CliError", "Command", "Subcommands", "Parser", "int_at_least", "positive_int",
           "non_negative_int", "add_device_argument", "add_seed_argument", "add_image_size_argument",
           "add_batch_size_argument", "add_learning_rate_argument", "add_gray_argument", "add_progress_argument",
           "resolve_device", "check_folder", "FLAGS", "LIBRARY_ERRORS", "library_error"]
