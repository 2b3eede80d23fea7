"""The release policy and the re-derivation, on hand-made results (the real path: tests/e2e/test_signoff.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from farm.config.checklist import POLICY, load_checklist
from farm.errors import ChecklistError
from farm.judge.audit import summary_disagreements
from farm.judge.policy import check_policy, signing_time_problems
from farm.judge.stats import latency_summary
from farm.results import BoardResult, BoardStatus, ModelResult, RunResult, VariantBuild, VariantResult

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def measured(name: str, rounds: int = 1) -> VariantResult:
    samples = [1.0 + i / 100 for i in range(20 * rounds)]
    summary = {**latency_summary(samples), **({"rounds": rounds} if rounds > 1 else {})}
    return VariantResult(name, samples_ms=samples, latency_ms=summary,
                         rounds=[latency_summary(samples[i * 20:(i + 1) * 20]) for i in range(rounds)] if rounds > 1
                         else [])


def board(name: str, board_class: str, address: str, **extra) -> BoardResult:
    return BoardResult(name, status=BoardStatus.OK, error=None, board_class=board_class, address=address,
                       variants={v: measured(v) for v in ("fp32", "int8_dynamic", "int8_static")}, **extra)


def run(*boards: BoardResult, finished: datetime = NOW - timedelta(days=1)) -> RunResult:
    model = ModelResult(name="digits", variants={v: VariantBuild(sha256="ab") for v in
                                                 ("fp32", "int8_dynamic", "int8_static")})
    return RunResult("r1", started=finished.isoformat(), finished=finished.isoformat(), model=model,
                     boards=list(boards))


def test_real_boards_of_every_required_class_meet_the_policy():
    result = run(board("jet1", "jetson-orin", "ci@10.0.0.7"), board("pi1", "cortex-a72", "ci@pi1.lab:22"))
    outcome = check_policy(result, {**POLICY, "classes": ["jetson-orin", "cortex-a72"]}, NOW)
    assert outcome.met and outcome.counted == ["jet1", "pi1"] and not outcome.notes


def test_loopback_boards_emulated_boards_and_stale_runs_do_not_count_each_named():
    result = run(board("sim", "cortex-a53", "u@127.0.0.1:2201", on_controller=True),
                 board("qemu", "cortex-a72", "pi2.lab", emulated=True, qemu_cpu="cortex-a72"),
                 board("pi1", "cortex-a72", "local", on_controller=True),
                 finished=NOW - timedelta(days=30))
    outcome = check_policy(result, {**POLICY, "classes": ["cortex-a72"]}, NOW)
    assert any("sim is a stand-in on the controller" in n for n in outcome.notes)
    assert any("qemu is emulated (QEMU cortex-a72)" in n for n in outcome.notes)
    assert any("pi1 is a stand-in" in n for n in outcome.notes), "a local-transport board is the controller"
    assert "classes: cortex-a72 needs 1 counted board(s), the run has 0" in outcome.unmet
    assert any(u.startswith("max_age_days: the run ended 30.0 days ago") for u in outcome.unmet)


def test_variants_that_failed_to_build_or_were_not_measured_and_too_few_rounds_are_unmet():
    pi = board("pi1", "cortex-a72", "pi1.lab")
    del pi.variants["int8_dynamic"]
    result = run(pi)
    result.model.variants["int8_static"] = VariantBuild(status="failed", reason="calibration ran out of memory")
    outcome = check_policy(result, {**POLICY, "min_rounds": 2}, NOW)
    assert "variants: int8_static failed to build: calibration ran out of memory" in outcome.unmet
    assert "variants: int8_dynamic was not measured on pi1" in outcome.unmet
    assert any(u.startswith("min_rounds: pi1 fp32 was measured in 1 agent process(es)") for u in outcome.unmet)


def test_a_summary_that_does_not_match_its_samples_is_named_per_figure_and_per_round():
    variant = measured("fp32", rounds=2)
    assert summary_disagreements("pi1", variant, "results.json") == []
    variant.latency_ms["p99"] = 0.5
    variant.rounds[1]["p50"] = 0.9
    found = [str(d) for d in summary_disagreements("pi1", variant, "results.json")]
    assert found[0].startswith("results.json: pi1 fp32 latency_ms.p99: stored 0.5, recomputed 1.3")
    assert found[1].startswith("results.json: pi1 fp32 rounds[1].p50: stored 0.9, recomputed 1.295")


def test_a_policy_with_an_unknown_rule_or_class_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: c\nitems: {}\nsignoff:\n  allow_standin: true\n")
    with pytest.raises(ChecklistError, match=r"c.yaml:4.*signoff.allow_standin.*did you mean 'allow_standins'"):
        load_checklist(path)
    path.write_text("name: c\nitems: {}\nsignoff:\n  classes: [jetson-orim]\n")
    with pytest.raises(ChecklistError, match=r"c.yaml:4.*unknown board class 'jetson-orim'.*jetson-orin"):
        load_checklist(path)


def test_a_signing_time_in_the_future_or_before_the_run_ended_or_without_a_zone_is_named():
    ended = (NOW - timedelta(days=1)).isoformat()
    assert signing_time_problems(NOW.isoformat(), ended, NOW) == []
    assert signing_time_problems((NOW + timedelta(minutes=2)).isoformat(), ended, NOW) == [], "clock skew"
    future = signing_time_problems((NOW + timedelta(days=2)).isoformat(), ended, NOW)
    assert len(future) == 1 and "is in the future" in future[0]
    early = signing_time_problems((NOW - timedelta(days=3)).isoformat(), ended, NOW)
    assert len(early) == 1 and "before the run ended" in early[0]
    assert "not a time with its time zone" in signing_time_problems("2026-12-01T10:00:00", ended, NOW)[0]
