"""The health check's verdict on fake figures: completion, accuracy, and latency against the board's own history."""

from __future__ import annotations

import pytest

from farm.config.boardclasses import HEALTH_ALLOWANCE_DEFAULT, health_allowance
from farm.judge.health import MIN_CHECKS, judge, level, off_level
from farm.results import BoardResult, BoardStatus, VariantResult

STEADY = [2.0, 2.1, 1.9, 2.0, 2.2]  # a board's last passing checks' p50s (ms), newest first


def checked(p50: float, *, board_class: str | None = "cortex-a72", qemu_cpu: str | None = None,
            simulated: str | None = None, top1: float = 0.982, flags: tuple = ()) -> BoardResult:
    fp32 = VariantResult("fp32", latency_ms={"n": 20, "p50": p50}, simulated=simulated,
                         board_state={"flags": list(flags)},
                         accuracy={"n": 500, "outputs": {"logits": {"metric": "top1", "top1": top1}}})
    return BoardResult("b1", BoardStatus.OK, None, board_class=board_class, emulated=bool(qemu_cpu), qemu_cpu=qemu_cpu,
                       variants={"fp32": fp32})


def test_a_board_within_its_class_allowance_of_its_own_level_is_healthy_and_its_p50_kept():
    verdict = judge(checked(2.0 * 2.5), STEADY)  # 2.5x slower: noise between processes goes this far on a loaded host
    assert verdict.healthy and verdict.p50 == 5.0, verdict
    assert "within 3x of its own level 2.000 ms" in verdict.reason, verdict.reason


def test_a_board_slower_than_its_class_allows_is_bad_with_the_figure_its_level_and_the_allowance():
    verdict = judge(checked(7.0), STEADY)
    assert not verdict.healthy and verdict.p50 is None
    assert verdict.reason.startswith("health check: figures off its own history: "), verdict.reason
    assert "p50 7 ms is 3.5x slower than this board's own level 2 ms (median of its last 5 passing checks)" \
        in verdict.reason, verdict.reason
    assert "its class cortex-a72 allows 3x either way" in verdict.reason, verdict.reason


def test_a_board_impossibly_faster_than_its_own_level_is_bad_too():
    verdict = judge(checked(0.002), STEADY)
    assert not verdict.healthy
    assert "1e+03x faster (impossibly fast: did it run?)" in verdict.reason, verdict.reason


def test_the_level_is_the_median_of_the_last_checks_so_one_wild_earlier_check_does_not_move_it():
    wild = [2.0, 200.0, 2.1, 1.9, 2.0, 0.01, 0.01]  # newest first; the two oldest are past the level's window
    assert level(wild) == 2.0
    assert judge(checked(2.2), wild).healthy


def test_too_little_history_is_not_judged_on_figures_and_says_so():
    verdict = judge(checked(500.0), STEADY[:MIN_CHECKS - 1])
    assert verdict.healthy and verdict.p50 == 500.0
    assert f"figures not judged yet: {MIN_CHECKS - 1} earlier passing checks of this board, {MIN_CHECKS} needed" \
        in verdict.reason, verdict.reason
    assert "1 earlier passing check of this board" in judge(checked(2.0), [2.0]).reason


@pytest.mark.parametrize("emulation, why", [({"qemu_cpu": "cortex-a72"}, "emulated board (QEMU cortex-a72)"),
                                            ({"simulated": "HTP simulated on x86_64"}, "HTP simulated on x86_64")])
def test_emulated_or_simulated_timing_is_not_judged_against_its_history_and_says_so(emulation, why):
    verdict = judge(checked(2000.0, **emulation), STEADY)
    assert verdict.healthy, verdict
    assert f"timing not judged: {why}, not silicon timing" in verdict.reason, verdict.reason


def test_wrong_accuracy_or_a_failed_run_is_bad_before_any_figure_is_looked_at():
    assert "scored top-1 0.5" in judge(checked(2.0, top1=0.5), STEADY).reason
    hung = BoardResult("b1", BoardStatus.UNREACHABLE, "ssh: timed out")
    verdict = judge(hung, STEADY)
    assert not verdict.healthy and verdict.reason == "health check: unreachable: ssh: timed out"


def test_the_board_state_is_named_beside_figures_that_are_off():
    verdict = judge(checked(9.0, flags=("throttled",)), STEADY)
    assert not verdict.healthy and verdict.reason.endswith("(board state: throttled)"), verdict.reason


def test_each_class_has_an_allowance_wide_enough_for_noise_between_processes():
    assert health_allowance(None) == HEALTH_ALLOWANCE_DEFAULT and health_allowance("no-such-class") == 3.0
    assert health_allowance("cortex-a53") == 4.0
    # 50 % noise either way is well within any class's allowance
    for board_class in ("cortex-a53", "cortex-a72", "jetson-orin", "qcs8255", "tda4vm", None):
        assert off_level(1.5 * 2.0, STEADY, health_allowance(board_class)) is None
        assert off_level(2.0 / 1.5, STEADY, health_allowance(board_class)) is None
    assert "a board of no class allows 3x" in judge(checked(70.0, board_class=None), STEADY).reason
