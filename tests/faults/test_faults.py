"""Fault injection, as a lab engineer would do it, through real sshd stand-ins.

Each test breaks one thing (the controller killed, a link stalled or cut, a full
disk, a malformed agent document, a corrupt history, a hostile inventory) and
checks that the run ends in time, names the fault precisely, keeps everything it
collected, leaves no agent running and frees the board.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers import (
    RUN,
    Proxy,
    deploy,
    farm,
    fresh_workdir,
    processes,
    run_until_agent_starts,
    saved_board,
    slow_agent_python,
    start_farm,
    via_proxy,
    wait_for_processes,
    wrapper_python,
    write_inventory,
)

from farm import resources
from farm.board.lease import TTL_S
from farm.deploy.fanout import Fanout
from farm.judge.stats import runs_needed
from farm.record.rundir import RunDir

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "models" / "digits"


@pytest.fixture
def slow_static(lab, plan, shared_dir, tmp_path):
    """A stand-in whose static INT8 agent measures for ten minutes, an inventory for it, and its marker.

    Blobs are named by content: the digits static variant is the same bytes wherever it is built."""
    _, boards = lab
    marker = f"farm-fault-{uuid.uuid4().hex[:8]}"
    board = fresh_workdir(boards["t2"], "fault")
    python = slow_agent_python(shared_dir, f"slow-python-{uuid.uuid4().hex[:8]}", plan.variants["int8_static"].sha256,
                               marker, board.python)  # its own name does not hold the marker: only the agent does
    board = dataclasses.replace(board, name="slow", python=python)
    return board, write_inventory(tmp_path / "slow.yaml", board), marker


def test_sigterm_mid_measure_stops_in_seconds_and_keeps_everything_collected(slow_static, tmp_path):
    board, inventory, marker = slow_static
    proc = start_farm("run", "--inventory", inventory, "--variants", "fp32,int8_static", "--runs", "10",
                      cwd=tmp_path)
    assert wait_for_processes(marker, 120), proc.communicate(timeout=5)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)  # what a CI cancel sends
    out, err = proc.communicate(timeout=60)
    took = time.monotonic() - started
    assert took < 20 and proc.returncode == 143, (took, proc.returncode, out[-1000:] + err[-1000:])
    assert wait_for_processes(marker, 10, present=False), f"agent left running: {processes(marker)}"
    run_dir = (tmp_path / "results" / "latest").resolve()
    results = json.loads((run_dir / "results.json").read_text())
    (found,) = results["boards"]
    assert found["status"] == "cancelled"
    fp32 = found["variants"]["fp32"]  # measured before the stop: judged and kept
    assert fp32["status"] == "ok" and {c["item"] for c in fp32["checks"]} >= {"latency", "accuracy"}
    assert "farm-matrix" in (run_dir / "report.html").read_text()
    suite = ET.parse(run_dir / "junit.xml").getroot().find("testsuite")
    assert int(suite.get("tests")) > 0 and int(suite.get("errors")) > 0  # int8_static: an error, with the reason
    assert not Path(board.workdir, "farm.lock").exists()


@pytest.mark.slow  # a static INT8 build slowed on purpose, a minute (CI runs it)
def test_a_second_interrupt_still_writes_what_was_collected(slow_static, tmp_path):
    board, inventory, marker = slow_static
    proc = start_farm("run", "--inventory", inventory, "--variants", "fp32,int8_static", "--runs", "10",
                      cwd=tmp_path)
    assert wait_for_processes(marker, 120)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # impatient: Ctrl-C twice
    proc.communicate(timeout=60)
    results = json.loads((tmp_path / "results" / "latest" / "results.json").read_text())
    assert results["boards"][0]["variants"]["fp32"]["checks"], results["boards"][0]
    assert wait_for_processes(marker, 10, present=False)
    assert not Path(board.workdir, "farm.lock").exists()


@pytest.mark.slow
def test_sigkill_mid_measure_leaves_no_agent_and_frees_the_board_within_the_heartbeat_ttl(slow_static, tmp_path):
    board, inventory, marker = slow_static
    proc = start_farm("run", "--inventory", inventory, "--variants", "fp32,int8_static", "--runs", "10",
                      cwd=tmp_path)
    assert wait_for_processes(marker, 120)
    proc.kill()
    killed = time.monotonic()
    proc.wait(10)
    assert wait_for_processes(marker, 30, present=False), f"agent left running: {processes(marker)}"
    run_dir = next(p for p in (tmp_path / "results").iterdir() if p.is_dir() and not p.is_symlink())
    kept = json.loads((run_dir / "boards" / "slow.json").read_text())
    # What was collected survives the kill: --runs 10, raised to the 59 a p95 bound at 95 % needs.
    assert kept["variants"]["fp32"]["latency_ms"]["n"] == runs_needed(0.95, 0.95) == 59
    quick = dataclasses.replace(board, python=board.python)
    write_inventory(tmp_path / "again.yaml", quick)
    again = farm("run", "--inventory", tmp_path / "again.yaml", "--variants", "fp32", "--runs", "5", "--wait",
                 str(TTL_S + 60), "--out", tmp_path / "again", cwd=tmp_path)
    recovered = time.monotonic() - killed
    results = json.loads((tmp_path / "again" / "latest" / "results.json").read_text())
    assert results["boards"][0]["status"] == "ok", again.stderr[-2000:]
    assert results["boards"][0]["lock_note"].startswith("broke a stale lock held by: run ")
    assert "broke a stale lock" in again.stderr  # on the console, in the report and in JUnit too
    run_dir = (tmp_path / "again" / "latest").resolve()
    assert "broke a stale lock held by: run " in (run_dir / "report.html").read_text()
    assert 'name="lock" value="broke a stale lock' in (run_dir / "junit.xml").read_text()
    assert recovered < TTL_S + 30, recovered


def test_a_run_killed_with_its_own_stand_ins_leaves_none_running_after_the_next_lab_command(tmp_path, shared_dir):
    lab_dir = shared_dir / "lab-orphans"
    inventory = tmp_path / "standin.yaml"
    inventory.write_text("standins:\n  - {name: orphan-1, cores: 1}\n")
    proc = start_farm("run", "--inventory", inventory, "--runs", "100000", "--variants", "fp32", cwd=tmp_path,
                      env={"FARM_LAB_DIR": str(lab_dir)})
    record = lab_dir / "lab.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and "orphan-1" not in (record.read_text() if record.exists() else ""):
        time.sleep(0.2)
    pid = json.loads(record.read_text())["boards"]["orphan-1"]["pid"]
    proc.kill()
    proc.wait(10)
    assert Path(f"/proc/{pid}").exists()  # the stand-in outlived the run that started it
    status = farm("lab", "status", cwd=tmp_path, env={"FARM_LAB_DIR": str(lab_dir)})
    assert "orphan-1     stopped: the run that started it is gone" in status.stdout, status.stdout + status.stderr
    assert wait_for_processes(f"{lab_dir}/orphan-1/sshd_config", 10, present=False)


def test_a_cut_link_mid_measure_is_link_lost_and_the_board_s_agent_stops(slow_static, plan, tmp_path):
    board, _, marker = slow_static
    proxy = Proxy(board.port)
    try:
        reached = via_proxy(board, proxy, tmp_path)
        fanout = Fanout(dataclasses.replace(plan, variant_deadline_s=300), RunDir(tmp_path, RUN))
        worker = run_until_agent_starts(fanout, [reached], marker)
        proxy.cut()
        started = time.monotonic()
        worker.join(60)
        assert not worker.is_alive() and time.monotonic() - started < 20
    finally:
        proxy.close()
    saved = saved_board(tmp_path, "slow")
    assert saved["status"] == "link-lost", saved["error"]
    assert saved["variants"]["fp32"]["status"] == "ok"  # measured before the cut, kept
    assert wait_for_processes(marker, 30, present=False), f"agent left running: {processes(marker)}"


@pytest.mark.slow
def test_a_link_that_stalls_mid_push_is_link_lost_within_the_push_deadline(lab, plan, tmp_path):
    _, boards = lab
    board = fresh_workdir(boards["t1"], "stall-push")
    proxy = Proxy(board.port, stall_after_bytes=3_000_000)  # in the middle of the 10.9 MB FP32 model
    try:
        started = time.monotonic()
        (result,) = deploy(plan, tmp_path, [via_proxy(board, proxy, tmp_path)])
        took = time.monotonic() - started
    finally:
        proxy.close()
    # Found by the push's idle timeout (30 s) or the lease's heartbeat (15 s, then a new channel), whichever first.
    assert result.status == "link-lost" and "pushing digits.fp32.onnx" in result.error, result.error
    assert took < 30 + 30


@pytest.mark.slow
def test_a_link_that_stalls_mid_measure_is_link_lost_without_waiting_for_the_agent_s_deadline(slow_static, plan,
                                                                                             tmp_path):
    board, _, marker = slow_static
    proxy = Proxy(board.port)
    try:
        fanout = Fanout(dataclasses.replace(plan, variant_deadline_s=300), RunDir(tmp_path, RUN))
        worker = run_until_agent_starts(fanout, [via_proxy(board, proxy, tmp_path)], marker)
        proxy.stalled.set()
        started = time.monotonic()
        worker.join(120)
        took = time.monotonic() - started
    finally:
        proxy.close()
    assert not worker.is_alive()
    saved = saved_board(tmp_path, "slow")
    assert saved["status"] == "link-lost", saved["error"]
    assert took < TTL_S, took  # the heartbeat finds the dead link long before the agent's 300 s deadline


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_is_disk_full_with_the_board_s_free_space(lab, plan, tmp_path):
    _, boards = lab
    small = Path(f"/tmp/farm-tiny-{uuid.uuid4().hex[:6]}")
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=1777", "tmpfs", str(small)], check=True)
    try:
        (result,) = deploy(plan, tmp_path, [dataclasses.replace(boards["t3"], workdir=str(small / "wd"))])
    finally:
        subprocess.run(["umount", str(small)], check=True)
        small.rmdir()
    assert result.status == "disk-full", result.error
    assert "MB free in" in result.error and "needs 10.9 MB" in result.error and "farm boards clean" in result.error


@pytest.mark.skipif(os.geteuid() != 0, reason="the stand-ins log in as another user only when farm runs as root")
def test_an_unwritable_workdir_is_permission_denied_naming_it(lab, plan, tmp_path, shared_dir):
    _, boards = lab
    closed = shared_dir / f"root-only-{uuid.uuid4().hex[:6]}"
    closed.mkdir(mode=0o755)  # root's: the login user may look, not write
    (result,) = deploy(plan, tmp_path, [dataclasses.replace(boards["t1"], workdir=str(closed / "farm"))])
    assert result.status == "permission-denied" and str(closed / "farm") in result.error, result.error


def test_one_board_s_malformed_agent_document_is_its_own_agent_error(lab, plan, tmp_path, shared_dir):
    _, boards = lab
    document = json.dumps({"schema": "farm.agent/2", "facts": {}, "model": {}, "latency_ms": "NaN", "samples_ms": [],
                           "peak_rss_mb": 1.0, "accuracy": None, "errors": []})
    liar = wrapper_python(shared_dir, "lying-python", f"echo '{document}'; exit 0", boards["t1"].python)
    bad = dataclasses.replace(fresh_workdir(boards["t1"], "liar"), name="liar", python=liar)
    group = deploy(plan, tmp_path, [bad, fresh_workdir(boards["t2"], "honest")])
    assert group.results["liar"].status == "agent-error"
    assert "latency_ms = 'NaN' (expected a mapping with n, p50, p95...)" in group.results["liar"].error
    assert group.results["t2"].status == "ok"


def test_a_corrupt_history_errors_only_the_regression_item_and_the_report_is_written(lab, tmp_path):
    lab_obj, _ = lab
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "history.sqlite").write_bytes(b"this is not a database" * 100)
    proc = farm("run", "--inventory", lab_obj.dir / "inventory.yaml", "--board", "t3", "--variants", "fp32",
                "--runs", "10", "--checklist", resources.checklist("dms-nightly"), cwd=tmp_path)
    results = json.loads((tmp_path / "results" / "latest" / "results.json").read_text())
    checks = {c["item"]: c for c in results["boards"][0]["variants"]["fp32"]["checks"]}
    assert checks["regression"]["status"] == "error" and "history unavailable" in checks["regression"]["why"]
    assert "file is not a database" in checks["regression"]["why"]
    assert all(c["status"] in ("pass", "skip") for item, c in checks.items() if item not in ("regression", "latency"))
    assert "farm-matrix" in (tmp_path / "results" / "latest" / "report.html").read_text()
    assert proc.returncode == 1
    listing = farm("history", cwd=tmp_path)
    assert listing.returncode == 1 and len(listing.stderr.strip().splitlines()) == 1
    assert "history.sqlite: the history store failed" in listing.stderr and "move it aside" in listing.stderr


def test_a_timed_out_variant_does_not_skip_the_others(slow_static, plan, tmp_path):
    board, _, marker = slow_static
    short = dataclasses.replace(plan, variant_deadline_s=5)
    (result,) = deploy(short, tmp_path, [board])
    assert result.status == "timeout" and result.variants["int8_static"].status == "timeout"
    assert result.variants["fp32"].status == "ok" and result.variants["int8_dynamic"].status == "ok"
    assert "int8_static" in result.error and "passed its 5 s deadline" in result.error


def test_ctrl_c_during_a_wait_for_a_busy_board_stops_in_seconds(lab, plan, tmp_path):
    from farm.board.lease import Lease
    from farm.board.ssh import SshTransport

    _, boards = lab
    board = fresh_workdir(boards["t3"], "waiting")
    with SshTransport(board) as holder:
        lease = Lease(holder, board.workdir, "run-A").acquire()
        fanout = Fanout(dataclasses.replace(plan, lock_wait_s=300), RunDir(tmp_path, RUN))
        import threading

        worker = threading.Thread(target=lambda: fanout.run([board]))
        worker.start()
        time.sleep(3)
        started = time.monotonic()
        fanout.cancel()
        worker.join(30)
        assert time.monotonic() - started < 5
        lease.release()
    assert saved_board(tmp_path, board.name)["status"] == "busy"


def test_ctrl_c_during_a_push_stops_in_seconds_and_frees_the_board(lab, tmp_path):
    _, boards = lab
    board = fresh_workdir(boards["t1"], "ctrl-c-push")
    proxy = Proxy(board.port, up_rate=1_000_000)  # the 10.9 MB FP32 model takes about 11 s over this link
    try:
        inventory = write_inventory(tmp_path / "slow-link.yaml", via_proxy(board, proxy, tmp_path))
        proc = start_farm("run", "--inventory", inventory, "--variants", "fp32", "--runs", "5", cwd=tmp_path)
        deadline = time.monotonic() + 120
        while proxy.sent_up < 3_000_000 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proxy.sent_up >= 3_000_000 and proc.poll() is None, proc.communicate(timeout=5)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        stopped_s = time.monotonic() - started
    finally:
        proxy.close()
    assert stopped_s < 5 and proc.returncode == 130, (stopped_s, err[-2000:])
    assert proxy.sent_up < 8_000_000  # stopped mid-push, not after it
    (found,) = json.loads((tmp_path / "results" / "latest" / "results.json").read_text())["boards"]
    assert found["status"] == "cancelled", found
    assert not Path(board.workdir, "farm.lock").exists()


def test_leftovers_are_cleared_and_boards_clean_frees_old_blobs(lab, plan, tmp_path):
    lab_obj, boards = lab
    board = fresh_workdir(boards["t2"], "leftovers")
    one = dataclasses.replace(plan, variants={"fp32": plan.variants["fp32"]}, run_id="run-one")
    deploy(one, tmp_path, [board])
    blobs = Path(board.workdir, "blobs")
    (blobs / f"{plan.variants['fp32'].sha256}.partial-999").write_bytes(b"half a model")
    Path(board.workdir, "agent.dead-run.pid").write_text("999999\n")
    two = dataclasses.replace(plan, variants={"int8_static": plan.variants["int8_static"]}, run_id="run-two")
    assert deploy(two, tmp_path, [board]).results[board.name].status == "ok"
    assert not list(blobs.glob("*.partial-*")) and not Path(board.workdir, "agent.dead-run.pid").exists()
    inventory = write_inventory(tmp_path / "one.yaml", board)
    cleaned = farm("boards", "clean", "--inventory", inventory, "--keep-runs", "1", cwd=tmp_path)
    assert cleaned.returncode == 0, cleaned.stderr
    assert "freed 10.9 MB" in cleaned.stdout  # the FP32 model only the older run used
    assert not (blobs / plan.variants["fp32"].sha256).exists()
    assert (blobs / plan.variants["int8_static"].sha256).exists()


@pytest.mark.real
def test_hostile_inventories_are_refused_before_anything_is_touched(tmp_path):
    for name in ("..", "."):
        path = tmp_path / "lab.yaml"
        path.write_text(f"standins:\n  - name: '{name}'\n")
        proc = farm("inventory", "check", path, cwd=tmp_path)
        assert proc.returncode == 2 and f"board {name!r}, field 'name'" in proc.stderr
    bomb = tmp_path / "bomb.yaml"
    lines = ["boards:", "  - name: b1", "    host: h", "    env:", '      l0: &l0 ["x","x","x","x","x","x","x","x"]']
    lines += [f"      l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 8)}]" for i in range(1, 9)]
    bomb.write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    proc = farm("inventory", "check", bomb, cwd=tmp_path)
    assert proc.returncode == 2 and "an alias bomb?" in proc.stderr and time.monotonic() - started < 3


@pytest.mark.skipif(os.geteuid() != 0, reason="the stand-ins log in as another user only when farm runs as root")
@pytest.mark.real
def test_a_lab_dir_the_login_user_cannot_enter_is_named_not_auth_failed(tmp_path):
    private = Path(subprocess.run(["mktemp", "-d"], capture_output=True, text=True).stdout.strip())  # mode 0700
    try:
        proc = farm("lab", "up", "--boards", "1", cwd=tmp_path, env={"FARM_LAB_DIR": str(private / "lab")})
    finally:
        subprocess.run(["rm", "-rf", str(private)])
    assert proc.returncode == 2
    assert f"cannot enter {private} (mode 0700" in proc.stderr and "FARM_LAB_DIR" in proc.stderr



def test_a_board_error_with_rich_markup_and_terminal_escapes_is_printed_as_plain_text(lab, shared_dir, tmp_path):
    _, boards = lab
    said = r"printf 'agent broke [/] [bold]x[/bold] \033]0;pwned\007\033[2J\033[31mred\n' >&2; exit 3"
    markup = wrapper_python(shared_dir, "markup-python", said, boards["t1"].python)
    board = dataclasses.replace(fresh_workdir(boards["t1"], "markup"), name="markup", python=markup)
    inventory = write_inventory(tmp_path / "lab.yaml", board)
    proc = farm("run", "--inventory", inventory, "--variants", "fp32", "--runs", "10", cwd=tmp_path)
    shown = proc.stdout + proc.stderr
    assert "MarkupError" not in shown and "Traceback" not in shown, shown[-3000:]
    assert proc.returncode == 1 and "report: results/" in proc.stdout  # the run's end, printed
    assert "agent broke [/] [bold]x[/bold]" in shown  # the board's words as it said them, markup and all
    assert "\x1b" not in shown and "\x07" not in shown and "pwned" not in shown.replace("0;pwned", "")


def test_an_agent_flooding_its_output_over_ssh_is_an_agent_error_naming_the_bound(lab, plan, shared_dir, tmp_path):
    _, boards = lab
    flood = "head -c 41943040 /dev/zero | tr '\\0' x; head -c 2000000 /dev/zero >&2; exit 0"
    loud = wrapper_python(shared_dir, "flooding-python", flood, boards["t1"].python)
    bad = dataclasses.replace(fresh_workdir(boards["t1"], "flood"), name="flood", python=loud)
    group = deploy(plan, tmp_path, [bad])
    error = group.results["flood"].error or ""
    assert group.results["flood"].status == "agent-error", group.results["flood"]
    assert "stdout passed 32 MiB, 41943040 bytes: dropped unread" in error and "printed no result" in error
