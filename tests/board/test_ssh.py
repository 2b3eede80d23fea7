"""SSH to real OpenSSH stand-ins: host keys verified, auth, ~/.ssh/config, quoting."""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from farm.board.ssh import SshTransport
from farm.errors import BoardError


def test_wrong_host_key_is_refused_with_a_fix(lab, tmp_path):
    _, boards = lab
    board = boards["t1"]
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = (tmp_path / "other.pub").read_text().split()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{board.port} {other[0]} {other[1]}\n")
    with pytest.raises(BoardError) as caught:
        SshTransport(dataclasses.replace(board, known_hosts=str(known))).open()
    assert caught.value.status == "host-key-mismatch"
    assert f"ssh-keygen -R '[127.0.0.1]:{board.port}'" in str(caught.value)


def test_unknown_host_key_is_refused_by_default_and_accept_new_records_it(lab, tmp_path):
    _, boards = lab
    known = tmp_path / "known_hosts"
    board = dataclasses.replace(boards["t2"], known_hosts=str(known))
    with pytest.raises(BoardError, match="host key unknown") as caught:
        SshTransport(board).open()
    assert caught.value.status == "host-key-mismatch"
    with SshTransport(dataclasses.replace(board, host_key_policy="accept-new")) as connection:
        assert connection.run(["true"]).ok
    assert f"[127.0.0.1]:{board.port} ssh-ed25519" in known.read_text()
    with SshTransport(board) as connection:  # now verified against the recorded key
        assert connection.run(["true"]).ok


def test_wrong_identity_is_auth_failed_without_retries(lab, tmp_path):
    _, boards = lab
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "stranger")], check=True)
    board = dataclasses.replace(boards["t1"], identity_file=str(tmp_path / "stranger"))
    started = time.monotonic()
    with pytest.raises(BoardError) as caught:
        SshTransport(board, attempts=5).open()
    assert caught.value.status == "auth-failed"
    assert time.monotonic() - started < 2  # five attempts with backoff would take longer
    assert str(tmp_path / "stranger") not in str(caught.value) or "BEGIN" not in str(caught.value)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                        min_size=0, max_size=20), min_size=1, max_size=6))
def test_remote_command_line_round_trips_any_argument(argv):
    """What reaches the board's shell splits back into exactly the arguments given."""
    from farm.config.inventory import Board

    sent = []

    class Sent(Exception):
        pass

    def record(command, timeout):
        sent.append(command)
        raise Sent

    connection = SshTransport(Board(name="b", host="h", env=(("A", "x y;$(z)"),)))
    connection._exec = record
    with pytest.raises(Sent):
        connection.run(argv)
    assert shlex.split(sent[0]) == ["env", "--", "A=x y;$(z)", *argv]


def test_ssh_config_host_alias_is_honoured(lab, tmp_path, monkeypatch):
    """A board named by its ~/.ssh/config alias: HostName, Port, User and IdentityFile come from there."""
    from farm.config.inventory import load_inventory

    _, boards = lab
    real = boards["t1"]
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        f"Host bench-t1\n  HostName 127.0.0.1\n  Port {real.port}\n  User {real.user}\n"
        f"  IdentityFile {real.identity_file}\n")
    monkeypatch.setenv("HOME", str(home))
    inventory = tmp_path / "lab.yaml"
    inventory.write_text(f"boards:\n  - name: t1-alias\n    host: bench-t1\n    known_hosts: {real.known_hosts}\n")
    (board,) = load_inventory(inventory).boards
    assert board.port is None and board.user is None and board.identity_file is None
    with SshTransport(board) as connection:
        result = connection.run(["id", "-un"])
    assert result.ok and result.stdout.strip() == real.user
