"""What quantization buys, and what calibration costs in memory, on this machine.

Part 1, per demo model (models/*/, with its spec where it has one): file size,
host p50 at 1 and 2 threads (the agent, run here, latency mode), speedup over FP32,
each judged output's loss, and the peak RSS of building static INT8 (a process of
its own: `farm quantize --variants int8_static`).

Part 2, a real-size detector: a DB text detector's architecture at 3x640x640
(MobileNetV3 backbone with squeeze-excite, FPN, ConvTranspose head; seeded weights)
calibrated on 100 real photographs (the BlazeFace demo's images, upsampled):
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
from farm.build.quantizers import Recipe
from farm.build.variants import build_variants
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


class Graph:
    """A growing ONNX graph with seeded weights: enough to write a real-size architecture in a few lines."""

    def __init__(self, seed: int = 0):
        self.rng, self.nodes, self.weights, self.count = np.random.default_rng(seed), [], [], 0

    def name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}_{self.count}"

    def op(self, op_type: str, inputs: list, **attributes) -> str:
        from onnx import helper

        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attributes))
        return out

    def const(self, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name("w")
        self.weights.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def conv(self, x: str, cin: int, cout: int, k: int = 1, stride: int = 1, group: int = 1) -> str:
        kernel = self.rng.normal(size=(cout, cin // group, k, k)) * np.sqrt(2 / (cin // group * k * k))
        return self.op("Conv", [x, self.const(kernel), self.const(np.zeros(cout))], kernel_shape=[k, k],
                       strides=[stride, stride], pads=[k // 2] * 4, group=group)

    def hardswish(self, x: str) -> str:
        return self.op("Mul", [x, self.op("HardSigmoid", [x], alpha=1 / 6, beta=0.5)])

    def block(self, x: str, cin: int, expand: int, cout: int, stride: int, se: bool) -> str:
        """MobileNetV3's inverted residual: expand, depthwise, squeeze-excite, project."""
        y = self.hardswish(self.conv(x, cin, expand))
        y = self.hardswish(self.conv(y, expand, expand, 3, stride, group=expand))
        if se:
            squeeze = self.op("Relu", [self.conv(self.op("GlobalAveragePool", [y]), expand, expand // 4)])
            y = self.op("Mul", [y, self.op("HardSigmoid", [self.conv(squeeze, expand // 4, expand)],
                                           alpha=1 / 6, beta=0.5)])
        y = self.conv(y, expand, cout)
        return self.op("Add", [x, y]) if stride == 1 and cin == cout else y


def real_size_detector(path: Path, side: int = 640) -> Path:
    """A DB text detector's architecture (MobileNetV3 backbone, FPN neck, ConvTranspose head; the text
    detector the memory figures of docs/quantization.md were first seen on), seeded weights: its activations at 640x640
    are what calibration holds, whatever the weights."""
    import onnx
    from onnx import TensorProto, helper

    g = Graph()
    x = g.hardswish(g.conv("image", 3, 16, 3, 2))
    levels = []
    stages = [(16, 64, 24, 2, False), (24, 72, 24, 1, False),  # 1/4
              (24, 72, 40, 2, True), (40, 120, 40, 1, True), (40, 120, 40, 1, True),  # 1/8
              (40, 240, 80, 2, False), (80, 200, 80, 1, False), (80, 184, 80, 1, False), (80, 480, 112, 1, True),
              (112, 672, 112, 1, True),  # 1/16
              (112, 672, 160, 2, True), (160, 960, 160, 1, True), (160, 960, 160, 1, True)]  # 1/32
    for index, (cin, expand, cout, stride, se) in enumerate(stages):
        x = g.block(x, cin, expand, cout, stride, se)
        if index in (1, 4, 9, 12):
            levels.append((x, cout))
    inner = [g.conv(f, c, 96) for f, c in levels]
    for i in range(len(inner) - 2, -1, -1):  # top-down: each level plus the one above, upsampled
        scales = g.const(np.array([1, 1, 2, 2]))
        inner[i] = g.op("Add", [inner[i], g.op("Resize", [inner[i + 1], "", scales], mode="nearest")])
    outs = [g.conv(f, 96, 24, 3) for f in inner]
    outs = [g.op("Resize", [o, "", g.const(np.array([1, 1, 2 ** i, 2 ** i]))], mode="nearest") if i else o
            for i, o in enumerate(outs)]
    fused = g.op("Concat", outs, axis=1)
    head = g.op("Relu", [g.conv(fused, 96, 24, 3)])
    for cin, cout in ((24, 24), (24, 1)):
        kernel = g.const(g.rng.normal(size=(cin, cout, 2, 2)) * np.sqrt(2 / (cin * 4)))
        head = g.op("ConvTranspose", [head, kernel, g.const(np.zeros(cout))], strides=[2, 2])
    g.nodes[-1].output[0] = "logit"
    g.op("Sigmoid", ["logit"])
    g.nodes[-1].output[0] = "map"
    graph = helper.make_graph(g.nodes, "db_text_detector", [helper.make_tensor_value_info(
        "image", TensorProto.FLOAT, [1, 3, side, side])], [helper.make_tensor_value_info(
            "map", TensorProto.FLOAT, [1, 1, side, side])], initializer=g.weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def detector_sized(work: Path, samples: int = 100, one_pass_samples: int = 25) -> None:
    """A real-size text detector at 3x640x640 and 100 real photographs: what calibration holds in memory."""
    from farm.build.modelfile import quantization_census

    model = real_size_detector(work / "detector640.onnx")
    photos = np.load(REPO / "models" / "blazeface" / "blazeface.npz")
    real = np.concatenate([photos["calibration"], photos["evaluation"]]).astype(np.float32)
    upsampled = real.repeat(5, axis=2).repeat(5, axis=3)  # 128 -> 640, the photographs' own pixels
    data = work / "detector640.npz"
    np.savez(data, calibration=upsampled[:samples], evaluation=upsampled[samples:samples + 4])
    per_sample_mb = upsampled[0].nbytes / 1e6
    print(f"\nreal-size detector (DB text detector architecture: {model.stat().st_size / 1e6:.1f} MB), 3x640x640 "
          f"input ({per_sample_mb:.1f} MB a sample), {samples} calibration samples")
    for method in ("minmax", "entropy"):
        farm_peak = peak_mb(FARM_STATIC, model, data, "-", work / f"static-{method}", method)
        print(f"  farm quantize int8_static, {method:<8} {samples:>4} samples: peak RSS {farm_peak:7.0f} MB")
    static = next((work / "static-minmax").glob("*.int8_static.*.onnx"))
    census = quantization_census(static)
    print(f"  static INT8 as onnxruntime runs it: INT8 kernels {census.quantized}; float between QDQ pairs "
          f"{census.between_qdq}")
    for count in (one_pass_samples // 2, one_pass_samples):
        ort_peak = peak_mb(ORT_ONE_PASS, model, data, work / f"ort-{count}.onnx", "entropy", count)
        print(f"  onnxruntime one pass,     entropy  {count:>4} samples: peak RSS {ort_peak:7.0f} MB")
        if count == one_pass_samples // 2:
            first = ort_peak
    growth = (ort_peak - first) / (one_pass_samples - one_pass_samples // 2)
    at_samples = first + growth * (samples - one_pass_samples // 2)
    print(f"  (onnxruntime's single pass grows {growth:.0f} MB a sample: about {at_samples:.0f} "
          f"MB at {samples}; farm collects in chunks of at most 8 steps and merges)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--skip-demos", action="store_true", help="only the detector-sized calibration case")
    parser.add_argument("--one-pass-samples", type=int, default=25,
                        help="samples for onnxruntime's single pass (it holds every activation of each)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="farm-bench-") as tmp:
        work = Path(tmp)
        if not args.skip_demos:
            print(f"{'model':<11}{'variant':<14}{'MB':>7}{'p50 1t':>9}{'p50 2t':>9}{'x 1t':>8}{'x 2t':>7}  "
                  "loss per judged output (host, against the host's FP32)")
            for folder in sorted(p.parent for p in (REPO / "models").glob("*/build.py")):
                demo(folder, work, args.runs)
        detector_sized(work, one_pass_samples=args.one_pass_samples)


if __name__ == "__main__":
    main()
