"""The stand-in boards of this machine: started, recorded, turned into boards, stopped.

Each stand-in is a real OpenSSH server (farm.lab.sshd) logging in as an
unprivileged user. Host keys are verified exactly as for real boards: the lab
writes the known_hosts that its inventory points to. `down` stops exactly the
processes the lab recorded (their PID, start time and the config in the lab's own
folder), and removes their state. The lab folder is trusted only when this user
made it and alone can write it (`host.own_dir`): under /var/tmp anyone may make it first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pwd
import stat
from pathlib import Path

import yaml

from farm.config.inventory import Board, StandinSpec
from farm.errors import ConfigError
from farm.lab import host, sshd
from farm.lab.emulation import rootfs_path
from farm.util import remove_tree

# An emulated board's files live in the shared arm64 root file system: one folder per lab there.
EMULATED_ROOT = "/tmp/farm-boards"

LAB_DIR_FIX = "set FARM_LAB_DIR to a folder of your own"

log = logging.getLogger(__name__)


def default_lab_dir() -> Path:
    """Where stand-in state lives: readable by the login user, private keys still 0600."""
    if os.environ.get("FARM_LAB_DIR"):
        return Path(os.environ["FARM_LAB_DIR"])
    if os.geteuid() == 0:
        return Path("/var/tmp/farm-lab")
    return Path.home() / ".cache" / "farm" / "lab"


class Lab:
    """The stand-in boards of this machine, recorded in `<lab dir>/lab.json`."""

    def __init__(self, state_dir: Path | None = None):
        self.dir = Path(state_dir or default_lab_dir())

    @property
    def _record(self) -> Path:
        return self.dir / "lab.json"

    def _load(self) -> dict:
        """The lab's record, read only from a folder of our own: its pids are signalled, its keys used."""
        if os.path.lexists(self.dir):
            host.check_own_dir(self.dir, LAB_DIR_FIX)
        try:
            return json.loads(self._record.read_text())
        except (OSError, json.JSONDecodeError):
            return {"boards": {}}

    def _store(self, record: dict) -> None:
        host.own_dir(self.dir, LAB_DIR_FIX)
        partial = self._record.with_suffix(".tmp")
        partial.write_text(json.dumps(record, indent=1) + "\n")
        partial.replace(self._record)

    def _write_known_hosts(self, record: dict) -> str:
        path = self.dir / "known_hosts"
        lines = [f"[127.0.0.1]:{b['port']} {b['host_key']}" for b in record["boards"].values()]
        path.write_text("\n".join(lines) + ("\n" if lines else ""))
        return str(path)

    def workdir(self, name: str, emulated: bool) -> str:
        """Each lab's boards work in folders of their own: one lab's stale lock never makes another's board busy."""
        if emulated:  # inside the chroot, which every emulated stand-in shares
            return f"{EMULATED_ROOT}/{hashlib.sha256(str(self.dir.resolve()).encode()).hexdigest()[:8]}/{name}"
        return str(self.dir / "boards" / name)

    def lock_file(self, name: str, entry: dict) -> Path | None:
        """Where a running stand-in's lock is on this machine (None for a full-system VM's own disk)."""
        if entry.get("full_system"):
            return None
        if entry.get("qemu_cpu"):
            return rootfs_path() / self.workdir(name, True).lstrip("/") / "farm.lock"
        return Path(self.workdir(name, False)) / "farm.lock"

    def _check_reachable(self, user: str) -> None:
        """sshd reads each stand-in's keys as the login user: every folder above them must let it through."""
        if os.geteuid() != 0 or user == "root":
            return
        entry = pwd.getpwnam(user)
        for folder in [self.dir.resolve(), *self.dir.resolve().parents]:
            mode = folder.stat()
            bits = (stat.S_IXUSR if mode.st_uid == entry.pw_uid
                    else stat.S_IXGRP if mode.st_gid == entry.pw_gid else stat.S_IXOTH)
            if not mode.st_mode & bits:
                raise ConfigError(f"lab dir {self.dir}: the stand-ins' login user {user} cannot enter {folder} (mode "
                                  f"{stat.S_IMODE(mode.st_mode):04o}, e.g. a `mktemp -d`): key login would fail. Set "
                                  f"FARM_LAB_DIR to a folder it can reach, or `chmod o+x {folder}`")

    def _board_folder(self, name: str, user: str) -> None:
        folder = self.dir / "boards" / name
        folder.mkdir(parents=True, exist_ok=True)
        (self.dir / "boards").chmod(0o755)
        if os.geteuid() == 0:
            entry = pwd.getpwnam(user)
            os.chown(folder, entry.pw_uid, entry.pw_gid)

    def board(self, entry: dict, record: dict) -> Board:
        """A running stand-in as an ordinary board, reached through its sshd."""
        spec = StandinSpec(entry["name"], entry.get("cores"), entry.get("memory_mb"),
                           "arm64" if entry.get("qemu_cpu") else "native", bool(entry.get("full_system")),
                           tuple((entry.get("fields") or {}).items()), entry.get("qemu_cpu"))
        emulated = bool(entry.get("qemu_cpu"))
        python = record.get("pythons", {}).get(spec.board().toolchain, record["python"])
        return spec.board(port=entry["port"], user=record["user"], identity_file=record["client_key"],
                          known_hosts=record["known_hosts"], workdir=self.workdir(entry["name"], emulated),
                          python="/usr/bin/python3" if emulated else python)

    def running(self) -> dict[str, dict]:
        record = self._load()
        return {name: b for name, b in record["boards"].items() if sshd.pid_alive(b, self.dir / name)}

    def reap_orphans(self) -> list[str]:
        """Stop the stand-ins a run started for itself and never stopped (it was killed): their owner is gone."""
        record = self._load()
        orphans = [name for name, entry in record["boards"].items() if entry.get("owner")
                   and host.process_start(entry["owner"]["pid"]) != entry["owner"]["start"]]
        if orphans:
            log.info(f"lab: stopping {', '.join(orphans)}: the run that started them is gone")
            self.down(orphans)
        return orphans

    def up(self, specs: list[StandinSpec], owned: bool = False) -> tuple[list[Board], list[str]]:
        """Start the stand-ins not already running; return all as boards, and the names started.

        `owned`: started for this process alone (a run's own stand-ins), which stops them when it is done;
        should it die first, the next lab operation stops them (`reap_orphans`).
        """
        host.own_dir(self.dir, LAB_DIR_FIX)
        self.reap_orphans()
        record = self._load()
        record["boards"] = self.running()
        record["user"] = host.login_user()
        self._check_reachable(record["user"])
        record["python"] = host.board_python()
        record["pythons"] = {t: host.board_python(t) for t in host.TOOLCHAIN_PYTHONS
                             if any(s.board().toolchain == t and s.arch == "native" for s in specs)}
        record["client_key"] = str(host.client_key(self.dir))
        started = []
        for spec in specs:
            if spec.name in record["boards"]:
                continue
            log.info(f"lab: starting stand-in {spec.name}")
            state = self.dir / spec.name
            remove_tree(state, self.dir)
            if spec.arch == "native":
                self._board_folder(spec.name, record["user"])
            record["boards"][spec.name] = sshd.start(spec, state, record["user"], Path(record["client_key"]))
            if owned:
                record["boards"][spec.name]["owner"] = host.this_process()
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
            sshd.stop(record["boards"].pop(name), self.dir / name)
            remove_tree(self.dir / name, self.dir)
            if (self.dir / "boards" / name).exists():
                remove_tree(self.dir / "boards" / name, self.dir / "boards")
            stopped.append(name)
        if "user" in record:
            record["known_hosts"] = self._write_known_hosts(record)
            self.write_inventory(record)
        self._store(record)
        return stopped

    def power(self, name: str, action: str) -> None:
        """What a PDU outlet does to a stand-in: `off` freezes its sshd (the board hangs), `on` cold-starts it
        (a new sshd, the same port and host key, a new boot id). pdudaemon's localcmdline driver calls this."""
        record = self._load()
        entry = record["boards"].get(name)
        if entry is None:
            raise ConfigError(f"no stand-in {name!r} in {self.dir} (running: {', '.join(record['boards']) or 'none'})")
        if entry.get("full_system") or "argv" not in entry:  # a VM's power would be QEMU's monitor: not done
            raise ConfigError(f"stand-in {name!r}: only a native or emulated (qemu-user) stand-in started by this "
                              "farm has a power switch")
        if action == "off":
            sshd.power_off(entry, self.dir / name)
            return
        record["boards"][name] = sshd.power_on(entry, self.dir / name)
        self._store(record)

    def write_inventory(self, record: dict) -> Path:
        """An ordinary farm inventory of the running stand-ins, for any farm command.

        Each row loads as the very board the lab runs: marked a stand-in, with its declared fields (class,
        budgets, pools...), its taskset's threads and, when emulated, its QEMU CPU."""
        boards = []
        for entry in record["boards"].values():
            board = self.board(entry, record)
            row = {"name": board.name, "host": board.host, "port": board.port, "workdir": board.workdir,
                   "standin": True}
            if board.python != record["python"]:  # an emulated board's own Python
                row["python"] = board.python
            if board.emulated_cpu:
                row["emulated_cpu"] = board.emulated_cpu
            row.update({k: v for k, v in (("cores", board.cores), ("memory_mb", board.memory_mb),
                                          ("threads", board.threads)) if v})
            row.update({k: list(v) if isinstance(v, (list, tuple)) else v
                        for k, v in (entry.get("fields") or {}).items()})
            boards.append(row)
        doc = {"defaults": {"user": record["user"], "identity_file": record["client_key"],
                            "known_hosts": record["known_hosts"], "python": record["python"]},
               "boards": boards}
        path = self.dir / "inventory.yaml"
        path.write_text("# Written by `farm lab up`: the stand-in boards running now.\n"
                        + yaml.safe_dump(doc, sort_keys=False))
        return path
