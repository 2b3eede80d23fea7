"""What the HTML report adds to pytest-html: columns, a board x variant matrix, plots, provenance.

Plots are PNGs embedded as data URIs, so report.html opens with no network.
"""

from __future__ import annotations

import base64
import html
import io

import matplotlib

matplotlib.use("Agg")  # no display on a controller or in CI
import matplotlib.pyplot as plt  # noqa: E402

COLUMNS = ("board", "cpu", "variant", "provider", "p50 ms", "p95 ms", "p99 ms", "peak MB", "accuracy",
           "value vs limit")
STATUS_COLOURS = {"pass": "#2e7d32", "fail": "#c62828", "error": "#ef6c00", "skip": "#757575"}


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def row_properties(board: dict, variant: str, verdict: dict | None) -> dict:
    """The figures of one test row, kept as user_properties (they reach the JUnit file too)."""
    entry = board.get("variants", {}).get(variant, {})
    stats = entry.get("latency_ms") or {}
    accuracy = entry.get("accuracy") or {}
    shown = accuracy.get("top1", accuracy.get("agreement_with_reference"))
    value = "-"
    if verdict:
        value = f"{_fmt(verdict['value'])} vs {_fmt(verdict['limit'])} {verdict['unit']}".strip()
    cpu = board.get("facts", {}).get("cpu") or board.get("class") or "-"
    if board.get("emulated"):
        cpu = f"{board['qemu_cpu']} (QEMU, emulated)"
    return {"board": board["name"], "cpu": cpu, "variant": variant, "provider": provider_text(board, entry), "p50 ms": _fmt(stats.get("p50")), "p95 ms": _fmt(stats.get("p95")),
            "p99 ms": _fmt(stats.get("p99")), "peak MB": _fmt(entry.get("peak_rss_mb"), 1),
            "accuracy": _fmt(shown, 4), "value vs limit": value}


def provider_text(board: dict, entry: dict) -> str:
    """The provider used, and the one asked for when the board fell back: never silent."""
    used = (entry.get("provider_used") or "-").replace("ExecutionProvider", "")
    asked = (board.get("providers_requested") or [None])[0]
    if asked and entry.get("provider_used") and asked != entry["provider_used"]:
        return f"{used} (asked {asked.replace('ExecutionProvider', '')})"
    return used


def header_cells() -> list[str]:
    return [f'<th class="sortable">{html.escape(name)}</th>' for name in COLUMNS]


def row_cells(properties: dict) -> list[str]:
    return [f"<td>{html.escape(str(properties.get(name, '-')))}</td>" for name in COLUMNS]


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}"/>'


def latency_plot(results: dict) -> str | None:
    """Latency distribution (box plot of the raw samples) per board and variant."""
    labels, samples = [], []
    for board in results["boards"]:
        for variant, entry in board.get("variants", {}).items():
            if entry.get("samples_ms"):
                labels.append(f"{board['name']}\n{variant}")
                samples.append(entry["samples_ms"])
    if not samples:
        return None
    figure, axis = plt.subplots(figsize=(max(6, len(labels) * 0.9), 3.6))
    axis.boxplot(samples, whis=(5, 95), showfliers=False)  # a few slow outliers would flatten every box
    axis.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
    axis.set_ylabel("latency (ms)")
    axis.set_title("Latency per board and variant (box: p25-p75, whiskers: p5-p95)")
    return _png(figure)


def speedup_plot(results: dict) -> str | None:
    """INT8 over FP32 speedup (p50) per board."""
    bars = []
    for board in results["boards"]:
        variants = board.get("variants", {})
        fp32 = (variants.get("fp32") or {}).get("latency_ms")
        for variant in ("int8_dynamic", "int8_static"):
            stats = (variants.get(variant) or {}).get("latency_ms")
            if fp32 and stats:
                bars.append((f"{board['name']}\n{variant}", fp32["p50"] / stats["p50"]))
    if not bars:
        return None
    rule = results["checklist"]["items"].get("speedup", {"min_ratio": 1.0, "tolerance_pct": 0.0})
    floor = rule["min_ratio"] * (1 - rule["tolerance_pct"] / 100)
    figure, axis = plt.subplots(figsize=(max(6, len(bars) * 0.9), 3.2))
    axis.bar([b[0] for b in bars], [b[1] for b in bars],
             color=["#2e7d32" if r >= rule["min_ratio"] else "#f9a825" if r >= floor else "#c62828" for _, r in bars])
    axis.axhline(rule["min_ratio"], color="black", linewidth=0.8)
    axis.axhline(floor, color="grey", linewidth=0.6, linestyle="--")
    axis.set_ylabel("FP32 p50 / INT8 p50")
    axis.set_title("INT8 speedup over FP32 per board")
    axis.tick_params(axis="x", labelsize=7)
    return _png(figure)


def summary_matrix(results: dict) -> str:
    """Board x variant, one coloured letter per checklist item (P pass, F fail, E error, - skip)."""
    items = list(results["checklist"]["items"])
    variants = sorted({v for b in results["boards"] for v in b.get("variants", {})})
    head = "".join(f"<th>{html.escape(v)}</th>" for v in variants)
    rows = []
    for board in results["boards"]:
        cells = []
        for variant in variants:
            checks = {c["item"]: c for c in board.get("variants", {}).get(variant, {}).get("checks", [])}
            if board["status"] != "ok":
                cells.append(f'<td style="color:{STATUS_COLOURS["error"]}">error: {html.escape(board["status"])}</td>')
                continue
            marks = []
            for item in items:
                status = checks.get(item, {}).get("status", "error")
                letter = {"pass": "P", "fail": "F", "error": "E", "skip": "-"}[status]
                marks.append(f'<span title="{html.escape(item)}: {status}" '
                             f'style="color:{STATUS_COLOURS[status]};font-weight:bold">{letter}</span>')
            cells.append("<td>" + " ".join(marks) + "</td>")
        rows.append(f"<tr><th>{html.escape(board['name'])}</th>{''.join(cells)}</tr>")
    legend = "items, in order: " + ", ".join(items)
    return (f'<h2>Checklist: {html.escape(results["checklist"]["name"])}</h2><p>{html.escape(legend)}</p>'
            f'<table class="farm-matrix" border="1" cellpadding="4"><tr><th>board</th>{head}</tr>{"".join(rows)}</table>')


def provenance(results: dict) -> str:
    prov = results.get("provenance", {})
    policies = sorted({b.get("host_key_policy") or "-" for b in results["boards"]})
    rows = [("run", results["run_id"]), ("farm", prov.get("farm")), ("git commit", prov.get("git_commit")),
            ("inventory", results["inventory"]), ("model", f"{results['model'].get('name')} "
                                                           f"sha256 {results['model'].get('sha256')}"),
            ("started (UTC)", results["started"]), ("finished (UTC)", results["finished"]),
            ("host-key policy", ", ".join(policies)), ("controller", prov.get("controller"))]
    if "off" in policies:
        rows.append(("WARNING", "host keys were NOT verified for some boards (host_key_policy: off)"))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f'<h2>Run provenance</h2><table class="farm-provenance">{body}</table>'


def summary_sections(results: dict, extra_plots: list[str] = ()) -> list[str]:
    sections = [summary_matrix(results)]
    plots = [p for p in (latency_plot(results), speedup_plot(results), *extra_plots) if p]
    if plots:
        sections.append("<h2>Plots</h2>" + "".join(plots))
    sections.append(provenance(results))
    return sections


def trend_plot(trends: dict[str, dict[str, list[tuple]]], figure: str = "p95") -> str | None:
    """p95 over the last runs, one panel per board, one line per variant."""
    boards = {b: v for b, v in trends.items() if any(len(points) > 1 for points in v.values())}
    if not boards:
        return None
    fig, axes = plt.subplots(1, len(boards), figsize=(4.2 * len(boards), 3.0), squeeze=False)
    for axis, (board, variants) in zip(axes[0], boards.items()):
        for variant, points in variants.items():
            values = [p[2] for p in points]
            axis.plot(range(1, len(values) + 1), values, marker="o", label=variant)
        axis.set_title(f"{board}: {figure} over the last runs", fontsize=9)
        axis.set_xlabel("run (oldest to newest)")
        axis.set_ylabel(f"{figure} (ms)")
        axis.legend(fontsize=7)
    return _png(fig)
