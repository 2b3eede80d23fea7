"""Recovery's edges through real connections: no power control, and a power cycle that cannot happen."""

from __future__ import annotations

import dataclasses

from helpers import closed_port, deploy, fresh_workdir

from farm.config.inventory import Power


def test_a_board_that_does_not_answer_without_power_control_says_so(lab, plan, tmp_path):
    _, boards = lab
    gone = dataclasses.replace(fresh_workdir(boards["t1"], "gone"), name="gone", port=closed_port())
    (result,) = deploy(dataclasses.replace(plan, connect_attempts=1), tmp_path, [gone])
    assert result.status == "unreachable" and "no power control to recover it" in result.error, result.error
    assert result.recovery is None


def test_a_power_cycle_that_cannot_be_done_leaves_the_fault_the_board_s_with_why(lab, plan, tmp_path):
    _, boards = lab
    pdu = Power(pdudaemon="127.0.0.1", port=closed_port(), pdu="rack", outlet="1", off_s=0, boot_s=5)
    gone = dataclasses.replace(fresh_workdir(boards["t1"], "gone"), name="gone", port=closed_port(), power=pdu)
    (result,) = deploy(dataclasses.replace(plan, connect_attempts=1), tmp_path, [gone])
    assert result.status == "unreachable", result.error
    assert "power cycle did not recover it" in result.error and "does not answer" in result.error, result.error
    assert result.recovery is not None and not result.recovery.recovered and result.recovery.why
    assert "no power control" not in result.error


def test_power_commands_run_as_argument_lists_and_a_board_still_silent_after_them_keeps_its_fault(lab, plan, tmp_path,
                                                                                                 shared_dir):
    """Power commands instead of a pdudaemon: they run (argument lists, no shell); the board stays silent."""
    _, boards = lab
    board = fresh_workdir(boards["t2"], "cycled")
    flag = shared_dir / "cycled-on"
    power = Power(on=("touch", str(flag)), off=("true",), off_s=0, boot_s=10)
    unreachable_first = dataclasses.replace(board, port=closed_port(), power=power)
    (result,) = deploy(dataclasses.replace(plan, connect_attempts=1), tmp_path, [unreachable_first])
    assert flag.exists()  # the on command ran
    assert result.status == "unreachable" and "power cycle did not recover it" in result.error, result.error
