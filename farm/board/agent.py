"""The controller's side of the agent protocol: the command line and the JSON it returns.

The same agent runs on boards (over SSH) and on the controller itself (host-side
figures while building variants), so both read identical measurements.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass

import farm
from farm import resources
from farm._agents import farm_agent as library  # the agent's own feeding and metrics
from farm.config.settings import Measurement
from farm.errors import AgentError
from farm.statuses import AgentStage

SCHEMA = library.SCHEMA
REQUIRED_KEYS = ("facts", "model", "latency_ms", "samples_ms", "peak_rss_mb", "accuracy", "errors")


@dataclass(frozen=True)
class AgentFiles:
    """Where the agent finds what it measures with, on the board (or here)."""

    model: str
    spec: str | None = None
    feed: str | None = None       # one deployment feed: what latency is timed on
    data: str | None = None       # the evaluation set and labels (never the calibration set)
    reference: str | None = None  # FP32 outputs on the evaluation set
    expect_sha256: str | None = None


def agent_argv(python: str, agent: str, files: AgentFiles, measurement: Measurement, mode: str,
               profile_runs: int = 0, watch_stdin: bool = False, extra: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The agent's argument list for one process (mode latency or accuracy); quote it with shlex.join.

    `watch_stdin`: the agent stops when its stdin closes (on a board: the controller is gone); `extra`: the
    board's toolchain's arguments (provider options, offload, precompiled files)."""
    argv = [python, agent, "--mode", mode, "--model", files.model, "--warmup", str(measurement.warmup),
            "--min-runs", str(measurement.runs), "--threads", str(measurement.threads),
            "--providers", ",".join(measurement.providers)]
    if measurement.min_duration_s:
        argv += ["--min-duration-s", str(measurement.min_duration_s)]
    if measurement.duration_s:
        argv += ["--duration", str(measurement.duration_s)]
    for flag, value in (("--spec", files.spec), ("--feed", files.feed), ("--expect-sha256", files.expect_sha256)):
        if value:
            argv += [flag, value]
    if mode == "accuracy":
        for flag, value in (("--data", files.data), ("--reference", files.reference)):
            if value:
                argv += [flag, value]
        if profile_runs:
            argv += ["--profile-runs", str(profile_runs)]
    if watch_stdin:
        argv.append("--watch-stdin")
    return argv + list(extra)


def parse_agent_output(stdout: str, stderr: str = "") -> dict:
    """The one JSON document of the agent, validated; AgentError with the stderr tail otherwise."""
    lines = [line for line in stdout.strip().splitlines() if line.strip()]
    tail = stderr.strip()[-800:]
    if not lines:
        raise AgentError(f"the agent printed no result; stderr tail: {tail or '(empty)'}")
    try:
        doc = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise AgentError(f"the agent's output is not JSON ({exc}); stderr tail: {tail or '(empty)'}") from exc
    if not isinstance(doc, dict) or not str(doc.get("schema", "")).startswith("farm.agent/"):
        raise AgentError(f"the agent printed JSON that is not a farm agent document (expected schema {SCHEMA})")
    if doc["schema"] != SCHEMA:
        raise AgentError(f"the board's agent speaks {doc['schema']}, this farm ({farm.__version__}) speaks {SCHEMA}: "
                         "an agent of another farm version is on the board's path; let farm push its own "
                         "(the board's workdir/blobs) or install the same farm version on the controller")
    missing = [key for key in REQUIRED_KEYS if key not in doc]
    if missing:
        raise AgentError(f"the agent's document lacks {', '.join(missing)}")
    problem = malformed(doc)
    if problem:
        raise AgentError(f"the agent's document is malformed: {problem}; stderr tail: {tail or '(empty)'}")
    try:  # the agent says its stages as words (it imports nothing from farm): members from here on
        for error in doc["errors"]:
            error["stage"] = AgentStage(error["stage"])
    except ValueError as exc:
        raise AgentError(f"the agent's document is malformed: errors: {exc}") from exc
    return doc


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def malformed(doc: dict) -> str | None:
    """The first field of an agent document that is not what it must be: a board's output is never trusted."""
    for key, kind in (("facts", dict), ("model", dict), ("errors", list), ("samples_ms", list)):
        if not isinstance(doc[key], kind):
            return f"{key} = {doc[key]!r} (expected a {kind.__name__})"
    if not all(_number(x) for x in doc["samples_ms"]):
        return "samples_ms holds a value that is not a finite number"
    if not all(isinstance(e, dict) and isinstance(e.get("stage"), str) and isinstance(e.get("message"), str)
               for e in doc["errors"]):
        return "errors holds an entry without a stage and a message"
    latency = doc["latency_ms"]
    if latency is not None:
        if not isinstance(latency, dict) or not all(k in latency for k in ("n", "p50", "p95")):
            return f"latency_ms = {latency!r} (expected a mapping with n, p50, p95...)"
        bad = next((k for k, v in latency.items() if v is not None and not _number(v)), None)
        if bad:
            return f"latency_ms.{bad} = {latency[bad]!r} (expected a finite number)"
    if doc["peak_rss_mb"] is not None and not _number(doc["peak_rss_mb"]):
        return f"peak_rss_mb = {doc['peak_rss_mb']!r} (expected a finite number)"
    accuracy = doc["accuracy"]
    if accuracy is not None:
        outputs = accuracy.get("outputs") if isinstance(accuracy, dict) else None
        if not isinstance(outputs, dict) or not all(isinstance(f, dict) for f in outputs.values()):
            return f"accuracy = {accuracy!r} (expected a mapping with outputs)"
        for name, figures in outputs.items():
            bad = next((k for k, v in figures.items() if k != "metric" and not _number(v)), None)
            if bad:
                return f"accuracy.outputs.{name}.{bad} = {figures[bad]!r} (expected a finite number)"
    return None


def run_agent_here(files: AgentFiles, measurement: Measurement, mode: str, timeout_s: float = 600) -> dict:
    """Run the agent on this machine with this interpreter (host-side indications)."""
    argv = agent_argv(sys.executable, str(resources.agent()), files, measurement, mode)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise AgentError(f"the agent exited {proc.returncode}; stderr tail: {proc.stderr.strip()[-800:]}")
    return parse_agent_output(proc.stdout, proc.stderr)
