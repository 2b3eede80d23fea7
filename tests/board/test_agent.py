"""The board agent, run exactly as on a board: a lone copy in an empty folder, as a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

AGENT = Path(__file__).resolve().parents[2] / "agents" / "farm_agent.py"


@pytest.fixture
def board_dir(tmp_path: Path) -> Path:
    """A folder holding only the agent, like a board's workdir."""
    shutil.copy(AGENT, tmp_path / "farm_agent.py")
    return tmp_path


def run_agent(board_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "farm_agent.py", *args], cwd=board_dir,
                          capture_output=True, text=True, timeout=120)


def agent_json(board_dir: Path, *args: str) -> dict:
    proc = run_agent(board_dir, *args)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON document, got {proc.stdout!r}"
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def digits_files(tmp_path_factory, digits_model, digits_data) -> dict[str, Path]:
    """What a board gets for the digits demo, built by the controller: spec, feed, evaluation set, reference."""
    from farm.build.loading import load_model_and_data
    from farm.build.variants import board_files

    out = tmp_path_factory.mktemp("board-files")
    info, data, spec = load_model_and_data(digits_model, digits_data, None)
    return {name: out / entry["file"] for name, entry in board_files(info, data, spec, out).items()}


@pytest.mark.real
def test_latency_mode_measures_latency_memory_and_facts(board_dir, digits_model, digits_files):
    doc = agent_json(board_dir, "--mode", "latency", "--model", str(digits_model), "--spec",
                     str(digits_files["spec"]), "--feed", str(digits_files["feed"]), "--runs", "40", "--warmup", "3",
                     "--threads", "1")
    assert doc["schema"] == "farm.agent/2" and doc["mode"] == "latency"
    assert doc["errors"] == []
    facts = doc["facts"]
    for key in ("hostname", "machine", "kernel", "cpu", "cpu_flags", "cores", "memory_total_mb",
                "python", "numpy", "numpy_cpu_features", "onnxruntime", "providers_available"):
        assert facts[key], key
    assert doc["model"]["opset"] == 17
    assert doc["model"]["provider_used"] == "CPUExecutionProvider"
    assert doc["settings"]["threads"] == 1
    assert doc["peak_rss_mb"] >= doc["memory_mb"]["rss_after_load"] > doc["memory_mb"]["rss_before_load"] > 0
    assert doc["load_ms"] > 0 and doc["cold_run_ms"] > 0 and doc["latency_ms"]["n"] == 40
    assert doc["accuracy"] is None  # the latency process never runs the evaluation set


@pytest.mark.real
def test_accuracy_mode_judges_each_output_by_its_metric(board_dir, digits_model, digits_files):
    doc = agent_json(board_dir, "--mode", "accuracy", "--model", str(digits_model), "--spec",
                     str(digits_files["spec"]), "--data", str(digits_files["data"]), "--reference",
                     str(digits_files["reference"]))
    assert doc["errors"] == [] and doc["latency_ms"] is None
    logits = doc["accuracy"]["outputs"]["logits"]
    assert logits["metric"] == "top1" and logits["n"] == 450 == doc["accuracy"]["n"]
    assert logits["top1"] > 0.95 and logits["agreement"] == 1.0  # FP32 against its own reference
    assert doc["accuracy_peak_rss_mb"] > 0


@pytest.mark.real
def test_statistics_are_those_of_the_raw_samples(board_dir, digits_model):
    doc = agent_json(board_dir, "--model", str(digits_model), "--runs", "57", "--warmup", "0")
    samples = np.array(doc["samples_ms"])
    stats = doc["latency_ms"]
    assert stats["n"] == len(samples) == 57
    assert stats["mean"] == pytest.approx(samples.mean(), rel=1e-4)
    assert stats["std"] == pytest.approx(samples.std(ddof=1), rel=1e-3)
    for q in (50, 90, 95, 99):
        assert stats[f"p{q}"] == pytest.approx(np.percentile(samples, q), rel=1e-4)
    assert stats["min"] == pytest.approx(samples.min()) and stats["max"] == pytest.approx(samples.max())
    assert "zero inputs" in doc["warnings"][0]


@pytest.mark.real
def test_duration_stops_timed_runs_early(board_dir, digits_model):
    doc = agent_json(board_dir, "--model", str(digits_model), "--runs", "1000000", "--duration", "0.2")
    assert 0 < doc["latency_ms"]["n"] < 1000000
    assert any("--duration" in w for w in doc["warnings"])


@pytest.mark.real
def test_the_agent_stops_when_its_controller_goes_even_with_no_one_left_to_read_its_stderr(board_dir, digits_model):
    # A dead controller's sshd closes every pipe of the session: the agent's "stopping" line then meets
    # a closed stderr (EPIPE), and that must not keep it measuring until its deadline.
    agent = subprocess.Popen([sys.executable, "farm_agent.py", "--model", str(digits_model), "--runs", "999999999",
                              "--duration", "600", "--watch-stdin"], cwd=board_dir,
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert agent.stderr.readline()  # measuring: onnxruntime loaded, its first line written
        agent.stderr.close()
        agent.stdin.close()
        assert agent.wait(10) == 3
    finally:
        agent.kill()


@pytest.mark.real
def test_both_minimums_hold_runs_and_duration(board_dir, digits_model):
    by_runs = agent_json(board_dir, "--model", str(digits_model), "--min-runs", "300", "--min-duration-s", "0.05")
    rules = by_runs["run_rules"]
    assert rules["runs"] == by_runs["latency_ms"]["n"] == 300 and rules["duration_s"] >= 0.05 and rules["met"]
    by_time = agent_json(board_dir, "--model", str(digits_model), "--min-runs", "5", "--min-duration-s", "0.5")
    rules = by_time["run_rules"]
    assert rules["runs"] > 5 and 0.5 <= rules["duration_s"] < 1.5 and rules["met"]
    assert sum(by_time["samples_ms"]) / 1000 <= rules["duration_s"]  # the clock counts session.run alone


@pytest.mark.real
def test_warm_up_goes_on_until_the_latency_settles_capped(board_dir, digits_model):
    doc = agent_json(board_dir, "--model", str(digits_model), "--warmup", "3", "--runs", "20")
    rules = doc["run_rules"]
    # Two windows of 10 runs must agree within 5 %; at most 10 x --warmup (here 30) runs.
    assert 20 <= rules["warmup_runs"] <= 30
    assert rules["warmup_stable"] or any("did not settle" in w for w in doc["warnings"])
    assert agent_json(board_dir, "--model", str(digits_model), "--warmup", "0", "--runs", "5")["run_rules"][
        "warmup_runs"] == 0


@pytest.mark.real
def test_board_state_before_and_after_is_recorded(board_dir, digits_model):
    doc = agent_json(board_dir, "--model", str(digits_model), "--runs", "20")
    state = doc["board_state"]
    for when in ("before", "after"):
        assert len(state[when]["loadavg"]) == 3 and state[when]["runnable_others"] >= 0
        assert {"cpus", "thermal", "devfreq", "pi_throttled"} <= set(state[when])  # empty where the VM exposes none
    assert state["after"]["at"] > state["before"]["at"] and isinstance(state["flags"], list)


def fake_board(root: Path, *, governor: str, cur_khz: int, temp_mc: int, throttles: int, running: int) -> Path:
    """A /proc and /sys tree as a two-core Arm board shows it."""
    for cpu in (0, 1):
        freq = root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
        freq.mkdir(parents=True, exist_ok=True)
        (freq / "scaling_governor").write_text(governor + "\n")
        (freq / "scaling_cur_freq").write_text(f"{cur_khz}\n")
        (freq / "cpuinfo_max_freq").write_text("1800000\n")
        throttle = root / f"sys/devices/system/cpu/cpu{cpu}/thermal_throttle"
        throttle.mkdir(parents=True, exist_ok=True)
        (throttle / "core_throttle_count").write_text(f"{throttles}\n")
    zone = root / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True, exist_ok=True)
    for name, text in (("type", "cpu-thermal"), ("temp", str(temp_mc)), ("trip_point_0_type", "passive"),
                       ("trip_point_0_temp", "80000")):
        (zone / name).write_text(text + "\n")
    gpu = root / "sys/class/devfreq/17000000.gpu"
    gpu.mkdir(parents=True, exist_ok=True)
    for name, text in (("governor", "nvhost_podgov"), ("cur_freq", "306000000"), ("max_freq", "1300500000")):
        (gpu / name).write_text(text + "\n")
    (root / "proc").mkdir(exist_ok=True)
    (root / "proc/stat").write_text(f"cpu  1 2 3 4\nprocs_running {running}\nprocs_blocked 0\n")
    (root / "proc/loadavg").write_text(f"{running - 1}.00 0.50 0.20 {running}/120 4242\n")
    return root


def test_a_throttled_hot_busy_slow_clocked_board_is_flagged_for_each(tmp_path, monkeypatch):
    sys.path.insert(0, str(AGENT.parent))
    import farm_agent

    monkeypatch.setattr(farm_agent.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    quiet = farm_agent.board_state(str(fake_board(tmp_path / "quiet", governor="performance", cur_khz=1800000,
                                                  temp_mc=52000, throttles=3, running=1)))
    assert quiet["cpus"]["0"] == {"governor": "performance", "cur_mhz": 1800.0, "max_mhz": 1800.0,
                                  "throttle_count": 3}
    assert quiet["thermal"]["thermal_zone0"] == {"type": "cpu-thermal", "temp_c": 52.0, "passive_c": 80.0}
    assert quiet["runnable_others"] == 0 and quiet["loadavg"] == [0.0, 0.5, 0.2]
    assert quiet["devfreq"] == {"17000000.gpu": {"governor": "nvhost_podgov", "cur_mhz": 306.0, "max_mhz": 1300.5}}
    assert farm_agent.state_flags(quiet, quiet, 2) == []

    busy = farm_agent.board_state(str(fake_board(tmp_path / "busy", governor="powersave", cur_khz=600000,
                                                 temp_mc=83500, throttles=7, running=4)))
    flags = farm_agent.state_flags(quiet, busy, 2)
    assert "foreign load after: 3 other runnable tasks for 2 usable cores" in flags
    assert "hot after: cpu-thermal at 83.5 C, passive trip 80.0 C" in flags
    assert ("below max frequency: the fastest usable core, cpu0, at 600 of 1800 MHz (governor powersave)"
            in flags)
    assert "throttled during the runs: cpu0's thermal throttle count rose by 4" in flags
    pi = dict(quiet, pi_throttled=0x50005)  # under-voltage and throttled now, both also since boot
    assert farm_agent.state_flags(pi, quiet, 2) == [
        "throttled before: under-voltage, throttled (get_throttled=0x50005)"]


@pytest.mark.real
def test_figures_against_a_known_reference(board_dir, digits_model, digits_files, tmp_path):
    """A reference offset by a known amount: every metric's figure is exactly what it must be."""
    import onnxruntime as ort

    spec = json.loads(digits_files["spec"].read_text())
    data = np.load(digits_files["data"])
    session = ort.InferenceSession(str(digits_model), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"image": data["image"]})[0]
    reference = tmp_path / "reference.npz"
    np.savez(reference, logits=logits + 0.5)
    results = {}
    for metric in ("top1", "mae", "cosine", "snr_db"):
        spec["outputs"][0].update(metric=metric, labels=metric == "top1")
        path = tmp_path / f"{metric}.json"
        path.write_text(json.dumps(spec))
        doc = agent_json(board_dir, "--mode", "accuracy", "--model", str(digits_model), "--spec", str(path),
                         "--data", str(digits_files["data"]), "--reference", str(reference))
        results[metric] = doc["accuracy"]["outputs"]["logits"]
    assert results["top1"]["agreement"] == 1.0  # an offset moves no argmax
    assert results["mae"]["mae"] == pytest.approx(0.5, rel=1e-4)
    assert results["mae"]["max_abs"] == pytest.approx(0.5, rel=1e-4)  # float32 arithmetic
    expected_snr = 10 * np.log10((((logits + 0.5).astype("float64")) ** 2).sum() / (0.25 * logits.size))
    assert results["snr_db"]["snr_db"] == pytest.approx(expected_snr, rel=1e-4)
    assert 0.9 < results["cosine"]["cosine"] < 1.0


@pytest.mark.real
def test_missing_onnxruntime_is_a_json_error_with_facts(board_dir, digits_model):
    # A module that fails to import, found first because it sits beside the agent.
    (board_dir / "onnxruntime.py").write_text("raise ImportError('onnxruntime is not installed')\n")
    doc = agent_json(board_dir, "--model", str(digits_model))
    assert doc["errors"][0]["stage"] == "import"
    assert "onnxruntime" in doc["errors"][0]["message"]
    assert doc["facts"]["machine"] and doc["facts"]["python"]
    assert doc["latency_ms"] is None


@pytest.mark.real
def test_sha_mismatch_measures_nothing(board_dir, digits_model):
    doc = agent_json(board_dir, "--model", str(digits_model), "--expect-sha256", "0" * 64)
    assert doc["errors"][0]["stage"] == "integrity"
    assert "does not match" in doc["errors"][0]["message"]
    assert doc["latency_ms"] is None and doc["samples_ms"] == []


@pytest.mark.real
def test_corrupted_model_is_a_json_error(board_dir, digits_model):
    broken = board_dir / "broken.onnx"
    broken.write_bytes(digits_model.read_bytes()[:5000])
    doc = agent_json(board_dir, "--model", str(broken))
    assert doc["errors"][0]["stage"] in ("load", "agent")
    assert doc["facts"]["onnxruntime"]


@pytest.mark.real
def test_a_model_failing_at_run_time_is_one_line_naming_the_input(board_dir, digits_model, tmp_path):
    feed = tmp_path / "bad.npz"
    np.savez(feed, image=np.zeros((1, 1, 28, 28), np.float32))
    doc = agent_json(board_dir, "--model", str(digits_model), "--feed", str(feed))
    (error,) = doc["errors"]
    assert error["stage"] == "latency" and error["message"].startswith("the model failed at run time:")
    assert "image" in error["message"] and "\n" not in error["message"]


@pytest.mark.real
def test_bad_arguments_exit_2_with_usage(board_dir):
    proc = run_agent(board_dir, "--runs", "3")
    assert proc.returncode == 2
    assert "usage:" in proc.stderr and proc.stdout == ""


def test_agent_is_python_3_8_syntax():
    import ast

    source = AGENT.read_text()
    ast.parse(source, feature_version=(3, 8))
    assert "from __future__ import annotations" in source  # annotations never evaluated on old Pythons


def test_an_agent_of_another_protocol_is_refused_with_what_to_do():
    from farm.board.agent import SCHEMA, parse_agent_output
    from farm.errors import AgentError

    newer = json.dumps({"schema": "farm.agent/9", "facts": {}})
    with pytest.raises(AgentError) as caught:
        parse_agent_output(newer)
    assert "the board's agent speaks farm.agent/9, this farm" in str(caught.value) and SCHEMA in str(caught.value)
    with pytest.raises(AgentError, match="not a farm agent document"):
        parse_agent_output(json.dumps({"hello": "world"}))
