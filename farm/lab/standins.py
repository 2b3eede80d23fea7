"""The stand-in boards of this machine: started, recorded, turned into boards, stopped.

Each stand-in is a real OpenSSH server (farm.lab.sshd) logging in as an
unprivileged user. Host keys are verified exactly as for real boards: the lab
writes the known_hosts that its inventory points to. `down` stops exactly the
processes the lab recorded, by PID, and removes their state.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

import yaml

from farm.config.boardclasses import class_fields
from farm.config.inventory import Board, StandinSpec
from farm.lab import host, sshd

BOARD_ROOT = "/tmp/farm-boards"

Progress = Callable[[str], None]


def default_lab_dir() -> Path:
    """Where stand-in state lives: readable by the login user, private keys still 0600."""
    if os.environ.get("FARM_LAB_DIR"):
        return Path(os.environ["FARM_LAB_DIR"])
    if os.geteuid() == 0:
        return Path("/var/tmp/farm-lab")
    return Path.home() / ".cache" / "farm" / "lab"


class Lab:
    """The stand-in boards of this machine, recorded in `<lab dir>/lab.json`."""

    def __init__(self, state_dir: Path | None = None, progress: Progress = lambda message: None):
        self.dir = Path(state_dir or default_lab_dir())
        self.progress = progress

    @property
    def _record(self) -> Path:
        return self.dir / "lab.json"

    def _load(self) -> dict:
        try:
            return json.loads(self._record.read_text())
        except (OSError, json.JSONDecodeError):
            return {"boards": {}}

    def _store(self, record: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        partial = self._record.with_suffix(".tmp")
        partial.write_text(json.dumps(record, indent=1) + "\n")
        partial.replace(self._record)

    def _write_known_hosts(self, record: dict) -> str:
        path = self.dir / "known_hosts"
        lines = [f"[127.0.0.1]:{b['port']} {b['host_key']}" for b in record["boards"].values()]
        path.write_text("\n".join(lines) + ("\n" if lines else ""))
        return str(path)

    def board(self, entry: dict, record: dict) -> Board:
        """A running stand-in as an ordinary board: class budgets and providers, its own cores."""
        fields = {k: (tuple(v) if isinstance(v, list) else v) for k, v in (entry.get("fields") or {}).items()}
        board_class = fields.pop("class", None)
        fields = {**class_fields(board_class, standin=True), **fields}
        if entry.get("cores"):  # onnxruntime would size its pool by the host's cores, not the taskset
            fields.setdefault("threads", entry["cores"])
        emulated = entry.get("qemu_cpu")
        return Board(name=entry["name"], host="127.0.0.1", port=entry["port"], user=record["user"],
                     identity_file=record["client_key"], known_hosts=record["known_hosts"],
                     workdir=f"{BOARD_ROOT}/{entry['name']}", python="/usr/bin/python3" if emulated else record["python"],
                     board_class=board_class, cores=entry.get("cores"), memory_mb=entry.get("memory_mb"), standin=True,
                     emulated_cpu=emulated, **fields)

    def running(self) -> dict[str, dict]:
        record = self._load()
        return {name: b for name, b in record["boards"].items() if sshd.pid_alive(b["pid"], b["config"])}

    def up(self, specs: list[StandinSpec]) -> tuple[list[Board], list[str]]:
        """Start the stand-ins not already running; return all as boards, and the names started."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        record = self._load()
        record["boards"] = self.running()
        record["user"] = host.login_user(self.progress)
        record["python"] = host.board_python(self.progress)
        record["client_key"] = str(host.client_key(self.dir))
        started = []
        for spec in specs:
            if spec.name in record["boards"]:
                continue
            self.progress(f"starting stand-in {spec.name}")
            state = self.dir / spec.name
            if state.exists():
                shutil.rmtree(state)
            record["boards"][spec.name] = sshd.start(spec, state, record["user"], Path(record["client_key"]),
                                                     self.progress)
            started.append(spec.name)
            record["known_hosts"] = self._write_known_hosts(record)
            self._store(record)  # recorded at once: `down` can stop what was started before a failure
        record["known_hosts"] = self._write_known_hosts(record)
        self._store(record)
        self.write_inventory(record)
        return [self.board(record["boards"][s.name], record) for s in specs], started

    def down(self, names: list[str] | None = None) -> list[str]:
        """Stop exactly the recorded processes (all, or `names`) and remove their state."""
        record = self._load()
        stopped = []
        for name in list(record["boards"]):
            if names is not None and name not in names:
                continue
            sshd.stop(record["boards"].pop(name))
            shutil.rmtree(self.dir / name, ignore_errors=True)
            stopped.append(name)
        if "user" in record:
            record["known_hosts"] = self._write_known_hosts(record)
            self.write_inventory(record)
        self._store(record)
        return stopped

    def write_inventory(self, record: dict) -> Path:
        """An ordinary farm inventory of the running stand-ins, for any farm command."""
        boards = []
        for entry in record["boards"].values():
            board = self.board(entry, record)
            row = {"name": board.name, "host": board.host, "port": board.port, "workdir": board.workdir}
            if board.python != record["python"]:  # an emulated board's own Python
                row["python"] = board.python
            if board.cores:
                row["cores"] = board.cores
            if board.pools:
                row["pools"] = list(board.pools)
            boards.append(row)
        doc = {"defaults": {"user": record["user"], "identity_file": record["client_key"],
                            "known_hosts": record["known_hosts"], "python": record["python"]},
               "boards": boards}
        path = self.dir / "inventory.yaml"
        path.write_text("# Written by `farm lab up`: the stand-in boards running now.\n"
                        + yaml.safe_dump(doc, sort_keys=False))
        return path
