"""How farm talks to a board: run a command (with a deadline), put a file, kill what it started.

Two implementations: `SshTransport` (every real board and stand-in) and
`LocalTransport` (a board that is this machine, no SSH: fast unit tests of the
lease, the push, rounds and cancel). Both run the same shell text, built here
from argument lists only: a value from an inventory or a model never becomes
shell syntax.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from farm.config.inventory import Board

KILL_GRACE_S = 3  # after the deadline's TERM, `timeout` sends KILL this much later
TIMED_OUT = 124   # coreutils/busybox `timeout` exit status on expiry
# What is kept of a command's output: a board's stdout and stderr were once read whole, however large.
# The agent's document at its 200,000-sample ceiling is about 3 MB; of stderr only the tail is ever shown.
STDOUT_LIMIT = 32 * 1024 * 1024
STDERR_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class CommandResult:
    """What one command did (invoke's Result, plus the deadline's verdict)."""

    command: str
    stdout: str
    stderr: str
    exit_code: int
    duration_s: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def tail(self, chars: int = 800) -> str:
        return (self.stderr.strip() or self.stdout.strip())[-chars:]


def shell_command(argv: list[str], *, env: tuple[tuple[str, str], ...] = (), deadline_s: float | None = None,
                  pidfile: str | None = None) -> str:
    """The shell text of an argument list: quoted, with the board's env, a deadline and a pid file.

    With a deadline the command runs under `timeout`, which puts it in its own
    process group: on expiry the whole group gets TERM, then KILL, on the board
    itself, even when the controller is gone.
    """
    command = shlex.join(argv)
    if env:
        # `--` first: no assignment is ever read as an option of env(1) (the inventory checks the names too).
        command = shlex.join(["env", "--", *(f"{k}={v}" for k, v in env)]) + " " + command
    if deadline_s:
        command = f"timeout -k {KILL_GRACE_S} {deadline_s:.0f} {command}"
    if pidfile:
        command = f"echo $$ > {shlex.quote(pidfile)}; exec {command}"
    return command


def kill_group_command(pidfile: str) -> str:
    """TERM to the process group in the pid file. `kill -TERM -PGID`, not `kill -TERM -- -PGID`:
    dash and busybox sh (many boards' /bin/sh) refuse the `--` ("Illegal number")."""
    quoted = shlex.quote(pidfile)
    return f"test -f {quoted} && kill -TERM -$(cat {quoted}) 2>/dev/null; rm -f {quoted}"


def timed_out(deadline_s: float | None, exit_code: int, duration_s: float) -> bool:
    """`timeout` exits 124 at the deadline, or 137 when its KILL follows; 137 sooner is someone else's KILL."""
    if not deadline_s:
        return False
    return exit_code == TIMED_OUT or exit_code in (128 + 9, -9) and duration_s >= deadline_s


class Bounded:
    """A command's stream, read to its end (it never blocks on a full pipe) keeping at most `limit` bytes:
    the first (a document), or the last (an error's tail). What was read so far is there at any time."""

    def __init__(self, limit: int, keep_tail: bool = False):
        self.limit, self.keep_tail = limit, keep_tail
        self.kept, self.dropped = bytearray(), 0

    def drain(self, stream) -> Bounded:
        while block := stream.read(1 << 16):
            self.kept += block
            excess = len(self.kept) - self.limit
            if excess > 0:
                self.dropped += excess
                if self.keep_tail:
                    del self.kept[:excess]
                else:
                    del self.kept[self.limit:]
        return self


def output_text(stdout: Bounded, stderr: Bounded) -> tuple[str, str]:
    """A command's bounded output as text: a stdout cut short is no document (dropped, and said in stderr)."""
    err = stderr.kept.decode(errors="replace")
    if stderr.dropped:
        err = f"(farm: the first {stderr.dropped} bytes of stderr dropped)\n" + err
    if stdout.dropped:
        err += (f"\n(farm: the command's stdout passed {STDOUT_LIMIT // 2 ** 20} MiB, "
                f"{len(stdout.kept) + stdout.dropped} bytes: dropped unread)")
        return "", err
    return stdout.kept.decode(errors="replace"), err


class CommandTimeout(Exception):
    """The command outlived its local timeout: the board or the link stopped answering."""

    def __init__(self, stdout: str = "", stderr: str = ""):
        super().__init__("command timed out")
        self.stdout, self.stderr = stdout, stderr


class BaseTransport:
    """What every transport shares: `run` around `_execute`, and use as a context manager."""

    board: Board

    def _execute(self, command: str, timeout: float | None) -> tuple[str, str, int]:
        raise NotImplementedError

    def run(self, argv: list[str], *, deadline_s: float | None = None, pidfile: str | None = None) -> CommandResult:
        """Run an argument list (see `shell_command`): never a string built from user input."""
        command = shell_command(argv, env=self.board.env, deadline_s=deadline_s, pidfile=pidfile)
        started = time.monotonic()
        # Here, a dead link or a silent board is given up on after the deadline (plus KILL grace).
        local_timeout = deadline_s + KILL_GRACE_S + 10 if deadline_s else None
        try:
            stdout, stderr, exit_code = self._execute(command, local_timeout)
        except CommandTimeout as exc:
            return CommandResult(command, exc.stdout, exc.stderr, -1, time.monotonic() - started, timed_out=True)
        took = time.monotonic() - started
        return CommandResult(command, stdout, stderr, exit_code, took, timed_out(deadline_s, exit_code, took))

    def open(self):
        return self

    def close(self) -> None:
        pass

    def host_key(self) -> str | None:
        return None

    def link_alive(self) -> bool:
        return True

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc_info) -> None:
        self.close()


class Transport(Protocol):
    """One open line to one board."""

    board: Board

    def open(self) -> Transport: ...

    def close(self) -> None: ...

    def host_key(self) -> str | None:
        """The board's host key as `TYPE SHA256:fingerprint` (OpenSSH's form), once open; None without SSH."""

    def run(self, argv: list[str], *, deadline_s: float | None = None, pidfile: str | None = None) -> CommandResult:
        """Run an argument list; never a string built from user input."""

    def put(self, local: Path, remote: str) -> int:
        """Upload to a temporary name, then rename: a board never sees half a file. Returns the bytes sent."""

    def kill_group(self, pidfile: str) -> None:
        """Stop a command started with `pidfile` (and its children)."""

    def link_alive(self) -> bool:
        """Does the board still answer, within seconds (asked from another thread than the session's)?"""

    def __enter__(self) -> Transport: ...

    def __exit__(self, *exc_info) -> None: ...

