"""signoff.html: the signed record, for people. The record and its signature are what count."""

from __future__ import annotations

import html


def _e(value) -> str:
    return html.escape("-" if value is None else str(value))


def _rows(cells: list[list]) -> str:
    return "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in cells)


def render(record: dict) -> str:
    signer, model, policy = record["signer"], record["model"], record["policy"]
    boards = _rows([[b["name"], b["class"], b["address"], b["host_key"], "yes" if b["on_controller"] else "no",
                     b["qemu_cpu"] if b["emulated"] else "no", (b.get("facts") or {}).get("cpu")]
                    for b in record["boards"]])
    verdicts = _rows([[b["name"], variant, c["item"], c["status"], c["value"], f"{_e(c['limit'])} {c['unit']}".strip(),
                       c["why"]]
                      for b in record["boards"] for variant, checks in b["verdicts"].items() for c in checks])
    variants = _rows([[name, sha] for name, sha in model["variants"].items()])
    rules = _rows([[name, value] for name, value in policy["rules"].items()])
    files = _rows([[name, sha] for name, sha in record["files"].items()])
    notes = "".join(f"<li>{_e(n)}</li>" for n in policy["notes"])
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>farm sign-off {_e(record['run_id'])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:80em}}td,th{{border:1px solid #ccc;padding:3px 8px;
text-align:left}}table{{border-collapse:collapse;margin-bottom:1.5em}}code{{font-size:90%}}
.notes{{background:#fff4ce;padding:.5em 1em}}</style></head><body>
<h1>Sign-off: {_e(model['name'])}</h1>
<p>Signed by <b>{_e(signer['principal'])}</b> (key <code>{_e(signer['key'])}</code>, namespace
<code>{_e(signer['namespace'])}</code>) at {_e(record['signed_at'])} for run <code>{_e(record['run_id'])}</code>.</p>
<p>{_e(record.get('note') or '')}</p>
<h2>Model</h2><p>sha256 <code>{_e(model['sha256'])}</code></p>
<table><tr><th>variant</th><th>sha256</th></tr>{variants}</table>
<h2>Checklist and release policy</h2>
<p>{_e(record['checklist']['name'])} (<code>{_e(record['checklist']['file'])}</code>, sha256
<code>{_e(record['checklist']['sha256'])}</code>); boards counted: {_e(', '.join(policy['counted']))}</p>
<table><tr><th>rule</th><th>value</th></tr>{rules}</table>
{f'<ul class="notes">{notes}</ul>' if notes else ''}
<h2>Boards</h2>
<table><tr><th>board</th><th>class</th><th>address</th><th>host key</th><th>on the controller</th><th>emulated</th>
<th>cpu</th></tr>{boards}</table>
<h2>Verdicts (judged again from the raw figures at signing)</h2>
<table><tr><th>board</th><th>variant</th><th>item</th><th>status</th><th>value</th><th>limit</th><th>why</th></tr>
{verdicts}</table>
<h2>Files of the run</h2><table><tr><th>file</th><th>sha256</th></tr>{files}</table>
<p>Check it: <code>farm signoff verify {_e(record['run_id'])}/signoff.json --model MODEL.onnx</code> (the signature
against allowed_signers, the files beside it, every verdict judged again from the recorded figures).</p>
</body></html>
"""
