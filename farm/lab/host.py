"""What this machine needs to host stand-ins: a login user, a board Python, a client key, set-up commands."""

from __future__ import annotations

import fcntl
import logging
import os
import pwd
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from farm.errors import ConfigError, FarmError

LOGIN_USER = "farm-standin"
# The stand-ins' Python (numpy + onnxruntime), built once per machine, readable by the login user.
BOARD_PYTHON_DIR = Path("/var/tmp/farm-board-python")
# A toolchain whose stand-ins run its real runtime gets a board Python of its own (the shared one stays as is):
# QNN's HTP backend, simulated on x86_64, comes with onnxruntime-qnn.
TOOLCHAIN_PYTHONS = {"qnn": (Path("/var/tmp/farm-board-python-qnn"), "onnxruntime-qnn", "2.7.0")}

log = logging.getLogger(__name__)


def run_checked(argv: list[str], what: str, cwd: Path | None = None) -> str:
    """Run a set-up command; FarmError with its stderr tail when it fails."""
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        raise FarmError(f"{what} failed ({' '.join(argv[:4])} ...): {proc.stderr.strip()[-600:]}")
    return proc.stdout


def check_own_dir(path: Path, alternative: str = "") -> None:
    """Refuse a folder this user did not make alone: under /var/tmp anyone may have made it first.

    A lab folder owned by `nobody` once held a lab.json naming another process, which `farm lab down`
    then signalled; whoever makes /var/tmp/farm-lab first chooses the lab's client key and known_hosts.
    """
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        problem = "is a symbolic link"
    elif not stat.S_ISDIR(info.st_mode):
        problem = "is not a folder"
    elif info.st_uid != os.geteuid():
        problem = f"is not owned by {_user_name(os.geteuid())}"
    elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = "is writable by group or others"
    else:
        return
    raise ConfigError(f"{path} {problem} (owner {_user_name(info.st_uid)}, mode {stat.S_IMODE(info.st_mode):04o}): "
                      f"farm trusts the keys, state and programs in it. Remove it if you do not know who made it "
                      f"(`rm -rf {path}`: farm makes its own){', or ' + alternative if alternative else ''}")


def own_dir(path: Path, alternative: str = "", mode: int = 0o755) -> Path:
    """A folder farm trusts: made here by this user (not merely found), or found owned by it and writable
    by it alone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=mode)
    except FileExistsError:
        pass  # someone's (maybe ours): checked below, never taken over
    check_own_dir(path, alternative)
    path.chmod(mode)  # past the umask
    return path


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def cache_dir() -> Path:
    """Machine-wide cache of built board images (arm64 root file system, full-system VM), made and owned by us.

    `FARM_CACHE_DIR`, else /var/tmp/farm-cache as root (a chroot needs root-owned
    folders), else ~/.cache/farm.
    """
    if os.environ.get("FARM_CACHE_DIR"):
        path = Path(os.environ["FARM_CACHE_DIR"])
    else:
        path = Path("/var/tmp/farm-cache") if os.geteuid() == 0 else Path.home() / ".cache" / "farm"
    return own_dir(path, "set FARM_CACHE_DIR to a folder of your own")


def login_user() -> str:
    """The stand-ins' login user: a dedicated unprivileged one when farm runs as root."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    try:
        pwd.getpwnam(LOGIN_USER)
    except KeyError:
        log.info(f"lab: creating the unprivileged login user {LOGIN_USER}")
        run_checked(["useradd", "-m", "-s", "/bin/bash", LOGIN_USER], "useradd")
        # With UsePAM no, an account locked with '!' is refused; '*' allows key login only.
        run_checked(["usermod", "-p", "*", LOGIN_USER], "usermod")
    return LOGIN_USER


def board_python(toolchain: str = "cpu") -> str:
    """A Python with numpy and onnxruntime (and the toolchain's runtime, if it has one) that the login user
    can run. Not as root: this Python, which has what the controller has (`pip install farm[qnn]`)."""
    if os.geteuid() != 0:
        return sys.executable
    folder, package, version = TOOLCHAIN_PYTHONS.get(toolchain, (BOARD_PYTHON_DIR, None, None))
    python = folder / "bin" / "python"  # one per machine and toolchain, shared by every lab
    own_dir(folder)
    ready = folder / ".farm-ready"  # written last: bin/python exists long before numpy and onnxruntime do
    if ready.exists():
        return str(python)
    with open(folder / ".farm-lock", "w") as lock:
        # Two `lab up`s at once (two test sessions, two users' runs): one builds, the other waits for it.
        # Without the lock the second found bin/python and ran agents that could not import numpy.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ready.exists():
            import numpy
            import onnxruntime

            wanted = [f"numpy=={numpy.__version__}", f"onnxruntime=={onnxruntime.__version__}"]
            if package:
                wanted.append(f"{package}=={_installed(package) or version}")
            base = shutil.which("python3", path="/usr/bin:/usr/local/bin") or sys.executable
            log.info(f"lab: creating the stand-ins' Python ({base} + {' + '.join(wanted)}) in {folder}, once")
            run_checked([base, "-m", "venv", str(folder)], "creating the board Python")
            run_checked([str(python), "-m", "pip", "install", "-q", *wanted],
                        f"installing {', '.join(wanted)} for the stand-ins")
            ready.write_text(" ".join(wanted) + "\n")
    return str(python)


def _installed(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def client_key(lab_dir: Path) -> Path:
    """The lab's client key: every stand-in authorizes it."""
    key = lab_dir / "client_ed25519"
    if not key.exists():
        run_checked(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "farm-lab-client", "-f", str(key)],
                    "ssh-keygen")
    return key


def process_start(pid: int) -> str | None:
    """When a process started (clock ticks since boot), or None if it is gone: a pid alone may be reused."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19]  # the 22nd field of stat; 20th after the command name


def this_process() -> dict:
    return {"pid": os.getpid(), "start": process_start(os.getpid())}
