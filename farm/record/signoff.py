"""Sign-off: bind a release decision to the exact model, boards and figures it rests on.

A sign-off is refused unless every check passed (skips allowed) on every board
of the run. The record holds the model's and every variant's sha256, the boards
and their facts, the checklist and its limits, every verdict with its value,
who and when, and a sha256 over the canonical JSON of all of that: editing any
figure, or swapping the model file, is detected by `verify`.
"""

from __future__ import annotations

import hashlib
import html
import json
from pathlib import Path

from farm.errors import SignoffError
from farm.results import RunResult
from farm.util import file_sha256, utc_now, write_json_atomic

SCHEMA = "farm.signoff/1"


def canonical_sha256(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def build_record(result: RunResult, by: str, note: str | None) -> dict:
    record = {
        "schema": SCHEMA, "run_id": result.run_id, "signed_by": by, "signed_at": utc_now(), "note": note,
        "model": {"name": result.model.name, "sha256": result.model.sha256,
                  "variants": {v: e.sha256 for v, e in result.model.variants.items() if e.sha256}},
        "checklist": result.checklist,
        "boards": [{"name": b.name, "class": b.board_class, "facts": b.facts,
                    "verdicts": {v: [c.to_json() for c in e.checks] for v, e in b.variants.items()}}
                   for b in result.boards],
        "run": {"started": result.started, "finished": result.finished, "inventory": result.inventory,
                "provenance": result.provenance},
    }
    record["sha256"] = canonical_sha256(record)
    return record


def render_html(record: dict) -> str:
    rows = []
    for board in record["boards"]:
        for variant, checks in board["verdicts"].items():
            for check in checks:
                rows.append(f"<tr><td>{html.escape(board['name'])}</td><td>{html.escape(variant)}</td>"
                            f"<td>{html.escape(check['item'])}</td><td>{check['status']}</td>"
                            f"<td>{html.escape(str(check['value']))}</td><td>{html.escape(str(check['limit']))} "
                            f"{html.escape(check['unit'])}</td></tr>")
    variants = "".join(f"<li>{html.escape(v)}: <code>{s}</code></li>" for v, s in record["model"]["variants"].items())
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>farm sign-off {html.escape(record['run_id'])}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{border:1px solid #ccc;padding:3px 8px}}table{{border-collapse:collapse}}</style>
</head><body><h1>Sign-off: {html.escape(record['model']['name'])}</h1>
<p>Signed by <b>{html.escape(record['signed_by'])}</b> at {html.escape(record['signed_at'])} (UTC) for run
<code>{html.escape(record['run_id'])}</code>. {html.escape(record.get('note') or '')}</p>
<p>Model sha256 <code>{record['model']['sha256']}</code></p><ul>{variants}</ul>
<p>Checklist <b>{html.escape(record['checklist']['name'])}</b>; boards:
{html.escape(', '.join(b['name'] for b in record['boards']))}</p>
<table><tr><th>board</th><th>variant</th><th>item</th><th>status</th><th>value</th><th>limit</th></tr>{''.join(rows)}</table>
<p>Record sha256 (canonical JSON of everything above): <code>{record['sha256']}</code></p>
<p>Verify with <code>farm signoff verify signoff.json --model MODEL.onnx</code>.</p></body></html>
"""


def sign(run_dir: Path, by: str, note: str | None = None) -> Path:
    results_path = Path(run_dir) / "results.json"
    if not results_path.is_file():
        raise SignoffError(f"{results_path}: no results.json: is this a run folder?")
    result = RunResult.from_json(json.loads(results_path.read_text()))
    problems = result.problems()
    if problems:
        raise SignoffError(f"sign-off refused for run {result.run_id}: {len(problems)} check(s) did not pass:\n  "
                           + "\n  ".join(problems))
    record = build_record(result, by, note)
    target = Path(run_dir) / "signoff.json"
    write_json_atomic(target, record)
    (Path(run_dir) / "signoff.html").write_text(render_html(record))
    return target


def verify(path: Path, model: Path | None = None) -> list[str]:
    """What differs from what was signed (empty: the record and the model are the ones signed)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SignoffError(f"{path}: not a readable sign-off record ({exc})") from exc
    differences = []
    if record.get("sha256") != canonical_sha256(record):
        differences.append(f"the record was changed after signing: its sha256 is {record.get('sha256')}, "
                           f"its content hashes to {canonical_sha256(record)}")
        differences += _changed_verdicts(Path(path).parent / "results.json", record)
    if model is not None:
        actual = file_sha256(Path(model))
        if actual != record["model"]["sha256"] and actual not in record["model"]["variants"].values():
            differences.append(f"{model}: sha256 {actual} is not the signed model {record['model']['sha256']} "
                               "nor any signed variant")
    return differences


def _changed_verdicts(results_path: Path, record: dict) -> list[str]:
    """Name the edited figures, where the run's results.json is still beside the record."""
    if not results_path.is_file():
        return []
    original = build_record(RunResult.from_json(json.loads(results_path.read_text())), record["signed_by"],
                            record.get("note"))
    changes = []
    signed = {b["name"]: b for b in original["boards"]}
    for board in record["boards"]:
        for variant, checks in board["verdicts"].items():
            for now, then in zip(checks, signed.get(board["name"], {}).get("verdicts", {}).get(variant, [])):
                for key in ("status", "value", "limit"):
                    if now.get(key) != then.get(key):
                        changes.append(f"{board['name']} {variant} {now['item']} {key}: run says {then.get(key)}, "
                                       f"record says {now.get(key)}")
    return changes
