"""The controller's side of the agent protocol: the command line and the JSON it returns.

The same agent runs on boards (over SSH) and on the controller itself (host-side
figures while building variants), so both read identical measurements.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import farm
from farm import resources
from farm.config.settings import Measurement
from farm.errors import AgentError

SCHEMA = "farm.agent/1"
REQUIRED_KEYS = ("facts", "model", "latency_ms", "samples_ms", "peak_rss_mb", "accuracy", "errors")


def agent_argv(python: str, agent: str, model: str, measurement: Measurement, *, data: str | None = None,
               reference: str | None = None, expect_sha256: str | None = None,
               skip_accuracy: bool = False) -> list[str]:
    """The agent's argument list; quote it with shlex.join before it reaches a shell."""
    argv = [python, agent, "--model", model, "--warmup", str(measurement.warmup),
            "--runs", str(measurement.runs), "--threads", str(measurement.threads),
            "--providers", ",".join(measurement.providers)]
    if measurement.duration_s:
        argv += ["--duration", str(measurement.duration_s)]
    if data:
        argv += ["--data", data]
    if reference:
        argv += ["--reference", reference]
    if expect_sha256:
        argv += ["--expect-sha256", expect_sha256]
    if skip_accuracy:
        argv.append("--skip-accuracy")
    return argv


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
    return doc


def run_agent_here(model: Path, measurement: Measurement, *, data: Path | None = None,
                   reference: Path | None = None, timeout_s: float = 600) -> dict:
    """Run the agent on this machine with this interpreter (host-side indications)."""
    argv = agent_argv(sys.executable, str(resources.agent()), str(model), measurement,
                      data=str(data) if data else None, reference=str(reference) if reference else None)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise AgentError(f"the agent exited {proc.returncode}; stderr tail: {proc.stderr.strip()[-800:]}")
    return parse_agent_output(proc.stdout, proc.stderr)
