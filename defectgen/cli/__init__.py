"""The ``defectgen`` command line.

Each subcommand is a :class:`~defectgen.cli_support.Command` (name, help, options, run): ``preview``,
``generate`` and ``fit`` are this package's modules; other packages contribute theirs through the
``defectgen.commands`` entry points (``detectors`` adds ``train``, ``eval`` and ``ablate``), found the way
pytest finds its plugins, so ``defectgen`` never names them. A command's options are built only when it is
chosen. User errors (a bad option, an unknown operator, an empty folder) end as one ``defectgen: error: ...``
line and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys
from importlib.metadata import EntryPoint, entry_points
from typing import Dict, List, Optional, Sequence

from ..cli_support import EXIT_USAGE, CliError, Command, Parser
from .fit import FIT
from .generate import GENERATE
from .preview import NEEDS_ARGUMENTS, PREVIEW

ENTRY_POINT_GROUP = "defectgen.commands"
"""The entry-point group other packages name their :class:`~defectgen.cli_support.Command` s in."""

BUILTIN_COMMANDS = (PREVIEW, GENERATE, FIT)


class _VersionAction(argparse.Action):
    """``--version``: one unwrapped line, computed only when asked (argparse's own wraps it to the terminal)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from .. import __version__
        from ..environment import describe

        print(f"defectgen {__version__}; {describe()}")
        parser.exit()


def _unloadable(entry: EntryPoint, error: BaseException) -> Command:
    """A command whose entry point failed to load: listed, and choosing it is one error line naming it."""
    text = " ".join(str(error).split()) or type(error).__name__
    why = f"command {entry.name!r} ({entry.value}, from the {ENTRY_POINT_GROUP} entry points) could not be loaded: " \
          f"{type(error).__name__}: {text}"

    def fail(_: argparse.ArgumentParser) -> None:
        raise CliError(why)

    return Command(entry.name, f"(not available: {type(error).__name__} on loading {entry.value})", fail,
                   lambda args: EXIT_USAGE)


def commands() -> List[Command]:
    """Every command, in ``defectgen --help``'s order: the built-in ones and the entry points' (loaded here)."""
    found: Dict[str, Command] = {command.name: command for command in BUILTIN_COMMANDS}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in found:
            raise CliError(f"command {entry.name!r} of the {ENTRY_POINT_GROUP} entry points ({entry.value}) is "
                           "already defined")
        try:
            command = entry.load()
        except Exception as error:  # a broken plugin must not take the other commands down with it
            command = _unloadable(entry, error)
        else:
            if not isinstance(command, Command) or command.name != entry.name:
                command = _unloadable(entry, TypeError(f"{entry.value} is not a defectgen Command named "
                                                       f"{entry.name!r}"))
        found[entry.name] = command
    return sorted(found.values(), key=lambda command: (command.order, command.name))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subcommand per :func:`commands` entry (its options added when chosen)."""
    parser = Parser(prog="defectgen", description="Batched synthetic defects for industrial visual inspection.")
    parser.add_argument("--version", action=_VersionAction, help="print the versions of defectgen and the "
                        "libraries it runs with (for bug reports), then exit")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in commands():
        subcommands.add_command(command.name, command.help, command.add_arguments, run=command.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``defectgen`` console script and ``python -m defectgen``; returns the exit code.

    ``--help`` returns 0 instead of raising ``SystemExit``, so callers (and tests) always get a code back.
    """
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
        return args.run(args)
    except CliError as error:
        print(f"defectgen: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as done:  # raised only by argparse's --help, after printing it
        return int(done.code or 0)


__all__ = ["main", "build_parser", "commands", "ENTRY_POINT_GROUP", "BUILTIN_COMMANDS", "NEEDS_ARGUMENTS"]
