"""What a board has: its Python, numpy, onnxruntime and their providers, asked of the board's own Python."""

from __future__ import annotations

import json

from farm.board.transport import Transport
from farm.errors import BoardError
from farm.statuses import BoardStatus

# Fixed text, no user input; runs on Python >= 3 and says what is missing rather than failing.
# Importing numpy and onnxruntime costs a board about 0.25 CPU-s here (seconds on a Cortex-A53), so
# what only the imports can tell (versions, providers) is cached in the workdir, keyed by the
# interpreter and each package's location and modification time: found without importing anything.
PROBE_SCRIPT = r'''
import json, os, sys, time
facts = {"python": "%d.%d.%d" % sys.version_info[:3], "machine": os.uname()[4], "missing": [], "now": int(time.time())}
try:  # one per kernel boot: a board that shares the controller's kernel is the controller
    with open("/proc/sys/kernel/random/boot_id") as handle:
        facts["kernel_boot_id"] = handle.read().strip()
except OSError:
    facts["kernel_boot_id"] = None
# what changes when the board reboots (a stand-in's: when its sshd restarts)
facts["boot_id"] = os.environ.get("FARM_BOOT_ID") or facts["kernel_boot_id"]
workdir = sys.argv[1] if len(sys.argv) > 1 else None
try:
    with open(os.path.join(workdir, "farm.lock")) as handle:
        facts["lock"] = handle.read().strip()
except (TypeError, OSError):
    pass
if sys.version_info < (3, 8):
    facts["missing"].append("Python >= 3.8 (found %s)" % facts["python"])
key = [sys.executable, sys.version]
try:
    import importlib.util
    for name in ("numpy", "onnxruntime"):
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None and spec.origin else None
        state = os.stat(os.path.dirname(origin)) if origin else None
        key.append([name, origin, state.st_ino if state else None, state.st_mtime_ns if state else None])
except Exception as exc:
    key.append(repr(exc))
cache = os.path.join(workdir, ".probe-cache.json") if workdir else None
try:
    with open(cache) as handle:
        kept = json.load(handle)
except (TypeError, OSError, ValueError):
    kept = {}
if kept.get("key") == key:
    facts.update(kept["facts"])
    facts["probe_cached"] = True
else:
    found = {"missing": []}
    module = None
    for name in ("numpy", "onnxruntime"):
        try:
            module = __import__(name)
            found[name] = module.__version__
        except Exception as exc:
            found["missing"].append("%s (%s)" % (name, exc))
    if "onnxruntime" in found:
        found["providers_available"] = module.get_available_providers()
    facts["missing"] += found.pop("missing")
    facts.update(found)
    facts["probe_cached"] = False
    if cache and not facts["missing"] and os.path.isdir(workdir):
        try:
            partial = "%s.%d" % (cache, os.getpid())
            with open(partial, "w") as handle:
                json.dump({"key": key, "facts": found}, handle)
            os.rename(partial, cache)
        except OSError:
            pass
print(json.dumps(facts))
'''


# The same boot id, asked without Python: a board that has just come back may not be ready for more.
BOOT_ID = ["sh", "-c", 'echo "${FARM_BOOT_ID:-$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)}"']


def boot_id(transport: Transport) -> str | None:
    """What the board says its boot is; None when it does not say."""
    result = transport.run(BOOT_ID, deadline_s=15)
    return (result.stdout.strip() or None) if result.ok else None


def probe(transport: Transport, workdir: str) -> dict:
    """The board's facts (`lock`: its lock file, if any), `missing` listing what a measurement needs."""
    board = transport.board
    result = transport.run([board.python, "-c", PROBE_SCRIPT, workdir], deadline_s=60)
    if not result.ok:
        raise BoardError(f"{board.name}: {board.python!r} does not run on the board: {result.tail()}",
                         BoardStatus.NOT_READY)
    try:
        facts = json.loads(result.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError) as exc:
        raise BoardError(f"{board.name}: probe printed no facts: {result.tail()}", BoardStatus.NOT_READY) from exc
    return facts


def require_ready(transport: Transport, facts: dict) -> None:
    """BoardError `not-ready` naming what is missing for the board's Python."""
    board = transport.board
    if facts["missing"]:
        raise BoardError(f"{board.name}: not ready: missing {', '.join(facts['missing'])} for {board.python}",
                         BoardStatus.NOT_READY)
