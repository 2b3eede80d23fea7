"""What quantization buys, and what calibration costs in memory, on this machine.

Part 1, per demo model (models/*/, with its spec where it has one): file size,
host p50 at 1 and 2 threads (the agent, run here, latency mode), speedup over FP32,
each judged output's loss, and the peak RSS of building static INT8 (a process of
its own: `farm quantize --variants int8_static`).

Part 2, a detector-sized case: a conv net at 3x640x640 (architecture only, seeded
weights) calibrated on 100 real photographs (the BlazeFace demo's images, upsampled):
peak RSS of farm's calibration (chunked: CalibStridedMinMax) for minmax and
entropy, beside onnxruntime's single collection pass, which keeps every
intermediate tensor of every sample for the histogram methods (run on fewer
samples: it grows by the per-sample figure printed). Aim: farm < 2 GB.

    .venv/bin/python benchmarks/quantize.py [--runs 200] [--skip-demos]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from farm.board.agent import AgentFiles, run_agent_here  # noqa: E402
from farm.build.variants import build  # noqa: E402
from farm.config.settings import Measurement  # noqa: E402

# Run in a process of its own: its peak RSS is the build's alone.
FARM_STATIC = r"""
import resource, sys
from farm.build.loading import load_model_and_data
from farm.build.variants import Recipe, build_variants
model, data, spec, out, method = sys.argv[1:6]
info, dataset, found = load_model_and_data(model, data, None if spec == "-" else spec)
entry = build_variants(info, dataset, found, out, variants=["int8_static"], recipe=Recipe(calibration_method=method),
                       host_figures=False)["variants"]["int8_static"]
assert entry["status"] == "ok", entry["reason"]
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
ORT_ONE_PASS = r"""
import resource, sys
import numpy as np
from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static
model, data, out, method, count = sys.argv[1:6]
arrays = np.load(data)["calibration"][:int(count)]
class Reader:
    def __init__(self):
        self.rows = iter(arrays)
    def get_next(self):
        row = next(self.rows, None)
        return None if row is None else {"image": row[None]}
methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy}
quantize_static(model, out, Reader(), quant_format=QuantFormat.QDQ, calibrate_method=methods[method])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def peak_mb(script: str, *args) -> float:
    proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return float(proc.stdout.strip().splitlines()[-1])


def demo(folder: Path, work: Path, runs: int) -> None:
    name = folder.name
    spec = folder / f"{name}.farm.yaml"
    spec_path = spec if spec.exists() else None
    manifest = build(folder / f"{name}.onnx", folder / f"{name}.npz", work / name, spec_path=spec_path)
    files = manifest["files"]
    p50 = {}
    for variant, entry in manifest["variants"].items():
        if entry["status"] == "failed":
            print(f"{name:<11}{variant:<14}failed: {entry['reason']}")
            continue
        agent = AgentFiles(str(work / name / entry["file"]), spec=str(work / name / files["spec"]["file"]),
                           feed=str(work / name / files["feed"]["file"]))
        for threads in (1, 2):
            doc = run_agent_here(agent, Measurement(warmup=20, runs=runs, threads=threads), "latency")
            p50[variant, threads] = doc["latency_ms"]["p50"]
    calibration = peak_mb(FARM_STATIC, folder / f"{name}.onnx", folder / f"{name}.npz", spec_path or "-",
                          work / f"{name}-static", "minmax")
    for variant, entry in manifest["variants"].items():
        if (variant, 1) not in p50:
            continue
        speed = [p50["fp32", t] / p50[variant, t] for t in (1, 2)]
        losses = ", ".join(f"{r['output']} {r['loss']:.3g}{r['unit']}" for r in entry["host"].get("losses", [])
                           if r["loss"] is not None)
        shown = entry["status"] if entry["status"] != "ok" else ""
        print(f"{name:<11}{variant:<14}{entry['size_bytes'] / 1e6:>7.2f}{p50[variant, 1]:>9.3f}{p50[variant, 2]:>9.3f}"
              f"{speed[0]:>7.2f}x{speed[1]:>6.2f}x  {shown:<6}{losses}"
              + (f"  (static calibration peak {calibration:.0f} MB)" if variant == "int8_static" else ""))


def detector_sized(work: Path, samples: int = 100, one_pass_samples: int = 25) -> None:
    """A conv net at 3x640x640 and 100 real photographs: what calibration holds in memory."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, weights, previous, channels = [], [], "image", 3
    for index, (out, stride) in enumerate(((16, 1), (32, 2), (64, 2), (64, 2), (64, 2))):
        kernel = (rng.normal(size=(out, channels, 3, 3)) * np.sqrt(2 / (channels * 9))).astype(np.float32)
        weights.append(numpy_helper.from_array(kernel, f"k{index}"))
        nodes += [helper.make_node("Conv", [previous, f"k{index}"], [f"c{index}"], pads=[1, 1, 1, 1],
                                   strides=[stride, stride]),
                  helper.make_node("Relu", [f"c{index}"], [f"r{index}"])]
        previous, channels = f"r{index}", out
    head = (rng.normal(size=(1, channels, 1, 1)) * 0.1).astype(np.float32)
    weights.append(numpy_helper.from_array(head, "head"))
    nodes += [helper.make_node("Conv", [previous, "head"], ["logit"]), helper.make_node("Sigmoid", ["logit"], ["map"])]
    graph = helper.make_graph(nodes, "detector640", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                                   [1, 3, 640, 640])],
                              [helper.make_tensor_value_info("map", TensorProto.FLOAT, [1, 1, 80, 80])],
                              initializer=weights)
    model = work / "detector640.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    photos = np.load(REPO / "models" / "blazeface" / "blazeface.npz")
    real = np.concatenate([photos["calibration"], photos["evaluation"]]).astype(np.float32)
    upsampled = real.repeat(5, axis=2).repeat(5, axis=3)  # 128 -> 640, the photographs' own pixels
    data = work / "detector640.npz"
    np.savez(data, calibration=upsampled[:samples], evaluation=upsampled[samples:samples + 4])
    per_sample_mb = upsampled[0].nbytes / 1e6
    print(f"\ndetector-sized case: 3x640x640 input ({per_sample_mb:.1f} MB a sample), {samples} calibration samples")
    for method in ("minmax", "entropy"):
        farm_peak = peak_mb(FARM_STATIC, model, data, "-", work / f"static-{method}", method)
        print(f"  farm quantize int8_static, {method:<8} {samples:>4} samples: peak RSS {farm_peak:7.0f} MB")
    for count in (one_pass_samples // 2, one_pass_samples):
        ort_peak = peak_mb(ORT_ONE_PASS, model, data, work / f"ort-{count}.onnx", "entropy", count)
        print(f"  onnxruntime one pass,     entropy  {count:>4} samples: peak RSS {ort_peak:7.0f} MB")
        if count == one_pass_samples // 2:
            first = ort_peak
    growth = (ort_peak - first) / (one_pass_samples - one_pass_samples // 2)
    print(f"  (onnxruntime's single pass grows {growth:.0f} MB a sample: about {first + growth * (samples - one_pass_samples // 2):.0f} "
          f"MB at {samples}; farm collects in chunks of at most 8 steps and merges)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--skip-demos", action="store_true", help="only the detector-sized calibration case")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="farm-bench-") as tmp:
        work = Path(tmp)
        if not args.skip_demos:
            print(f"{'model':<11}{'variant':<14}{'MB':>7}{'p50 1t':>9}{'p50 2t':>9}{'x 1t':>8}{'x 2t':>7}  loss per judged "
                  "output (host, against the host's FP32)")
            for folder in sorted(p.parent for p in (REPO / "models").glob("*/build.py")):
                demo(folder, work, args.runs)
        detector_sized(work)


if __name__ == "__main__":
    main()
