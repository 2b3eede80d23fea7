"""SSH to one board: connect with retries, run with a deadline, move files (the `Transport` of real boards).

Built on fabric's Connection (so ~/.ssh/config is honoured) with three changes
that a lab needs: host keys are verified against known_hosts unless the
inventory says otherwise (fabric would auto-add them), the socket has
TCP_NODELAY (an exec on an open connection took 48 ms without it, 5 ms with),
and a remote command runs under `timeout` in its own process group, so that a
hung agent is killed on the board even if the controller goes away.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import threading
import time
from pathlib import Path

import paramiko
import tenacity
from fabric import Connection

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
from farm.errors import BoardError, Cancelled
from farm.statuses import BoardStatus

KEEPALIVE_S = 5       # an SSH keepalive this often keeps NAT and firewalls from dropping an idle session
PUSH_IDLE_S = 30      # a push that moves no byte for this long has a dead link under it
PUSH_MIN_RATE = 1e6   # bytes a second: a push slower than this (plus 30 s) has passed its deadline


class _AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """Record a first-seen host key in the inventory's known_hosts; a changed key is still refused."""

    def __init__(self, path: Path):
        self.path = path

    def missing_host_key(self, client, hostname, key):
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as handle:
            handle.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


def _is_connection_level(exc: BaseException) -> bool:
    """Worth another try: the network or sshd not ready. Never auth or host-key trouble."""
    if isinstance(exc, (paramiko.AuthenticationException, paramiko.BadHostKeyException)):
        return False
    if isinstance(exc, paramiko.SSHException):
        return "known_hosts" not in str(exc)
    return isinstance(exc, (OSError, EOFError))


def known_hosts_name(host: str, port: int) -> str:
    """How known_hosts names a host: bare on port 22, `[host]:port` otherwise."""
    return host if port == 22 else f"[{host}]:{port}"


def _classify(board: Board, target: tuple[str, int], known_hosts: Path | None, exc: BaseException) -> BoardError:
    """The board status and a message that says how to fix it; `target` is the resolved host and port."""
    where = f"{board.name} ({board.address})"
    name = known_hosts_name(*target)
    if isinstance(exc, paramiko.AuthenticationException):
        return BoardError(f"{where}: authentication failed ({exc}); check user and identity_file",
                          BoardStatus.AUTH_FAILED)
    if isinstance(exc, paramiko.BadHostKeyException):
        return BoardError(
            f"{where}: host key mismatch: the board offers {exc.key.get_name()} {exc.key.get_fingerprint().hex()} "
            f"but {known_hosts} holds another. If the board was re-imaged, remove the old entry with "
            f"`ssh-keygen -R '{name}' -f {known_hosts}`; otherwise do not connect",
            BoardStatus.HOST_KEY_MISMATCH)
    if isinstance(exc, paramiko.SSHException) and "known_hosts" in str(exc):
        return BoardError(
            f"{where}: host key unknown: not in {known_hosts}. Add it after checking its fingerprint "
            f"(`ssh-keyscan -p {target[1]} {target[0]} >> {known_hosts}`) or set host_key_policy: accept-new",
            BoardStatus.HOST_KEY_MISMATCH)
    return BoardError(f"{where}: unreachable ({type(exc).__name__}: {exc})", BoardStatus.UNREACHABLE)


class SshTransport(BaseTransport):
    """One open SSH connection to one board."""

    def __init__(self, board: Board, *, connect_timeout: float = 10.0, attempts: int = 3):
        self.board = board
        self.connect_timeout = connect_timeout
        self.attempts = attempts
        self.known_hosts = Path(board.known_hosts or os.path.expanduser("~/.ssh/known_hosts"))
        self._conn: Connection | None = None
        self._target = (board.host, board.port or 22)  # resolved through ~/.ssh/config on connect

    # -- connection -------------------------------------------------------------------------
    def _new_connection(self) -> Connection:
        kwargs: dict = {}
        if self.board.identity_file:
            kwargs.update(key_filename=[self.board.identity_file], allow_agent=False, look_for_keys=False)
        conn = Connection(self.board.host, user=self.board.user, port=self.board.port,
                          connect_timeout=int(self.connect_timeout), connect_kwargs=kwargs)
        self._target = (conn.host, conn.port)
        client = conn.client
        policy = self.board.host_key_policy
        if policy == "off":
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        else:
            if self.known_hosts.is_file():
                client.get_host_keys().load(str(self.known_hosts))
            client.set_missing_host_key_policy(
                _AcceptNewPolicy(self.known_hosts) if policy == "accept-new" else paramiko.RejectPolicy())
        # Our own socket, so that TCP_NODELAY is set before the handshake.
        sock = socket.create_connection((conn.host, conn.port), timeout=self.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.connect_kwargs["sock"] = sock
        try:
            conn.open()
        except BaseException:
            conn.close()
            sock.close()
            raise
        conn.transport.set_keepalive(KEEPALIVE_S)
        return conn

    def host_key(self) -> str | None:
        if self._conn is None or self._conn.transport is None:
            return None
        key = self._conn.transport.get_remote_server_key()
        digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
        return f"{key.get_name()} SHA256:{digest}"

    def open(self) -> SshTransport:
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=tenacity.wait_exponential(multiplier=0.25, max=4),
            retry=tenacity.retry_if_exception(_is_connection_level), reraise=True)
        try:
            self._conn = retrying(self._new_connection)
        except Exception as exc:
            raise _classify(self.board, self._target, self.known_hosts, exc) from exc
        return self

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            raise BoardError(f"{self.board.name}: not connected", BoardStatus.UNREACHABLE)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- commands ---------------------------------------------------------------------------
    def _execute(self, command: str, timeout: float | None) -> tuple[str, str, int]:
        """One exec channel: stdout read here, stderr on a helper thread (so neither can fill up)."""
        try:
            return self._exec(command, timeout)
        except TimeoutError as exc:
            if not self.link_alive():
                raise BoardError(f"{self.board.name}: the link went silent while a command ran (no answer for "
                                 f"{timeout:.0f} s, nor to a new channel)", BoardStatus.LINK_LOST) from exc
            raise CommandTimeout() from exc
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise BoardError(f"{self.board.name}: the connection was lost while a command ran "
                             f"({exc or type(exc).__name__})", BoardStatus.LINK_LOST) from exc

    def link_alive(self) -> bool:
        """Does the board still answer (a new channel within 5 s): a command outliving its time, or a link
        that died under it? Also asked by boards waiting for the measuring slot this one holds."""
        try:
            self.conn.client.get_transport().open_session(timeout=5).close()
            return True
        except Exception:
            return False

    def _exec(self, command: str, timeout: float | None) -> tuple[str, str, int]:
        channel = self.conn.client.get_transport().open_session(timeout=self.connect_timeout)
        try:
            channel.settimeout(timeout)
            channel.exec_command(command)
            stdout, stderr = Bounded(STDOUT_LIMIT), Bounded(STDERR_LIMIT, keep_tail=True)
            reader = threading.Thread(target=stderr.drain, args=(channel.makefile_stderr("rb"),),
                                      daemon=True, name=f"farm-stderr-{self.board.name}")
            reader.start()
            stdout.drain(channel.makefile("rb"))
            reader.join(timeout)
            exit_code = channel.recv_exit_status()
            # -1: no exit status. With the connection up, the command died of a signal (sshd sends exit-signal,
            # which paramiko does not expose); with it down, the link went, not the command.
            if exit_code == -1 and not channel.get_transport().is_active():
                raise EOFError("the connection closed before the command's exit status came")
        finally:
            channel.close()
        return (*output_text(stdout, stderr), exit_code)

    def kill_group(self, pidfile: str) -> None:
        """Stop a command started with `pidfile` (and its children) on the board."""
        self._exec(kill_group_command(pidfile), 15)

    # -- files ------------------------------------------------------------------------------
    def put(self, local: Path, remote: str, stopped=lambda: False) -> int:
        """Upload to a temporary name, then rename: a board never sees half a file.

        Never hangs: no byte moved for PUSH_IDLE_S, or slower than PUSH_MIN_RATE
        overall, is a lost link; `stopped()` (a cancel) ends it within a chunk.
        """
        size = local.stat().st_size
        deadline_s = 30 + size / PUSH_MIN_RATE
        started = time.monotonic()

        def progress(sent: int, total: int) -> None:
            if stopped():
                raise Cancelled()
            if time.monotonic() - started > deadline_s:
                raise BoardError(f"{self.board.name}: pushing {local.name} ({size} bytes) "
                                 f"passed its {deadline_s:.0f} s deadline at {sent} bytes: "
                                 f"the link moves under {PUSH_MIN_RATE / 1e6:.0f} MB/s",
                                 BoardStatus.LINK_LOST)

        partial = f"{remote}.partial-{os.getpid()}"
        try:
            sftp = self.conn.sftp()
            sftp.get_channel().settimeout(PUSH_IDLE_S)
            sftp.put(str(local), partial, callback=progress, confirm=False)
            sftp.posix_rename(partial, remote)
        except TimeoutError as exc:
            raise BoardError(f"{self.board.name}: pushing {local.name}: no byte moved for {PUSH_IDLE_S} s, the link "
                             "stalled", BoardStatus.LINK_LOST) from exc
        except (EOFError, ConnectionError, paramiko.SSHException) as exc:  # not an SFTP error: push() reads those
            raise BoardError(f"{self.board.name}: the connection was lost while pushing {local.name} "
                             f"({exc or type(exc).__name__}: the board stopped answering)",
                             BoardStatus.LINK_LOST) from exc
        return size
