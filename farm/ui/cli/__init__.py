"""The `farm` command line: one subcommand per everyday job, each group in a module of its own.

Exit codes: 0 success; 1 a check failed or errored (or a refused sign-off);
2 bad usage or configuration, with a one-line message naming file, line, field.

Each command imports the rest of farm inside its function: `farm` starts without numpy, onnxruntime,
paramiko, PyYAML or a database driver (tests/test_architecture.py), and a command loads what it runs.
"""

from __future__ import annotations

import argparse
import os
import sys

import farm
from farm.board.agent import SCHEMA as AGENT_SCHEMA
from farm.errors import ConfigError, FarmError
from farm.results import SCHEMA as RUN_SCHEMA
from farm.ui.cli import init, lab, quantize, queue, records, run, serve, upkeep
from farm.ui.cli.common import say


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="farm", description="edge-AI device test farm")
    parser.add_argument("--version", action="version", version=f"farm {farm.__version__} (results {RUN_SCHEMA}, "
                                                               f"agent protocol {AGENT_SCHEMA})")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (run, quantize, records, lab, upkeep, queue, serve, init):
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        say(f"farm: error: {exc}")
        return 2
    except FarmError as exc:
        say(f"farm: {exc}")
        return 1
    except KeyboardInterrupt:
        from farm.deploy.interrupts import exit_code

        say("farm: interrupted; results gathered so far are kept")
        return exit_code()
    except BrokenPipeError:  # `farm ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
