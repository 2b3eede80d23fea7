"""The `farm` command line: one subcommand per everyday job, each group in a module of its own.

Exit codes: 0 success; 1 a check failed or errored (or a refused sign-off);
2 bad usage or configuration, with a one-line message naming file, line, field.

Each command imports the rest of farm inside its function: `farm` starts without numpy, onnxruntime,
paramiko, PyYAML or a database driver (tests/test_architecture.py), and a command loads what it runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import NoReturn

import farm
from farm.board.agent import SCHEMA as AGENT_SCHEMA
from farm.config import options
from farm.errors import ConfigError, FarmError
from farm.results import SCHEMA as RUN_SCHEMA
from farm.ui import console
from farm.ui.cli import init, lab, quantize, queue, records, run, serve, upkeep

log = logging.getLogger(__name__)


class Parser(argparse.ArgumentParser):
    """argparse's usage errors as farm's: one line naming the command, exit 2 (the usage is --help's)."""

    def error(self, message: str) -> NoReturn:
        hint = f"`{self.prog} --help` lists its arguments"
        if self.prog == "farm signoff" and "invalid choice" in message:  # the form before sign|verify
            hint = "a run is signed with `farm signoff sign RUN_ID`, a record verified with `farm signoff verify`"
        self.exit(2, f"{self.prog}: error: {message}; {hint}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="farm", description="edge-AI device test farm")
    parser.add_argument("--version", action="version", version=f"farm {farm.__version__} (results {RUN_SCHEMA}, "
                                                               f"agent protocol {AGENT_SCHEMA})")
    options.add_to_argparse(parser.add_mutually_exclusive_group(), options.VERBOSITY)
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (run, quantize, records, lab, upkeep, queue, serve, init):
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with console.console(console.level(args.verbose, args.quiet)):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except ConfigError as exc:
        log.error(f"error: {exc}")
        return 2
    except FarmError as exc:
        log.error(str(exc))
        return 1
    except KeyboardInterrupt:
        from farm.deploy.interrupts import exit_code

        log.warning("interrupted; results gathered so far are kept")
        return exit_code()
    except BrokenPipeError:  # `farm ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
