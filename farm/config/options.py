"""The run options, declared once: `farm run --X`, pytest's `--farm-X`, `FARM_X` and `[tool.farm] x`.

One table gives every option its name, type, default and help; `resolve`
applies the one precedence rule (command line > environment > project
configuration > default) and remembers where each value came from, which
`farm config` prints. Numbers are checked here: a bad one is exit 2 naming
where it came from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from farm import resources
from farm.config.project import RELEASE_POLICY, RELEASE_POLICY_HELP, ProjectConfig, ProjectConfigError, check_keys
from farm.config.settings import DEFAULT_VARIANTS, VARIANTS, Measurement, RunSettings
from farm.errors import ConfigError, LocatedError
from farm.util import NAME_RE, is_number, split_list


@dataclass(frozen=True)
class RunOption:
    name: str
    help: str
    default: Any = None
    type: Callable = str
    repeat: bool = False
    key: str | None = None  # its key in [tool.farm], when not its name
    path: bool = False      # a file or folder: relative to the configuration file that names it
    minimum: float | None = None
    above: bool = False     # the value must be strictly above `minimum`
    short: str | None = None  # its one-letter form (`-v`)

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return f"FARM_{self.dest.upper()}"

    @property
    def config_key(self) -> str:
        return self.key or self.dest


SELECTION = (
    RunOption("inventory", "inventory YAML, farm or Ansible (default: the built-in stand-ins)", path=True),
    RunOption("pool", "only boards of this pool (repeatable)", repeat=True, key="pools"),
    RunOption("tag", "only boards with this tag (repeatable)", repeat=True, key="tags"),
    RunOption("board", "only boards matching this glob (repeatable)", repeat=True, key="boards"),
)
# A team's own variant, NAME=path.onnx: `farm run` and `farm quantize` both take it.
VARIANT = RunOption("variant", "a team's own variant NAME=path.onnx (a QAT export, a pruned or distilled model), "
                    "judged against FP32 beside farm's (repeatable)", repeat=True, path=True)
OUT = RunOption("out", "results root: <out>/<run-id>/", "results", key="results", path=True)
RUN_OPTIONS = SELECTION + (
    RunOption("model", "FP32 ONNX model (default: the digits demo)", path=True),
    RunOption("data", ".npz data file of the model (required with --model, unless the spec names it)", path=True),
    RunOption("spec", "model spec YAML: inputs, judged outputs and metrics (default: <model>.farm.yaml beside "
              "the model, else inferred)", path=True),
    RunOption("variants-dir", "reuse the variants `farm quantize --out DIR` built (checked against model, data "
              "and spec by sha256) instead of building them", path=True),
    RunOption("checklist", "checklist YAML (default: the packaged dms checklist)", path=True),
    RunOption("variants", "comma-separated variants (also int8_mixed: static INT8 with its most sensitive layers "
              "kept in float)", ",".join(DEFAULT_VARIANTS)),
    VARIANT,
    RunOption("runs", "timed runs per variant, at least (MLPerf's minimum query count)", 100, int, minimum=1),
    RunOption("min-duration-s", "seconds of timed runs per variant, at least, besides --runs (MLPerf's minimum "
              "duration): both are met unless three quarters of --deadline pass first", 0.0, float, minimum=0),
    RunOption("warmup", "warm-up runs per variant", 10, int, minimum=0),
    RunOption("rounds", "agent processes per variant (noise between processes)", 1, int, minimum=1),
    RunOption("deadline", "seconds per variant before the agent is killed on the board", 300.0, float, minimum=0,
              above=True),
    RunOption("wait", "seconds to wait for a busy board", 0.0, float, minimum=0),
    OUT,
    RunOption("history", "history store (default <out>/history.sqlite; 'none': keep none)", ""),
    RunOption("run-id", "the run's name, its folder under --out (default: UTC time and 4 random hex digits); "
              "a run recorded again under its name replaces the earlier record", ""),
)
# `farm -v` / `farm -q`, before the command: how much the console says (type bool: command-line flags only).
VERBOSITY = (
    RunOption("verbose", "say more: debug lines, and each board's steps as they happen", False, bool, short="-v"),
    RunOption("quiet", "say only warnings and errors", False, bool, short="-q"),
)
# `farm signoff sign` and `farm signoff verify`: who signs, and who may (configured once per project).
SIGNOFF_OPTIONS = (
    RunOption("signing-key", "SSH private key (or its .pub with ssh-agent) that signs the record", path=True),
    RunOption("allowed-signers", "OpenSSH allowed_signers file: who may sign, for which namespace (default: "
              "allowed_signers beside the project configuration, else in the current folder)", path=True),
)
# `farm submit`, `farm worker` and the other queue commands: where the queue lives.
QUEUE_OPTIONS = (
    RunOption("queue", "the job queue: a postgresql:// URL (the database the history may share)", ""),
)
BY_NAME = {o.name: o for o in RUN_OPTIONS}
# `farm signoff sign`: the run's own --checklist and --inventory (same FARM_* and [tool.farm] keys), told what
# a sign-off holds a run to: the signer's choice, never the one the run names.
HELD_TO = (
    replace(BY_NAME["checklist"], help="checklist whose limits and policy hold (default: the release policy pinned "
            "in [tool.farm], else FARM_CHECKLIST / checklist in [tool.farm], else the packaged dms checklist; never "
            "the one the run names)"),
    replace(BY_NAME["inventory"], help="inventory whose budgets hold (default: FARM_INVENTORY / inventory in "
            "[tool.farm], else the built-in stand-ins; never the one the run names)"),
)
# The agent times runs for at most this share of the deadline: it stops and reports, never killed mid-run.
TIMED_SHARE = 0.75
TYPE_WORDS: dict[Callable[..., Any], str] = {int: "a whole number", float: "a number", str: "text"}


@dataclass(frozen=True)
class Setting:
    value: Any
    source: str  # "command line", "environment FARM_X", "<file>:<line>", "default"


def add_to_argparse(parser, options: tuple[RunOption, ...] = RUN_OPTIONS) -> None:
    for option in options:
        if option.type is bool:
            names = (option.short, f"--{option.name}") if option.short else (f"--{option.name}",)
            parser.add_argument(*names, dest=option.dest, action="store_true", help=option.help)
            continue
        parser.add_argument(f"--{option.name}", dest=option.dest, help=f"{option.help} [env {option.env}]",
                            type=None if option.type is str else option.type,
                            action="append" if option.repeat else "store", default=None)


def add_to_pytest(group) -> None:
    for option in RUN_OPTIONS:
        group.addoption(f"--farm-{option.name}", dest=f"farm_{option.dest}", help=f"{option.help} [env {option.env}]",
                        type=None if option.type is str else option.type,
                        action="append" if option.repeat else "store", default=None)


def _from_text(option: RunOption, text: str, where: str) -> Any:
    if option.repeat:
        return split_list(text)
    try:
        return option.type(text)
    except ValueError:
        raise ConfigError(f"{where}: expected {TYPE_WORDS[option.type]}, got {text!r}") from None


def _from_config(option: RunOption, value: Any, project: ProjectConfig) -> Any:
    key = option.config_key
    line = project.lines.get(key)
    fail = lambda what: ProjectConfigError(str(project.path), line, f"expected {what}, got {value!r}",  # noqa: E731
                                           field=key)
    if option.repeat or option.name == "variants":
        if isinstance(value, str):
            value = split_list(value)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail("a list of names")
        if option.path:  # NAME=path items: each path relative to the configuration file
            value = [_relative_pair(v, project.folder) for v in value]
        return value if option.repeat else ",".join(value)
    if option.type in (int, float):
        if not is_number(value, whole=option.type is int):
            raise fail(TYPE_WORDS[option.type])
        return option.type(value)
    if not isinstance(value, str):
        raise fail("text")
    if option.path:
        path = Path(os.path.expanduser(value))
        return str(path if path.is_absolute() else project.folder / path)
    return value


def _relative_pair(value: str, folder: Path) -> str:
    name, sep, path = value.partition("=")
    if not sep or not path.strip():
        return value  # refused, naming it, where the pairs are read
    given = Path(os.path.expanduser(path.strip()))
    return f"{name}={given if given.is_absolute() else folder / given}"


def parse_variants(values: list[str], where: str = "--variant") -> dict[str, Path]:
    """`NAME=path.onnx` items into {name: path}; a bad item is a one-line error naming it."""
    found: dict[str, Path] = {}
    for value in values:
        name, sep, path = str(value).partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise ConfigError(f"{where} {value!r}: expected NAME=path.onnx (e.g. pruned=models/pruned.onnx)")
        if not NAME_RE.match(name):
            raise ConfigError(f"{where} {value!r}: the name {name!r} must be letters, digits, '.', '_' or '-' "
                              "(it names files and report columns)")
        if name in VARIANTS:
            raise ConfigError(f"{where} {value!r}: {name!r} is one of farm's own variants; give yours another name")
        if name in found:
            raise ConfigError(f"{where} {value!r}: the variant {name!r} is given twice")
        found[name] = Path(path)
    return found


def _check_number(option: RunOption, setting: Setting) -> None:
    if option.minimum is None:
        return
    bad = setting.value <= option.minimum if option.above else setting.value < option.minimum
    if bad:
        word = "above" if option.above else "at least"
        raise ConfigError(f"{option.name} = {setting.value} ({setting.source}): must be {word} "
                          f"{option.minimum:g}")


def resolve(cli: Callable[[str], Any], *, environ: Mapping[str, str] | None = None,
            project: ProjectConfig | None = None, defaults: Mapping[str, Any] | None = None,
            options: tuple[RunOption, ...] = RUN_OPTIONS) -> dict[str, Setting]:
    """Every option's value and where it came from: command line > environment > project > default.

    `defaults`: a command's own defaults (`farm nightly`: its checklist, three rounds).
    """
    environ = os.environ if environ is None else environ
    if project is not None:
        check_keys(project, {**{o.config_key: o.help for o in RUN_OPTIONS + SIGNOFF_OPTIONS + QUEUE_OPTIONS},
                             RELEASE_POLICY: RELEASE_POLICY_HELP})
    resolved = {}
    for option in options:
        given = cli(option.dest)
        if given is not None and given != []:
            setting = Setting(given, "command line")
        elif environ.get(option.env):
            setting = Setting(_from_text(option, environ[option.env], f"environment {option.env}"),
                              f"environment {option.env}")
        elif project is not None and option.config_key in project.values:
            setting = Setting(_from_config(option, project.values[option.config_key], project),
                              project.where(option.config_key))
        elif defaults and option.name in defaults:
            setting = Setting(defaults[option.name], "default of this command")
        else:
            setting = Setting([] if option.repeat else option.default, "default")
        _check_number(option, setting)
        resolved[option.dest] = setting
    return resolved


def _from_spec(resolved: dict[str, Setting]) -> None:
    """A spec's own `model:` and `data:` (relative to it) stand in for options not given."""
    spec = resolved["spec"]
    if not spec.value or (resolved["model"].value and resolved["data"].value):
        return
    from farm.config.yamlfile import LineMap, load_yaml  # PyYAML: not loaded by every `farm` start, only for a spec

    doc = load_yaml(Path(spec.value), lambda p, line, message: LocatedError(p, line, message), "model spec")
    for name in ("model", "data"):
        if not resolved[name].value and isinstance(doc, LineMap) and isinstance(doc.get(name), str):
            resolved[name] = Setting(str(Path(spec.value).parent / doc[name]), f"{spec.value}:{doc.line_of(name)}")


def _measurement(resolved: dict[str, Setting]) -> Measurement:
    """The agent's run rules; a minimum duration the deadline cannot hold is an error before any board is used."""
    least, deadline = resolved["min_duration_s"], resolved["deadline"]
    cap = TIMED_SHARE * deadline.value
    if least.value >= cap:
        raise ConfigError(f"min-duration-s {least.value:g} ({least.source}) cannot be met: the agent stops timing at "
                          f"{cap:g} s, three quarters of the deadline {deadline.value:g} s ({deadline.source}); raise "
                          f"--deadline above {least.value / TIMED_SHARE:g} or lower --min-duration-s")
    return Measurement(warmup=resolved["warmup"].value, runs=resolved["runs"].value, rounds=resolved["rounds"].value,
                       min_duration_s=least.value, duration_s=cap)


def run_settings(resolved: dict[str, Setting], **overrides: Any) -> RunSettings:
    """RunSettings from resolved options; a user's model without its data is an error, not the demo's data."""
    resolved = dict(resolved)
    _from_spec(resolved)
    value = lambda name: resolved[name].value  # noqa: E731
    model, data = resolved["model"], resolved["data"]
    if model.value and not data.value:
        raise ConfigError(f"model {model.value} ({model.source}) needs its data file: give --data (or FARM_DATA, "
                          "data in [tool.farm], or data: in its spec); farm never judges a model on the demo's data")
    if value("spec") and not model.value:
        raise ConfigError(f"spec {value('spec')} ({resolved['spec'].source}) is for a model: give --model "
                          "(or model: in the spec)")
    path = lambda name, default: Path(value(name)) if value(name) else default()  # noqa: E731
    if value("run_id"):
        if not NAME_RE.match(value("run_id")):
            raise ConfigError(f"run-id {value('run_id')!r} ({resolved['run_id'].source}): expected letters, digits, "
                              "'.', '_' or '-', starting with a letter or digit (it names a folder)")
        overrides = {"run_id": value("run_id"), **overrides}
    user_variants = parse_variants(value("variant"), f"variant ({resolved['variant'].source})")
    return RunSettings(
        user_variants=user_variants,
        inventory=path("inventory", resources.standin_inventory), model=path("model", resources.demo_model),
        data=path("data", resources.demo_data), spec=Path(value("spec")) if value("spec") else None,
        variants_dir=Path(value("variants_dir")) if value("variants_dir") else None,
        checklist=path("checklist", lambda: resources.checklist("dms")),
        variants=split_list(value("variants")),
        pools=value("pool"), tags=value("tag"), boards=value("board"),
        measurement=_measurement(resolved),
        out=Path(value("out")), lock_wait_s=value("wait"), variant_deadline_s=value("deadline"),
        history=value("history"), **overrides)
