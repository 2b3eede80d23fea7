"""Stand-in boards: real OpenSSH servers on 127.0.0.1 that farm starts and stops itself.

Each stand-in is `/usr/sbin/sshd -D` with its own port, host key, authorized key,
config and state folder, logging in as a dedicated unprivileged user (when farm
runs as root) and limited like a small board (`taskset` cores, `prlimit`
address-space cap). Host keys are verified exactly as for real boards: the lab
writes the known_hosts that its inventory points to. `down` stops exactly the
processes the lab recorded, by PID, and removes their state.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from farm import emulation, fullsystem
from farm.emulation import run_checked
from farm.boardclasses import BOARD_CLASSES
from farm.errors import ConfigError, FarmError
from farm.inventory import Board

SSHD = "/usr/sbin/sshd"
LOGIN_USER = "farm-standin"
BOARD_ROOT = "/tmp/farm-boards"
# The stand-ins' Python (numpy + onnxruntime), built once per machine, readable by the login user.
BOARD_PYTHON_DIR = Path("/var/tmp/farm-board-python")
READY_TIMEOUT_S = 10.0

Progress = Callable[[str], None]


def default_lab_dir() -> Path:
    """Where stand-in state lives: readable by the login user, private keys still 0600."""
    if os.environ.get("FARM_LAB_DIR"):
        return Path(os.environ["FARM_LAB_DIR"])
    if os.geteuid() == 0:
        return Path("/var/tmp/farm-lab")
    return Path.home() / ".cache" / "farm" / "lab"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_banner(port: int, process: subprocess.Popen, log: Path, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Ready is when sshd answers with its banner, not after a sleep."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise FarmError(f"sshd on port {port} exited {process.returncode}: {log.read_text()[-400:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.02)
    raise FarmError(f"sshd on port {port} did not answer within {timeout_s:.0f} s (log: {log})")


def _pid_alive(pid: int, marker: str) -> bool:
    """True only for the process we started (its command line names our config)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return marker in cmdline


def _reap(pid: int) -> None:
    """Collect a stand-in this process started (else it lingers as a zombie until we exit)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # started by another farm process: its parent reaps it


@dataclass
class StandinSpec:
    name: str
    cores: int | None = None
    memory_mb: int | None = None
    extra: dict | None = None  # inventory fields (class, cpu, pools, tags, budgets) passed through

    @classmethod
    def from_inventory(cls, raw: dict) -> "StandinSpec":
        extra = {k: v for k, v in raw.items() if k not in ("name", "cores", "memory_mb")}
        return cls(raw["name"], raw.get("cores"), raw.get("memory_mb"), extra)

    @property
    def qemu_cpu(self) -> str | None:
        """The emulated CPU of an `arch: arm64` stand-in (its `cpu`, else its class's)."""
        extra = self.extra or {}
        if extra.get("arch") != "arm64":
            return None
        return emulation.qemu_cpu_for(extra.get("cpu") or BOARD_CLASSES.get(extra.get("class"), {}).get("cpu"))


class Lab:
    """The stand-in boards of this machine, recorded in `<lab dir>/lab.json`."""

    def __init__(self, state_dir: Path | None = None, progress: Progress = lambda message: None):
        self.dir = Path(state_dir or default_lab_dir())
        self.progress = progress

    # -- shared set-up ------------------------------------------------------------------------
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

    def _login_user(self) -> str:
        if os.geteuid() != 0:
            return pwd.getpwuid(os.geteuid()).pw_name
        try:
            pwd.getpwnam(LOGIN_USER)
        except KeyError:
            self.progress(f"creating the unprivileged login user {LOGIN_USER}")
            run_checked(["useradd", "-m", "-s", "/bin/bash", LOGIN_USER], "useradd")
            # With UsePAM no, an account locked with '!' is refused; '*' allows key login only.
            run_checked(["usermod", "-p", "*", LOGIN_USER], "usermod")
        return LOGIN_USER

    def _board_python(self) -> str:
        """A Python with numpy and onnxruntime that the login user can run."""
        if os.geteuid() != 0:
            return sys.executable
        venv = BOARD_PYTHON_DIR  # one per machine, shared by every lab
        python = venv / "bin" / "python"
        if not python.exists():
            import numpy
            import onnxruntime

            base = shutil.which("python3", path="/usr/bin:/usr/local/bin") or sys.executable
            self.progress(f"creating the stand-ins' Python ({base} + numpy + onnxruntime), once")
            run_checked([base, "-m", "venv", str(venv)], "creating the board Python")
            run_checked([str(python), "-m", "pip", "install", "-q", f"numpy=={numpy.__version__}",
                  f"onnxruntime=={onnxruntime.__version__}"], "installing numpy and onnxruntime for the stand-ins")
        return str(python)

    def _client_key(self) -> Path:
        key = self.dir / "client_ed25519"
        if not key.exists():
            run_checked(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "farm-lab-client", "-f", str(key)],
                 "ssh-keygen")
        return key

    # -- boards -------------------------------------------------------------------------------
    def _start(self, spec: StandinSpec, user: str, client_key: Path) -> dict:
        if not os.path.exists(SSHD):
            raise ConfigError(f"{SSHD} not found: install openssh-server (scripts/setup.sh does it as root)")
        state = self.dir / spec.name
        if state.exists():
            shutil.rmtree(state)
        state.mkdir(parents=True)
        state.chmod(0o755)
        run_checked(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"farm-standin-{spec.name}",
              "-f", str(state / "host_key")], "ssh-keygen")
        authorized = state / "authorized_keys"
        authorized.write_text((client_key.with_suffix(".pub")).read_text())
        authorized.chmod(0o644)  # read as the login user
        port = _free_port()
        config = state / "sshd_config"
        qemu_cpu = spec.qemu_cpu
        full_system = bool((spec.extra or {}).get("full_system"))
        settings = [
            f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {state / 'host_key'}",
            f"PidFile {state / 'sshd.pid'}", f"AuthorizedKeysFile {authorized}",
            f"AllowUsers {user}", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "UsePAM no", "StrictModes no", "PermitRootLogin no", "Subsystem sftp internal-sftp"]
        if full_system:
            base = fullsystem.ensure_base(user, self.progress)
            config = fullsystem.config_disk(state, spec.name, state / "host_key", authorized, user)
            argv = fullsystem.qemu_argv(base, config, qemu_cpu, spec.cores, spec.memory_mb, port,
                                        state / "console.log")
        elif qemu_cpu:
            emulation.ensure_qemu(self.progress)
            rootfs = emulation.ensure_rootfs(emulation.CACHE, user, self.progress)
            settings += emulation.sshd_settings(qemu_cpu)
            argv = emulation.chrooted_sshd(rootfs, SSHD, config)
        else:
            argv = [SSHD, "-D", "-e", "-f", str(config)]
        if not full_system:
            config.write_text("\n".join(settings) + "\n")
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
        # QEMU reserves the guest's whole address space: an address-space cap would stop it.
        if spec.memory_mb and not qemu_cpu:
            argv = ["prlimit", f"--as={spec.memory_mb * 1024 * 1024}", "--", *argv]
        if spec.cores and not full_system:  # a full-system board gets its cores as QEMU's -smp
            argv = ["taskset", "-c", f"0-{min(spec.cores, os.cpu_count() or 1) - 1}", *argv]
        log = state / "sshd.log"
        with open(log, "ab") as handle:
            process = subprocess.Popen(argv, stdout=handle, stderr=handle, stdin=subprocess.DEVNULL,
                                       start_new_session=True)  # outlives `farm lab up`; Ctrl-C does not reach it
        try:
            _wait_for_banner(port, process, log, fullsystem.BOOT_TIMEOUT_S if full_system else READY_TIMEOUT_S)
        except BaseException:  # never leave an unrecorded server (or VM) behind
            process.kill()
            process.wait(10)
            raise
        host_key = (state / "host_key.pub").read_text().split()
        return {"name": spec.name, "port": port, "pid": process.pid, "config": str(config),
                "host_key": f"{host_key[0]} {host_key[1]}", "cores": spec.cores, "memory_mb": spec.memory_mb,
                "qemu_cpu": qemu_cpu, "extra": spec.extra or {}}

    def _write_known_hosts(self, record: dict) -> Path:
        path = self.dir / "known_hosts"
        lines = [f"[127.0.0.1]:{b['port']} {b['host_key']}" for b in record["boards"].values()]
        path.write_text("\n".join(lines) + ("\n" if lines else ""))
        return path

    def _board(self, entry: dict, record: dict) -> Board:
        extra = dict(entry.get("extra") or {})
        extra.pop("arch", None)
        extra.pop("full_system", None)
        for key in ("providers", "pools", "tags"):
            if key in extra:
                extra[key] = tuple(extra[key])
        board_class = extra.pop("class", None)
        inherited = {k: (tuple(v) if isinstance(v, list) else v) for k, v in BOARD_CLASSES.get(board_class, {}).items()}
        # A stand-in's CPU is this machine's: it keeps the class's budgets and providers, not its
        # cores, memory or threads (threads beyond the taskset stall onnxruntime's spinning pool).
        for key in ("cores", "memory_mb", "threads"):
            inherited.pop(key, None)
        fields = {**inherited, **extra}
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
        return {name: b for name, b in record["boards"].items() if _pid_alive(b["pid"], b["config"])}

    def up(self, specs: list[StandinSpec]) -> tuple[list[Board], list[str]]:
        """Start the stand-ins not already running; return all as boards, and the names started."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        record = self._load()
        record["boards"] = self.running()
        record["user"] = self._login_user()
        record["python"] = self._board_python()
        record["client_key"] = str(self._client_key())
        started = []
        for spec in specs:
            if spec.name in record["boards"]:
                continue
            self.progress(f"starting stand-in {spec.name}")
            record["boards"][spec.name] = self._start(spec, record["user"], Path(record["client_key"]))
            started.append(spec.name)
            record["known_hosts"] = str(self._write_known_hosts(record))
            self._store(record)  # recorded at once: `down` can stop what was started before a failure
        record["known_hosts"] = str(self._write_known_hosts(record))
        self._store(record)
        boards = [self._board(record["boards"][s.name], record) for s in specs]
        self.write_inventory(record)
        return boards, started

    def down(self, names: list[str] | None = None) -> list[str]:
        """Stop exactly the recorded processes (all, or `names`) and remove their state."""
        record = self._load()
        stopped = []
        for name in list(record["boards"]):
            if names is not None and name not in names:
                continue
            entry = record["boards"].pop(name)
            if _pid_alive(entry["pid"], entry["config"]):
                os.kill(entry["pid"], signal.SIGTERM)
                for _ in range(100):
                    _reap(entry["pid"])
                    if not _pid_alive(entry["pid"], entry["config"]):
                        break
                    time.sleep(0.02)
                _reap(entry["pid"])
            shutil.rmtree(self.dir / name, ignore_errors=True)
            stopped.append(name)
        if "user" in record:
            record["known_hosts"] = str(self._write_known_hosts(record))
            self.write_inventory(record)
        self._store(record)
        return stopped

    def write_inventory(self, record: dict) -> Path:
        """An ordinary farm inventory of the running stand-ins, for any farm command."""
        boards = []
        for entry in record["boards"].values():
            board = self._board(entry, record)
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
        path.write_text("# Written by `farm lab up`: the stand-in boards running now.\n" + yaml.safe_dump(doc, sort_keys=False))
        return path
