"""What the HTML report adds to pytest-html: columns, a board x variant matrix, plots, provenance.

It only reads the run's RunResult; every figure a verdict rests on comes from
farm.judge. Plots are PNGs embedded as data URIs, so report.html opens with no
network; matplotlib is loaded (with its Agg backend) only when a plot is drawn.
"""

from __future__ import annotations

import base64
import html
import io

from farm.config.checklist import ITEMS
from farm.judge.accuracy import summary as accuracy_summary
from farm.judge.changes import find_changes
from farm.judge.items import speedup_floor, speedup_ratio
from farm.results import BoardResult, Check, RunResult, VariantResult
from farm.statuses import BoardStatus, BuildStatus, CheckStatus

COLUMNS = ("board", "cpu", "variant", "toolchain", "provider", "offload", "p50 ms", "p95 ms", "p99 ms", "peak MB",
           "accuracy", "value vs limit")
STATUS_COLOURS = {CheckStatus.PASS: "#2e7d32", CheckStatus.FAIL: "#c62828", CheckStatus.ERROR: "#ef6c00",
                  CheckStatus.SKIP: "#757575"}
LETTERS = {CheckStatus.PASS: "P", CheckStatus.FAIL: "F", CheckStatus.ERROR: "E", CheckStatus.SKIP: "-"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on a controller or in CI
    import matplotlib.pyplot as plt

    return plt


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def provider_text(board: BoardResult, variant: VariantResult) -> str:
    """The provider used, and the one asked for when the board fell back: never silent."""
    used = (variant.provider_used or "-").replace("ExecutionProvider", "")
    asked = (board.providers_requested or [None])[0]
    if asked and variant.provider_used and asked != variant.provider_used:
        return f"{used} (asked {asked.replace('ExecutionProvider', '')})"
    return used


def offload_text(variant: VariantResult) -> str:
    """The accelerator's share of the nodes and time, and the ops that fell back to the CPU."""
    found = variant.offload
    if not found:
        return "-"
    if found.get("node_pct") is None:
        return f"unknown: {found.get('refused') or 'not measured'}"
    text = f"{found['node_pct']:g} % of nodes, {found.get('time_pct', 0):g} % of time"
    fallen = ", ".join(f"{op} x{n}" for op, n in (found.get("fallen_back") or {}).items())
    return text + (f"; fell back: {fallen}" if fallen
                   else "; fallback disabled" if found.get("fallback_disabled") else "")


def timing_text(variant: VariantResult, value) -> str:
    """A timing figure, marked where the accelerator was simulated (reported, never judged)."""
    return _fmt(value) + (" (simulated)" if variant.simulated and value is not None else "")


def row_properties(board: BoardResult, variant: str, check: Check | None, spec_outputs: list[dict],
                   item: str | None = None) -> dict:
    """The figures of one test row, kept as user_properties (they reach the JUnit file too, where
    board, variant and item name the verdict a sign-off compares)."""
    entry = board.variants.get(variant) or VariantResult(variant)
    stats = entry.latency_ms or {}
    value = "-"
    if check:
        value = f"{_fmt(check.value)} vs {_fmt(check.limit)} {check.unit}".strip()
    cpu = board.facts.get("cpu") or board.board_class or "-"
    if board.emulated:
        cpu = f"{board.qemu_cpu} (QEMU, emulated)"
    properties = {"board": board.name, "cpu": cpu, "variant": variant, "toolchain": entry.toolchain or "-",
                  "provider": provider_text(board, entry), "offload": offload_text(entry),
                  "p50 ms": timing_text(entry, stats.get("p50")), "p95 ms": timing_text(entry, stats.get("p95")),
                  "p99 ms": timing_text(entry, stats.get("p99")), "peak MB": _fmt(entry.peak_rss_mb, 1),
                  "accuracy": accuracy_summary(spec_outputs, entry.accuracy), "value vs limit": value}
    if item:
        properties["item"] = item
    if board.lock_note:  # in JUnit too: a broken lock is news wherever the board's figures are read
        properties["lock"] = board.lock_note
    if board.recovery:  # so is a power cycle: these figures were measured after it
        properties["recovery"] = board.recovery.note
    return properties


def header_cells() -> list[str]:
    return [f'<th class="sortable">{html.escape(name)}</th>' for name in COLUMNS]


def row_cells(properties: dict) -> list[str]:
    return [f"<td>{html.escape(str(properties.get(name, '-')))}</td>" for name in COLUMNS]


def _png(figure) -> str:
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}"/>'


def latency_plot(result: RunResult) -> str | None:
    """Latency distribution (box plot of the raw samples) per board and variant."""
    labels, samples = [], []
    for board in result.boards:
        for name, variant in board.variants.items():
            if variant.samples_ms:
                labels.append(f"{board.name}\n{name}")
                samples.append(variant.samples_ms)
    if not samples:
        return None
    figure, axis = _pyplot().subplots(figsize=(max(6, len(labels) * 0.9), 3.6))
    axis.boxplot(samples, whis=(5, 95), showfliers=False)  # a few slow outliers would flatten every box
    axis.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
    axis.set_ylabel("latency (ms)")
    axis.set_title("Latency per board and variant (box: p25-p75, whiskers: p5-p95)")
    return _png(figure)


def speedup_plot(result: RunResult) -> str | None:
    """INT8 over FP32 speedup (p50) per board, coloured by the checklist's minimum and floor."""
    bars = []
    for board in result.boards:
        fp32 = board.variants.get("fp32")
        for name in ("int8_dynamic", "int8_static"):
            ratio = speedup_ratio(fp32, board.variants.get(name))
            if ratio is not None:
                bars.append((f"{board.name}\n{name}", ratio))
    if not bars:
        return None
    rule = result.checklist.get("items", {}).get("speedup", ITEMS["speedup"])
    floor = speedup_floor(rule)
    figure, axis = _pyplot().subplots(figsize=(max(6, len(bars) * 0.9), 3.2))
    axis.bar([b[0] for b in bars], [b[1] for b in bars],
             color=["#2e7d32" if r >= rule["min_ratio"] else "#f9a825" if r >= floor else "#c62828" for _, r in bars])
    axis.axhline(rule["min_ratio"], color="black", linewidth=0.8)
    axis.axhline(floor, color="grey", linewidth=0.6, linestyle="--")
    axis.set_ylabel("FP32 p50 / INT8 p50")
    axis.set_title("INT8 speedup over FP32 per board")
    axis.tick_params(axis="x", labelsize=7)
    return _png(figure)


def trend_plot(trends: dict[str, dict[str, list[tuple]]], figure: str = "p95") -> str | None:
    """A figure over the last runs, one panel per board, one line per variant, change points dashed."""
    fig = trend_figure(trends, figure)
    return _png(fig) if fig is not None else None


def trend_figure(trends: dict[str, dict[str, list[tuple]]], figure: str = "p95"):
    """The trend plot's matplotlib figure (None with no board of two runs or more)."""
    boards = {b: v for b, v in trends.items() if any(len(points) > 1 for points in v.values())}
    if not boards:
        return None
    fig, axes = _pyplot().subplots(1, len(boards), figsize=(4.2 * len(boards), 3.0), squeeze=False)
    for axis, (board, variants) in zip(axes[0], boards.items()):
        for variant, points in variants.items():
            values = [p[2] for p in points]
            line, = axis.plot(range(1, len(values) + 1), values, marker="o", label=variant)
            for change in [] if None in values else find_changes(values):
                axis.axvline(change.index + 1, color=line.get_color(), linestyle="--", linewidth=0.8)
        axis.set_title(f"{board}: {figure} over the last runs", fontsize=9)
        axis.set_xlabel("run (oldest to newest)")
        axis.set_ylabel(f"{figure} (ms)")
        axis.legend(fontsize=7)
    return fig


def summary_matrix(result: RunResult) -> str:
    """Board x variant, one coloured letter per checklist item (P pass, F fail, E error, - skip)."""
    items = list(result.checklist.get("items", {}))
    variants = sorted({v for b in result.boards for v in b.variants})
    head = "".join(f"<th>{html.escape(v)}</th>" for v in variants)
    rows = []
    for board in result.boards:
        cells = []
        for name in variants:
            if not board.ok:
                cells.append(f'<td style="color:{STATUS_COLOURS[CheckStatus.ERROR]}">'
                             f'error: {html.escape(str(board.status))}</td>')
                continue
            entry = board.variants.get(name)
            marks = []
            for item in items:
                check = entry.check(item) if entry else None
                status = check.status if check else CheckStatus.ERROR
                marks.append(f'<span title="{html.escape(item)}: {status}" '
                             f'style="color:{STATUS_COLOURS[status]};font-weight:bold">{LETTERS[status]}</span>')
            cells.append("<td>" + " ".join(marks) + "</td>")
        rows.append(f"<tr><th>{html.escape(board.name)}</th>{''.join(cells)}</tr>")
    legend = "items, in order: " + ", ".join(items)
    return (f'<h2>Checklist: {html.escape(str(result.checklist.get("name")))}</h2><p>{html.escape(legend)}</p>'
            f'<table class="farm-matrix" border="1" cellpadding="4"><tr><th>board</th>{head}</tr>'
            f'{"".join(rows)}</table>')


def model_section(result: RunResult) -> str:
    """How the model was fed and judged: the spec (read or inferred), deployment shapes, metrics, variants."""
    spec = result.model.spec or {}
    rows = [("spec", spec.get("source", "-")), ("deployment batch", spec.get("batch", "-")),
            ("stream", "yes: samples are steps, state carried" if spec.get("sequence") else "no")]
    for item in spec.get("inputs", []):
        how = {"data": "data", "value": f"constant {item.get('value')!r}",
               "state": f"state from {item.get('from_output')}"}.get(item["source"], item["source"])
        rows.append((f"input {item['name']}", f"{how}, {item['dtype']} {item['shape']}"))
    for item in spec.get("outputs", []):
        limit = next((f"{k} {item[k]}" for k in ("max_loss_pct", "max_loss", "min_db") if item.get(k) is not None),
                     "the checklist's limit")
        on_labels = " on labels" if item.get("labels") else ""
        rows.append((f"output {item['name']}", f"{item['metric']}{on_labels}, {limit}"))
    for name, build in result.model.variants.items():
        ops = ", ".join(f"{op} x{n}" for op, n in build.quantized_op_types.items()) or "-"
        between = ", ".join(f"{op} x{n}" for op, n in build.float_between_qdq.items())
        rows.append((f"variant {name}", f"{build.status}{': ' + build.reason if build.reason else ''}"
                                        + (f"; INT8 kernels: {ops}" if name != "fp32" else "")
                                        + (f"; float between QDQ pairs: {between}" if between else "")
                                        + (f"; a team's own, from {build.origin['path']} (sha256 "
                                           f"{build.origin['sha256']})" if build.origin else "")))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f'<h2>Model: {html.escape(str(result.model.name))}</h2><table class="farm-model">{body}</table>'


def _losses(rows: list[dict]) -> str:
    return ", ".join(f"{r['output']} {r['loss']:.3g}{(' ' + r['unit']) if r.get('unit') else ''}" for r in rows
                     if r.get("loss") is not None) or "-"


def explanation_section(result: RunResult) -> str | None:
    """Each failing INT8 accuracy item explained: the most sensitive layers beside the board's op time,
    and what int8_mixed kept in float and gained."""
    if not result.explanations:
        return None
    parts = ["<h2>Why INT8 lost accuracy</h2>"]
    for e in result.explanations:
        parts.append(f"<h3>{html.escape(e.board)} {html.escape(e.variant)}: accuracy failed</h3>"
                     f"<p>{html.escape(e.why)}</p>")
        if not e.layers:
            parts.append("<p>No per-layer analysis this run: add int8_mixed to --variants for the layers that lose "
                         "it (farm/build/sensitivity.py).</p>")
            continue
        rows = "".join(
            f"<tr><td>{html.escape(x.layer)}</td><td>{html.escape(' + '.join(x.op_types))}</td>"
            f"<td>{'-' if x.sqnr_db is None else f'{x.sqnr_db:.1f}'}</td>"
            f"<td>{'-' if x.added_db is None else f'{x.added_db:.1f}'}</td>"
            f"<td>{html.escape(_losses(x.alone_losses))}</td>"
            f"<td>{'-' if x.board_share_pct is None else f'{x.board_share_pct:.1f} %'}</td></tr>" for x in e.layers)
        parts.append('<table class="farm-sensitivity" border="1" cellpadding="4"><tr><th>layer</th><th>ops</th>'
                     "<th>SQNR vs FP32 (dB)</th><th>SQNR it loses (dB)</th><th>loss with only it in INT8</th>"
                     f"<th>board time in its op types</th></tr>{rows}</table>")
        if e.mixed_status is None:
            continue
        if e.mixed_reason:
            parts.append(f"<p>int8_mixed: {html.escape(e.mixed_status)}: {html.escape(e.mixed_reason)}</p>")
        if e.mixed_status != BuildStatus.OK:
            continue
        gained = ", ".join(f"{v:.2f}x against {w}" for v, w in ((e.speedup_vs_fp32, "FP32"),
                                                                  (e.speedup_vs_variant, e.variant)) if v)
        parts.append(f"<p>int8_mixed kept {len(e.kept_in_float)} layer(s) in float "
                     f"({html.escape(', '.join(e.kept_in_float))}); on this board its accuracy "
                     f"{html.escape(str(e.mixed_accuracy or 'was not judged'))}"
                     f"{'' if e.mixed_value is None else f' ({e.mixed_value:.4g})'}; speedup {gained or '-'}.</p>")
    return "".join(parts)


def notes(result: RunResult) -> str | None:
    """What happened to boards that a verdict does not show: broken locks, power cycles, variants stopped alone."""
    lines = [f"{b.name}: {b.lock_note}" for b in result.boards if b.lock_note]
    lines += [f"{b.name}: {b.recovery.cause}; {b.recovery.note}" for b in result.boards if b.recovery]
    lines += [f"{b.name} {v.name}: {v.status}: {v.error}" for b in result.boards for v in b.variants.values()
              if v.status != BoardStatus.OK]
    lines += [f"{b.name}: {b.status}: {b.error}" for b in result.boards if not b.ok and not b.variants]
    if not lines:
        return None
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return "<h2>Notes</h2><ul class=\"farm-notes\">" + items + "</ul>"


def provenance(result: RunResult) -> str:
    prov = result.provenance
    policies = sorted({b.host_key_policy or "-" for b in result.boards})
    rows = [("run", result.run_id), ("farm", prov.get("farm")), ("git commit", prov.get("git_commit")),
            ("inventory", result.inventory), ("model", f"{result.model.name} sha256 {result.model.sha256}"),
            ("started (UTC)", result.started), ("finished (UTC)", result.finished),
            ("host-key policy", ", ".join(policies)), ("controller", prov.get("controller"))]
    if "off" in policies:
        rows.append(("WARNING", "host keys were NOT verified for some boards (host_key_policy: off)"))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f'<h2>Run provenance</h2><table class="farm-provenance">{body}</table>'


def summary_sections(result: RunResult, trends: dict[str, dict[str, list[tuple]]]) -> list[str]:
    sections = [summary_matrix(result), *filter(None, [notes(result)]), model_section(result),
                *filter(None, [explanation_section(result)])]
    plots = [p for p in (latency_plot(result), speedup_plot(result), trend_plot(trends)) if p]
    if plots:
        sections.append("<h2>Plots</h2>" + "".join(plots))
    sections.append(provenance(result))
    return sections
