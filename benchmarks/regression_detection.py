"""Regression detection over 20 nights: change points against today's pairwise rule, side by side.

Two pools of one-core stand-ins share one history. Pool `steady` runs the same
model every night; pool `changed` runs it for 10 nights, then from night 11 the
same model (same name) with about 25 % more work. Each night is a real
`farm nightly` (3 agent processes, the stand-ins' noise rule p50:30%,p95:60%).
From each night's regression check this prints when each method first flagged
the changed board and how many nights it flagged on unchanged ones: the change
point test (`change since baseline` in the check's details) and the pairwise
rule (the latency figures' verdicts), from the same runs.

    .venv/bin/python benchmarks/regression_detection.py [--nights 20] [--change-at 11]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from helpers import heavier  # noqa: E402  (the same model, more work, same name and outputs)

DIGITS = REPO / "models" / "digits"


def host_p50(model: Path) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # as the one-core stand-ins run it: the slowdown is theirs
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.load(DIGITS / "digits.npz")["evaluation"][:1].astype("float32")}
    for _ in range(20):
        session.run(None, feed)
    times = []
    for _ in range(300):
        began = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - began)
    return float(np.median(times))


def pick_models(folder: Path, slowdown: float) -> tuple[Path, Path, float]:
    """The steady model and the one whose host p50 is nearest `slowdown` times it."""
    steady = heavier(DIGITS / "digits.onnx", folder / "steady" / "digits.onnx", tiles=12)
    base = host_p50(steady)
    best = None
    for tiles in range(13, 20):
        candidate = heavier(DIGITS / "digits.onnx", folder / f"t{tiles}" / "digits.onnx", tiles=tiles)
        ratio = host_p50(candidate) / base
        if best is None or abs(ratio - slowdown) < abs(best[1] - slowdown):
            best = (candidate, ratio)
    return steady, best[0], best[1]


def regression_of(results: dict) -> dict[str, dict]:
    """board -> which methods flagged fp32 that night."""
    flagged = {}
    for board in results["boards"]:
        check = next((c for c in board["variants"].get("fp32", {}).get("checks", []) if c["item"] == "regression"),
                     None)
        details = (check or {}).get("details") or []
        flagged[board["name"]] = {
            "status": (check or {}).get("status"),
            "change": any(d.get("figure") == "change since baseline" and d["verdict"] == "regression"
                          for d in details),
            "pairwise": any(d.get("unit") == "ms" and d.get("figure") != "change since baseline"
                            and d["verdict"] == "regression" for d in details)}
    return flagged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=20)
    parser.add_argument("--change-at", type=int, default=11)
    parser.add_argument("--slowdown", type=float, default=1.25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="farm-regress-", dir="/tmp") as tmp:
        folder = Path(tmp)
        folder.chmod(0o755)
        steady, slower, ratio = pick_models(folder / "models", args.slowdown)
        print(f"injected slowdown: {ratio:.2f}x host p50 at one thread ({slower.parent.name} tiles vs 12), "
              f"from night {args.change_at}")
        (folder / "lab.yaml").write_text(textwrap.dedent("""
            standins:
              - {name: steady-1, cores: 1, pools: [steady], regression_rule: "p50:30%,p95:60%"}
              - {name: steady-2, cores: 1, pools: [steady], regression_rule: "p50:30%,p95:60%"}
              - {name: changed-1, cores: 1, pools: [changed], regression_rule: "p50:30%,p95:60%"}
            """))
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("FARM_")},
               "FARM_LAB_DIR": str(folder / "lab")}
        farm = [sys.executable, "-m", "farm"]
        subprocess.run([*farm, "lab", "up", "--inventory", "lab.yaml"], cwd=folder, env=env, check=True,
                       capture_output=True)
        nights: list[dict[str, dict]] = []
        try:
            for night in range(1, args.nights + 1):
                flagged = {}
                for pool in ("steady", "changed"):
                    model = slower if pool == "changed" and night >= args.change_at else steady
                    out = folder / "results"
                    subprocess.run([*farm, "nightly", "--pool", pool, "--inventory", "lab.yaml", "--model", str(model),
                                    "--data", str(DIGITS / "digits.npz"), "--variants", "fp32", "--runs", "200",
                                    "--rounds", "3", "--out", str(out), "--history", str(folder / "history.sqlite")],
                                   cwd=folder, env=env, capture_output=True)
                    flagged.update(regression_of(json.loads((out / "latest" / "results.json").read_text())))
                nights.append(flagged)
                print(f"night {night:>2}: " + "  ".join(
                    f"{b} {f['status']}{' C' if f['change'] else ''}{' P' if f['pairwise'] else ''}"
                    for b, f in sorted(flagged.items())), flush=True)
        finally:
            subprocess.run([*farm, "lab", "down"], cwd=folder, env=env, capture_output=True)
        print(f"\n{'method':<28}{'changed board: first flagged':>30}{'then flagged':>14}"
              f"{'false alarms (unchanged nights)':>34}")
        for method in ("change", "pairwise"):
            first = next((n for n, f in enumerate(nights, 1) if n >= args.change_at and f["changed-1"][method]), None)
            false = sum(f[b][method] for n, f in enumerate(nights, 1) for b in f
                        if b.startswith("steady") or n < args.change_at)
            unchanged = sum(1 for n, f in enumerate(nights, 1) for b in f
                            if b.startswith("steady") or n < args.change_at)
            when = f"night {first} ({first - args.change_at + 1} run(s) after)" if first else "never"
            changed = [f["changed-1"][method] for n, f in enumerate(nights, 1) if n >= args.change_at]
            print(f"{'change points' if method == 'change' else 'pairwise rule':<28}{when:>30}"
                  f"{f'{sum(changed)} of {len(changed)}':>14}{f'{false} of {unchanged}':>34}")


if __name__ == "__main__":
    main()
