"""What a board has: its Python, numpy, onnxruntime and their providers, asked of the board's own Python."""

from __future__ import annotations

import json

from farm.board.transport import Transport
from farm.errors import BoardError

# Fixed text, no user input; runs on Python >= 3 and says what is missing rather than failing.
PROBE_SCRIPT = r'''
import json, os, platform, sys, time
facts = {"python": platform.python_version(), "machine": platform.machine(), "missing": [], "now": int(time.time())}
try:
    with open(os.path.join(sys.argv[1], "farm.lock")) as handle:
        facts["lock"] = handle.read().strip()
except (IndexError, OSError):
    pass
if sys.version_info < (3, 8):
    facts["missing"].append("Python >= 3.8 (found %s)" % facts["python"])
for name in ("numpy", "onnxruntime"):
    try:
        module = __import__(name)
        facts[name] = module.__version__
    except Exception as exc:
        facts["missing"].append("%s (%s)" % (name, exc))
if "onnxruntime" in facts:
    facts["providers_available"] = module.get_available_providers()
print(json.dumps(facts))
'''


def probe(transport: Transport, workdir: str) -> dict:
    """The board's facts (`lock`: its lock file, if any), `missing` listing what a measurement needs."""
    board = transport.board
    result = transport.run([board.python, "-c", PROBE_SCRIPT, workdir], deadline_s=60)
    if not result.ok:
        raise BoardError(f"{board.name}: {board.python!r} does not run on the board: {result.tail()}", "not-ready")
    try:
        facts = json.loads(result.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError) as exc:
        raise BoardError(f"{board.name}: probe printed no facts: {result.tail()}", "not-ready") from exc
    return facts


def require_ready(transport: Transport, facts: dict) -> None:
    """BoardError `not-ready` naming what is missing for the board's Python."""
    board = transport.board
    if facts["missing"]:
        raise BoardError(f"{board.name}: not ready: missing {', '.join(facts['missing'])} for {board.python}",
                         "not-ready")
