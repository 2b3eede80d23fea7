"""Checklists: which items a run is judged on, and each item's settings (limits).

A checklist is YAML (`suites/checklists/dms.yaml`); `extends:` starts from
another checklist. Every item and setting is checked here, so a typo is an
error naming the file and line, never a silently ignored limit. The judging
itself lives in farm.judge.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from farm.config.yamlfile import LineMap, load_yaml
from farm.errors import ChecklistError

ITEMS: dict[str, dict] = {  # item -> its settings and their defaults
    "opset": {"min": 10},
    "calibration": {"min": 100, "max": 1000},
    "accuracy": {"max_loss_pct": 1.0},
    "latency": {"metric": "p95", "max_ms": 50.0},
    "memory": {"max_mb": 500.0},
    "speedup": {"min_ratio": 1.0, "tolerance_pct": 10.0},
    "regression": {"rule": "p95:10%", "alpha": 0.01, "max_accuracy_drop_points": 0.5,
                   "max_memory_increase_pct": 10.0},
}
LATENCY_METRICS = ("mean", "p50", "p90", "p95", "p99", "max")
RULE_FIGURES = ("mean", "p50", "p90", "p95", "p99")
SECTIONS = ("name", "description", "extends", "items")


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

    def describe(self) -> dict:
        return {"name": self.name, "file": self.path, "items": self.items}


def _hint(word: str, choices) -> str:
    near = difflib.get_close_matches(str(word), list(choices), n=1)
    return f"did you mean {near[0]!r}?" if near else "choose from " + ", ".join(choices)


def load_checklist(path: str | Path) -> Checklist:
    path = Path(path)
    doc = load_yaml(path, lambda p, line, message: ChecklistError(p, line, message), "checklist file")
    where = str(path)
    if not isinstance(doc, LineMap) or not isinstance(doc.get("items"), dict):
        raise ChecklistError(where, None, "expected a mapping with 'name' and an 'items' mapping")
    for key in doc:
        if key not in SECTIONS:
            raise ChecklistError(where, doc.line_of(key), "unknown key", field=str(key), hint=_hint(key, SECTIONS))
    items = dict(load_checklist(path.parent / doc["extends"]).items) if doc.get("extends") else {}
    for item, settings in doc["items"].items():
        line = doc["items"].line_of(item)
        if item not in ITEMS:
            raise ChecklistError(where, line, "unknown item", item=str(item), hint=_hint(item, ITEMS))
        settings = settings or LineMap()
        if not isinstance(settings, dict):
            raise ChecklistError(where, line, "expected a mapping of settings", item=item)
        for key in settings:
            if key not in ITEMS[item]:
                raise ChecklistError(where, settings.line_of(key), "unknown setting", item=item, field=str(key),
                                     hint=_hint(key, ITEMS[item]))
        items[item] = {**ITEMS[item], **settings}
        if item == "regression":
            try:
                parse_rule(items[item]["rule"])
            except ValueError as exc:
                raise ChecklistError(where, settings.line_of("rule"), str(exc), item=item, field="rule") from exc
        if item == "latency" and items[item]["metric"] not in LATENCY_METRICS:
            raise ChecklistError(where, settings.line_of("metric"), f"unknown metric {items[item]['metric']!r}",
                                 item=item, field="metric", hint="choose from " + ", ".join(LATENCY_METRICS))
    return Checklist(str(doc.get("name") or path.stem), str(path), items)
