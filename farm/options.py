"""The run options, declared once: `farm run --X` and pytest's `--farm-X` are the same table.

The CLI turns its options into the plugin's (`farm run` is a pytest session), so
one declaration keeps names, defaults and help from drifting apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from farm.agent import Measurement
from farm.job import DEFAULT_CHECKLIST, DEFAULT_DATA, DEFAULT_INVENTORY, DEFAULT_MODEL, JobSettings, new_run_id
from farm.models import VARIANTS


@dataclass(frozen=True)
class RunOption:
    name: str
    help: str
    default: Any = None
    type: Callable | None = None
    repeat: bool = False


SELECTION = (
    RunOption("inventory", "inventory YAML, farm or Ansible (default: the built-in stand-ins)", str(DEFAULT_INVENTORY)),
    RunOption("pool", "only boards of this pool (repeatable)", repeat=True),
    RunOption("tag", "only boards with this tag (repeatable)", repeat=True),
    RunOption("board", "only boards matching this glob (repeatable)", repeat=True),
)
RUN_OPTIONS = SELECTION + (
    RunOption("model", "FP32 ONNX model (default: the digits demo)", str(DEFAULT_MODEL)),
    RunOption("data", ".npz data file of the model", str(DEFAULT_DATA)),
    RunOption("checklist", "checklist YAML", str(DEFAULT_CHECKLIST)),
    RunOption("variants", "comma-separated variants", ",".join(VARIANTS)),
    RunOption("runs", "timed runs per variant", 100, int),
    RunOption("warmup", "warm-up runs per variant", 10, int),
    RunOption("rounds", "agent processes per variant (noise between processes)", 1, int),
    RunOption("deadline", "seconds per variant before the agent is killed on the board", 300.0, float),
    RunOption("wait", "seconds to wait for a busy board", 0.0, float),
    RunOption("out", "results root: <out>/<run-id>/", "results"),
    RunOption("history", "history store (default <out>/history.sqlite; 'none': keep none)", ""),
)


def add_to_argparse(parser, options: tuple[RunOption, ...] = RUN_OPTIONS) -> None:
    for option in options:
        parser.add_argument(f"--{option.name}", help=option.help, type=option.type,
                            action="append" if option.repeat else "store",
                            default=[] if option.repeat else option.default)


def add_to_pytest(group) -> None:
    for option in RUN_OPTIONS:
        group.addoption(f"--farm-{option.name}", dest=f"farm_{option.name}", help=option.help, type=option.type,
                        action="append" if option.repeat else "store",
                        default=[] if option.repeat else option.default)


def job_settings(value: Callable[[str], Any], run_id: str | None = None) -> JobSettings:
    """JobSettings from any source of option values (argparse namespace, pytest config)."""
    defaults = {o.name: ([] if o.repeat else o.default) for o in RUN_OPTIONS}

    def get(name: str) -> Any:
        found = value(name)
        return defaults[name] if found is None else found

    history = get("history")
    return JobSettings(
        inventory=Path(get("inventory")), model=Path(get("model")), data=Path(get("data")),
        checklist=Path(get("checklist")), variants=[v.strip() for v in get("variants").split(",") if v.strip()],
        pools=get("pool"), tags=get("tag"), boards=get("board"),
        measurement=Measurement(warmup=get("warmup"), runs=get("runs"), rounds=get("rounds")),
        out=Path(get("out")), run_id=run_id or new_run_id(), lock_wait_s=get("wait"),
        variant_deadline_s=get("deadline"), history=None if history == "none" else history)


def pytest_args(value: Callable[[str], Any]) -> list[str]:
    """The plugin options that reproduce a CLI invocation."""
    args = []
    for option in RUN_OPTIONS:
        current = value(option.name)
        for item in (current if option.repeat else [current]):
            if item is not None:
                args.append(f"--farm-{option.name}={item}")
    return args
