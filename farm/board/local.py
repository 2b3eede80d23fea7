"""A board that is this machine: the same commands as over SSH, run by a local shell.

For a lab whose controller is also the device under test, and for fast tests of
everything above the transport (lease, push, rounds, cancel). The command text
is the one SSH would send (`shell_command`), so both paths run the same shell.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

from farm.board.transport import (
    STDERR_LIMIT,
    STDOUT_LIMIT,
    BaseTransport,
    Bounded,
    CommandTimeout,
    kill_group_command,
    output_text,
)
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
            proc = subprocess.Popen(["sh", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=child_end, start_new_session=True)
        except BaseException:
            os.close(held_open)
            raise
        finally:
            os.close(child_end)
        stdout, stderr = Bounded(STDOUT_LIMIT), Bounded(STDERR_LIMIT, keep_tail=True)  # as over SSH
        readers = [threading.Thread(target=kept.drain, args=(stream,), daemon=True)
                   for kept, stream in ((stdout, proc.stdout), (stderr, proc.stderr))]
        for reader in readers:
            reader.start()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            proc.wait()
            raise CommandTimeout(*output_text(stdout, stderr)) from exc  # what it said so far
        finally:
            os.close(held_open)
        for reader in readers:
            reader.join()
        proc.stdout.close()
        proc.stderr.close()
        return (*output_text(stdout, stderr), proc.returncode)

    def put(self, local: Path, remote: str, stopped=lambda: False) -> int:
        partial = f"{remote}.partial-{os.getpid()}"
        shutil.copyfile(local, partial)
        os.replace(partial, remote)
        return Path(local).stat().st_size

    def kill_group(self, pidfile: str) -> None:
        subprocess.run(["sh", "-c", kill_group_command(pidfile)], capture_output=True, timeout=15)
