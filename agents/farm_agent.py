#!/usr/bin/env python3
"""farm board agent: measure one model against the deployment checklist, print one JSON document.

This file is copied alone onto a board and run there. It needs Python >= 3.8, the
standard library, numpy and onnxruntime, and never imports farm. Logs go to
stderr; stdout carries exactly one JSON document (schema farm.agent/2). The exit
status is 0 whenever a document could be written, even if a measurement failed
(the failure is in "errors"); 2 means bad arguments.

Two modes, each its own process, so that one never weighs on the other's figures:
`latency` times the deployed model at its deployment batch and reports its peak
memory; `accuracy` runs the evaluation set through the model as its spec feeds it
(data, constants, carried state) and reports each judged output's figures against
the FP32 reference. The controller imports this file too (farm._agents.farm_agent)
for the reference outputs and calibration feeds: one way of feeding a model.
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
import threading
import time
import traceback

SCHEMA = "farm.agent/2"


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


def stop_when_controller_goes():
    """The controller holds this process's stdin open (an SSH channel, or a pipe locally); EOF means the
    controller died or its link did: stop at once rather than measure on for a run that is gone.

    The exit is unconditional: the session that closed stdin usually closed stderr too, so the
    "stopping" line may meet EPIPE, and an exception there once left agents measuring for their
    whole deadline after a SIGKILLed controller."""
    def watch():
        try:
            while os.read(0, 4096):
                pass
            log("the controller is gone (stdin closed): stopping")
        except (OSError, ValueError):
            pass
        finally:
            os._exit(3)

    threading.Thread(target=watch, name="farm-agent-watchdog", daemon=True).start()


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
    if hasattr(os, "nice"):
        facts["nice"] = os.nice(0)  # the priority the runs were timed at
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

    def __init__(self, mode):
        self.doc = {"schema": SCHEMA, "mode": mode, "facts": {}, "model": {}, "latency_ms": None,
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


# -- feeding a model from its spec ------------------------------------------------------------------
# The spec (JSON, written by the controller) says for every input where its values come from:
#   {"name", "source": "data" | "value" | "state", "dtype", "shape" (the deployment shape),
#    "batch_axis" (None: no batch axis), "value" (source value), "from_output" + "init" (source state)}
# and for every judged output its metric: {"name", "metric", "batch_axis", "threshold", "points"}.
# "batch" is the deployment batch; "sequence" says the samples are consecutive steps of one stream
# (state carried from step to step). Data arrays hold one sample per row: [N, *sample shape], the
# sample shape being the deployment shape without its batch axis.

def stack_samples(np, block, batch_axis):
    """B samples [B, *sample] -> the model's layout, the batch on its own axis."""
    if batch_axis is None:
        return block[0]
    return np.moveaxis(block, 0, batch_axis)


def unstack_samples(np, value, batch_axis):
    """The model's output -> [B, *sample]."""
    value = np.asarray(value)
    if batch_axis is None:
        return value[None]
    return np.moveaxis(value, batch_axis, 0)


class Feeder(object):
    """Feeds for each step of a model: data samples, constants, and state carried from its outputs."""

    def __init__(self, np, spec, arrays):
        self.np, self.spec, self.arrays = np, spec, arrays
        self.batch = int(spec.get("batch") or 1)
        self.inputs = spec["inputs"]
        data = [i for i in self.inputs if i["source"] == "data"]
        self.count = len(arrays[data[0]["name"]]) if data else 1
        self.state = {}
        self.reset()

    def reset(self):
        """The initial state of every state input (zeros unless the spec gives a value)."""
        np = self.np
        for spec in self.inputs:
            if spec["source"] == "state":
                self.state[spec["name"]] = np.full(spec["shape"], spec.get("init") or 0, dtype=spec["dtype"])

    def steps(self):
        """Start indices of the steps: whole batches only (a short last batch would change the shape)."""
        return range(0, self.count - self.batch + 1, self.batch)

    def feed(self, start):
        np = self.np
        feeds = {}
        for spec in self.inputs:
            name, source = spec["name"], spec["source"]
            if source == "data":
                block = self.arrays[name][start:start + self.batch].astype(spec["dtype"], copy=False)
                feeds[name] = stack_samples(np, block, spec.get("batch_axis"))
            elif source == "value":
                feeds[name] = np.asarray(spec["value"], dtype=spec["dtype"]).reshape(spec["shape"])
            else:
                feeds[name] = self.state[name]
        return feeds

    def carry(self, outputs):
        """Next step's state from this step's named outputs (`outputs`: name -> array)."""
        for spec in self.inputs:
            if spec["source"] == "state":
                self.state[spec["name"]] = outputs[spec["from_output"]].astype(spec["dtype"], copy=False)


def run_steps(np, session, spec, arrays, on_step):
    """Run the model over every sample of `arrays` as the spec feeds it; on_step(start, feeds, outputs)."""
    feeder = Feeder(np, spec, arrays)
    names = [o.name for o in session.get_outputs()]
    for start in feeder.steps():
        feeds = feeder.feed(start)
        outputs = dict(zip(names, session.run(names, feeds)))
        feeder.carry(outputs)
        on_step(start, feeds, outputs)
    return feeder


def read_outputs(spec):
    """(name, batch axis) of every output the metrics read: the judged ones, and a detector's boxes output."""
    found = [(o["name"], o.get("batch_axis")) for o in spec["outputs"]]
    for o in spec["outputs"]:
        if o.get("boxes_output"):
            found.append((o["boxes_output"], o.get("batch_axis")))
    return list(dict(found).items())


def judged_outputs(np, spec, outputs):
    """The outputs the metrics read, of one step, each as [B, *sample] float32."""
    return {name: unstack_samples(np, outputs[name], axis).astype("float32", copy=False)
            for name, axis in read_outputs(spec)}


def check_layout(spec, outputs, declared):
    """The first step's real output shapes against the spec's layout: warnings where the model declares
    another shape; ValueError naming the output and its real shape where the layout cannot be judged."""
    warnings = []
    batch = int(spec.get("batch") or 1)
    judged = {o["name"]: o for o in spec["outputs"]}
    for name, axis in read_outputs(spec):
        shape = list(outputs[name].shape)
        said = declared.get(name)
        if said is not None and (len(said) != len(shape) or any(isinstance(d, int) and d > 0 and d != r
                                                                 for d, r in zip(said, shape))):
            warnings.append("output %r: the model declares %s but returns %s; judged by what it returns"
                            % (name, list(said), shape))
        if axis is not None and (axis >= len(shape) or shape[axis] != batch):
            raise ValueError("output %r returns %s: batch axis %s is not the deployment batch %d; name the "
                             "batch axis of the real shape (batch_axis) in the model spec" % (name, shape, axis, batch))
        sample = [d for i, d in enumerate(shape) if i != axis]
        metric = judged[name]["metric"] if name in judged else "detection"
        if metric in ("ctc", "sequence") and (len([d for d in sample if d > 1]) < 2 or sample[-1] < 2):
            raise ValueError("output %r returns %s: %s needs steps x classes per sample (class axis last), "
                             "this gives %s" % (name, shape, metric, sample))
        if metric == "detection" and (len(sample) != 2 and not (name in judged and len(sample) in (1, 2))):
            raise ValueError("output %r returns %s: detection needs [fields, anchors] or [anchors, fields] per "
                             "sample, this gives %s" % (name, shape, sample))
    return warnings


# -- metrics: streaming, in float32, one step at a time ---------------------------------------------
class Metric(object):
    """Figures of one judged output against the FP32 reference (and labels, where there are some)."""

    def __init__(self, np, spec):
        self.np, self.spec, self.n = np, spec, 0
        self.sums = {}

    def add(self, key, value):
        self.sums[key] = self.sums.get(key, 0.0) + float(value)

    def update(self, pred, ref, labels):
        raise NotImplementedError

    def step(self, preds, refs, labels):
        """One step: `preds` and `refs` hold every output the metric reads (its own, and a detector's boxes)."""
        name = self.spec["name"]
        self.update(preds[name], refs.get(name) if refs else None, labels)

    def result(self):
        figures = {k: v / self.n for k, v in self.sums.items()} if self.n else {}
        figures.update(metric=self.spec["metric"], n=self.n)
        return figures


class Top1(Metric):
    def update(self, pred, ref, labels):
        np = self.np
        pred = pred.reshape(len(pred), -1)
        classes = pred.argmax(1)
        if ref is not None:
            self.add("agreement", (classes == ref.reshape(len(ref), -1).argmax(1)).sum())
        if labels is not None:
            self.add("top1", (classes == np.asarray(labels).reshape(-1)).sum())
        self.n += len(pred)


class Binary(Metric):
    def update(self, pred, ref, labels):
        threshold = self.spec.get("threshold", 0.5)
        decided = pred.reshape(len(pred), -1) > threshold
        if ref is not None:
            self.add("agreement", (decided == (ref.reshape(len(ref), -1) > threshold)).mean(1).sum())
        if labels is not None:
            self.add("accuracy", (decided[:, 0] == (self.np.asarray(labels).reshape(-1) > 0.5)).sum())
        self.n += len(pred)


class IoU(Metric):
    def update(self, pred, ref, labels):
        threshold = self.spec.get("threshold", 0.5)
        for a, b in zip(pred.reshape(len(pred), -1) > threshold, ref.reshape(len(ref), -1) > threshold):
            union = (a | b).sum()
            self.add("iou", (a & b).sum() / union if union else 1.0)
        self.n += len(pred)


class NME(Metric):
    """Mean point distance over the reference points' bounding-box diagonal (landmarks)."""

    def _nme(self, pred, target):
        np = self.np
        dims = int(self.spec.get("points") or 2)
        total = 0.0
        for a, b in zip(pred.reshape(len(pred), -1, dims), target.reshape(len(target), -1, dims)):
            diagonal = float(np.linalg.norm(b.max(0) - b.min(0))) or 1.0
            total += float(np.linalg.norm(a - b, axis=1).mean()) / diagonal
        return total

    def update(self, pred, ref, labels):
        self.add("nme", self._nme(pred, ref))
        if labels is not None:
            self.add("nme_labels", self._nme(pred, self.np.asarray(labels, dtype="float32")))
        self.n += len(pred)


class MAE(Metric):
    """Mean absolute error in the output's own units (boxes in pixels, say), and the largest one."""

    max_abs = 0.0

    def update(self, pred, ref, labels):
        diff = self.np.abs(pred - ref)
        self.add("mae", diff.reshape(len(pred), -1).mean(1).sum())
        self.max_abs = max(self.max_abs, float(diff.max()))
        self.n += len(pred)

    def result(self):
        figures = Metric.result(self)
        figures["max_abs"] = self.max_abs
        return figures


class Sequence(Metric):
    """Per-timestep argmax agreement (class axis last) and exact-sequence match."""

    def update(self, pred, ref, labels):
        classes = pred.shape[-1]
        a = pred.reshape(len(pred), -1, classes).argmax(-1)
        b = ref.reshape(len(ref), -1, classes).argmax(-1)
        self.add("timestep_agreement", (a == b).mean(1).sum())
        self.add("sequence_match", (a == b).all(1).sum())
        self.n += len(pred)


class Cosine(Metric):
    def update(self, pred, ref, labels):
        np = self.np
        for a, b in zip(pred.reshape(len(pred), -1), ref.reshape(len(ref), -1)):
            norm = float(np.linalg.norm(a)) * float(np.linalg.norm(b))
            self.add("cosine", float(a.dot(b)) / norm if norm else float(np.allclose(a, b)))
        self.n += len(pred)


class SNR(Metric):
    def update(self, pred, ref, labels):
        self.sums["signal"] = self.sums.get("signal", 0.0) + float((ref.astype("float64") ** 2).sum())
        self.sums["noise"] = self.sums.get("noise", 0.0) + float(((pred - ref).astype("float64") ** 2).sum())
        self.n += len(pred)

    def result(self):
        figures = {"metric": "snr_db", "n": self.n}
        signal, noise = self.sums.get("signal", 0.0), self.sums.get("noise", 0.0)
        figures["snr_db"] = 10 * math.log10(signal / noise) if noise and signal else (200.0 if signal else 0.0)
        return figures


# -- detection: decode, score threshold, NMS, match to FP32's (or labelled) boxes by IoU ---------------
def row_range(text, size):
    """`0-3` -> rows 0..3, `4-` -> rows 4..size-1 (the packed head's fields)."""
    low, _, high = str(text).partition("-")
    return list(range(int(low), int(high) + 1 if high else size))


def blazeface_anchors(np, side):
    """MediaPipe's short-range SSD anchors (strides 8, 16, 16, 16; 2 and 6 a cell; fixed size), in pixels."""
    centres = []
    for stride, per_cell in ((8, 2), (16, 6)):
        cells = side // stride
        for y in range(cells):
            for x in range(cells):
                centres += [((x + 0.5) * stride, (y + 0.5) * stride)] * per_cell
    return np.asarray(centres, dtype="float32")


def to_xyxy(np, boxes, box_format):
    if box_format == "xyxy":
        return boxes
    cx, cy, w, h = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)


def box_iou(np, a, b):
    """IoU of every box in a [n, 4] with every box in b [m, 4] (xyxy)."""
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(high - low, 0, None).prod(2)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(np, boxes, scores, classes, iou_threshold):
    """Greedy non-maximum suppression per class (boxes of other classes never suppress each other)."""
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        best = order.pop(0)
        keep.append(best)
        if order:
            rest = np.asarray(order)
            overlap = box_iou(np, boxes[best:best + 1], boxes[rest])[0]
            order = [int(i) for i, o in zip(rest, overlap) if o <= iou_threshold or classes[i] != classes[best]]
    return np.asarray(keep, dtype="int64")


def decode_detections(np, spec, sample, boxes_sample=None):
    """One sample's detections: (boxes xyxy [n, 4], scores [n], classes [n]) after threshold and NMS.

    Packed head ([4 + classes, anchors] or [anchors, 4 + classes] per sample, `anchors_axis`), or two
    outputs: this one the scores, `boxes_sample` the boxes (BlazeFace: offsets from its anchors)."""
    if boxes_sample is None:
        table = sample if spec.get("anchors_axis", "last") == "middle" else sample.T  # [anchors, fields]
        boxes = table[:, row_range(spec.get("boxes", "0-3"), table.shape[1])]
        scores = table[:, row_range(spec.get("scores", "4-"), table.shape[1])]
    else:
        boxes, scores = boxes_sample.reshape(len(boxes_sample), -1), sample.reshape(len(sample), -1)
        if spec.get("decode") == "blazeface":
            anchors = blazeface_anchors(np, int(spec.get("input_size", 128)))
            if len(anchors) != len(boxes):
                raise ValueError("decode blazeface expects %d anchors at input_size %s, output %r has %d"
                                 % (len(anchors), spec.get("input_size", 128), spec["boxes_output"], len(boxes)))
            boxes = np.concatenate([boxes[:, :2] + anchors, boxes[:, 2:4]], 1)
        boxes = boxes[:, :4]
    if spec.get("activation", "sigmoid" if spec.get("decode") == "blazeface" else "none") == "sigmoid":
        scores = 1.0 / (1.0 + np.exp(-np.clip(scores, -80, 80)))
    classes, best = scores.argmax(1), scores.max(1)
    kept = best > float(spec.get("score_threshold", 0.25))
    boxes = to_xyxy(np, boxes[kept].astype("float64"), spec.get("box_format", "cxcywh"))
    best, classes = best[kept].astype("float64"), classes[kept]
    keep = nms(np, boxes, best, classes, float(spec.get("nms_iou", 0.45)))
    return boxes[keep], best[keep], classes[keep]


def match_detections(np, found, truth, min_iou):
    """Greedy by score: each found box takes the unmatched true box of its class it overlaps most.
    Returns a true-positive flag per found box (in `found`'s order)."""
    boxes, scores, classes = found
    true_boxes, true_classes = truth[0], truth[2]
    taken = np.zeros(len(true_boxes), dtype=bool)
    hits = np.zeros(len(boxes), dtype=bool)
    if not len(boxes) or not len(true_boxes):
        return hits
    overlap = box_iou(np, boxes, true_boxes)
    for i in np.argsort(-scores, kind="stable"):
        candidates = np.where(~taken & (true_classes == classes[i]) & (overlap[i] >= min_iou))[0]
        if len(candidates):
            j = candidates[overlap[i][candidates].argmax()]
            taken[j], hits[i] = True, True
    return hits


def average_precision(np, scored, total):
    """Area under the interpolated precision-recall curve (VOC / COCO all-point) of one class."""
    if not total:
        return None
    scored = sorted(scored, key=lambda s: -s[0])
    hits = np.asarray([h for _, h in scored], dtype="float64")
    tp, fp = np.cumsum(hits), np.cumsum(1 - hits)
    recall = np.concatenate([[0.0], tp / total, [1.0]]) if len(hits) else np.asarray([0.0, 1.0])
    precision = np.concatenate([[1.0], tp / np.maximum(tp + fp, 1e-12), [0.0]]) if len(hits) else np.asarray([1.0, 0.0])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(((recall[1:] - recall[:-1]) * precision[1:]).sum())


class Detection(Metric):
    """Recall and precision of each variant's detections against FP32's (and mAP@0.5 on labelled boxes).

    Labels: [N, boxes, 5] rows (class, x1, y1, x2, y2), padded with class -1."""

    def __init__(self, np, spec):
        Metric.__init__(self, np, spec)
        self.counts = {"matched": 0, "detections": 0, "fp32_detections": 0}
        self.scored, self.truths = {}, {}

    def step(self, preds, refs, labels):
        np, spec = self.np, self.spec
        name, companion = spec["name"], spec.get("boxes_output")
        min_iou = float(spec.get("match_iou", 0.5))
        for i in range(len(preds[name])):
            found = decode_detections(np, spec, preds[name][i], preds[companion][i] if companion else None)
            self.counts["detections"] += len(found[0])
            if refs:
                truth = decode_detections(np, spec, refs[name][i], refs[companion][i] if companion else None)
                self.counts["fp32_detections"] += len(truth[0])
                self.counts["matched"] += int(match_detections(np, found, truth, min_iou).sum())
            if labels is not None:
                rows = np.asarray(labels[i], dtype="float64").reshape(-1, 5)
                rows = rows[rows[:, 0] >= 0]
                truth = (rows[:, 1:], None, rows[:, 0].astype("int64"))
                for c, hit, score in zip(found[2], match_detections(np, found, truth, 0.5), found[1]):
                    self.scored.setdefault(int(c), []).append((float(score), bool(hit)))
                for c in truth[2]:
                    self.truths[int(c)] = self.truths.get(int(c), 0) + 1
        self.n += len(preds[name])

    def result(self):
        counts = self.counts
        figures = {"metric": "detection", "n": self.n, **counts}
        if counts["fp32_detections"]:
            figures["recall"] = counts["matched"] / float(counts["fp32_detections"])
        if counts["detections"] or counts["fp32_detections"]:
            figures["precision"] = counts["matched"] / float(counts["detections"]) if counts["detections"] else 0.0
        if self.truths:
            aps = [average_precision(self.np, self.scored.get(c, []), n) for c, n in sorted(self.truths.items())]
            figures["map50"] = sum(aps) / len(aps)
        return figures


# -- CTC: greedy decode (collapse repeats, drop blanks), exact strings and character error rate -------
def ctc_greedy(np, logits, blank):
    """[T, classes] -> the decoded class indices."""
    best = logits.argmax(-1)
    return [int(c) for i, c in enumerate(best) if c != blank and (i == 0 or c != best[i - 1])]


def edit_distance(a, b):
    """Levenshtein distance of two sequences."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def ctc_label(spec, label):
    """A label as class indices: a string through the charset, or indices padded with -1."""
    if isinstance(label, str) or getattr(label, "dtype", None) is not None and label.dtype.kind in "US":
        charset, blank = spec.get("charset") or "", int(spec.get("blank", 0))
        offset = 1 if blank == 0 else 0
        return [charset.index(ch) + offset for ch in str(label)]
    return [int(c) for c in list(label.reshape(-1)) if c >= 0]


class CTC(Metric):
    """Decoded strings against FP32's (exact match, CER), and against labels where there are some."""

    def update(self, pred, ref, labels):
        np, blank = self.np, int(self.spec.get("blank", 0))
        for i in range(len(pred)):
            steps = pred[i].reshape(-1, pred[i].shape[-1])
            text = ctc_greedy(np, steps, blank)
            if ref is not None:
                truth = ctc_greedy(np, ref[i].reshape(-1, ref[i].shape[-1]), blank)
                self.add("string_match", text == truth)
                self.add("edits", edit_distance(text, truth))
                self.add("chars", len(truth))
            if labels is not None:
                truth = ctc_label(self.spec, labels[i])
                self.add("label_match", text == truth)
                self.add("label_edits", edit_distance(text, truth))
                self.add("label_chars", len(truth))
        self.n += len(pred)

    def result(self):
        sums, n = self.sums, self.n
        figures = {"metric": "ctc", "n": n}
        if n and "chars" in sums:
            figures["string_match"] = sums["string_match"] / n
            figures["cer"] = sums["edits"] / max(sums["chars"], 1.0)
        if n and "label_chars" in sums:
            figures["label_match"] = sums["label_match"] / n
            figures["label_cer"] = sums["label_edits"] / max(sums["label_chars"], 1.0)
        return figures


METRICS = {"top1": Top1, "binary": Binary, "iou": IoU, "nme": NME, "mae": MAE, "sequence": Sequence,
           "cosine": Cosine, "snr_db": SNR, "detection": Detection, "ctc": CTC}


def labels_of(data, output, spec):
    """The labels of one judged output: `labels:<output>`, or `labels` for the spec's label output."""
    key = "labels:" + output["name"]
    if key in data:
        return data[key]
    if "labels" in data and output.get("labels"):
        return data["labels"]
    return None


def measure_accuracy(np, session, spec, data, reference, report):
    """Every judged output's figures over the evaluation set, a step at a time, in float32."""
    arrays = {i["name"]: data[i["name"]] for i in spec["inputs"] if i["source"] == "data"}
    metrics = {o["name"]: METRICS[o["metric"]](np, o) for o in spec["outputs"]}
    labels = {o["name"]: labels_of(data, o, spec) for o in spec["outputs"]}
    refs = {name: reference[name] for name, _ in read_outputs(spec)} if reference is not None else {}
    declared = {o.name: o.shape for o in session.get_outputs()}

    def on_step(start, feeds, outputs):
        if start == 0:
            for warning in check_layout(spec, outputs, declared):
                report.warn(warning)
        stop = start + int(spec.get("batch") or 1)
        preds = judged_outputs(np, spec, outputs)
        step_refs = {name: ref[start:stop] for name, ref in refs.items()}
        for name, metric in metrics.items():
            found = labels[name][start:stop] if labels[name] is not None else None
            metric.step(preds, step_refs, found)

    feeder = run_steps(np, session, spec, arrays, on_step)
    report.doc["accuracy"] = {"n": len(feeder.steps()) * feeder.batch,
                              "outputs": {name: m.result() for name, m in metrics.items()}}


def collect_outputs(np, session, spec, arrays):
    """The judged outputs over a whole set, [N, *sample] each: the FP32 reference (controller side)."""
    collected = {name: [] for name, _ in read_outputs(spec)}
    declared = {o.name: o.shape for o in session.get_outputs()}

    def on_step(start, feeds, outputs):
        if start == 0:
            check_layout(spec, outputs, declared)
        for name, value in judged_outputs(np, spec, outputs).items():
            collected[name].append(value)

    run_steps(np, session, spec, arrays, on_step)
    return {name: np.concatenate(values) for name, values in collected.items()}


# -- board state: was the board fit to be timed? -------------------------------------------------------
# Read before and after the timed runs from /proc and /sys (and vcgencmd on a Raspberry Pi); anything a
# board does not expose is left out, never guessed. `root` lets a test point it at a fake tree.
THROTTLE_BITS = {0x1: "under-voltage", 0x2: "arm frequency capped", 0x4: "throttled", 0x8: "soft temperature limit"}


def read_text(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def read_int(path):
    text = read_text(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def list_dir(path):
    """A folder's entries, sorted; none where the board has no such folder."""
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def runnable_others(root, samples=5):
    """Runnable tasks other than this one (median of a few /proc/stat reads): load average lags a minute."""
    counts = []
    for i in range(samples):
        for line in (read_text(os.path.join(root, "proc/stat")) or "").splitlines():
            if line.startswith("procs_running "):
                counts.append(max(0, int(line.split()[1]) - 1))
        if i + 1 < samples:
            time.sleep(0.02)
    return sorted(counts)[len(counts) // 2] if counts else None


def cpu_frequencies(root, cpus):
    """Per usable core: governor, current and max frequency (MHz), and the kernel's thermal throttle count."""
    found = {}
    for cpu in cpus:
        base = os.path.join(root, "sys/devices/system/cpu/cpu%d" % cpu)
        entry = {"governor": read_text(os.path.join(base, "cpufreq/scaling_governor"))}
        for key, name in (("cur_mhz", "scaling_cur_freq"), ("max_mhz", "cpuinfo_max_freq")):
            khz = read_int(os.path.join(base, "cpufreq", name))
            entry[key] = round(khz / 1000.0, 1) if khz else None
        entry["throttle_count"] = read_int(os.path.join(base, "thermal_throttle/core_throttle_count"))
        if any(v is not None for v in entry.values()):
            found[str(cpu)] = entry
    return found


def thermal_zones(root):
    """Each thermal zone's temperature and its first passive trip point, in degrees C."""
    zones = {}
    base = os.path.join(root, "sys/class/thermal")
    for name in (n for n in list_dir(base) if n.startswith("thermal_zone")):
        millis = read_int(os.path.join(base, name, "temp"))
        if millis is None:
            continue
        zone = {"type": read_text(os.path.join(base, name, "type")) or name, "temp_c": millis / 1000.0}
        for i in range(8):
            kind = read_text(os.path.join(base, name, "trip_point_%d_type" % i))
            if kind is None:
                break
            if kind == "passive":
                zone["passive_c"] = (read_int(os.path.join(base, name, "trip_point_%d_temp" % i)) or 0) / 1000.0
                break
        zones[name] = zone
    return zones


def devfreq_clocks(root):
    """Accelerator and bus clocks (/sys/class/devfreq: a Jetson's GPU, a Qualcomm kgsl GPU), in MHz."""
    found = {}
    base = os.path.join(root, "sys/class/devfreq")
    for name in list_dir(base):
        cur, top = (read_int(os.path.join(base, name, f)) for f in ("cur_freq", "max_freq"))
        if cur is not None:
            found[name] = {"governor": read_text(os.path.join(base, name, "governor")), "cur_mhz": cur / 1e6,
                           "max_mhz": top / 1e6 if top else None}
    return found


def pi_throttled():
    """Raspberry Pi firmware flags (vcgencmd get_throttled): bits 0-3 now, 16-19 since boot."""
    import shutil
    import subprocess
    tool = shutil.which("vcgencmd")
    if tool is None:
        return None
    try:
        text = subprocess.run([tool, "get_throttled"], capture_output=True, text=True, timeout=5).stdout
        return int(text.strip().split("=")[-1], 16)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def board_state(root="/"):
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    state = {"at": time.time(), "runnable_others": runnable_others(root), "cpus": cpu_frequencies(root, cpus),
             "thermal": thermal_zones(root), "devfreq": devfreq_clocks(root)}
    load = (read_text(os.path.join(root, "proc/loadavg")) or "").split()
    state["loadavg"] = [float(v) for v in load[:3]] if len(load) >= 3 else None
    if root == "/":
        state["pi_throttled"] = pi_throttled()
    return state


def state_flags(before, after, cores_usable):
    """Why the timing may not show the model: throttling, foreign load, a core below its max frequency."""
    flags = []
    for when, state in (("before", before), ("after", after)):
        others = state.get("runnable_others")
        if others is not None and others >= max(1, cores_usable or 1):
            flags.append("foreign load %s: %d other runnable tasks for %d usable cores" % (when, others, cores_usable))
        bits = state.get("pi_throttled") or 0
        named = [text for bit, text in sorted(THROTTLE_BITS.items()) if bits & bit]
        if named:
            flags.append("throttled %s: %s (get_throttled=0x%x)" % (when, ", ".join(named), bits))
        for zone in state.get("thermal", {}).values():
            if zone.get("passive_c") and zone["temp_c"] >= zone["passive_c"]:
                flags.append("hot %s: %s at %.1f C, passive trip %.1f C" % (when, zone["type"], zone["temp_c"],
                                                                           zone["passive_c"]))
    # Frequency right after the last timed run, before an idle governor lowers it; the fastest usable
    # core counts (on big.LITTLE the idle little cores run slow by design).
    clocked = [(e["cur_mhz"] / e["max_mhz"], cpu, e) for cpu, e in after.get("cpus", {}).items()
               if e.get("cur_mhz") and e.get("max_mhz")]
    fastest = max(clocked, key=lambda c: c[0]) if clocked else None
    if fastest and fastest[0] < 0.9:
        _, cpu, entry = fastest
        flags.append("below max frequency: the fastest usable core, cpu%s, at %.0f of %.0f MHz (governor %s)"
                     % (cpu, entry["cur_mhz"], entry["max_mhz"], entry.get("governor") or "?"))
    for cpu, entry in sorted(before.get("cpus", {}).items()):
        end = after.get("cpus", {}).get(cpu, {})
        if entry.get("throttle_count") is not None and (end.get("throttle_count") or 0) > entry["throttle_count"]:
            flags.append("throttled during the runs: cpu%s's thermal throttle count rose by %d"
                         % (cpu, end["throttle_count"] - entry["throttle_count"]))
    return flags


# -- latency, memory, profile -----------------------------------------------------------------------
# Warm-up runs until the latency settles: the median of the last WINDOW runs within STABLE_PCT of the
# window before (caches, page faults, the governor ramping up), after at least --warmup runs and at
# most WARMUP_CAP times as many (and a tenth of the time cap): a model that never settles is measured
# anyway, with a warning.
WINDOW, STABLE_PCT, WARMUP_CAP = 10, 5.0, 10
MAX_SAMPLES = 200000  # a sub-millisecond model under a long --min-duration-s: the document stays small


def warm_up(step, least, cap_s):
    """Run `least` warm-ups, then windows until two in a row agree; returns (runs, stable)."""
    if least == 0:
        return 0, True
    took = [step() for _ in range(least)]
    deadline = time.monotonic() + cap_s if cap_s else None
    while True:
        if len(took) >= 2 * WINDOW:
            last, before = sorted(took[-WINDOW:]), sorted(took[-2 * WINDOW:-WINDOW])
            if abs(last[WINDOW // 2] / float(before[WINDOW // 2]) - 1) * 100 <= STABLE_PCT:
                return len(took), True
        if len(took) >= max(least * WARMUP_CAP, 2 * WINDOW) or deadline is not None and time.monotonic() >= deadline:
            return len(took), False
        took.append(step())


def measure_latency(session, feeds, carry, rules, report):
    """Time session.run alone (MLPerf's run rules: at least --min-runs and --min-duration-s, both, capped
    by --duration); carrying the state between runs happens outside the clock."""
    clock = time.perf_counter_ns
    names = [o.name for o in session.get_outputs()]

    def step():
        start = clock()
        outputs = session.run(names, feeds)
        took = clock() - start
        for target, source in carry:
            feeds[target] = outputs[names.index(source)].astype(feeds[target].dtype, copy=False)
        return took

    report.doc["cold_run_ms"] = round(step() / 1e6, 6)
    warmed, stable = warm_up(step, rules.warmup, rules.duration / 10.0 if rules.duration else None)
    if not stable:
        report.warn("the latency did not settle in %d warm-up runs (medians of %d runs %s %% apart): measured "
                    "anyway" % (warmed, WINDOW, STABLE_PCT))
    samples = []
    began = time.monotonic()
    deadline = began + rules.duration if rules.duration else None
    while True:
        samples.append(step() / 1e6)
        now = time.monotonic()
        if len(samples) >= rules.min_runs and now - began >= rules.min_duration_s or len(samples) >= MAX_SAMPLES:
            break
        if deadline is not None and now >= deadline:
            break
    elapsed = time.monotonic() - began
    met = len(samples) >= rules.min_runs and elapsed >= rules.min_duration_s
    if not met:
        cause = ("the %d-sample ceiling" % MAX_SAMPLES if len(samples) >= MAX_SAMPLES
                 else "--duration %.1f s" % rules.duration)
        report.warn("stopped after %d runs in %.1f s (the rules ask for %d runs and %.1f s): %s reached"
                    % (len(samples), elapsed, rules.min_runs, rules.min_duration_s, cause))
    report.doc["run_rules"] = {"min_runs": rules.min_runs, "min_duration_s": rules.min_duration_s,
                               "max_duration_s": rules.duration, "runs": len(samples),
                               "duration_s": round(elapsed, 3), "met": met, "warmup_runs": warmed,
                               "warmup_stable": stable}
    report.doc["samples_ms"] = [round(s, 6) for s in samples]
    report.doc["latency_ms"] = summarize(samples)


def read_profile(session):
    """The kernel events of a session's profile (then the file is removed)."""
    path = session.end_profiling()
    try:
        with open(path) as handle:
            events = json.load(handle)
    finally:
        os.remove(path)
    return [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]


def profile_prefix():
    import tempfile
    return os.path.join(tempfile.gettempdir(), "farm-profile-%d" % os.getpid())


def profile_op_shares(runtime, model, feeds, runs):
    """Share of run time per op type from onnxruntime's own profile (what a slow INT8 variant spends on)."""
    session = runtime.open(model, runtime.options(profile=True))
    for _ in range(runs):
        session.run(None, feeds)
    totals = {}
    for event in read_profile(session):
        op = (event.get("args") or {}).get("op_name")
        if op:
            totals[op] = totals.get(op, 0) + event.get("dur", 0)
    whole = float(sum(totals.values())) or 1.0
    return {"runs": runs, "op_share_pct": {op: round(100.0 * t / whole, 2)
                                           for op, t in sorted(totals.items(), key=lambda kv: -kv[1])}}


# -- accelerators: the provider a board's toolchain asks for, and how much of the model it takes --------
CPU = "CPUExecutionProvider"
FALLBACK_KEY = "session.disable_cpu_ep_fallback"
OPTION_GETTER = "@get_"  # an option value `@get_qnn_htp_path`: that function of the plugin module, on the board


def parse_pairs(pairs):
    """KEY=VALUE arguments as a mapping (values stay text: onnxruntime reads provider options as text)."""
    found = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError("expected KEY=VALUE, got %r" % pair)
        found[key] = value
    return found


def plugin_options(module, options):
    """Provider options with `@get_...` values resolved by the plugin module (paths of its own libraries)."""
    resolved = {}
    for key, value in options.items():
        if value.startswith(OPTION_GETTER):
            getter = getattr(module, value[1:], None)
            if not callable(getter):
                raise ValueError("%s has no %s() for provider option %s" % (module.__name__, value[1:], key))
            value = getter()
        resolved[key] = value
    return resolved


def engine_cache_key(model_sha256, tensorrt_version, gpu):
    """A TensorRT engine is valid for one model, one TensorRT and one GPU: its cache folder names all three,
    so a stale engine (another model, an upgraded TensorRT, another GPU) is never reused."""
    clean = lambda text: "".join(c if c.isalnum() or c in ".-" else "_" for c in str(text or "unknown"))  # noqa: E731
    return "%s-trt%s-%s" % (model_sha256[:16], clean(tensorrt_version), clean(gpu))


def gpu_name():
    """The board's GPU as its driver names it (Jetson: the nvgpu's; elsewhere the first NVIDIA GPU)."""
    import glob
    for path in sorted(glob.glob("/proc/driver/nvidia/gpus/*/information")):
        try:
            with open(path) as handle:
                for line in handle:
                    if line.startswith("Model:"):
                        return line.split(":", 1)[1].strip()
        except OSError:
            continue
    for path in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        try:
            with open(path, "rb") as handle:
                return handle.read().rstrip(b"\0").decode(errors="replace").strip()
        except OSError:
            continue
    return None


def tensorrt_version():
    try:
        import tensorrt
        return tensorrt.__version__
    except Exception:
        return None


ARTIFACTS_MARK = "farm-model.sha256"  # written by farm beside compiled artifacts: the model they were built from


def unpack_artifacts(archive, model):
    """A compiled-artifacts archive (pushed by its sha256) unpacked once beside the blobs; ValueError when
    the artifacts were compiled from another model than the one measured."""
    import tarfile
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(archive))), "artifacts",
                          os.path.basename(archive))
    if not os.path.isdir(folder):
        partial = folder + ".partial-%d" % os.getpid()
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                outside = member.name.startswith("/") or ".." in member.name.split("/")
                if outside or not (member.isfile() or member.isdir()):
                    raise ValueError("artifacts archive %s holds %r: only plain files inside it"
                                     % (archive, member.name))
            tar.extractall(partial)
        os.rename(partial, folder)
    try:
        with open(os.path.join(folder, ARTIFACTS_MARK)) as handle:
            built_from = handle.read().strip()
    except OSError:
        built_from = None
    digest = sha256_of(model)
    if built_from != digest:
        raise ValueError("the compiled artifacts are for model sha256 %s, not this model's %s: compile them again "
                         "from this model" % ((built_from or "unknown")[:12], digest[:12]))
    return folder


class Runtime(object):
    """How sessions are opened on this board: the providers asked for, a plugin provider registered,
    the provider options and session settings of the board's toolchain."""

    def __init__(self, ort, args, report):
        self.ort, self.args, self.report = ort, args, report
        self.provider_options = parse_pairs(args.provider_option)
        self.session_config = parse_pairs(args.session_config)
        self.devices = None
        self.simulated = None
        self.unavailable = None  # why the accelerator cannot be used here
        accelerator = self.accelerator
        if args.plugin_ep:
            self._register(args.plugin_ep)
        if args.engine_cache_root and accelerator == "TensorrtExecutionProvider":
            self._engine_cache(args.engine_cache_root)
        if args.artifacts_archive:
            self.provider_options["artifacts_folder"] = unpack_artifacts(args.artifacts_archive, args.model)
        self.providers = choose_providers(ort, args.providers, report, plugin=bool(self.devices))
        if accelerator and not self.devices and accelerator not in self.providers:
            self.unavailable = self.unavailable or "%s is not available on this board" % accelerator

    @property
    def accelerator(self):
        first = (self.args.providers or [CPU])[0]
        return None if first == CPU else first

    def _register(self, module_name):
        ort, name = self.ort, self.accelerator
        try:
            import importlib
            module = importlib.import_module(module_name)
            ort.register_execution_provider_library(name, module.get_library_path())
            self.devices = [d for d in ort.get_ep_devices() if d.ep_name == name]
            self.provider_options = plugin_options(module, self.provider_options)
        except Exception as exc:
            self.unavailable = "cannot register the plugin provider %s from %s: %s" % (name, module_name, exc)
            self.report.warn(self.unavailable)
            self.devices = None
            return
        if not self.devices:
            self.unavailable = "%s registered no device on this board" % name
            self.report.warn(self.unavailable)
            self.devices = None
            return
        backend = self.provider_options.get("backend_path", "")
        if module_name == "onnxruntime_qnn" and backend.endswith("libQnnHtp.so") and \
                platform.machine() in ("x86_64", "AMD64"):
            # the x86_64 backend runs the Hexagon graph in a simulator: its arithmetic, not its timing
            self.simulated = "HTP simulated on %s" % platform.machine()
        self.report.doc["facts"]["plugin_ep"] = {"name": name, "module": module_name,
                                                 "version": getattr(module, "__version__", None)}

    def _engine_cache(self, root):
        key = engine_cache_key(sha256_of(self.args.model), tensorrt_version(), gpu_name())
        path = os.path.join(root, key)
        self.provider_options.update(trt_engine_cache_enable="1", trt_engine_cache_path=path,
                                     trt_timing_cache_enable="1", trt_timing_cache_path=path)
        self.report.doc["facts"]["engine_cache"] = {"key": key, "path": path, "warm": os.path.isdir(path)}

    def options(self, fallback=True, profile=False, optimize=True):
        ort = self.ort
        options = ort.SessionOptions()
        if self.args.threads:
            options.intra_op_num_threads = self.args.threads
        for key, value in self.session_config.items():
            options.add_session_config_entry(key, value)
        if not fallback:
            options.add_session_config_entry(FALLBACK_KEY, "1")
        if not optimize:  # node placement: every node of the model kept, none fused away
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if profile:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix()
        if self.devices:
            options.add_provider_for_devices(self.devices, self.provider_options)
        return options

    def open(self, path, options):
        if self.devices:
            return self.ort.InferenceSession(path, options)
        providers = [(p, self.provider_options) if p == self.accelerator and self.provider_options else p
                     for p in self.providers]
        return self.ort.InferenceSession(path, options, providers=providers)


def model_nodes(path):
    """(name, op type) of every node of the model's main graph, without the onnx package."""
    nodes = []
    for number, wire, graph in model_fields(path):
        if number == 7 and wire == 2:
            for field, kind, node in proto_fields(graph):
                if field == 1 and kind == 2:
                    values = {n: v for n, _, v in proto_fields(node) if n in (3, 4)}
                    nodes.append((bytes(values.get(3, b"")).decode(), bytes(values.get(4, b"")).decode()))
    return nodes


def placement(runtime, model, feeds):
    """Which nodes the accelerator took, from a profile with fallback allowed and no fusion: each node left
    to the CPU runs as itself, named; the accelerator's share of the kernel time beside it."""
    nodes = model_nodes(model)
    session = runtime.open(model, runtime.options(profile=True, optimize=False))
    session.run(None, feeds)
    events = read_profile(session)
    on_cpu, time_by = {}, {}
    for event in events:
        args = event.get("args") or {}
        provider = args.get("provider")
        time_by[provider] = time_by.get(provider, 0) + event.get("dur", 0)
        if provider != runtime.accelerator:
            on_cpu[event["name"][:-len("_kernel_time")]] = args.get("op_name")
    fallen = {}
    for op in on_cpu.values():
        fallen[op] = fallen.get(op, 0) + 1
    total = len(nodes) or 1
    whole = float(sum(time_by.values())) or 1.0
    return {"nodes": len(nodes), "on_accelerator": max(0, len(nodes) - len(on_cpu)),
            "node_pct": round(100.0 * max(0, len(nodes) - len(on_cpu)) / total, 2),
            "time_pct": round(100.0 * time_by.get(runtime.accelerator, 0) / whole, 2),
            "fallen_back": dict(sorted(fallen.items()))}


def synthetic_inputs(np, inputs):
    """Latency-only inputs where no feed was given (accuracy then is not measured)."""
    feeds = {}
    for spec in inputs:
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec.shape]
        feeds[spec.name] = np.zeros(shape, dtype=NP_TYPES.get(spec.type, "float32"))
    return feeds


def choose_providers(ort, requested, report, plugin=False):
    """The requested providers this onnxruntime has (a registered plugin provider counts as available)."""
    available = ort.get_available_providers() + (requested[:1] if plugin else [])
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


def model_fields(path):
    """The top-level fields of a model file (ModelProto)."""
    with open(path, "rb") as handle:
        return list(proto_fields(memoryview(handle.read())))


def model_opset(path):
    """The default-domain opset from ModelProto.opset_import (field 8), without the onnx package."""
    versions = []
    for number, wire, value in model_fields(path):
        if number == 8 and wire == 2:
            fields = {n: v for n, _, v in proto_fields(value)}
            domain = bytes(fields.get(1, b"")).decode()
            if domain in ("", "ai.onnx"):
                versions.append(fields.get(2))
    return max(versions) if versions else None


def load_spec(path):
    with open(path) as handle:
        return json.load(handle)


def first_line(exc):
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def open_session(args, ort, report):
    """Check the model's hash, load it as the board's toolchain says; (None, None) when it cannot run.

    With --offload the accelerator gets the model with CPU fallback disabled: a load that succeeds
    proves every node is on it. One that fails says why, and the model is loaded again with fallback
    (its figures then are partly the CPU's: the offload item says so, with the ops that fell back)."""
    doc = report.doc
    digest = sha256_of(args.model)
    doc["model"]["sha256"] = digest
    doc["model"]["size_bytes"] = os.path.getsize(args.model)
    if args.expect_sha256 and digest != args.expect_sha256:
        report.error("integrity", "model sha256 %s does not match the expected %s: nothing measured"
                     % (digest, args.expect_sha256))
        return None, None
    if args.context_model and args.context_sha256 and sha256_of(args.context_model) != args.context_sha256:
        report.error("integrity", "context binary %s does not match the expected sha256 %s: nothing measured"
                     % (args.context_model, args.context_sha256))
        return None, None
    doc["memory_mb"]["rss_before_load"] = read_proc_status("VmRSS")
    try:
        runtime = Runtime(ort, args, report)
    except ValueError as exc:  # bad provider options, artifacts compiled from another model
        report.error("load", str(exc))
        return None, None
    if runtime.simulated:
        doc["model"]["simulated"] = runtime.simulated
    if args.context_model and args.mode == "accuracy":
        # The model compiled on the board, first in this process as the context binary is in the latency one.
        start = time.perf_counter_ns()
        try:
            runtime.open(args.model, runtime.options(fallback=not args.offload))
            doc["load_ms_without_context"] = round((time.perf_counter_ns() - start) / 1e6, 3)
        except Exception as exc:
            report.warn("the model without its context binary did not load: %s" % first_line(exc))
    path = args.context_model or args.model
    start = time.perf_counter_ns()
    try:
        session, refused = load_offloaded(runtime, path, args.offload, report)
    except Exception as exc:  # onnxruntime raises several unrelated types for a bad model
        report.error("load", "onnxruntime cannot load the model: %s" % first_line(exc))
        return None, None
    doc["load_ms"] = round((time.perf_counter_ns() - start) / 1e6, 3)
    if args.context_model:
        doc["model"]["context_binary"] = {"sha256": args.context_sha256, "size_bytes": os.path.getsize(path)}
    doc["memory_mb"]["rss_after_load"] = read_proc_status("VmRSS")
    used = session.get_providers()
    doc["model"]["provider_used"] = used[0]
    doc["model"]["providers_used"] = used
    if args.offload:
        doc["offload"] = {"provider": runtime.accelerator, "fallback_disabled": refused is None,
                          "refused": refused or runtime.unavailable}
    if args.providers and used[0] != args.providers[0]:
        report.warn("asked for %s, ran on %s" % (args.providers[0], used[0]))
    try:
        doc["model"]["opset"] = model_opset(args.model)
    except Exception as exc:
        report.warn("cannot read the opset: %s" % exc)
    doc["model"]["inputs"] = [{"name": i.name, "shape": i.shape, "type": i.type} for i in session.get_inputs()]
    return session, runtime


def load_offloaded(runtime, path, offload, report):
    """(session, why the accelerator refused it with fallback disabled, or None)."""
    if not offload or runtime.unavailable:
        return runtime.open(path, runtime.options()), runtime.unavailable if offload else None
    try:
        return runtime.open(path, runtime.options(fallback=False)), None
    except Exception as exc:
        refused = first_line(exc)
    report.warn("%s refused the model with CPU fallback disabled (%s): measured with fallback"
                % (runtime.accelerator, refused))
    return runtime.open(path, runtime.options()), refused


def offloaded(runtime, model, feeds, report):
    """The offload figures: every node when the accelerator took the model with fallback disabled, else
    where each node ran (a profile with fallback allowed)."""
    offload = report.doc["offload"]
    if offload["fallback_disabled"]:
        count = len(model_nodes(model))
        offload.update(nodes=count, on_accelerator=count, node_pct=100.0, time_pct=100.0, fallen_back={})
        return
    if runtime.unavailable:
        nodes = model_nodes(model)
        fallen = {}
        for _, op in nodes:
            fallen[op] = fallen.get(op, 0) + 1
        offload.update(nodes=len(nodes), on_accelerator=0, node_pct=0.0, time_pct=0.0, fallen_back=fallen)
        return
    try:
        offload.update(placement(runtime, model, feeds))
    except Exception as exc:
        report.warn("cannot tell where the nodes ran: %s" % first_line(exc))
    free = ["%s %s" % (i["name"], i["shape"]) for i in report.doc["model"].get("inputs", [])
            if any(not isinstance(d, int) for d in i["shape"])]
    if free:
        offload["free_dims"] = free  # an accelerator compiling static graphs refuses these ("Cannot get shape")
    if not offload.get("on_accelerator"):
        report.doc["model"]["provider_used"] = CPU  # listed first by onnxruntime, yet it ran no node


def load_feed(np, args, session, spec, report):
    """The deployment feed (and which state inputs follow which outputs), or zeros with a warning."""
    carry = [(i["name"], i["from_output"]) for i in (spec or {}).get("inputs", []) if i["source"] == "state"]
    if args.feed:
        with np.load(args.feed) as feed:
            return {name: feed[name] for name in feed.files}, carry
    report.warn("no feed file: latency measured on zero inputs")
    return synthetic_inputs(np, session.get_inputs()), []


def measure(args, report):
    doc = report.doc
    doc["facts"] = gather_facts()
    doc["settings"] = {"mode": args.mode, "warmup": args.warmup, "min_runs": args.min_runs,
                       "min_duration_s": args.min_duration_s, "duration_s": args.duration,
                       "threads": args.threads, "providers_requested": args.providers,
                       "profile_runs": args.profile_runs}
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
    session, runtime = open_session(args, ort, report)
    if session is None:
        return
    spec = load_spec(args.spec) if args.spec else None
    if args.mode == "latency":
        try:
            feeds, carry = load_feed(np, args, session, spec, report)
            if args.offload:
                offloaded(runtime, args.model, feeds, report)
            before = board_state()
            measure_latency(session, feeds, carry, args, report)
            after = board_state()
        except Exception as exc:
            report.error("latency", "the model failed at run time: %s" % str(exc).strip().splitlines()[0])
            return
        doc["board_state"] = {"before": before, "after": after,
                              "flags": state_flags(before, after, doc["facts"].get("cores_usable"))}
        doc["memory_mb"]["rss_after_runs"] = read_proc_status("VmRSS")
        doc["peak_rss_mb"] = peak_rss_mb()
        return
    if spec is None or not args.data:
        report.error("accuracy", "the accuracy pass needs --spec and --data")
        return
    try:
        with np.load(args.data) as data:
            reference = np.load(args.reference) if args.reference else None
            measure_accuracy(np, session, spec, data, reference, report)
    except MemoryError:
        report.error("accuracy", "the accuracy pass ran out of memory holding the evaluation set and its FP32 "
                     "reference: evaluate fewer samples (the data file's evaluation arrays); the model's own "
                     "memory is measured apart, in the latency pass")
    except Exception as exc:
        report.error("accuracy", "the model failed at run time on the evaluation set: %s"
                     % str(exc).strip().splitlines()[0])
    doc["accuracy_peak_rss_mb"] = peak_rss_mb()
    if args.profile_runs and args.feed:
        try:
            feeds, _ = load_feed(np, args, session, spec, report)
            doc["profile"] = profile_op_shares(runtime, args.context_model or args.model, feeds, args.profile_runs)
        except Exception as exc:
            report.warn("no profile: %s" % exc)


def parse_args(argv):
    parser = argparse.ArgumentParser(description="farm board agent (prints one JSON document)")
    parser.add_argument("--model", required=True, help="ONNX model file")
    parser.add_argument("--mode", choices=("latency", "accuracy"), default="latency")
    parser.add_argument("--feed", help=".npz with one deployment feed (latency; the profile of the accuracy pass)")
    parser.add_argument("--spec", help="the model's resolved spec (JSON): how each input is fed, what is judged")
    parser.add_argument("--data", help=".npz with the evaluation samples and labels (accuracy)")
    parser.add_argument("--reference", help=".npz of FP32 reference outputs on the evaluation set (accuracy)")
    parser.add_argument("--expect-sha256", help="refuse to measure a model with another hash")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--min-runs", "--runs", dest="min_runs", type=int, default=100,
                        help="the least timed runs (MLPerf's minimum query count)")
    parser.add_argument("--min-duration-s", type=float, default=0.0,
                        help="the least seconds of timed runs; both minimums are met unless --duration stops them")
    parser.add_argument("--duration", type=float, default=None,
                        help="stop timed runs after this many seconds whatever the minimums (the deadline's share)")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: onnxruntime's default)")
    parser.add_argument("--profile-runs", type=int, default=0,
                        help="accuracy mode: also profile this many runs of the feed (time per op type)")
    parser.add_argument("--providers", default="CPUExecutionProvider",
                        type=lambda s: [p for p in s.split(",") if p], help="comma-separated, in order")
    parser.add_argument("--provider-option", action="append", default=[],
                        help="KEY=VALUE for the first provider (a value @get_x: the plugin module's get_x())")
    parser.add_argument("--session-config", action="append", default=[], help="KEY=VALUE session config entry")
    parser.add_argument("--plugin-ep", help="module of a plugin execution provider (onnxruntime_qnn) to register")
    parser.add_argument("--offload", action="store_true",
                        help="load with CPU fallback disabled first; report the share of nodes on the accelerator")
    parser.add_argument("--context-model", help="precompiled context model to measure (QNN EPContext)")
    parser.add_argument("--context-sha256", help="refuse a context model with another hash")
    parser.add_argument("--engine-cache-root", help="TensorRT: engine caches live here, one folder per "
                        "model sha256 + TensorRT version + GPU")
    parser.add_argument("--artifacts-archive", help="TIDL: the compiled artifacts for the model (a tar blob)")
    parser.add_argument("--watch-stdin", action="store_true",
                        help="stop when stdin closes: the controller holds it open while it waits for this run")
    args = parser.parse_args(argv)
    if args.min_runs < 1 or args.warmup < 0 or args.threads < 0 or args.profile_runs < 0 or args.min_duration_s < 0:
        parser.error("--min-runs must be >= 1, --warmup, --threads, --profile-runs and --min-duration-s >= 0")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.watch_stdin:
        stop_when_controller_goes()
    out = claim_stdout()
    report = Report(args.mode)
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
