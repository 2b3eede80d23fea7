"""`farm quantize`: the variants of a model and their manifest, without boards."""

from __future__ import annotations

import argparse
from pathlib import Path

from farm.config.options import VARIANT, add_to_argparse, parse_variants
from farm.config.settings import CALIBRATION_METHODS, DEFAULT_VARIANTS
from farm.judge.accuracy import build_failures
from farm.util import split_list


def cmd_quantize(args: argparse.Namespace) -> int:
    from farm.build import variants

    recipe = variants.Recipe(per_channel=args.per_channel, calibration_method=args.calibration_method,
                             calibration_samples=args.calibration_samples,
                             exclude_op_types=tuple(args.exclude_op_types))
    manifest = variants.build(args.model, args.data, args.out, spec_path=args.spec, variants=args.variants,
                              recipe=recipe, allow_calibration_count=args.allow_calibration_count,
                              target_loss=args.target_loss, user_variants=parse_variants(args.variant or []))
    print(f"{'variant':<14}{'status':<8}{'size MB':>9}{'host p50 ms':>13}  INT8 kernels / host loss per output")
    for name, entry in manifest["variants"].items():
        host = entry.get("host", {})
        size = f"{entry['size_bytes'] / 1e6:.2f}" if entry.get("size_bytes") else "-"
        p50 = f"{host['p50_ms']:.3f}" if host.get("p50_ms") is not None else "-"
        ops = ", ".join(f"{op} x{n}" for op, n in (entry.get("quantized_op_types") or {}).items()) or "-"
        losses = ", ".join(f"{r['output']} {r['loss']:.3g} {r['unit']}".rstrip()
                           for r in host.get("losses", []) if r["loss"] is not None)
        print(f"{name:<14}{entry['status']:<8}{size:>9}{p50:>13}  {ops if name != 'fp32' else '-'} / {losses or '-'}")
        if entry.get("float_between_qdq"):
            pairs = ", ".join(f"{op} x{n}" for op, n in entry["float_between_qdq"].items())
            print("  float between QDQ pairs: " + pairs)
        if entry["reason"]:
            print(f"  {entry['reason']}")
        if entry.get("origin"):
            print(f"  a team's own variant, from {entry['origin']['path']} (sha256 {entry['origin']['sha256']})")
    print(f"manifest: {Path(args.out) / 'manifest.json'}")
    failures = build_failures(manifest["variants"], args.variants)
    for failure in failures:
        print(f"fail: {failure}")
    return 1 if failures else 0


def register(sub) -> None:
    p = sub.add_parser("quantize", help="build fp32 / int8_dynamic / int8_static variants and a manifest")
    p.add_argument("model", help="FP32 ONNX model")
    p.add_argument("--data", required=True, help=".npz with calibration / evaluation arrays (see docs/model-spec.md)")
    p.add_argument("--out", required=True, help="folder for the variants and manifest.json")
    p.add_argument("--variants", type=split_list, default=list(DEFAULT_VARIANTS))
    p.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--calibration-method", choices=CALIBRATION_METHODS, default="minmax")
    p.add_argument("--calibration-samples", type=int, help="use the first N calibration samples")
    p.add_argument("--allow-calibration-count", action="store_true",
                   help="build even when calibration uses fewer than 100 or more than 1000 samples")
    p.add_argument("--exclude-op-types", type=split_list, default=[],
                   help="op types kept in float in static INT8 (DepthwiseConv: Conv with group > 1)")
    p.add_argument("--target-loss", type=float, help="search static recipes for the fastest within this loss %%")
    add_to_argparse(p, (VARIANT,))
    p.add_argument("--spec", help="model spec YAML: inputs, judged outputs and metrics (default: "
                                   "<model>.farm.yaml beside the model, else inferred)")
    p.set_defaults(func=cmd_quantize)
