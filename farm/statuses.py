"""Every status farm says, one enum each: a misspelt member fails at import and under mypy, not in an except block.

They are `StrEnum`s: a member is its own string, so results.json, the history, the reports and the dashboard
keep the words they always had, and an old document's words load as members. Loading a word goes through the
enum (`BoardStatus("ok")`), which refuses one it does not know, saying which it knows. The board's agent keeps
plain strings (it imports nothing from farm); the controller turns them into members where it reads them
(farm/board/agent.py).
"""

from __future__ import annotations

import re
from enum import StrEnum


class Status(StrEnum):
    """The base of farm's statuses: an unknown word is a ValueError that names the kind and the known words."""

    @classmethod
    def _missing_(cls, value: object) -> None:
        kind = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", cls.__name__).lower()
        raise ValueError(f"unknown {kind} {value!r} (one of: {', '.join(cls)})")


class BoardStatus(Status):
    """How a board's run ended, and a variant's when it stopped alone; anything but `ok` turns its tests into
    errors with the reason."""

    OK = "ok"
    UNREACHABLE = "unreachable"
    AUTH_FAILED = "auth-failed"
    HOST_KEY_MISMATCH = "host-key-mismatch"
    NOT_READY = "not-ready"
    BUSY = "busy"
    AGENT_ERROR = "agent-error"
    TIMEOUT = "timeout"
    PUSH_FAILED = "push-failed"
    CANCELLED = "cancelled"
    INTERNAL_ERROR = "internal-error"  # a bug in farm, with its traceback in the board's log
    LINK_LOST = "link-lost"            # the connection died mid-way (a cable, a switch, a reboot)
    DISK_FULL = "disk-full"            # with the board's free space
    PERMISSION_DENIED = "permission-denied"  # with the path
    KILLED = "killed"                  # the agent died of a signal (named: SIGKILL is often the OOM killer)
    MODEL_ERROR = "model-error"        # the model fails at run time on this board


class CheckStatus(Status):
    """A checklist item's verdict for one board x variant (also the host's indication of an output's loss)."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"  # could not be judged: the measurement itself failed
    SKIP = "skip"    # does not apply here, with the reason


class Change(Status):
    """A figure of this run against its baseline's (the regression item's details, `farm compare`)."""

    REGRESSION = "regression"
    IMPROVEMENT = "improvement"
    SAME = "same"  # within the threshold, or not significant


class RunOutcome(Status):
    """A whole run: every check passed (or was skipped) on every board, or not (the dashboard's filter, /metrics)."""

    PASSED = "passed"
    FAILED = "failed"


class BuildStatus(Status):
    """How building one variant went (the manifest's and `VariantBuild`'s status)."""

    OK = "ok"
    FAILED = "failed"
    NO_OP = "no-op"  # quantized nothing: given to the boards, never judged as INT8


class HealthState(Status):
    """A board's health in the history: a health check's verdict, or a person's mark."""

    GOOD = "good"
    BAD = "bad"          # failed its health check: left out of selection until one passes
    RETIRED = "retired"  # taken out by a person (`farm retire`) until restored


class AgentStage(Status):
    """Where the agent's reported error happened (its document's `errors[].stage`)."""

    INTEGRITY = "integrity"  # the model or context binary is not the one sent
    IMPORT = "import"        # numpy / onnxruntime missing on the board
    LOAD = "load"
    LATENCY = "latency"
    ACCURACY = "accuracy"
    AGENT = "agent"          # anything else the agent caught


class JobState(Status):
    """A queued job's state, in procrastinate's words (read from its table; procrastinate is an optional extra,
    so its own `procrastinate.jobs.Status` is not imported here: a unit test holds the two lists equal)."""

    TODO = "todo"
    DOING = "doing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ABORTING = "aborting"
    ABORTED = "aborted"


class JobOutcome(Status):
    """How a queued job's `farm run` ended, in farm's words (farm_jobs.outcome)."""

    RUNNING = "running"
    PASSED = "passed"        # exit 0
    FAILED = "failed"        # exit 1, or given up after its worker died twice
    BAD_INPUT = "bad input"  # exit 2
    STOPPED = "stopped"      # 130, 143: a signal stopped the run
    CANCELLED = "cancelled"  # by `farm cancel`, queued or running
    STOPPING = "stopping"    # `farm cancel` asked a running job's worker to stop it (never stored)
    OTHER_EXIT = "other exit"  # any other exit code (farm_jobs.exit_code says which; the message, the log's tail)


# A board whose session ran to its end but some variants did not: those variants say why, the others count.
PER_VARIANT = (BoardStatus.TIMEOUT, BoardStatus.KILLED, BoardStatus.MODEL_ERROR, BoardStatus.AGENT_ERROR)
# Built variants the boards are given (a no-op is measured, only not judged as INT8).
BUILT = (BuildStatus.OK, BuildStatus.NO_OP)
# Health states that keep a board out of selection.
UNFIT = (HealthState.BAD, HealthState.RETIRED)
# Job states after which nothing more happens to the job.
FINAL = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.ABORTED)
