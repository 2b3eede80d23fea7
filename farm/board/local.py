"""A board that is this machine: the same commands as over SSH, run by a local shell.

For a lab whose controller is also the device under test, and for fast tests of
everything above the transport (lease, push, rounds, cancel). The command text
is the one SSH would send (`shell_command`), so both paths run the same shell.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from farm.board.transport import BaseTransport, CommandTimeout, kill_group_command
from farm.config.inventory import Board


class LocalTransport(BaseTransport):
    def __init__(self, board: Board):
        self.board = board

    def _execute(self, command: str, timeout: float | None) -> tuple[str, str, int]:
        # stdin is a pipe this process holds open, as an SSH channel is: if the controller dies, the
        # command reads EOF (the agent then stops itself).
        held_open, child_end = os.pipe()[::-1]
        try:
            # Its own session, as sshd gives a command: `kill -TERM -PGID` then stops the whole group.
            proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=timeout,
                                  stdin=child_end, start_new_session=True)
        except subprocess.TimeoutExpired as exc:
            raise CommandTimeout(exc.stdout or "", exc.stderr or "") from exc
        finally:
            os.close(child_end)
            os.close(held_open)
        return proc.stdout, proc.stderr, proc.returncode

    def put(self, local: Path, remote: str, stopped=lambda: False) -> int:
        partial = f"{remote}.partial-{os.getpid()}"
        shutil.copyfile(local, partial)
        os.replace(partial, remote)
        return Path(local).stat().st_size

    def kill_group(self, pidfile: str) -> None:
        subprocess.run(["sh", "-c", kill_group_command(pidfile)], capture_output=True, timeout=15)
