"""One status enum end to end: members everywhere, the same words on disk, unknown words refused where they are read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from farm.board.agent import SCHEMA as AGENT_SCHEMA
from farm.board.agent import parse_agent_output
from farm.errors import AgentError, BoardError, HistoryError
from farm.record.history import History
from farm.results import Explanation, RunResult, VariantBuild, VariantResult
from farm.statuses import AgentStage, BoardStatus, BuildStatus, CheckStatus, HealthState, JobState

REPO = Path(__file__).resolve().parents[1]
# results.json as farm wrote it before the statuses were enums: plain words throughout.
OLD_RESULTS = {
    "schema": "farm.run/1", "run_id": "r1", "started": "2026-01-01T00:00:00Z",
    "model": {"name": "m", "variants": {"fp32": {"status": "ok"}, "int8_static": {"status": "no-op", "reason": "x"},
                                        "int8_mixed": {"status": "failed", "reason": "y"}}},
    "boards": [{"name": "a", "status": "timeout", "error": "int8_static: hung", "class": "rpi4",
                "variants": {"fp32": {"status": "ok", "checks": [{"item": "memory", "status": "pass"},
                                                                 {"item": "latency", "status": "skip"}]},
                             "int8_static": {"status": "timeout", "error": "hung"}}},
               {"name": "b", "status": "auth-failed", "error": "check user"}],
    "explanations": [{"board": "a", "variant": "int8_static", "mixed_status": "failed"}],
}


def _with(path: list, value: str) -> dict:
    """OLD_RESULTS with the word at `path` replaced."""
    doc = json.loads(json.dumps(OLD_RESULTS))
    where = doc
    for key in path[:-1]:
        where = where[key]
    where[path[-1]] = value
    return doc


def test_an_old_results_json_loads_its_words_as_members_and_writes_the_same_words_back():
    result = RunResult.from_json(OLD_RESULTS)
    board = result.boards[0]
    assert board.status is BoardStatus.TIMEOUT and result.boards[1].status is BoardStatus.AUTH_FAILED
    assert board.variants["int8_static"].status is BoardStatus.TIMEOUT
    assert board.variants["fp32"].status is BoardStatus.OK
    assert [c.status for c in board.variants["fp32"].checks] == [CheckStatus.PASS, CheckStatus.SKIP]
    assert {n: v.status for n, v in result.model.variants.items()} == {
        "fp32": BuildStatus.OK, "int8_static": BuildStatus.NO_OP, "int8_mixed": BuildStatus.FAILED}
    assert result.explanations[0].mixed_status is BuildStatus.FAILED
    written = json.loads(json.dumps(result.to_json()))
    assert written["boards"][0]["status"] == "timeout"
    assert written["boards"][0]["variants"]["int8_static"]["status"] == "timeout"
    assert written["model"]["variants"]["int8_static"]["status"] == "no-op"
    assert written["explanations"][0]["mixed_status"] == "failed"
    assert RunResult.from_json(written).to_json() == result.to_json()


@pytest.mark.parametrize(("path", "kind"), [
    (["boards", 1, "status"], "board status"),
    (["boards", 0, "variants", "int8_static", "status"], "board status"),
    (["boards", 0, "variants", "fp32", "checks", 0, "status"], "check status"),
    (["model", "variants", "int8_static", "status"], "build status"),
    (["explanations", 0, "mixed_status"], "build status"),
])
def test_an_unknown_status_word_in_results_json_is_refused_naming_it_and_the_known_ones(path, kind):
    with pytest.raises(ValueError, match=rf"^unknown {kind} 'no_op' \(one of: [a-z, -]+\)$"):
        RunResult.from_json(_with(path, "no_op"))


def test_a_variant_or_build_written_without_a_status_loads_as_ok():
    assert VariantResult.from_json({"name": "fp32"}).status is BoardStatus.OK
    assert VariantBuild.from_json({}).status is BuildStatus.OK
    assert Explanation.from_json({"board": "a", "variant": "v"}).mixed_status is None


def test_the_result_model_defaults_are_members():
    assert VariantResult("fp32").status is BoardStatus.OK and VariantBuild().status is BuildStatus.OK


def test_a_misspelt_member_fails_when_its_module_is_imported():
    source = "from farm.statuses import BoardStatus\nLOST = BoardStatus.LINK_LOTS\n"
    with pytest.raises(AttributeError, match="LINK_LOTS"):
        exec(compile(source, "typo.py", "exec"), {})


def test_mypy_refuses_a_misspelt_member_and_a_bare_word_given_to_board_error(tmp_path, monkeypatch):
    api = pytest.importorskip("mypy.api")
    snippet = tmp_path / "typo.py"
    snippet.write_text("from farm.errors import BoardError\nfrom farm.statuses import BoardStatus\n\n"
                       "def fault() -> BoardError:\n    print(BoardStatus.AUTH_FAILD)\n"
                       "    return BoardError('x', 'auth-failed')\n")
    monkeypatch.setenv("MYPYPATH", str(REPO))  # farm/ as source, whatever the install
    out, _, code = api.run([str(snippet), "--config-file", "", "--cache-dir", "/dev/null",
                            "--follow-imports", "silent"])
    assert code == 1, out
    assert 'has no attribute "AUTH_FAILD"' in out
    assert 'Argument 2 to "BoardError" has incompatible type "str"; expected "BoardStatus"' in out


def test_board_error_refuses_a_bare_word_even_a_right_one():
    with pytest.raises(TypeError, match="BoardStatus member, not 'auth-failed'"):
        BoardError("a: authentication failed", "auth-failed")  # type: ignore[arg-type]
    assert BoardError("a: gone").status is BoardStatus.UNREACHABLE


def _agent_doc(stage: str) -> str:
    return json.dumps({"schema": AGENT_SCHEMA, "facts": {}, "model": {}, "latency_ms": None, "samples_ms": [],
                       "peak_rss_mb": None, "accuracy": None, "errors": [{"stage": stage, "message": "m"}]})


def test_the_agents_stage_words_become_members_at_the_controller():
    doc = parse_agent_output(_agent_doc("latency"))
    assert doc["errors"][0]["stage"] is AgentStage.LATENCY


def test_an_agent_document_with_an_unknown_stage_is_the_agents_error():
    with pytest.raises(AgentError, match=r"errors: unknown agent stage 'latncy' \(one of: integrity, import"):
        parse_agent_output(_agent_doc("latncy"))


def test_a_health_state_the_history_does_not_know_is_refused_with_the_fix(tmp_path):
    history = History(str(tmp_path / "history.sqlite"))
    history.set_health("a", HealthState.RETIRED, "retired by ana")
    assert history.health()["a"]["state"] is HealthState.RETIRED
    history.set_health("b", "retird", "by hand")  # type: ignore[arg-type]  # as a hand-edited database holds
    with pytest.raises(HistoryError, match=r"unknown health state 'retird' \(one of: good, bad, retired\).*restore"):
        history.health()


@pytest.mark.real  # importing procrastinate runs file(1) (platform.architecture)
def test_job_states_are_procrastinates_own():
    jobs = pytest.importorskip("procrastinate.jobs")
    assert [s.value for s in JobState] == [s.value for s in jobs.Status]


def test_farm_compare_with_an_unknown_status_in_results_json_exits_2_naming_the_file(tmp_path, capsys):
    from farm.ui.cli import main

    for run_id in ("r1", "r2"):
        (tmp_path / run_id).mkdir()
        (tmp_path / run_id / "results.json").write_text(json.dumps(_with(["boards", 1, "status"], "auth_failed")))
    assert main(["compare", "r1", "r2", "--out", str(tmp_path), "--history", "none"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'r1' / 'results.json'}: not a farm results document (unknown board status 'auth_failed'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_run_the_history_holds_with_an_unknown_status_is_a_history_error(tmp_path):
    from farm.record.history import _pack

    history = History(str(tmp_path / "history.sqlite"))
    history.record(RunResult.from_json(OLD_RESULTS))
    with history._store() as store:  # as a hand-edited (or newer farm's) database holds it
        store.execute("UPDATE runs SET document = ? WHERE run_id = ?",
                      (_pack(_with(["boards", 0, "status"], "hung")), "r1"))
    with pytest.raises(HistoryError, match=r"run r1 in the history .* \(unknown board status 'hung'"):
        history.load_run("r1")
