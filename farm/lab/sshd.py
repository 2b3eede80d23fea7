"""One stand-in board: a real `/usr/sbin/sshd -D` on 127.0.0.1, limited like a small board.

Its own port, host key, authorized key, config and state folder; `taskset`
cores and a `prlimit` address-space cap; chrooted into an arm64 root file
system under qemu-user, or a full-system VM, when the spec says `arch: arm64`.
Ready when sshd answers with its banner, not after a sleep.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from farm.config.inventory import StandinSpec
from farm.errors import ConfigError, FarmError
from farm.lab import emulation, fullsystem
from farm.lab.host import process_start, run_checked

SSHD = "/usr/sbin/sshd"
READY_TIMEOUT_S = 10.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_banner(port: int, process: subprocess.Popen, log: Path, timeout_s: float) -> None:
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


def config_path(state: Path, full_system: bool) -> Path:
    """The file a stand-in's command line names: its sshd config, or a VM's config disk."""
    return state / ("config.img" if full_system else "sshd_config")


def pid_alive(entry: dict, state: Path) -> bool:
    """True only for the process we started: its start time as recorded, its command line naming our config.

    The config is the one in `state` (the lab's own folder), never a path the record supplies: a record
    whose marker was empty once matched every command line, and `farm lab down` signalled another process.
    """
    pid, start = entry.get("pid"), entry.get("start")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or not start or process_start(pid) != start:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    # sshd retitles itself ("sshd: /usr/sbin/sshd -D -e -f <config> [listener] ..."); QEMU has `file=<disk>,`.
    config = re.escape(str(config_path(state, bool(entry.get("full_system")))))
    return re.search(rf"(?:^|[\s=]){config}(?:$|[\s,])", cmdline) is not None


def _reaped(pid: int) -> bool:
    """True once `pid` is no concern of ours: reaped now (our child), or another process's child."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return True  # started by another farm process: its parent reaps it


def _sshd_settings(state: Path, port: int, user: str, authorized: Path) -> list[str]:
    return [f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {state / 'host_key'}",
            f"PidFile {state / 'sshd.pid'}", f"AuthorizedKeysFile {authorized}", f"AllowUsers {user}",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
            "PermitRootLogin no", "Subsystem sftp internal-sftp",
            # A silent client is gone after 15 s: its session ends, and so does an agent watching its stdin.
            "ClientAliveInterval 5", "ClientAliveCountMax 3"]


def _with_boot_id(lines: list[str]) -> list[str]:
    """A stand-in's sshd settings with a new "boot" (native or emulated; `farm lab power on` makes another), as a
    board's boot_id is new at each boot: an emulated one's /proc is the controller's, whose boot id never changes.
    sshd reads only the first SetEnv line, so the id goes on that one (an emulated board's sets QEMU_CPU)."""
    boot = f"FARM_BOOT_ID={uuid.uuid4()}"
    kept = [" ".join(w for w in line.split() if not w.startswith("FARM_BOOT_ID=")) if line.startswith("SetEnv ")
            else line for line in lines]
    kept = [line for line in kept if line != "SetEnv"]
    first = next((i for i, line in enumerate(kept) if line.startswith("SetEnv ")), None)
    if first is None:
        return [*kept, f"SetEnv {boot}"]
    return [*kept[:first], f"{kept[first]} {boot}", *kept[first + 1:]]


# A stand-in shares the controller's CPU. Its sshd, and so every agent it starts (nice is inherited,
# UsePAM no), runs at a higher priority than the controller: benchmarks/standin_noise.py, 8 agent
# processes per setting, half of them beside a busy controller: p50 CV between processes 0.21
# unpinned, 0.22 pinned to a core, 0.07 pinned and at nice -10 (p95 CV 0.37 / 0.25 / 0.16).
STANDIN_NICE = -10


def _argv(spec: StandinSpec, state: Path, port: int, user: str, authorized: Path) -> list[str]:
    """The command that runs this stand-in: plain sshd, sshd chrooted under qemu-user, or a VM."""
    qemu_cpu = spec.qemu_cpu
    config = config_path(state, False)
    settings = _sshd_settings(state, port, user, authorized)
    if spec.full_system:
        base = fullsystem.ensure_base(user)
        disk = fullsystem.config_disk(state, spec.name, state / "host_key", authorized, user)
        # A full-system board gets its cores as QEMU's -smp, not a taskset.
        return fullsystem.qemu_argv(base, disk, qemu_cpu, spec.cores, spec.memory_mb, port, state / "console.log")
    if qemu_cpu:
        emulation.ensure_qemu()
        rootfs = emulation.ensure_rootfs(user)
        config.write_text("\n".join(_with_boot_id([*settings, *emulation.sshd_settings(qemu_cpu)])) + "\n")
        argv = emulation.chrooted_sshd(rootfs, SSHD, config)
    else:
        config.write_text("\n".join(_with_boot_id(settings)) + "\n")
        argv = [SSHD, "-D", "-e", "-f", str(config)]
        if spec.memory_mb:  # QEMU reserves the guest's whole address space: no cap on emulated boards
            argv = ["prlimit", f"--as={spec.memory_mb * 1024 * 1024}", "--", *argv]
    if spec.cores:
        argv = ["taskset", "-c", f"0-{min(spec.cores, os.cpu_count() or 1) - 1}", *argv]
    if os.geteuid() == 0:  # raising a priority takes root; elsewhere the stand-in runs at the controller's
        argv = ["nice", "-n", str(STANDIN_NICE), *argv]
    return argv


def start(spec: StandinSpec, state: Path, user: str, client_key: Path) -> dict:
    """Start one stand-in in its (new, empty) state folder; its lab record entry."""
    if not os.path.exists(SSHD):
        raise ConfigError(f"{SSHD} not found: install openssh-server (scripts/setup.sh does it as root)")
    state.mkdir(parents=True)
    state.chmod(0o755)
    run_checked(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"farm-standin-{spec.name}",
                 "-f", str(state / "host_key")], "ssh-keygen")
    authorized = state / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    authorized.chmod(0o644)  # read as the login user
    port = _free_port()
    argv = _argv(spec, state, port, user, authorized)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
    log = state / "sshd.log"
    with open(log, "ab") as handle:
        process = subprocess.Popen(argv, stdout=handle, stderr=handle, stdin=subprocess.DEVNULL,
                                   start_new_session=True)  # outlives `farm lab up`; Ctrl-C does not reach it
    try:
        _wait_for_banner(port, process, log, fullsystem.BOOT_TIMEOUT_S if spec.full_system else READY_TIMEOUT_S)
    except BaseException:  # never leave an unrecorded server (or VM) behind
        process.kill()
        process.wait(10)
        raise
    host_key = (state / "host_key.pub").read_text().split()
    return {"name": spec.name, "port": port, "pid": process.pid, "start": process_start(process.pid), "argv": argv,
            "host_key": f"{host_key[0]} {host_key[1]}", "cores": spec.cores, "memory_mb": spec.memory_mb,
            "qemu_cpu": spec.qemu_cpu, "full_system": spec.full_system, "fields": dict(spec.fields)}


def stop(entry: dict, state: Path) -> None:
    """Stop exactly the recorded process, if it is still ours, and wait for it to go."""
    if not pid_alive(entry, state):
        return
    pid = entry["pid"]
    os.kill(pid, signal.SIGTERM)
    # Our own child must be reaped (else it lingers as a zombie until we exit); another's is gone
    # for us once its command line is (a zombie's is empty).
    deadline = time.monotonic() + 5
    while not (_reaped(pid) and not pid_alive(entry, state)) and time.monotonic() < deadline:
        time.sleep(0.02)


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (sshd's sessions and the agents they run), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal_all(pids: list[int], number: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, number)
        except ProcessLookupError:
            pass


def power_off(entry: dict, state: Path) -> None:
    """What pulling a board's power does to its network: its sshd and everything under it freeze (SIGSTOP).
    Connections stay open and silent; a new one is accepted by the kernel and never greeted."""
    if pid_alive(entry, state):
        _signal_all([entry["pid"], *_descendants(entry["pid"])], signal.SIGSTOP)


def power_on(entry: dict, state: Path) -> dict:
    """A cold start: whatever ran is gone (SIGKILL), and a fresh sshd starts on the same port, with the same
    host key and a new boot id. Returns the updated lab record entry."""
    if pid_alive(entry, state):
        tree = [entry["pid"], *_descendants(entry["pid"])]
        _signal_all(tree, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while pid_alive(entry, state) and not _reaped(entry["pid"]) and time.monotonic() < deadline:
            time.sleep(0.02)
    config = config_path(state, False)  # the lab's own file, never a path the record names
    config.write_text("\n".join(_with_boot_id(config.read_text().splitlines())) + "\n")
    log = state / "sshd.log"
    with open(log, "ab") as handle:
        process = subprocess.Popen(entry["argv"], stdout=handle, stderr=handle, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    try:
        _wait_for_banner(entry["port"], process, log, READY_TIMEOUT_S)
    except BaseException:
        process.kill()
        process.wait(10)
        raise
    return {**entry, "pid": process.pid, "start": process_start(process.pid)}
