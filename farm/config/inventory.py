"""Inventories: the boards of a lab, loaded strictly from YAML.

Two formats are read as they are: farm's own (`defaults` + `boards` + `standins`)
and Ansible's YAML inventories (`all` / `children` / `hosts` / `vars`, with
`ansible_*` connection vars and `farm_*` fields; groups become pools). Every
error names the file, the line, the board and the field.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Iterator

from farm.config.boardclasses import BOARD_CLASSES, TOOLCHAINS, class_fields, toolchain_fields
from farm.config.checklist import parse_rule
from farm.config.yamlfile import LineMap, load_yaml
from farm.errors import ConfigError, InventoryError
from farm.util import NAME_RE, did_you_mean

VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# An `env` key: `--split-string` or `-S` once made env(1) run a shell command on the board.
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HOST_KEY_POLICIES = ("verify", "accept-new", "off")
TRANSPORTS = ("ssh", "local")  # local: the board is this machine, commands run without SSH
QEMU_CPUS = ("cortex-a53", "cortex-a72", "cortex-a76")  # the Arm CPUs an emulated stand-in can be
# Bounds on what an inventory may hold: benchmarks/inventory_size.py measures load times up to them.
MAX_INVENTORY_BYTES = 2_000_000  # about 25,000 boards, loaded in seconds
MAX_TEXT_CHARS = 4096            # PATH_MAX: no host, path, tag or value is longer
MAX_LIST_ITEMS = 256             # pools, tags, providers of one board
_STR, _INT, _NUM, _LIST, _MAP = (str,), (int,), (int, float), (list,), (dict,)


@dataclass(frozen=True)
class FieldSpec:
    """One inventory key, declared once on its dataclass attribute: the loader checks it, the docs list it."""

    expects: str = ""                # what its value must be: "expected {what}, got ..." in its error
    help: str = ""                   # what it means: the docs' list of fields
    types: tuple[type, ...] = _STR   # the YAML types it takes
    choices: tuple[str, ...] = ()    # a closed set
    minimum: int | None = None       # a number's least value
    standin: bool = False            # a stand-in entry takes it too
    key: str = ""                    # its YAML key, when not the attribute's name

    @property
    def what(self) -> str:
        return self.expects or "one of " + ", ".join(self.choices)


def declared(default: Any = MISSING, **spec: Any) -> Any:
    """A dataclass attribute that is an inventory key: its FieldSpec rides in the field's metadata."""
    return field(default=default, metadata={"spec": FieldSpec(**spec)})


def declarations(cls: type) -> Iterator[tuple[str, FieldSpec, Any]]:
    """The inventory keys a dataclass declares, in declaration order: YAML key, FieldSpec, default (or MISSING)."""
    return ((spec.key or f.name, spec, f.default) for f in fields(cls) if (spec := f.metadata.get("spec")))


def keys_of(cls: type) -> dict[str, FieldSpec]:
    """The inventory keys a dataclass declares, by YAML key."""
    return {key: spec for key, spec, _ in declarations(cls)}


@dataclass(frozen=True)
class Power:
    """How a board's power is switched: an outlet behind a pdudaemon, or two commands (argument lists)."""

    pdudaemon: str | None = declared(None, expects="the pdudaemon host (its HTTP listener)")
    port: int = declared(16421, expects="pdudaemon's HTTP port (default 16421)", types=_INT)
    pdu: str | None = declared(None, expects="the PDU's name in pdudaemon's configuration")
    outlet: str | None = declared(None, expects="the PDU outlet (its pdudaemon port)", types=(str, int))
    # Not `on`/`off`: YAML reads those keys as true and false.
    on: tuple[str, ...] = declared((), expects="the command that switches the board on, as an argument list",
                                   types=_LIST, key="on_command")
    off: tuple[str, ...] = declared((), expects="the command that switches the board off, as an argument list",
                                    types=_LIST, key="off_command")
    off_s: float = declared(5.0, expects="seconds a power cycle keeps the board off (default 5)", types=_NUM)
    boot_s: float = declared(120.0, expects="seconds a board may take to answer SSH after a power cycle (default 120)",
                             types=_NUM)

    def describe(self) -> str:
        if self.pdudaemon:
            return f"pdudaemon {self.pdudaemon}:{self.port}, PDU {self.pdu} outlet {self.outlet}"
        return f"commands {' '.join(self.on)} / {' '.join(self.off)}"


@dataclass(frozen=True)
class Board:
    """One board of the lab: how to reach it and what it is (a resource, no behaviour).

    Each attribute an inventory sets declares its key (`declared`): BOARD_KEYS, the loader's checks and
    the docs' list of fields (`python -m farm.config.fielddocs`) are read from here."""

    name: str = declared(expects="a name of letters, digits, '.', '_' or '-', starting with a letter or digit",
                         help="the board's name in reports, `--board` and the history", standin=True)
    host: str = declared(expects="a host name or address", help="where SSH reaches it")
    port: int | None = declared(None, expects="a port number", types=_INT, minimum=1,
                                help="its SSH port (default: ~/.ssh/config's Port for the host, else 22)")
    user: str | None = declared(None, expects="a login name", help="the SSH login")
    identity_file: str | None = declared(None, expects="a path to a private key",
                                         help="the SSH key, relative to the inventory")
    known_hosts: str | None = declared(None, expects="a path to a known_hosts file",
                                       help="where its host key is verified, relative to the inventory")
    host_key_policy: str = declared("verify", choices=HOST_KEY_POLICIES,
                                    help="`accept-new` records a first-seen key; `off` must be set explicitly")
    workdir: str = declared("/tmp/farm", expects="a path on the board", help="farm's folder on the board "
                            "(absolute, no `..`)")
    python: str = declared("python3", expects="the board's Python command",
                           help="the agent's Python (>= 3.8, with numpy and onnxruntime)")
    board_class: str | None = declared(None, key="class", expects="a board class: " + ", ".join(BOARD_CLASSES),
                                       standin=True, help="what it is: it inherits the class's cores, memory, "
                                       "providers, threads, latency budget and toolchain")
    cores: int | None = declared(None, expects="a whole number", types=_INT, minimum=1, standin=True,
                                 help="its CPU cores (a stand-in's taskset)")
    memory_mb: int | None = declared(None, expects="a whole number of MB", types=_INT, minimum=1, standin=True,
                                     help="its memory")
    providers: tuple[str, ...] = declared(("CPUExecutionProvider",), types=_LIST, standin=True,
                                          expects="a list of onnxruntime execution providers",
                                          help="the providers asked for, in order (one it lacks: CPU, said so)")
    threads: int = declared(0, expects="a whole number (0: onnxruntime's default)", types=_INT, minimum=0,
                            standin=True, help="onnxruntime's intra-op threads")
    pools: tuple[str, ...] = declared((), expects="a list of pool names", types=_LIST, standin=True,
                                      help="the pools it is in (`--pool`)")
    tags: tuple[str, ...] = declared((), expects="a list of tags", types=_LIST, standin=True,
                                     help="its tags (`--tag`: a board has all it is asked for)")
    latency_budget_ms: float | None = declared(None, expects="a number of milliseconds", types=_NUM, standin=True,
                                               help="its latency limit, over the checklist's")
    memory_budget_mb: float | None = declared(None, expects="a number of MB", types=_NUM, standin=True,
                                              help="its peak memory limit, over the checklist's")
    regression_rule: str | None = declared(None, expects="a regression rule such as p95:10%", standin=True,
                                           help="its own, e.g. `p95:30%` for a board noisier than the checklist "
                                           "assumes")
    env: tuple[tuple[str, str], ...] = declared((), expects="a mapping of environment variables", types=_MAP,
                                                help="set on the board as `env -- KEY=value ...`; keys are "
                                                "variable names, never an option of env(1)")
    transport: str = declared("ssh", choices=TRANSPORTS, help="`local`: the board is this machine, commands run "
                              "without SSH")
    standin: bool = declared(False, types=(bool,), expects="true or false (true: a stand-in farm started; its "
                             "class's budgets, never its hardware)", help="written by `farm lab up`: judged as a "
                             "stand-in wherever that inventory is used")
    emulated_cpu: str | None = declared(None, choices=QEMU_CPUS, expects="the QEMU CPU of an emulated stand-in: "
                                        "one of " + ", ".join(QEMU_CPUS), help="written by `farm lab up`: no "
                                        "latency verdict on an emulated CPU")
    from_class: tuple[str, ...] = ()  # the budgets this board has from its class, not from its own entry
    power: Power | None = declared(None, types=(dict, str), standin=True,
                                   expects="none, {pdudaemon: HOST, port: 16421, pdu: NAME, outlet: N} or "
                                   "{on_command: [ARGV], off_command: [ARGV]}",
                                   help="how it is power-cycled when it hangs (docs/power-and-health.md; "
                                   "none: a hang is reported, not recovered)")
    toolchain: str = declared("cpu", choices=TOOLCHAINS, standin=True,
                              help="how its variants are built and run (default: its class's; docs/accelerators.md)")
    toolchain_options: tuple[tuple[str, str], ...] = declared(
        (), types=_MAP, standin=True, expects="a mapping of the toolchain's options (docs/accelerators.md)",
        help="soc_model, htp_arch...: its class's, then its own")

    @property
    def address(self) -> str:
        if self.transport == "local":
            return "local"
        return f"{self.user + '@' if self.user else ''}{self.host}{':' + str(self.port) if self.port else ''}"

    @property
    def shares_controller_cpu(self) -> bool:
        """A stand-in or a local board measures on this machine's CPU: one measurement at a time."""
        return self.standin or self.transport == "local"


@dataclass(frozen=True)
class StandinSpec:
    """A stand-in board declared in an inventory, before `farm lab` starts it."""

    name: str
    cores: int | None = None
    memory_mb: int | None = None
    arch: str = declared("native", choices=("native", "arm64"), expects="native or arm64",
                         help="`arm64` runs it under QEMU")
    full_system: bool = declared(False, types=(bool,), expects="true or false, with arch: arm64",
                                 help="a qemu-system-aarch64 VM, a real Arm kernel and /proc")
    fields: tuple[tuple[str, object], ...] = ()  # class, pools, tags, budgets...: passed to the board
    cpu: str | None = declared(None, expects="a CPU name", help="the Arm CPU an `arch: arm64` "
                               "stand-in emulates (default: its class's)")

    @property
    def values(self) -> dict:
        return dict(self.fields)

    @property
    def qemu_cpu(self) -> str | None:
        """The emulated CPU of an `arch: arm64` stand-in (its `cpu`, else its class's); None when native."""
        if self.arch != "arm64":
            return None
        cpu = self.cpu or BOARD_CLASSES.get(self.values.get("class") or "", {}).get("cpu")
        if cpu not in QEMU_CPUS:
            raise ConfigError(f"stand-in {self.name!r}: no emulated Arm CPU {cpu!r}: "
                              f"choose from {', '.join(QEMU_CPUS)}")
        return cpu

    def board(self, **reached) -> Board:
        """The stand-in as an ordinary board: its class's budgets and providers, never the class's hardware.

        `reached`: how it is reached once running (host, port, user, keys, workdir, python).
        """
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in self.values.items()}
        if "power" in values:
            values["power"] = power_of(self.values["power"])
        board_class = values.pop("class", None)
        inherited = class_fields(board_class, standin=True)
        from_class = _budgets_from_class(inherited, values)
        values = {**inherited, **values, **toolchain_fields(inherited, values)}
        if self.cores:  # onnxruntime would size its pool by the host's cores, not the taskset
            values.setdefault("threads", self.cores)
        return Board(name=self.name, **{"host": "127.0.0.1", **reached}, board_class=board_class, cores=self.cores,
                     memory_mb=self.memory_mb, standin=True, emulated_cpu=self.qemu_cpu, from_class=from_class,
                     **values)


def power_of(value: dict | str | None) -> Power | None:
    """A checked `power:` value (see _Reader.power) as a Power; None for none."""
    if not isinstance(value, dict):
        return None
    return Power(pdudaemon=value.get("pdudaemon"), port=value.get("port", 16421), pdu=value.get("pdu"),
                 outlet=str(value["outlet"]) if "outlet" in value else None,
                 on=tuple(value.get("on_command", ())), off=tuple(value.get("off_command", ())),
                 off_s=float(value.get("off_s", 5.0)), boot_s=float(value.get("boot_s", 120.0)))


BUDGETS = ("latency_budget_ms", "memory_budget_mb")  # a board's limits, its own or its class's


def _budgets_from_class(inherited: dict, own: dict) -> tuple[str, ...]:
    """The budgets a board takes from its class: its judge names the class as their source."""
    return tuple(k for k in BUDGETS if k in inherited and k not in own)


# Every key of a board entry (farm's `boards`, Ansible's `farm_*` vars), of a stand-in entry, of `power:`.
BOARD_KEYS = keys_of(Board)
STANDIN_KEYS = {k: s for k, s in BOARD_KEYS.items() if s.standin} | keys_of(StandinSpec)
POWER_KEYS = keys_of(Power)
HOST_RE = re.compile(r"^[A-Za-z0-9.:_\[\]-]+$")  # a host name or an IP address, nothing a URL could be bent by
ANSIBLE_VARS = {"ansible_host": "host", "ansible_port": "port", "ansible_user": "user",
                "ansible_ssh_private_key_file": "identity_file", "ansible_python_interpreter": "python"}


@dataclass
class Inventory:
    path: Path
    boards: list[Board]
    standins: list[StandinSpec] = field(default_factory=list)  # declared stand-in boards, before they start

    def declared(self, name: str) -> Board | None:
        """A board as this inventory declares it (a stand-in too, before it runs): what its limits come from."""
        found = next((b for b in self.boards if b.name == name), None)
        spec = next((s for s in self.standins if s.name == name), None)
        return found if found is not None else spec.board() if spec is not None else None

    def select(self, pools: Iterable[str] = (), tags: Iterable[str] = (), names: Iterable[str] = ()) -> list[Board]:
        """Boards in any of `pools`, with all of `tags`, matching any name glob."""
        return [b for b in self.boards if matches(b.name, b.pools, b.tags, pools, tags, names)]

    def select_standins(self, pools: Iterable[str] = (), tags: Iterable[str] = (),
                        names: Iterable[str] = ()) -> list[StandinSpec]:
        """Declared stand-ins, chosen by the same rule as boards."""
        return [s for s in self.standins
                if matches(s.name, s.values.get("pools", ()), s.values.get("tags", ()), pools, tags, names)]


def matches(name: str, board_pools: Iterable[str], board_tags: Iterable[str], pools: Iterable[str] = (),
            tags: Iterable[str] = (), names: Iterable[str] = ()) -> bool:
    """In any of `pools`, with all of `tags`, matching any of the name globs (empty: no constraint)."""
    pools, names = set(pools), list(names)
    return ((not pools or bool(pools & set(board_pools))) and set(tags) <= set(board_tags)
            and (not names or any(fnmatch.fnmatchcase(name, glob) for glob in names)))


class _Reader:
    """Turns raw mappings into Boards with precise errors."""

    def __init__(self, path: Path):
        self.path = path
        self.base = path.parent

    def fail(self, line: int | None, message: str, board: str | None = None, field: str | None = None,
             hint: str | None = None) -> InventoryError:
        return InventoryError(str(self.path), line, message, board=board, field=field, hint=hint)

    def substitute(self, value: Any, line: int, board: str | None, key: str) -> Any:
        if isinstance(value, str):
            def lookup(match: re.Match) -> str:
                if match.group(1) not in os.environ:
                    raise self.fail(line, f"environment variable ${{{match.group(1)}}} is not set", board, key)
                return os.environ[match.group(1)]
            return VAR_RE.sub(lookup, value)
        if isinstance(value, list):
            return [self.substitute(v, line, board, key) for v in value]
        if isinstance(value, dict):
            return {k: self.substitute(v, line, board, key) for k, v in value.items()}
        return value

    def check_field(self, key: str, value: Any, line: int, board: str | None, allowed: dict[str, FieldSpec]) -> None:
        if key not in allowed:
            raise self.fail(line, "unknown key", board, str(key), did_you_mean(key, allowed, "valid keys: "))
        spec = allowed[key]
        types, what = spec.types, spec.what
        self.check_size(key, value, line, board)
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            raise self.fail(line, f"expected {what}, got {type(value).__name__} {value!r}", board, key)
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise self.fail(line, f"expected {what} (all text)", board, key)
        if key == "class" and value not in BOARD_CLASSES:
            raise self.fail(line, f"unknown board class {value!r}", board, key,
                            did_you_mean(value, BOARD_CLASSES, "classes: "))
        if spec.choices and value not in spec.choices:
            raise self.fail(line, f"expected {what}, got {value!r}", board, key)
        if key == "regression_rule":
            try:
                parse_rule(value)
            except ValueError as exc:
                raise self.fail(line, str(exc), board, key) from exc
        if key == "name" and not NAME_RE.match(value):
            raise self.fail(line, f"{value!r} is not {what}", board, key)
        if key == "workdir" and (not value.startswith("/") or ".." in value.split("/") or "\n" in value):
            raise self.fail(line, f"expected an absolute path on the board without '..', got {value!r}", board, key)
        if key == "env":
            for name, setting in value.items():
                if not isinstance(name, str) or not ENV_NAME_RE.match(name):
                    raise self.fail(line, f"{name!r} is not an environment variable name (letters, digits and _, "
                                    "not a digit first): env(1) on the board would take it as an option or a "
                                    "command", board, key)
                if not isinstance(setting, (str, int, float)):
                    raise self.fail(line, f"{name}: expected text or a number, got {type(setting).__name__}",
                                    board, key)
        if spec.minimum is not None and value < spec.minimum:
            raise self.fail(line, f"expected a positive number, got {value}", board, key)
        if key == "power":
            self.power(value, line, board)

    def power(self, value: Any, line: int, board: str | None) -> Power | None:
        """The `power:` field, checked whole: one way of switching, every part it needs, nothing else."""
        fix = "see docs/power-and-health.md"
        if isinstance(value, str):
            if value != "none":
                raise self.fail(line, f"expected none or a mapping, got {value!r}", board, "power", fix)
            return None
        for key, item in value.items():
            if key not in POWER_KEYS:
                raise self.fail(line, "unknown key", board, f"power.{key}",
                                did_you_mean(key, POWER_KEYS, "valid keys: "))
            types, what = POWER_KEYS[key].types, POWER_KEYS[key].what
            if isinstance(item, bool) or not isinstance(item, types):
                raise self.fail(line, f"expected {what}, got {type(item).__name__} {item!r}", board, f"power.{key}")
            if isinstance(item, list) and (not item or not all(isinstance(a, str) and a for a in item)):
                raise self.fail(line, f"expected {what}: a non-empty list of text", board, f"power.{key}")
        if "pdudaemon" in value:
            if "on_command" in value or "off_command" in value:
                raise self.fail(line, "both pdudaemon and commands: choose one", board, "power", fix)
            missing = [k for k in ("pdu", "outlet") if k not in value]
            if missing:
                raise self.fail(line, "pdudaemon needs " + " and ".join(missing), board, f"power.{missing[0]}", fix)
            if not HOST_RE.match(value["pdudaemon"]):
                raise self.fail(line, f"{value['pdudaemon']!r} is not a host name or address", board, "power.pdudaemon")
            if not 0 < value.get("port", 16421) < 65536:
                raise self.fail(line, f"expected a port number, got {value['port']}", board, "power.port")
        elif not ("on_command" in value and "off_command" in value):
            raise self.fail(line, "expected pdudaemon (with pdu and outlet) or both on_command and off_command", board,
                            "power", fix)
        for key in ("off_s", "boot_s"):
            if key in value and not 0 <= value[key] <= 3600:
                raise self.fail(line, f"expected 0 to 3600 seconds, got {value[key]}", board, f"power.{key}")
        return power_of(value)

    def check_size(self, key: str, value: Any, line: int, board: str | None) -> None:
        """No value past MAX_TEXT_CHARS, no list past MAX_LIST_ITEMS: a runaway value is an error, never a board."""
        items = list(value.items()) if isinstance(value, dict) else value if isinstance(value, list) else [value]
        if isinstance(value, (list, dict)) and len(items) > MAX_LIST_ITEMS:
            raise self.fail(line, f"{len(items)} entries, over farm's limit of {MAX_LIST_ITEMS}", board, key)
        for item in items:
            for text in item if isinstance(item, tuple) else (item,):
                if isinstance(text, str) and len(text) > MAX_TEXT_CHARS:
                    raise self.fail(line, f"a value of {len(text)} characters, over farm's limit of "
                                    f"{MAX_TEXT_CHARS}: is the file damaged?", board, key)

    def fields_of(self, raw: dict, board: str | None, allowed: dict[str, FieldSpec]) -> dict:
        lines = getattr(raw, "lines", {})
        values = {}
        for key, value in raw.items():
            line = lines.get(key, getattr(raw, "line", None))
            value = self.substitute(value, line, board, key)
            self.check_field(key, value, line, board, allowed)
            values[key] = value
        return values

    def path_field(self, value: str | None) -> str | None:
        if value is None:
            return None
        path = Path(os.path.expanduser(value))
        return str(path if path.is_absolute() else (self.base / path).resolve())

    def make_board(self, values: dict, line: int) -> Board:
        name = values.get("name")
        if values.get("transport") == "local":
            values = {"host": "localhost", **values}
        if "host" not in values:
            raise self.fail(line, "missing required field", name, "host")
        if values.get("emulated_cpu") and not values.get("standin"):
            raise self.fail(line, "only a stand-in runs on an emulated CPU", name, "emulated_cpu",
                            "add standin: true, or remove emulated_cpu")
        board_class = values.get("class")
        inherited = class_fields(board_class, standin=bool(values.get("standin")))
        merged = {**inherited, **values, **toolchain_fields(inherited, values)}
        kwargs = {k: v for k, v in merged.items() if k in {f.name for f in fields(Board)}}
        for key in ("providers", "pools", "tags"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        if "env" in kwargs:
            kwargs["env"] = tuple(sorted((str(k), str(v)) for k, v in kwargs["env"].items()))
        if "power" in kwargs:
            kwargs["power"] = self.power(kwargs["power"], line, name)
        kwargs["identity_file"] = self.path_field(kwargs.get("identity_file"))
        kwargs["known_hosts"] = self.path_field(kwargs.get("known_hosts"))
        return Board(board_class=board_class, from_class=_budgets_from_class(inherited, values), **kwargs)


def _check_unique(reader: _Reader, boards: list[tuple[Board, int]]) -> list[Board]:
    seen: dict[str, int] = {}
    for board, line in boards:
        if board.name in seen:
            raise reader.fail(line, f"duplicate board name (first at line {seen[board.name]})", board.name, "name")
        seen[board.name] = line
    return [b for b, _ in boards]


def _load_farm(reader: _Reader, doc: LineMap) -> Inventory:
    sections = {"defaults": dict, "boards": list, "standins": list}
    for key, value in doc.items():
        if key not in sections:
            raise reader.fail(doc.lines[key], "unknown key", None, str(key),
                              did_you_mean(key, sections, "expected "))
        if value is not None and not isinstance(value, sections[key]):
            raise reader.fail(doc.lines[key], f"expected a {sections[key].__name__}, got {type(value).__name__}",
                              None, key)
    defaults_raw = doc.get("defaults") or LineMap()
    defaults = reader.fields_of(defaults_raw, None, {k: s for k, s in BOARD_KEYS.items() if k != "name"})
    boards = []
    for index, raw in enumerate(doc.get("boards") or []):
        if not isinstance(raw, LineMap):
            raise reader.fail(doc.lines["boards"], f"board #{index + 1} is not a mapping", None, "boards")
        if "name" not in raw:
            raise reader.fail(raw.line, "missing required field", None, "name")
        values = reader.fields_of(raw, raw.get("name"), BOARD_KEYS)
        boards.append((reader.make_board({**defaults, **values}, raw.line), raw.line))
    standins = []
    for raw in doc.get("standins") or []:
        if not isinstance(raw, LineMap) or "name" not in raw:
            raise reader.fail(getattr(raw, "line", doc.lines["standins"]), "a stand-in needs a name", None, "name")
        for key, value in raw.items():
            if key == "arch":
                if value not in STANDIN_KEYS[key].choices:
                    raise reader.fail(raw.lines[key], "expected " + STANDIN_KEYS[key].what, raw["name"], key)
                continue
            if key == "full_system":
                if not isinstance(value, bool) or value and raw.get("arch") != "arm64":
                    raise reader.fail(raw.lines[key], "expected " + STANDIN_KEYS[key].what, raw["name"], key)
                continue
            reader.check_field(key, value, raw.lines[key], raw["name"], STANDIN_KEYS)
        values = dict(raw)
        standins.append((StandinSpec(
            values.pop("name"), values.pop("cores", None), values.pop("memory_mb", None),
            values.pop("arch", "native"), values.pop("full_system", False), cpu=values.pop("cpu", None),
            fields=tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in values.items())), raw.line))
    names = [(Board(name=s.name, host="127.0.0.1"), line) for s, line in standins]
    _check_unique(reader, boards + names)
    return Inventory(reader.path, [b for b, _ in boards], [s for s, _ in standins])


def _ansible_hosts(reader: _Reader, group: str, node: Any, inherited: dict, pools: tuple,
                   found: dict[str, tuple[LineMap, tuple]]) -> None:
    """Walk an Ansible group: vars flow down (keeping their lines), every group is a pool."""
    node = node if node is not None else LineMap()
    if not isinstance(node, LineMap):
        raise reader.fail(None, f"group {group!r} is not a mapping", None, group)
    for key in node:
        if key not in ("hosts", "children", "vars"):
            raise reader.fail(node.lines[key], "unknown key in an Ansible group", None, str(key),
                              "expected hosts, children or vars")
    group_vars = node.get("vars") or LineMap()
    variables = {**inherited, **{k: (v, group_vars.lines[k]) for k, v in group_vars.items()}}
    pools = pools + ((group,) if group not in ("all", "ungrouped") else ())
    for host, host_vars in (node.get("hosts") or {}).items():
        host_vars = host_vars if host_vars is not None else LineMap()
        merged = {**variables, **{k: (v, host_vars.lines[k]) for k, v in host_vars.items()}}
        previous_vars, previous_pools = found.get(host, ({}, ()))
        raw = LineMap({**previous_vars, **merged})
        raw.line = node["hosts"].lines[host]
        found[host] = (raw, tuple(dict.fromkeys(previous_pools + pools)))
    for child, child_node in (node.get("children") or {}).items():
        _ansible_hosts(reader, child, child_node, variables, pools, found)


def _load_ansible(reader: _Reader, doc: LineMap) -> Inventory:
    found: dict[str, tuple[LineMap, tuple]] = {}
    for group, node in doc.items():
        _ansible_hosts(reader, group, node, {}, (), found)
    boards = []
    for host, (variables, pools) in found.items():
        raw = LineMap({"name": host})
        raw.line, raw.lines = variables.line, {"name": variables.line}
        for key, (value, line) in variables.items():
            name = ANSIBLE_VARS.get(key) or (key[len("farm_"):] if key.startswith("farm_") else None)
            if name:
                raw[name], raw.lines[name] = value, line
        raw.setdefault("host", host)
        raw["pools"] = list(dict.fromkeys(list(raw.get("pools", [])) + list(pools)))
        raw.lines.setdefault("pools", raw.line)
        boards.append((reader.make_board(reader.fields_of(raw, host, BOARD_KEYS), raw.line), raw.line))
    return Inventory(reader.path, _check_unique(reader, boards))


def load_inventory(path: str | Path) -> Inventory:
    """Load a farm or Ansible YAML inventory; InventoryError with file:line otherwise."""
    path = Path(path)
    doc = load_yaml(path, lambda p, line, message: InventoryError(p, line, message), "inventory file",
                    max_bytes=MAX_INVENTORY_BYTES)
    reader = _Reader(path)
    if not isinstance(doc, LineMap):
        raise reader.fail(None, "expected a mapping with 'boards' (farm) or 'all' (Ansible)")
    if "all" in doc or any(isinstance(v, dict) and {"hosts", "children"} & set(v) for v in doc.values()):
        return _load_ansible(reader, doc)
    return _load_farm(reader, doc)
