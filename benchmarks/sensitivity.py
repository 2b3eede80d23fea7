"""What the per-layer sensitivity analysis costs on each demo: seconds and peak RSS.

Each demo (digits, blazeface, vad, facemesh under models/) in a fresh subprocess:
its FP32 board files built, then farm/build/sensitivity.py's `analyse` (activation
error per layer on at most SAMPLE_CAP calibration samples, then GROUP_CAP layers
quantized one at a time on the judged outputs). Prints the layers analysed, the
samples fed, the analysis's wall seconds, the subprocess's peak RSS (its own
ru_maxrss: the FP32 build included) and the five most sensitive layers. The
machine is shared: run it niced.

    nice -n 10 .venv/bin/python benchmarks/sensitivity.py [--models blazeface,vad]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMOS = ("digits", "blazeface", "vad", "facemesh")

ONE = r"""
import json, sys, time
from pathlib import Path
from farm import resources
from farm.build.loading import load_model_and_data
from farm.build.sensitivity import analyse
from farm.build.quantizers import Recipe
from farm.build.variants import build_variants, check_calibration

name, out = sys.argv[1], Path(sys.argv[2])
folder = Path(sys.argv[3]) / name
if name == "digits":
    model, data, spec = resources.demo_model(), resources.demo_data(), None
else:
    model, data, spec = folder / f"{name}.onnx", folder / f"{name}.npz", folder / f"{name}.farm.yaml"
info, data, spec = load_model_and_data(model, data, spec)
manifest = build_variants(info, data, spec, out, variants=["fp32"])
count = check_calibration(data, Recipe(), True)
started = time.monotonic()
fp32 = manifest["variants"]["fp32"]["host"]["accuracy"]
doc = analyse(info, data, spec, Recipe(), count, out, manifest["files"], fp32)
doc["wall_s"] = time.monotonic() - started
print(json.dumps(doc))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEMOS))
    args = parser.parse_args()
    print(f"{'model':<10}{'layers':>7}{'samples':>8}{'analyse s':>10}{'peak RSS MB':>12}  most sensitive (worst loss "
          "ratio with only it in INT8; 1 = at the limit)")
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory(prefix="farm-bench-sens-") as tmp:
            started = time.monotonic()
            proc = subprocess.run([sys.executable, "-c", ONE, name, tmp, str(REPO / "models")], capture_output=True,
                                  text=True, cwd=REPO)
            wall = time.monotonic() - started
            if proc.returncode != 0:
                print(f"{name:<10} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else '?'}")
                continue
            doc = json.loads(proc.stdout.strip().splitlines()[-1])
            top = ", ".join(f"{x['layer']} {x['alone']['worst_ratio']:.2f}" for x in doc["layers"][:5] if "alone" in x)
            print(f"{name:<10}{len(doc['layers']):>7}{doc['samples']:>8}{doc['wall_s']:>10.1f}"
                  f"{doc['peak_rss_mb']:>12.0f}  {top}"
                  f"   (whole subprocess {wall:.0f} s)")


if __name__ == "__main__":
    main()
