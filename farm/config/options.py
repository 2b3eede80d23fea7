"""The run options, declared once: `farm run --X` and pytest's `--farm-X` are the same table.

The CLI and the pytest plugin both read their options through this table, so
names, defaults and help never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from farm import resources
from farm.config.settings import VARIANTS, Measurement, RunSettings


@dataclass(frozen=True)
class RunOption:
    name: str
    help: str
    default: Any = None
    type: Callable | None = None
    repeat: bool = False


SELECTION = (
    RunOption("inventory", "inventory YAML, farm or Ansible (default: the built-in stand-ins)"),
    RunOption("pool", "only boards of this pool (repeatable)", repeat=True),
    RunOption("tag", "only boards with this tag (repeatable)", repeat=True),
    RunOption("board", "only boards matching this glob (repeatable)", repeat=True),
)
OUT = RunOption("out", "results root: <out>/<run-id>/", "results")
RUN_OPTIONS = SELECTION + (
    RunOption("model", "FP32 ONNX model (default: the digits demo)"),
    RunOption("data", ".npz data file of the model"),
    RunOption("checklist", "checklist YAML (default: the packaged dms checklist)"),
    RunOption("variants", "comma-separated variants", ",".join(VARIANTS)),
    RunOption("runs", "timed runs per variant", 100, int),
    RunOption("warmup", "warm-up runs per variant", 10, int),
    RunOption("rounds", "agent processes per variant (noise between processes)", 1, int),
    RunOption("deadline", "seconds per variant before the agent is killed on the board", 300.0, float),
    RunOption("wait", "seconds to wait for a busy board", 0.0, float),
    OUT,
    RunOption("history", "history store (default <out>/history.sqlite; 'none': keep none)", ""),
)


def add_to_argparse(parser, options: tuple[RunOption, ...] = RUN_OPTIONS) -> None:
    for option in options:
        parser.add_argument(f"--{option.name}", help=option.help, type=option.type,
                            action="append" if option.repeat else "store", default=None)


def add_to_pytest(group) -> None:
    for option in RUN_OPTIONS:
        group.addoption(f"--farm-{option.name}", dest=f"farm_{option.name}", help=option.help, type=option.type,
                        action="append" if option.repeat else "store", default=None)


def run_settings(value: Callable[[str], Any], **overrides: Any) -> RunSettings:
    """RunSettings from any source of option values (argparse namespace, pytest config); None: unset."""
    def get(name: str) -> Any:
        found = value(name)
        if found is not None:
            return found
        option = next(o for o in RUN_OPTIONS if o.name == name)
        return [] if option.repeat else option.default

    path = lambda name, default: Path(get(name)) if get(name) else default()  # noqa: E731
    settings = RunSettings(
        inventory=path("inventory", resources.standin_inventory), model=path("model", resources.demo_model),
        data=path("data", resources.demo_data), checklist=path("checklist", lambda: resources.checklist("dms")),
        variants=[v.strip() for v in get("variants").split(",") if v.strip()],
        pools=get("pool"), tags=get("tag"), boards=get("board"),
        measurement=Measurement(warmup=get("warmup"), runs=get("runs"), rounds=get("rounds")),
        out=Path(get("out")), lock_wait_s=get("wait"), variant_deadline_s=get("deadline"), history=get("history"))
    return replace(settings, **overrides)
