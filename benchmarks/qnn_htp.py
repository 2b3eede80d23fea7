"""What the HTP's arithmetic does to a QNN variant, and what its context binary saves at load.

Builds the digits demo's QNN variants with farm's recipe (`farm quantize`), then for each: the largest
absolute output difference between Qualcomm's HTP backend (simulated on x86_64) and the CPU provider
running the same QDQ model, their argmax agreement, and the first load in a fresh process with and
without the context binary farm builds (each alternated over rounds, so that machine drift hits both).

    pip install -e '.[qnn]' && .venv/bin/python benchmarks/qnn_htp.py [--samples 20] [--rounds 3]
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
from farm.build.toolchains.qnn import context_binary  # noqa: E402
from farm.build.variants import build  # noqa: E402

COMPARE = r"""
import json, sys, time
import numpy as np, onnxruntime as ort, onnxruntime_qnn as q
model, data, samples, load_only = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
ort.register_execution_provider_library("QNNExecutionProvider", q.get_library_path())
devices = [d for d in ort.get_ep_devices() if d.ep_name == "QNNExecutionProvider"]
options = ort.SessionOptions()
options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
options.add_provider_for_devices(devices, {"backend_path": q.get_qnn_htp_path()})
start = time.perf_counter()
htp = ort.InferenceSession(model, options)
load_ms = (time.perf_counter() - start) * 1e3
if load_only:
    print(json.dumps({"load_ms": load_ms})); sys.exit()
cpu = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
images = np.load(data)["evaluation"][:samples]
diff, agree = 0.0, 0
for image in images:
    a, b = htp.run(None, {"image": image[None]})[0], cpu.run(None, {"image": image[None]})[0]
    diff, agree = max(diff, float(np.abs(a - b).max())), agree + int(a.argmax() == b.argmax())
print(json.dumps({"load_ms": load_ms, "max_abs_diff": diff, "argmax_agreement": agree / len(images)}))
"""


def child(*args) -> dict:
    proc = subprocess.run([sys.executable, "-c", COMPARE, *map(str, args)], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="farm-bench-qnn-") as tmp:
        manifest = build(resources.demo_model(), resources.demo_data(), tmp, variants=["fp32", "int8_qnn", "a16w8_qnn"],
                         host_figures=False)
        print(f"{'variant':<10} {'max abs diff':>12} {'argmax agree':>12} {'load ms (no ctx)':>17} "
              f"{'load ms (ctx)':>14}")
        for variant in ("int8_qnn", "a16w8_qnn"):
            entry = manifest["variants"][variant]
            model = Path(tmp) / entry["file"]
            context = context_binary(model, entry["sha256"], {}, Path(tmp))
            figures = child(model, resources.demo_data(), args.samples, 0)
            plain, with_context = [], []
            for _ in range(args.rounds):
                plain.append(child(model, resources.demo_data(), 0, 1)["load_ms"])
                with_context.append(child(context.path, resources.demo_data(), 0, 1)["load_ms"])
            print(f"{variant:<10} {figures['max_abs_diff']:>12.4f} {figures['argmax_agreement']:>12.2%} "
                  f"{statistics.median(plain):>17.1f} {statistics.median(with_context):>14.1f}")
        print(f"(median of {args.rounds} fresh processes; diff over {args.samples} evaluation samples)")


if __name__ == "__main__":
    main()
