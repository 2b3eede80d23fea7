"""The controller through real OpenSSH stand-ins: no mocked SSH here."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import socket
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from farm.artifacts import Artifact, blob_path, push
from farm.errors import TransportError
from farm.lease import BoardBusy, Lease
from farm.runner import Deployment
from farm.transport import BoardConnection


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket closes


def fresh_workdir(board, tag: str):
    """A board with an empty workdir of its own: tests do not see each other's blobs or locks."""
    return dataclasses.replace(board, workdir=f"/tmp/farm-boards/test-{tag}-{uuid.uuid4().hex[:8]}")


def wrapper_python(shared_dir: Path, name: str, agent_behaviour: str, real_python: str) -> str:
    """A board 'python' that behaves normally except when it runs the agent."""
    script = shared_dir / name
    script.write_text(f"""#!/bin/sh
case "$*" in
  *--model*) {agent_behaviour} ;;
esac
exec {shlex.quote(real_python)} "$@"
""")
    script.chmod(0o755)
    return str(script)


def test_push_then_repush_sends_nothing(lab, plan):
    _, boards = lab
    board = fresh_workdir(boards["t1"], "push")
    with BoardConnection(board) as connection:
        first = push(connection, board.workdir, plan.artifacts)
        second = push(connection, board.workdir, plan.artifacts)
    total = sum(a.size for a in {a.sha256: a for a in plan.artifacts}.values())
    assert first.bytes_sent == total and len(first.uploaded) == len(plan.artifacts)
    assert second.bytes_sent == 0 and second.uploaded == []
    assert set(second.already_there) == {a.sha256 for a in plan.artifacts}


def test_corrupted_blob_on_the_board_is_detected_and_resent(lab, plan):
    _, boards = lab
    board = fresh_workdir(boards["t2"], "corrupt")
    model = plan.variants["int8_static"]
    with BoardConnection(board) as connection:
        push(connection, board.workdir, [model])
        on_board = Path(blob_path(board.workdir, model))  # the stand-in's disk is this machine's
        on_board.write_bytes(b"bit rot" + on_board.read_bytes()[7:])
        again = push(connection, board.workdir, [model])
    assert again.uploaded == [model.sha256] and again.bytes_sent == model.size
    assert Artifact.of(on_board).sha256 == model.sha256


def test_unreachable_board_does_not_stop_the_others(lab, plan, tmp_path):
    _, boards = lab
    dead = dataclasses.replace(boards["t3"], name="dead", port=closed_port())
    outcomes = {o.board.name: o for o in Deployment(plan, tmp_path).run([boards["t1"], dead, boards["t2"]])}
    assert outcomes["dead"].status == "unreachable"
    assert "dead (farm-standin@127.0.0.1" in outcomes["dead"].error and "unreachable" in outcomes["dead"].error
    for name in ("t1", "t2"):
        assert outcomes[name].status == "ok", outcomes[name].error
        assert set(outcomes[name].variants) == set(plan.variants)
        saved = json.loads((tmp_path / "boards" / f"{name}.json").read_text())
        assert saved["status"] == "ok" and saved["variants"]["int8_static"]["latency_ms"]["n"] == 20
    assert json.loads((tmp_path / "boards" / "dead.json").read_text())["status"] == "unreachable"
    assert "status unreachable" in (tmp_path / "logs" / "dead.log").read_text()


def test_hung_agent_is_killed_at_its_deadline(lab, plan, tmp_path, shared_dir):
    _, boards = lab
    marker = f"farm-hang-{uuid.uuid4().hex[:8]}"
    python = wrapper_python(shared_dir, "hang-python",
                            f"exec python3 -c 'import time; time.sleep(600)' {marker}", boards["t1"].python)
    board = dataclasses.replace(fresh_workdir(boards["t1"], "hang"), python=python)
    short = dataclasses.replace(plan, variant_deadline_s=3)
    started = time.monotonic()
    (outcome,) = Deployment(short, tmp_path).run([board])
    elapsed = time.monotonic() - started
    assert outcome.status == "timeout" and "deadline" in outcome.error
    assert elapsed < 3 + 10
    leftover = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert leftover.stdout == "", f"processes left on the board: {leftover.stdout}"


def test_crashed_agent_is_an_agent_error_with_its_stderr(lab, plan, tmp_path, shared_dir):
    _, boards = lab
    python = wrapper_python(shared_dir, "crash-python", "echo 'Segmentation fault in libonnxruntime' >&2; exit 139",
                            boards["t2"].python)
    board = dataclasses.replace(fresh_workdir(boards["t2"], "crash"), python=python)
    (outcome,) = Deployment(plan, tmp_path).run([board])
    assert outcome.status == "agent-error"
    assert "exited 139" in outcome.error and "Segmentation fault in libonnxruntime" in outcome.error


def test_board_without_onnxruntime_is_not_ready(lab, plan, tmp_path):
    _, boards = lab
    board = dataclasses.replace(fresh_workdir(boards["t1"], "bare"), python="/usr/bin/python3")
    (outcome,) = Deployment(plan, tmp_path).run([board])
    assert outcome.status == "not-ready"
    assert "onnxruntime" in outcome.error and "/usr/bin/python3" in outcome.error


def test_wrong_host_key_is_refused_with_a_fix(lab, tmp_path):
    _, boards = lab
    board = boards["t1"]
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = (tmp_path / "other.pub").read_text().split()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{board.port} {other[0]} {other[1]}\n")
    with pytest.raises(TransportError) as caught:
        BoardConnection(dataclasses.replace(board, known_hosts=str(known))).open()
    assert caught.value.status == "host-key-mismatch"
    assert f"ssh-keygen -R '[127.0.0.1]:{board.port}'" in str(caught.value)


def test_unknown_host_key_is_refused_by_default_and_accept_new_records_it(lab, tmp_path):
    _, boards = lab
    known = tmp_path / "known_hosts"
    board = dataclasses.replace(boards["t2"], known_hosts=str(known))
    with pytest.raises(TransportError, match="host key unknown") as caught:
        BoardConnection(board).open()
    assert caught.value.status == "host-key-mismatch"
    with BoardConnection(dataclasses.replace(board, host_key_policy="accept-new")) as connection:
        assert connection.run(["true"]).ok
    assert f"[127.0.0.1]:{board.port} ssh-ed25519" in known.read_text()
    with BoardConnection(board) as connection:  # now verified against the recorded key
        assert connection.run(["true"]).ok


def test_wrong_identity_is_auth_failed_without_retries(lab, tmp_path):
    _, boards = lab
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "stranger")], check=True)
    board = dataclasses.replace(boards["t1"], identity_file=str(tmp_path / "stranger"))
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        BoardConnection(board, attempts=5).open()
    assert caught.value.status == "auth-failed"
    assert time.monotonic() - started < 2  # five attempts with backoff would take longer
    assert str(tmp_path / "stranger") not in str(caught.value) or "BEGIN" not in str(caught.value)


def test_second_run_on_a_board_is_busy(lab, plan, tmp_path):
    _, boards = lab
    board = fresh_workdir(boards["t3"], "busy")
    with BoardConnection(board) as holder:
        lease = Lease(holder, board.workdir, "run-A").acquire(ttl_s=600)
        with BoardConnection(board) as other, pytest.raises(BoardBusy, match="locked by run run-A"):
            Lease(other, board.workdir, "run-B").acquire(ttl_s=600)
        (outcome,) = Deployment(plan, tmp_path).run([board])
        assert outcome.status == "busy" and "run-A" in outcome.error
        lease.release()
    with BoardConnection(board) as other:
        Lease(other, board.workdir, "run-B").acquire(ttl_s=600).release()


def test_stale_lock_is_broken_and_reported(lab, plan, tmp_path):
    _, boards = lab
    board = fresh_workdir(boards["t2"], "stale")
    with BoardConnection(board) as connection:
        Lease(connection, board.workdir, "dead-run").acquire(ttl_s=-5)  # expired on arrival
    (outcome,) = Deployment(plan, tmp_path).run([board])
    assert outcome.status == "ok", outcome.error
    assert outcome.lock_note.startswith("broke a stale lock held by: dead-run ")
    assert not Path(board.workdir, "farm.lock").exists()  # released after the run


def test_workdir_with_shell_characters_is_never_interpreted(lab, plan, tmp_path):
    _, boards = lab
    canary = tmp_path / "canary"
    nasty = f"/tmp/farm-boards/we ird;touch {canary};$(touch {canary})`touch {canary}`"
    board = dataclasses.replace(boards["t1"], workdir=nasty)
    (outcome,) = Deployment(dataclasses.replace(plan, variants={"int8_static": plan.variants["int8_static"]}),
                            tmp_path).run([board])
    assert outcome.status == "ok", outcome.error
    assert not canary.exists()
    assert Path(nasty, "blobs", plan.variants["int8_static"].sha256).is_file()
    shutil.rmtree("/tmp/farm-boards/we ird;touch " + str(canary).split("/")[1], ignore_errors=True)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                        min_size=0, max_size=20), min_size=1, max_size=6))
def test_remote_command_line_round_trips_any_argument(argv):
    """What reaches the board's shell splits back into exactly the arguments given."""
    from farm.inventory import Board

    sent = []

    class Sent(Exception):
        pass

    def record(command, timeout):
        sent.append(command)
        raise Sent

    connection = BoardConnection(Board(name="b", host="h", env=(("A", "x y;$(z)"),)))
    connection._exec = record
    with pytest.raises(Sent):
        connection.run(argv)
    assert shlex.split(sent[0]) == ["env", "A=x y;$(z)", *argv]


def test_lab_down_stops_exactly_its_processes(shared_dir):
    from farm.standins import Lab, StandinSpec

    own = Lab(shared_dir / "lab-down")
    boards, started = own.up([StandinSpec("d1")])
    entry = own.running()["d1"]
    assert started == ["d1"] and Path(f"/proc/{entry['pid']}").exists()
    assert boards[0].known_hosts and Path(boards[0].known_hosts).read_text().count("ssh-ed25519") == 1
    assert stat.S_IMODE(os.stat(boards[0].identity_file).st_mode) == 0o600
    assert own.down() == ["d1"]
    deadline = time.monotonic() + 5
    while Path(f"/proc/{entry['pid']}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{entry['pid']}").exists()
    assert not (shared_dir / "lab-down" / "d1").exists()
    assert own.running() == {}


def test_cancel_kills_remote_agents_releases_locks_and_keeps_results(lab, plan, tmp_path, shared_dir):
    """What Ctrl-C does: no new phase starts, the running agent dies on the board, results stay."""
    import threading

    _, boards = lab
    marker = f"farm-cancel-{uuid.uuid4().hex[:8]}"
    static_blob = plan.variants["int8_static"].sha256  # blobs are named by content, not by variant
    python = wrapper_python(shared_dir, "slow-python",
                            f"case \"$*\" in *{static_blob}*) exec python3 -c 'import time; time.sleep(600)' {marker};; esac",
                            boards["t3"].python)
    board = dataclasses.replace(fresh_workdir(boards["t3"], "cancel"), python=python)
    deployment = Deployment(plan, tmp_path)
    worker = threading.Thread(target=lambda: deployment.run([board]))
    worker.start()
    deadline = time.monotonic() + 60
    while not subprocess.run(["pgrep", "-f", marker], capture_output=True).stdout and time.monotonic() < deadline:
        time.sleep(0.2)
    started = time.monotonic()
    deployment.cancel()
    worker.join(30)
    assert not worker.is_alive() and time.monotonic() - started < 10
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout == ""
    saved = json.loads((tmp_path / "boards" / f"{board.name}.json").read_text())
    assert saved["status"] == "cancelled"
    assert set(saved["variants"]) == {"fp32", "int8_dynamic"}  # measured before the cancel, kept
    assert not Path(board.workdir, "farm.lock").exists()


def test_wait_queues_for_a_busy_board(lab, plan, tmp_path):
    import threading

    _, boards = lab
    board = fresh_workdir(boards["t1"], "wait")
    with BoardConnection(board) as holder:
        lease = Lease(holder, board.workdir, "run-A").acquire(ttl_s=600)
        threading.Timer(2.0, lease.release).start()
        waiting = dataclasses.replace(plan, lock_wait_s=30, variants={"int8_static": plan.variants["int8_static"]})
        (outcome,) = Deployment(waiting, tmp_path).run([board])
    assert outcome.status == "ok", outcome.error


def test_agent_is_python_3_8_syntax():
    import ast

    source = (Path(__file__).resolve().parent.parent / "agents" / "farm_agent.py").read_text()
    ast.parse(source, feature_version=(3, 8))
    assert "from __future__ import annotations" in source  # annotations never evaluated on old Pythons


def test_ssh_config_host_alias_is_honoured(lab, tmp_path, monkeypatch):
    """A board named by its ~/.ssh/config alias: HostName, Port, User and IdentityFile come from there."""
    from farm.inventory import load_inventory

    _, boards = lab
    real = boards["t1"]
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        f"Host bench-t1\n  HostName 127.0.0.1\n  Port {real.port}\n  User {real.user}\n  IdentityFile {real.identity_file}\n")
    monkeypatch.setenv("HOME", str(home))
    inventory = tmp_path / "lab.yaml"
    inventory.write_text(f"boards:\n  - name: t1-alias\n    host: bench-t1\n    known_hosts: {real.known_hosts}\n")
    (board,) = load_inventory(inventory).boards
    assert board.port is None and board.user is None and board.identity_file is None
    with BoardConnection(board) as connection:
        result = connection.run(["id", "-un"])
    assert result.ok and result.stdout.strip() == real.user
