"""Does the agent time inference as faithfully as a bare onnxruntime loop?

For each demo model variant: the agent's p50 against a bare loop (same model,
threads, input, warm-up and run count, each in a fresh subprocess like the
agent), alternating over several rounds so that machine drift hits both alike.
Prints both medians, their ratio (aim 0.97-1.03) and both CVs.

    .venv/bin/python benchmarks/agent_fidelity.py [--runs 300] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from farm import resources  # noqa: E402
from farm.board.agent import agent_argv  # noqa: E402
from farm.build.variants import build  # noqa: E402
from farm.config.settings import Measurement  # noqa: E402

BARE_LOOP = r"""
import json, sys, time
import numpy as np, onnxruntime as ort
model, data, threads, warmup, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
options = ort.SessionOptions()
options.intra_op_num_threads = threads
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
spec = session.get_inputs()[0]
feeds = {spec.name: np.load(data)["evaluation"][:1].astype(np.float32)}
session.run(None, feeds)
for _ in range(warmup):
    session.run(None, feeds)
samples = []
for _ in range(runs):
    start = time.perf_counter_ns()
    session.run(None, feeds)
    samples.append((time.perf_counter_ns() - start) / 1e6)
print(json.dumps(samples))
"""


def bare(model: Path, data: Path, threads: int, warmup: int, runs: int) -> list[float]:
    out = subprocess.run([sys.executable, "-c", BARE_LOOP, str(model), str(data), str(threads), str(warmup),
                          str(runs)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def agent(model: Path, data: Path, measurement: Measurement) -> list[float]:
    argv = agent_argv(sys.executable, str(resources.agent()), str(model), measurement, data=str(data))
    doc = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    return doc["samples_ms"]


def cv(samples: list[float]) -> float:
    return statistics.stdev(samples) / statistics.mean(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    demo = REPO / "models" / "digits"
    with tempfile.TemporaryDirectory() as tmp:
        manifest = build(demo / "digits.onnx", demo / "digits.npz", tmp, host_figures=False)
        measurement = Measurement(warmup=args.warmup, runs=args.runs, threads=args.threads)
        print(f"{'variant':<14}{'agent p50':>11}{'bare p50':>10}{'ratio':>8}{'agent CV':>10}{'bare CV':>9}")
        for variant, entry in manifest["variants"].items():
            model = Path(tmp) / entry["file"]
            agent_p50, bare_p50, agent_cv, bare_cv = [], [], [], []
            for _ in range(args.rounds):
                a = agent(model, demo / "digits.npz", measurement)
                b = bare(model, demo / "digits.npz", args.threads, args.warmup, args.runs)
                agent_p50.append(statistics.median(a))
                bare_p50.append(statistics.median(b))
                agent_cv.append(cv(a))
                bare_cv.append(cv(b))
            ap, bp = statistics.median(agent_p50), statistics.median(bare_p50)
            print(f"{variant:<14}{ap:>10.4f} {bp:>9.4f} {ap / bp:>7.3f}{statistics.median(agent_cv):>10.3f}"
                  f"{statistics.median(bare_cv):>9.3f}")
        print(f"(medians over {args.rounds} alternating rounds of {args.runs} runs, {args.threads} thread(s); ms)")


if __name__ == "__main__":
    main()
