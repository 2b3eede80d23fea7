"""Checklists: which items a run is judged on, and each item's settings (limits).

A checklist is YAML (`suites/checklists/dms.yaml`); `extends:` starts from
another checklist. Every item and setting is checked here, so a typo is an
error naming the file and line, never a silently ignored limit. The judging
itself lives in farm.judge.

Its `signoff:` section is the release policy a sign-off is held to: which board
classes must have been measured, whether stand-ins or emulated boards count,
how many agent processes (rounds) per variant, how old the run may be, which
model and variants it must cover, and the namespace signatures are made in.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from farm.config.boardclasses import BOARD_CLASSES
from farm.config.settings import DEFAULT_VARIANTS, VARIANTS
from farm.config.yamlfile import LineMap, load_yaml
from farm.errors import ChecklistError
from farm.util import did_you_mean, is_number

ITEMS: dict[str, dict] = {  # item -> its settings and their defaults
    "opset": {"min": 10},
    "calibration": {"min": 100, "max": 1000},
    "accuracy": {"max_loss_pct": 1.0},
    # `limits`: how a budget of the board (inventory) or its class meets the checklist's (judge.items.limits_for)
    # `confidence`: the percentile's upper bound at this confidence is judged (0: the point estimate)
    # `board_state`: a measurement flagged by the agent (throttled, foreign load, below max clock) is
    # an error (`error`), judged with a warning in its reason (`warn`), or judged as if clean (`ignore`)
    "latency": {"metric": "p95", "max_ms": 50.0, "limits": "precedence", "confidence": 0.95, "board_state": "warn"},
    "memory": {"max_mb": 500.0, "limits": "precedence"},
    # speedup's `board_state`: a ratio of two timings is only as fit as the worse of the two boards' states
    "speedup": {"min_ratio": 1.0, "tolerance_pct": 10.0, "board_state": "error"},
    # the share of the model's nodes on the board's accelerator (judged where its toolchain has one)
    "offload": {"min_node_pct": 100.0},
    # `changes`: also fail on a lasting slowdown that began since the baseline (judge.changes.recent_change)
    "regression": {"rule": "p95:10%", "alpha": 0.01, "max_accuracy_drop_points": 0.5,
                   "max_memory_increase_pct": 10.0, "changes": True, "change_alpha": 0.02, "change_min_pct": 10.0},
}
LATENCY_METRICS = ("mean", "p50", "p90", "p95", "p99", "max")
BOARD_STATE_RULES = ("warn", "error", "ignore")
LIMIT_RULES = ("precedence", "stricter")  # board > checklist > class default; or the strictest of them
RULE_FIGURES = ("mean", "p50", "p90", "p95", "p99")
SECTIONS = ("name", "description", "extends", "items", "signoff")

# The release policy (`signoff:`) and its defaults: a sign-off rests on real boards unless it says otherwise.
POLICY: dict = {
    "namespace": "farm-signoff",  # ssh-keygen -Y namespace; allowed_signers may restrict a key to it
    "classes": [],                # board classes that must each have been measured (empty: any real board)
    "min_boards_per_class": 1,
    "allow_standins": False,      # boards on the controller (stand-ins, local transport) count
    "allow_emulated": False,      # QEMU-emulated boards count (their timing is never judged)
    "min_rounds": 1,              # agent processes per variant on each counted board
    "max_age_days": 14,           # from the run's end to the signature
    "model": None,                # the model's name the release is for (None: any)
    "variants": list(DEFAULT_VARIANTS),   # variants that must be built and measured on every counted board
}
NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9@._-]{0,99}$")


def parse_rule(rule: str) -> list[tuple[str, float]]:
    """`p95:10%` or `p50:10%,p95:15%` (pytest-benchmark's --benchmark-compare-fail spelling)."""
    parsed = []
    for part in str(rule).split(","):
        figure, _, threshold = part.strip().partition(":")
        try:
            value = float(threshold[:-1]) if threshold.endswith("%") else None
        except ValueError:
            value = None
        if figure not in RULE_FIGURES or value is None:
            raise ValueError(f"bad regression rule {part.strip()!r}: expected e.g. p95:10% "
                             f"(figures: {', '.join(RULE_FIGURES)})")
        parsed.append((figure, value))
    return parsed


@dataclass(frozen=True)
class Checklist:
    name: str
    path: str
    items: dict[str, dict]  # item -> settings, defaults filled in
    policy: dict = field(default_factory=lambda: dict(POLICY))  # the release policy, defaults filled in
    explicit: frozenset = frozenset()  # (item, setting) pairs the file (or one it extends) wrote down

    @property
    def sha256(self) -> str:
        """Of what the checklist means (items and policy), not of its comments."""
        body = json.dumps({"items": self.items, "policy": self.policy}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(body.encode()).hexdigest()

    def describe(self) -> dict:
        return {"name": self.name, "file": self.path, "items": self.items, "policy": self.policy,
                "explicit": sorted(f"{item}.{key}" for item, key in self.explicit), "sha256": self.sha256}

    def written(self) -> dict:
        """The checklist as a file that means the same: only the settings it wrote down, and its policy."""
        items = {item: {key: value for key, value in settings.items() if (item, key) in self.explicit}
                 for item, settings in self.items.items()}
        return {"name": self.name, "items": items, "signoff": self.policy}


def _hint(word: str, choices) -> str:
    return did_you_mean(word, choices, "choose from ")


def load_checklist(path: str | Path) -> Checklist:
    path = Path(path)
    doc = load_yaml(path, lambda p, line, message: ChecklistError(p, line, message), "checklist file")
    where = str(path)
    if not isinstance(doc, LineMap) or not isinstance(doc.get("items"), LineMap):
        raise ChecklistError(where, None, "expected a mapping with 'name' and an 'items' mapping")
    for key in doc:
        if key not in SECTIONS:
            raise ChecklistError(where, doc.line_of(key), "unknown key", field=str(key), hint=_hint(key, SECTIONS))
    parent = load_checklist(path.parent / doc["extends"]) if doc.get("extends") else None
    items = dict(parent.items) if parent else {}
    explicit = set(parent.explicit) if parent else set()
    for item, settings in doc["items"].items():
        line = doc["items"].line_of(item)
        if item not in ITEMS:
            raise ChecklistError(where, line, "unknown item", item=str(item), hint=_hint(item, ITEMS))
        settings = settings or LineMap()
        if not isinstance(settings, LineMap):
            raise ChecklistError(where, line, "expected a mapping of settings", item=item)
        for key in settings:
            if key not in ITEMS[item]:
                raise ChecklistError(where, settings.line_of(key), "unknown setting", item=item, field=str(key),
                                     hint=_hint(key, ITEMS[item]))
        items[item] = {**ITEMS[item], **items.get(item, {}), **settings}
        explicit |= {(item, str(key)) for key in settings}
        if item == "regression":
            try:
                parse_rule(items[item]["rule"])
            except ValueError as exc:
                raise ChecklistError(where, settings.line_of("rule"), str(exc), item=item, field="rule") from exc
        if item == "latency":
            _one_of(where, settings, item, items[item], "metric", LATENCY_METRICS, "metric")
        confidence = items[item].get("confidence", 0)
        if not is_number(confidence) or not 0 <= confidence < 1:
            raise ChecklistError(where, settings.line_of("confidence"), f"expected a number from 0 to below 1 "
                                 f"(0.95: 95 %), got {confidence!r}", item=item, field="confidence")
        for key, choices in (("board_state", BOARD_STATE_RULES), ("limits", LIMIT_RULES)):
            if key in items[item]:
                _one_of(where, settings, item, items[item], key, choices, "rule")
    policy = _policy(where, doc.get("signoff"), doc.line_of("signoff"), parent.policy if parent else POLICY)
    return Checklist(str(doc.get("name") or path.stem), str(path), items, policy, frozenset(explicit))


def _one_of(where: str, settings, item: str, merged: dict, key: str, choices: tuple[str, ...], what: str) -> None:
    """A setting that names one of a fixed set: anything else is an error naming its line and the choices."""
    if merged[key] not in choices:
        raise ChecklistError(where, settings.line_of(key), f"unknown {what} {merged[key]!r}", item=item, field=key,
                             hint="choose from " + ", ".join(choices))


def _policy(where: str, section, line: int, inherited: dict) -> dict:
    """The `signoff:` section over the inherited policy, every rule checked."""
    if section is None:
        return dict(inherited)
    if not isinstance(section, LineMap):
        raise ChecklistError(where, line, "expected a mapping of sign-off rules", field="signoff")
    policy = dict(inherited)
    for key, value in section.items():
        at = section.line_of(key)
        # B023: bad() is called within this iteration only
        bad = lambda what: ChecklistError(where, at, f"expected {what}, got {value!r}",  # noqa: E731, B023
                                          field=f"signoff.{key}")  # noqa: B023
        if key not in POLICY:
            raise ChecklistError(where, at, "unknown sign-off rule", field=f"signoff.{key}", hint=_hint(key, POLICY))
        if key in ("allow_standins", "allow_emulated") and not isinstance(value, bool):
            raise bad("true or false")
        if key in ("min_boards_per_class", "min_rounds") and (not is_number(value, whole=True) or value < 1):
            raise bad("a whole number of at least 1")
        if key == "max_age_days" and (not is_number(value) or value <= 0):
            raise bad("a number of days above 0")
        if key == "classes" and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            raise bad("a list of board classes")
        if key == "classes" and (unknown := [v for v in value if v not in BOARD_CLASSES]):
            raise ChecklistError(where, at, f"unknown board class {unknown[0]!r}", field="signoff.classes",
                                 hint=_hint(unknown[0], BOARD_CLASSES))
        if key == "variants" and (not isinstance(value, list) or not set(value) <= set(VARIANTS) or not value):
            raise bad("a list of variants among " + ", ".join(VARIANTS))
        if key == "model" and value is not None and not isinstance(value, str):
            raise bad("a model name")
        if key == "namespace" and not (isinstance(value, str) and NAMESPACE_RE.match(value)):
            raise bad("a namespace of letters, digits, '@', '.', '_' or '-'")
        policy[key] = list(value) if isinstance(value, list) else value
    return policy
