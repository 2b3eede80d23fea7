"""Board lease: `<workdir>/farm.lock`, so that two runs never measure one board at once.

The lock is created atomically on the board (a hard link of a complete temporary
file), holds `run_id controller pid expires` (board clock), and is broken only
once expired: the run that held it died. Values reach the board as positional
parameters of a fixed script.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from farm.board.transport import Transport
from farm.errors import BoardBusy, BoardError

_TAKE = r'''
d=$1; run=$2; host=$3; pid=$4; ttl=$5
lock="$d/farm.lock"; tmp="$d/farm.lock.$run"
mkdir -p "$d" || exit 3
printf '%s %s %s %s\n' "$run" "$host" "$pid" "$(( $(date +%s) + ttl ))" > "$tmp" || exit 3
if ln "$tmp" "$lock" 2>/dev/null; then rm -f "$tmp"; echo "taken"; exit 0; fi
rm -f "$tmp"
echo "held $(date +%s) $(cat "$lock" 2>/dev/null)"
'''
# Break only the exact stale lock that was read, so a fresh one is never removed.
_BREAK = r'''lock="$1/farm.lock"; [ "$(cat "$lock" 2>/dev/null)" = "$2" ] && mv "$lock" "$lock.broken-$3"; exit 0'''
_RELEASE = r'''lock="$1/farm.lock"; set -- "$lock" $(cat "$lock" 2>/dev/null); [ "$2" = "$RUN" ] && rm -f "$lock"; exit 0'''


@dataclass
class Lease:
    connection: Transport
    workdir: str
    run_id: str
    broke: str | None = None  # the stale holder's line, when this lease broke one

    def acquire(self, ttl_s: int, wait_s: float = 0.0) -> "Lease":
        deadline = time.monotonic() + wait_s
        while True:
            result = self.connection.run(["sh", "-c", _TAKE, "sh", self.workdir, self.run_id,
                                          socket.gethostname(), str(os.getpid()), str(int(ttl_s))], deadline_s=30)
            words = result.stdout.split()
            if result.ok and words[:1] == ["taken"]:
                return self
            if not result.ok or words[:1] != ["held"] or len(words) < 6:
                raise BoardError(f"{self.connection.board.name}: cannot take the lock in {self.workdir}: "
                                     f"{result.tail() or result.stdout}", "agent-error")
            board_now, holder = int(words[1]), words[2:6]
            if int(holder[3]) < board_now:
                self.broke = " ".join(holder)
                self.connection.run(["sh", "-c", _BREAK, "sh", self.workdir, self.broke, self.run_id], deadline_s=30)
                continue
            if time.monotonic() >= deadline:
                raise BoardBusy(f"{self.connection.board.name}: busy: locked by run {holder[0]} from {holder[1]} "
                                f"(pid {holder[2]}) for {int(holder[3]) - board_now} s more; use --wait SECONDS")
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    def release(self) -> None:
        self.connection.run(["env", f"RUN={self.run_id}", "sh", "-c", _RELEASE, "sh", self.workdir], deadline_s=30)
