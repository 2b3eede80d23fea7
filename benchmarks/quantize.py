"""What quantization buys on this machine, per model and variant.

For each demo model (models/*/) and, when torch is installed, a MobileNetV2-style
CNN exported here (architecture only, never committed; calibrated on real
scikit-image photographs): file size, host p50 at 1 and 2 threads (the agent,
run on this machine), speedup over FP32, and loss against FP32.

    .venv/bin/python benchmarks/quantize.py [--runs 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from farm.build.variants import build  # noqa: E402
from farm.board.agent import run_agent_here  # noqa: E402
from farm.config.settings import Measurement  # noqa: E402


def mobilenet_v2_style(out: Path) -> tuple[Path, Path] | None:
    """MobileNetV2-style network (inverted residuals, depthwise convs) at 224x224, and real images."""
    try:
        import torch
        from skimage import data as images
        from skimage.transform import resize
    except ImportError:
        print("(torch or scikit-image not installed: MobileNetV2-style model skipped; pip install -e '.[build-models]')")
        return None
    from torch import nn

    def block(cin: int, cout: int, stride: int, expand: int) -> nn.Module:
        hidden = cin * expand
        layers = [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()] if expand != 1 else []
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.ReLU6(), nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        body = nn.Sequential(*layers)

        class Residual(nn.Module):
            def forward(self, x):
                return x + body(x) if stride == 1 and cin == cout else body(x)

        residual = Residual()
        residual.body = body
        return residual

    config = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    layers, cin = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6()], 32
    for expand, cout, repeats, stride in config:
        for i in range(repeats):
            layers.append(block(cin, cout, stride if i == 0 else 1, expand))
            cin = cout
    layers += [nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6(), nn.AdaptiveAvgPool2d(1),
               nn.Flatten(), nn.Linear(1280, 1000)]
    torch.manual_seed(0)
    net = nn.Sequential(*layers).eval()
    photos = [images.astronaut(), images.coffee(), images.chelsea(), images.rocket(), images.hubble_deep_field()]
    crops = []
    rng = np.random.default_rng(0)
    while len(crops) < 150:
        photo = photos[len(crops) % len(photos)]
        side = int(rng.integers(160, min(photo.shape[:2])))
        top, left = rng.integers(0, photo.shape[0] - side), rng.integers(0, photo.shape[1] - side)
        crop = resize(photo[top:top + side, left:left + side], (224, 224), anti_aliasing=True)
        crops.append(((crop - 0.45) / 0.25).transpose(2, 0, 1).astype(np.float32))
    batch = np.stack(crops)
    model, data = out / "mobilenetv2_style.onnx", out / "mobilenetv2_style.npz"
    torch.onnx.export(net, torch.from_numpy(batch[:1]), model, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    np.savez(data, calibration=batch[:100], evaluation=batch[100:])
    return model, data


def report(name: str, model: Path, data: Path, work: Path, runs: int, trained: bool = True) -> None:
    manifest = build(model, data, work / name, host_figures=True, task="classification")
    p50 = {}
    for variant, entry in manifest["variants"].items():
        if entry["status"] != "ok":
            print(f"{name:<18}{variant:<14}failed: {entry['reason']}")
            continue
        for threads in (1, 2):
            doc = run_agent_here(work / name / entry["file"], Measurement(warmup=20, runs=runs, threads=threads))
            p50[variant, threads] = doc["latency_ms"]["p50"]
    for variant, entry in manifest["variants"].items():
        if entry["status"] != "ok":
            continue
        speed = [p50["fp32", t] / p50[variant, t] for t in (1, 2)]
        loss = entry["host"].get("loss_pct")
        shown = f"{loss:>8.2f}" if trained and loss is not None else f"{'n/a':>8}"
        print(f"{name:<18}{variant:<14}{entry['size_bytes'] / 1e6:>8.2f}{p50[variant, 1]:>9.3f}{p50[variant, 2]:>9.3f}"
              f"{speed[0]:>8.2f}x{speed[1]:>7.2f}x{shown}  "
              f"{','.join(f'{op}:{n}' for op, n in entry['float_op_types'].items()) if variant != 'fp32' else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    print(f"{'model':<18}{'variant':<14}{'MB':>8}{'p50 1t':>9}{'p50 2t':>9}{'x 1t':>9}{'x 2t':>8}{'loss %':>8}  float ops left")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for folder in sorted(p for p in (REPO / "models").iterdir() if p.is_dir()):
            report(folder.name, folder / f"{folder.name}.onnx", folder / f"{folder.name}.npz", work, args.runs)
        built = mobilenet_v2_style(work)
        if built:
            report("mobilenetv2-style", *built, work, args.runs, trained=False)
    print("(p50 in ms on this host, the agent's own measurement; loss: top-1 points with labels, else "
          "top-1 disagreement with FP32; the MobileNetV2-style weights are\n"
          " untrained, so only its sizes and timings mean anything)")


if __name__ == "__main__":
    main()
