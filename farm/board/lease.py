"""Board lease: `<workdir>/farm.lock`, so that two runs never measure one board at once.

A heartbeat lease: the lock holds `run host pid user renewed ttl` (board clock),
and the controller renews it every TTL/4 while it holds the board, however long
its rounds, pushes or deadlines are. A lock whose heartbeat stopped (the run died:
SIGKILL, a lost link, a power cut) is stale once a TTL has passed, and the next
run breaks it and says so. The lock is created atomically (a hard link of a
complete file) and replaced atomically (rename); values reach the board as
positional parameters of fixed scripts.
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
import time
from dataclasses import dataclass, field

from farm.board.transport import Transport
from farm.errors import BoardBusy, BoardError
from farm.statuses import BoardStatus

TTL_S = 60  # a dead holder frees the board this long after its last heartbeat
FIELDS = ("run", "host", "pid", "user", "renewed", "ttl")

_TAKE = r'''
d=$1; run=$2; host=$3; pid=$4; user=$5; ttl=$6
lock="$d/farm.lock"; tmp="$d/farm.lock.$run"
mkdir -p "$d" || exit 3
printf '%s %s %s %s %s %s\n' "$run" "$host" "$pid" "$user" "$(date +%s)" "$ttl" > "$tmp" || exit 3
if ln "$tmp" "$lock" 2>/dev/null; then
  rm -f "$tmp"
  # Ours now: what dead runs left is garbage (their agents' pid files, all but the 5 newest broken locks).
  cd "$d" && rm -f agent.*.pid && ls -t farm.lock.broken-* 2>/dev/null | tail -n +6 | while read -r old; do
    rm -f -- "$old"; done
  echo "taken"; exit 0
fi
rm -f "$tmp"
echo "held $(date +%s) $(cat "$lock" 2>/dev/null)"
'''
# Renew only our own lock; if another run broke it, say who holds it now.
_RENEW = r'''
d=$1; run=$2; host=$3; pid=$4; user=$5; ttl=$6
lock="$d/farm.lock"; tmp="$d/farm.lock.$run"
set -- $(cat "$lock" 2>/dev/null)
if [ "$1" != "$run" ]; then echo "lost $*"; exit 0; fi
printf '%s %s %s %s %s %s\n' "$run" "$host" "$pid" "$user" "$(date +%s)" "$ttl" > "$tmp" && mv "$tmp" "$lock" \
  && echo "renewed"
'''
# Break only the exact stale lock that was read, so a fresh one is never removed.
_BREAK = r'''lock="$1/farm.lock"; [ "$(cat "$lock" 2>/dev/null)" = "$2" ] && mv "$lock" "$lock.broken-$3"; exit 0'''
_RELEASE = (r'''lock="$1/farm.lock"; set -- "$lock" $(cat "$lock" 2>/dev/null); '''
            r'''[ "$2" = "$RUN" ] && rm -f "$lock"; exit 0''')


@dataclass(frozen=True)
class Holder:
    """Who holds a board, as its lock says."""

    run: str
    host: str
    pid: str
    user: str
    renewed: int
    ttl: int

    @classmethod
    def parse(cls, words: list[str]) -> Holder | None:
        if len(words) != len(FIELDS) or not words[4].isdigit() or not words[5].isdigit():
            return None
        return cls(words[0], words[1], words[2], words[3], int(words[4]), int(words[5]))

    def line(self) -> str:
        return f"{self.run} {self.host} {self.pid} {self.user} {self.renewed} {self.ttl}"

    def stale(self, board_now: int) -> bool:
        return board_now > self.renewed + self.ttl

    def describe(self, board_now: int) -> str:
        return (f"run {self.run} from {self.host} (pid {self.pid}, user {self.user}), "
                f"heartbeat {board_now - self.renewed} s ago")


@dataclass
class Lease:
    connection: Transport
    workdir: str
    run_id: str
    ttl_s: int = TTL_S
    broke: str | None = None  # the stale holder, when this lease broke one
    lost: str | None = None   # who took the board while we held it (our heartbeat stalled past the TTL)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def _argv(self, script: str) -> list[str]:
        return ["sh", "-c", script, "sh", self.workdir, self.run_id, socket.gethostname(), str(os.getpid()),
                getpass.getuser(), str(self.ttl_s)]

    def acquire(self, wait_s: float = 0.0, stopped=lambda: False, waiting=lambda holder: None) -> Lease:
        """Take the lock (waiting up to `wait_s` for a live holder); `stopped()` ends the wait early.

        `waiting(who)` hears whom the wait is for: once per holder, as soon as the wait begins."""
        deadline = time.monotonic() + wait_s
        told = None
        while True:
            result = self.connection.run(self._argv(_TAKE), deadline_s=30)
            words = result.stdout.split()
            if result.ok and words[:1] == ["taken"]:
                self._start_heartbeat()
                return self
            holder = Holder.parse(words[2:]) if result.ok and words[:1] == ["held"] else None
            if holder is None:
                raise BoardError(f"{self.connection.board.name}: cannot take the lock in {self.workdir}: "
                                 f"{result.tail() or result.stdout.strip() or 'an unreadable lock file'}",
                                 BoardStatus.PERMISSION_DENIED if "ermission denied" in result.tail()
                                 else BoardStatus.AGENT_ERROR)
            board_now = int(words[1])
            if (holder.run, holder.host, holder.pid) == (self.run_id, socket.gethostname(), str(os.getpid())):
                # this very process's, from a connection that died (a power cycle): taken back
                self.connection.run(["sh", "-c", _BREAK, "sh", self.workdir, holder.line(), self.run_id],
                                    deadline_s=30)
                continue
            if holder.stale(board_now):
                self.broke = holder.describe(board_now)
                self.connection.run(["sh", "-c", _BREAK, "sh", self.workdir, holder.line(), self.run_id],
                                    deadline_s=30)
                continue
            if time.monotonic() >= deadline or stopped():
                raise BoardBusy(f"{self.connection.board.name}: busy: locked by {holder.describe(board_now)}; "
                                "use --wait SECONDS to queue")
            if holder.run != told:
                told = holder.run
                waiting(f"run {holder.run} from {holder.host} (pid {holder.pid}, user {holder.user})")
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    def _start_heartbeat(self) -> None:
        threading.Thread(target=self._heartbeat, daemon=True,
                         name=f"farm-heartbeat-{self.connection.board.name}").start()

    def abandon(self) -> None:
        """Stop renewing without releasing: what a controller that died leaves behind (tests, benchmarks)."""
        self._stop.set()

    def _heartbeat(self) -> None:
        """Renew every TTL/4. A link found dead is closed here, which ends whatever command the session is
        blocked in (as link-lost) instead of leaving it to its deadline; other failures are retried."""
        while not self._stop.wait(max(1.0, self.ttl_s / 4)):
            try:
                result = self.connection.run(self._argv(_RENEW), deadline_s=max(5, self.ttl_s // 4))
            except BoardError as exc:
                if exc.status == BoardStatus.LINK_LOST and not self._stop.is_set():
                    self.connection.close()
                    return
                continue
            except Exception:
                continue
            words = result.stdout.split()
            if words[:1] == ["lost"]:
                holder = Holder.parse(words[1:])
                self.lost = f"run {holder.run} from {holder.host}" if holder else "no one (the lock is gone)"
                return

    def release(self) -> None:
        self._stop.set()
        self.connection.run(["env", f"RUN={self.run_id}", "sh", "-c", _RELEASE, "sh", self.workdir], deadline_s=30)


def read_holder(text: str, now: int) -> str | None:
    """A lock file's text, for people (`farm lab status`, `farm probe`): who holds the board, or None."""
    holder = Holder.parse(text.split())
    if holder is None:
        return None
    return holder.describe(now) + (" (stale: its heartbeat stopped)" if holder.stale(now) else "")
