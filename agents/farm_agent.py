#!/usr/bin/env python3
"""farm board agent: measure one model against the deployment checklist, print one JSON document.

This file is copied alone onto a board and run there. It needs Python >= 3.8, the
standard library, numpy and onnxruntime, and never imports farm. Logs go to
stderr; stdout carries exactly one JSON document (schema farm.agent/1). The exit
status is 0 whenever a document could be written, even if a measurement failed
(the failure is in "errors"); 2 means bad arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import socket
import sys
import time
import traceback

SCHEMA = "farm.agent/1"
ACCURACY_BATCH = 32


def log(message):
    sys.stderr.write("farm-agent: %s\n" % message)
    sys.stderr.flush()


def claim_stdout():
    """Keep the real stdout for the JSON document and send everything else to stderr.

    Native libraries may print to file descriptor 1; moving it aside guarantees that
    the controller reads one clean document.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(saved, "w")


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_proc_status(field):
    """A field of /proc/self/status in MB, or None where there is no /proc."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def peak_rss_mb():
    peak = read_proc_status("VmHWM")
    if peak is None:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return round(peak, 2)


# Arm Ltd. (implementer 0x41) CPU part numbers, as /proc/cpuinfo on Arm boards shows them.
ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
             "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
             "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd42": "Cortex-A78AE",
             "0xd44": "Cortex-X1", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd4b": "Cortex-A78C"}


def cpu_facts():
    """CPU model and feature flags from /proc/cpuinfo (x86 and Arm spell them differently)."""
    model, flags, part = None, [], None
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key, value = key.strip().lower(), value.strip()
                if key in ("model name", "hardware", "processor") and model is None and value and not value.isdigit():
                    model = value
                elif key in ("flags", "features") and not flags:
                    flags = value.split()
                elif key == "cpu part" and part is None:
                    part = value
    except OSError:
        pass
    return {"cpu": model or ARM_PARTS.get(part or "") or platform.processor() or platform.machine(),
            "cpu_part": part, "cpu_flags": flags}


def memory_total_mb():
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        return None
    return None


def numpy_cpu_features():
    """CPU features numpy detected at run time: under qemu-user /proc/cpuinfo shows the host,
    these show the emulated CPU (ASIMD on Cortex-A53/A72, plus ASIMDDP on A76)."""
    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):
        try:
            features = __import__(module, fromlist=["__cpu_features__"]).__cpu_features__
        except (ImportError, AttributeError):
            continue
        return sorted(name for name, present in features.items() if present)
    return []


def gather_facts():
    facts = {
        "hostname": socket.gethostname(),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "cores": os.cpu_count(),
        "memory_total_mb": memory_total_mb(),
        "python": platform.python_version(),
    }
    if hasattr(os, "sched_getaffinity"):
        facts["cores_usable"] = len(os.sched_getaffinity(0))
    facts.update(cpu_facts())
    if os.environ.get("QEMU_CPU"):
        facts["qemu_cpu"] = os.environ["QEMU_CPU"]
    return facts


def percentile(sorted_values, q):
    """Linear interpolation between closest ranks (numpy's default), on sorted data."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q / 100.0
    low, high = int(math.floor(pos)), int(math.ceil(pos))
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


def summarize(samples):
    ordered = sorted(samples)
    n = len(ordered)
    mean = sum(ordered) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in ordered) / (n - 1)) if n > 1 else 0.0
    summary = {"n": n, "mean": mean, "std": std, "min": ordered[0], "max": ordered[-1]}
    for q in (50, 90, 95, 99):
        summary["p%d" % q] = percentile(ordered, q)
    summary["cv"] = std / mean if mean else None
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in summary.items()}


class Report(object):
    """The JSON document under construction: every fact gathered so far survives a failure."""

    def __init__(self):
        self.doc = {"schema": SCHEMA, "facts": {}, "model": {}, "latency_ms": None,
                    "samples_ms": [], "peak_rss_mb": None, "memory_mb": {}, "accuracy": None,
                    "settings": {}, "warnings": [], "errors": []}

    def error(self, stage, message):
        log("%s: %s" % (stage, message))
        self.doc["errors"].append({"stage": stage, "message": message})

    def warn(self, message):
        log("warning: " + message)
        self.doc["warnings"].append(message)


NP_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
            "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8",
            "tensor(uint8)": "uint8", "tensor(bool)": "bool"}


def split_data(np, data, inputs, section):
    """Arrays of one section (calibration / evaluation) keyed by input name.

    A single-input model may use the plain key; a multi-input one uses
    "section:input_name".
    """
    arrays = {}
    for spec in inputs:
        key = "%s:%s" % (section, spec.name)
        if key in data:
            arrays[spec.name] = data[key]
        elif len(inputs) == 1 and section in data:
            arrays[spec.name] = data[section]
    return arrays


def check_shapes(arrays, inputs):
    """Raise ValueError naming the input whose data does not fit the model."""
    for spec in inputs:
        if spec.name not in arrays:
            raise ValueError("no data for input %r" % spec.name)
        given = tuple(arrays[spec.name].shape)
        expected = tuple(spec.shape)
        fits = len(given) == len(expected) and all(
            not isinstance(e, int) or e <= 0 or g == e or i == 0
            for i, (g, e) in enumerate(zip(given, expected)))
        if not fits:
            raise ValueError("input %r expects shape %s, data has %s" % (spec.name, list(expected), list(given)))


def synthetic_inputs(np, inputs):
    """Latency-only inputs where no data file was given (accuracy then is not measured)."""
    feeds = {}
    for spec in inputs:
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec.shape]
        feeds[spec.name] = np.zeros(shape, dtype=NP_TYPES.get(spec.type, "float32"))
    return feeds


def measure_latency(session, feeds, warmup, runs, duration, report):
    """Time session.run alone; everything else is prepared before the clock starts."""
    clock = time.perf_counter_ns
    start = clock()
    session.run(None, feeds)
    report.doc["cold_run_ms"] = round((clock() - start) / 1e6, 6)
    for _ in range(warmup):
        session.run(None, feeds)
    samples = []
    deadline = time.monotonic() + duration if duration else None
    for _ in range(runs):
        start = clock()
        session.run(None, feeds)
        samples.append((clock() - start) / 1e6)
        if deadline is not None and time.monotonic() >= deadline:
            break
    if len(samples) < runs:
        report.warn("stopped after %d of %d runs: --duration %.1f s reached" % (len(samples), runs, duration))
    report.doc["samples_ms"] = [round(s, 6) for s in samples]
    report.doc["latency_ms"] = summarize(samples)


def run_batches(np, session, arrays, batch_dynamic):
    """Outputs for a whole evaluation set, batched where the model allows it."""
    count = len(next(iter(arrays.values())))
    step = ACCURACY_BATCH if batch_dynamic else 1
    chunks = []
    for begin in range(0, count, step):
        chunks.append(session.run(None, {k: v[begin:begin + step] for k, v in arrays.items()}))
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]


def measure_accuracy(np, session, data, reference_path, report):
    inputs = session.get_inputs()
    outputs = [o.name for o in session.get_outputs()]
    arrays = split_data(np, data, inputs, "evaluation")
    if not arrays:
        report.warn("the data file has no evaluation set: accuracy not measured")
        return
    check_shapes(arrays, inputs)
    arrays = {s.name: arrays[s.name].astype(NP_TYPES.get(s.type, "float32")) for s in inputs}
    batch_dynamic = all(not isinstance(s.shape[0], int) or s.shape[0] <= 0 for s in inputs)
    results = run_batches(np, session, arrays, batch_dynamic)
    judged_name = str(data["label_output"]) if "label_output" in data else outputs[0]
    judged = results[outputs.index(judged_name)]
    accuracy = {"n": int(judged.shape[0]), "output": judged_name}
    if "labels" in data:
        labels = data["labels"]
        accuracy["top1"] = float((judged.reshape(len(judged), -1).argmax(1) == labels).mean())
    if reference_path:
        reference = np.load(reference_path)[judged_name].astype("float64")
        if reference.shape != judged.shape:
            raise ValueError("reference output %r has shape %s, model gives %s"
                             % (judged_name, list(reference.shape), list(judged.shape)))
        diff = judged.astype("float64") - reference
        flat_ref = reference.reshape(len(reference), -1)
        accuracy["agreement_with_reference"] = float(
            (judged.reshape(len(judged), -1).argmax(1) == flat_ref.argmax(1)).mean())
        accuracy["mse"] = float((diff ** 2).mean())
        accuracy["max_abs_diff"] = float(np.abs(diff).max())
        scale = float(np.abs(reference).mean()) or 1.0
        accuracy["mean_rel_error"] = float(np.abs(diff).mean() / scale)
    report.doc["accuracy"] = accuracy


def choose_providers(ort, requested, report):
    available = ort.get_available_providers()
    kept = [p for p in requested if p in available]
    missing = [p for p in requested if p not in available]
    if missing:
        report.warn("providers not available on this board: %s" % ", ".join(missing))
    if not kept:
        kept = ["CPUExecutionProvider"]
        report.warn("none of the requested providers is available: falling back to CPUExecutionProvider")
    return kept


def read_varint(buf, pos):
    value, shift = 0, 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def proto_fields(buf):
    """(field number, wire type, value) of one protobuf message's top level."""
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 2:
            length, pos = read_varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = buf[pos:pos + size], pos + size
        else:
            raise ValueError("unsupported protobuf wire type %d" % wire)
        yield number, wire, value


def model_opset(path):
    """The default-domain opset from ModelProto.opset_import (field 8), without the onnx package."""
    with open(path, "rb") as handle:
        buf = memoryview(handle.read())
    versions = []
    for number, wire, value in proto_fields(buf):
        if number == 8 and wire == 2:
            fields = {n: v for n, _, v in proto_fields(value)}
            domain = bytes(fields.get(1, b"")).decode()
            if domain in ("", "ai.onnx"):
                versions.append(fields.get(2))
    return max(versions) if versions else None


def measure(args, report):
    doc = report.doc
    doc["facts"] = gather_facts()
    doc["settings"] = {"warmup": args.warmup, "runs": args.runs, "duration_s": args.duration,
                       "skip_accuracy": args.skip_accuracy,
                       "threads": args.threads, "providers_requested": args.providers}
    try:
        import numpy as np
        doc["facts"]["numpy"] = np.__version__
        doc["facts"]["numpy_cpu_features"] = numpy_cpu_features()
        import onnxruntime as ort
    except ImportError as exc:
        report.error("import", "cannot import %s on this board: %s" % (getattr(exc, "name", None) or "a module", exc))
        return
    doc["facts"]["onnxruntime"] = ort.__version__
    doc["facts"]["providers_available"] = ort.get_available_providers()

    digest = sha256_of(args.model)
    doc["model"]["sha256"] = digest
    doc["model"]["size_bytes"] = os.path.getsize(args.model)
    if args.expect_sha256 and digest != args.expect_sha256:
        report.error("integrity", "model sha256 %s does not match the expected %s: nothing measured"
                     % (digest, args.expect_sha256))
        return

    doc["memory_mb"]["rss_before_load"] = read_proc_status("VmRSS")
    options = ort.SessionOptions()
    if args.threads:
        options.intra_op_num_threads = args.threads
    providers = choose_providers(ort, args.providers, report)
    start = time.perf_counter_ns()
    try:
        session = ort.InferenceSession(args.model, options, providers=providers)
    except Exception as exc:  # onnxruntime raises several unrelated types for a bad model
        report.error("load", "onnxruntime cannot load the model: %s" % exc)
        return
    doc["load_ms"] = round((time.perf_counter_ns() - start) / 1e6, 3)
    doc["memory_mb"]["rss_after_load"] = read_proc_status("VmRSS")
    used = session.get_providers()
    doc["model"]["provider_used"] = used[0]
    doc["model"]["providers_used"] = used
    if args.providers and used[0] != args.providers[0]:
        report.warn("asked for %s, ran on %s" % (args.providers[0], used[0]))
    try:
        doc["model"]["opset"] = model_opset(args.model)
    except Exception as exc:
        report.warn("cannot read the opset: %s" % exc)
    doc["model"]["inputs"] = [{"name": i.name, "shape": i.shape, "type": i.type} for i in session.get_inputs()]

    data = None
    if args.data:
        data = np.load(args.data)
        first = split_data(np, data, session.get_inputs(), "evaluation") or \
            split_data(np, data, session.get_inputs(), "calibration")
        try:
            check_shapes(first, session.get_inputs())
        except ValueError as exc:
            report.error("data", str(exc))
            return
        feeds = {s.name: first[s.name][:1].astype(NP_TYPES.get(s.type, "float32")) for s in session.get_inputs()}
    else:
        feeds = synthetic_inputs(np, session.get_inputs())
        report.warn("no data file: latency measured on zero inputs, accuracy not measured")

    try:
        measure_latency(session, feeds, args.warmup, args.runs, args.duration, report)
    except Exception as exc:
        report.error("latency", "inference failed: %s" % exc)
        return
    if data is not None and not args.skip_accuracy:
        try:
            measure_accuracy(np, session, data, args.reference, report)
        except Exception as exc:
            report.error("accuracy", str(exc))
    doc["memory_mb"]["rss_after_runs"] = read_proc_status("VmRSS")
    doc["peak_rss_mb"] = peak_rss_mb()


def parse_args(argv):
    parser = argparse.ArgumentParser(description="farm board agent (prints one JSON document)")
    parser.add_argument("--model", required=True, help="ONNX model file")
    parser.add_argument("--data", help=".npz with evaluation (and labels) for accuracy")
    parser.add_argument("--reference", help=".npz of FP32 reference outputs on the evaluation set")
    parser.add_argument("--expect-sha256", help="refuse to measure a model with another hash")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--duration", type=float, default=None, help="stop timed runs after this many seconds")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: onnxruntime's default)")
    parser.add_argument("--skip-accuracy", action="store_true",
                        help="latency only (the data file still gives the timed input)")
    parser.add_argument("--providers", default="CPUExecutionProvider",
                        type=lambda s: [p for p in s.split(",") if p], help="comma-separated, in order")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.threads < 0:
        parser.error("--runs must be >= 1, --warmup and --threads >= 0")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out = claim_stdout()
    report = Report()
    try:
        measure(args, report)
    except Exception as exc:
        report.error("agent", "%s: %s" % (type(exc).__name__, exc))
        report.doc["traceback"] = traceback.format_exc()[-2000:]
    out.write(json.dumps(report.doc) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
