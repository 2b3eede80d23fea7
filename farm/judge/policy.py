"""The release policy: what a run must cover before anyone may sign it off.

The checklist's `signoff:` section (farm.config.checklist.POLICY) says which
board classes must have been measured, whether boards on the controller
(stand-ins) or emulated boards count, how many agent processes per variant,
how old the run may be, and which model and variants it must cover. Every unmet
rule is one line naming what is missing; a board that does not count is named
with the reason. Pure: a run and a policy in, lines out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from farm.results import BoardResult, BoardStatus, RunResult
from farm.statuses import BUILT


@dataclass
class PolicyOutcome:
    unmet: list[str] = field(default_factory=list)     # each rule the run does not meet
    counted: list[str] = field(default_factory=list)   # the boards the sign-off rests on
    notes: list[str] = field(default_factory=list)     # boards not counted, rules relaxed by the policy

    @property
    def met(self) -> bool:
        return not self.unmet


def _not_counted(board: BoardResult, policy: dict) -> str | None:
    if board.emulated and not policy["allow_emulated"]:
        return (f"{board.name} is emulated (QEMU {board.qemu_cpu}): not counted "
                "(allow_emulated: true in the policy to count it)")
    if board.on_controller and not policy["allow_standins"]:
        return (f"{board.name} is a stand-in on the controller ({board.address}): not counted "
                "(allow_standins: true in the policy to count it)")
    if not board.ok:
        return f"{board.name} was not measured to its end ({board.status}: {board.error})"
    return None


CLOCK_SKEW = timedelta(minutes=5)  # a signature this far ahead of the verifier's clock is still not "future"


def _time(text) -> datetime | None:
    try:
        found = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return found if found.tzinfo else None


def _age_days(result: RunResult, now: datetime) -> float | None:
    finished = _time(result.finished)
    return None if finished is None else (now - finished).total_seconds() / 86400


def signing_time_problems(signed_at, finished, now: datetime) -> list[str]:
    """A record's signing time against the verifier's clock and the run it signs (its age rule is check_policy's)."""
    signed, ended = _time(signed_at), _time(finished)
    if signed is None:
        return [f"signed_at: {signed_at!r} is not a time with its time zone"]
    if signed > now + CLOCK_SKEW:
        return [f"signed_at: {signed_at} is in the future (now {now.isoformat(timespec='seconds')}): a record cannot "
                "be signed later than it is verified"]
    if ended is not None and signed < ended:
        return [f"signed_at: {signed_at} is before the run ended ({finished}): no run is signed before it is over"]
    return []


def check_policy(result: RunResult, policy: dict, now: datetime) -> PolicyOutcome:
    """Every rule of `policy` held against `result` (`now`: the signing time, timezone-aware)."""
    outcome = PolicyOutcome()
    if policy.get("model") and result.model.name != policy["model"]:
        outcome.unmet.append(f"model: the policy is for {policy['model']!r}, the run measured {result.model.name!r}")
    age = _age_days(result, now)
    if age is None:
        outcome.unmet.append(f"max_age_days: the run has no valid end time ({result.finished!r})")
    elif age > policy["max_age_days"]:
        outcome.unmet.append(f"max_age_days: the run ended {age:.1f} days ago, the policy allows "
                             f"{policy['max_age_days']}: run it again")
    counted = []
    for board in result.boards:
        reason = _not_counted(board, policy)
        if reason:
            outcome.notes.append(reason)
        else:
            counted.append(board)
    outcome.counted = [b.name for b in counted]
    if policy["allow_standins"] and any(b.on_controller for b in counted):
        outcome.notes.append("the policy lets stand-ins count: this sign-off rests on boards that share the "
                             "controller's CPU, not on the boards of a release")
    if policy["allow_emulated"] and any(b.emulated for b in counted):
        outcome.notes.append("the policy lets emulated boards count: their timing is informational")
    for board_class in policy["classes"]:
        have = [b.name for b in counted if b.board_class == board_class]
        if len(have) < policy["min_boards_per_class"]:
            outcome.unmet.append(f"classes: {board_class} needs {policy['min_boards_per_class']} counted board(s), "
                                 f"the run has {len(have)}" + (f" ({', '.join(have)})" if have else ""))
    if not counted:
        outcome.unmet.append("boards: no board of the run counts under the policy")
    for variant in policy["variants"]:
        build = result.model.variants.get(variant)
        if build is None or build.status not in BUILT:
            why = "was not built" if build is None else f"failed to build: {build.reason}"
            outcome.unmet.append(f"variants: {variant} {why}")
            continue
        for board in counted:
            measured = board.variants.get(variant)
            if measured is None or measured.status != BoardStatus.OK:
                outcome.unmet.append(f"variants: {variant} was not measured on {board.name}"
                                     + (f" ({measured.status}: {measured.error})" if measured else ""))
                continue
            rounds = (measured.latency_ms or {}).get("rounds") or 1
            if rounds < policy["min_rounds"]:
                outcome.unmet.append(f"min_rounds: {board.name} {variant} was measured in {rounds} agent "
                                     f"process(es), the policy wants {policy['min_rounds']} (--rounds)")
    return outcome
