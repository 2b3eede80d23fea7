"""What quiets a stand-in on a shared machine: pinning, nice, a core away from the controller, side by side.

Each setting runs the board agent as its own process (as a stand-in does), 8 times, interleaved
with the other settings so that drift on the machine hits them all alike; a busy controller is
simulated by one thread of numpy work on the machine while half the processes run. Printed per
setting: the spread of p50 and p95 between processes (max/min and the coefficient of variation),
the median within-process CV, and the ratio to the unpinned setting.

    .venv/bin/python benchmarks/standin_noise.py [--processes 8] [--runs 400]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from helpers import heavier  # noqa: E402  (the digits model plus work: about 1 ms, timing well above the clock)

LAST = (os.cpu_count() or 1) - 1
SETTINGS = {
    "unpinned": [],
    "pinned core 0": ["taskset", "-c", "0"],
    f"pinned core {LAST}": ["taskset", "-c", str(LAST)],
    f"pinned core {LAST}, nice -10": ["taskset", "-c", str(LAST), "nice", "-n", "-10"],
}
CONTROLLER = ("import numpy as np, time\nend = time.time() + 600\na = np.random.rand(300, 300)\n"
              "while time.time() < end:\n    a @ a\n    time.sleep(0.002)\n")


def agent(prefix: list[str], model: Path, runs: int) -> dict:
    out = subprocess.run([*prefix, sys.executable, str(REPO / "agents" / "farm_agent.py"), "--model", str(model),
                          "--min-runs", str(runs), "--warmup", "20", "--threads", "1"],
                         capture_output=True, text=True, check=True, timeout=600)
    return json.loads(out.stdout)["latency_ms"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--runs", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = heavier(REPO / "models" / "digits" / "digits.onnx", Path(tmp) / "digits.onnx", tiles=12)
        found: dict[str, list[dict]] = {name: [] for name in SETTINGS}
        for i in range(args.processes):
            busy = subprocess.Popen([sys.executable, "-c", CONTROLLER]) if i % 2 else None
            try:
                for name, prefix in SETTINGS.items():
                    found[name].append(agent(prefix, model, args.runs))
            finally:
                if busy:
                    busy.kill()
    base = None
    print(f"{'setting':<28}{'p50 max/min':>12}{'p50 CV':>9}{'p95 max/min':>13}{'p95 CV':>9}{'within CV':>11}"
          f"{'p50 CV vs unpinned':>20}")
    for name, stats in found.items():
        p50, p95 = [s["p50"] for s in stats], [s["p95"] for s in stats]
        cv = statistics.stdev(p50) / statistics.mean(p50)
        base = base or cv
        print(f"{name:<28}{max(p50) / min(p50):>12.2f}{cv:>9.3f}{max(p95) / min(p95):>13.2f}"
              f"{statistics.stdev(p95) / statistics.mean(p95):>9.3f}{statistics.median(s['cv'] for s in stats):>11.3f}"
              f"{cv / base:>20.2f}")


if __name__ == "__main__":
    main()
