"""Small deterministic detectors and recognizers for the detection and ctc metrics' tests (onnx.helper)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIDE, STRIDE, CELLS = 32, 4, 8  # a 32x32 image, an 8x8 grid of anchors, boxes reported in pixels of 320


def packed_detector(path: Path) -> Path:
    """YOLOv8-style: one output [1, 4 + 2 classes, 64 anchors], box rows (cx, cy, w, h) in pixels up to 320,
    then the class scores (sigmoid): the Concat that packs them is what static INT8 quantizes to one scale."""
    rng = np.random.default_rng(3)
    box_w = (rng.normal(size=(4, 3, STRIDE, STRIDE)) * 0.01).astype(np.float32)
    box_b = np.array([0, 0, 4, 4], np.float32)
    cls_w = np.zeros((2, 3, STRIDE, STRIDE), np.float32)
    cls_w[0, 0], cls_w[1, 1] = 4.0 / 16, 4.0 / 16  # a full object in its channel: logit 4 - 3.8
    cls_b = np.array([-3.8, -3.8], np.float32)
    grid = np.zeros((1, 4, CELLS, CELLS), np.float32)
    grid[0, 0] = np.arange(CELLS)[None, :] * STRIDE + STRIDE / 2
    grid[0, 1] = np.arange(CELLS)[:, None] * STRIDE + STRIDE / 2
    inits = [numpy_helper.from_array(a, n) for a, n in ((box_w, "box_w"), (box_b, "box_b"), (cls_w, "cls_w"),
                                                          (cls_b, "cls_b"), (grid, "grid"),
                                                          (np.array([10.0], np.float32), "ten"),
                                                          (np.array([1, 4, CELLS * CELLS], np.int64), "box_shape"),
                                                          (np.array([1, 2, CELLS * CELLS], np.int64), "cls_shape"))]
    conv = dict(kernel_shape=[STRIDE, STRIDE], strides=[STRIDE, STRIDE])
    nodes = [helper.make_node("Conv", ["image", "box_w", "box_b"], ["box_raw"], name="box_conv", **conv),
             helper.make_node("Add", ["box_raw", "grid"], ["box_cells"], name="box_grid"),
             helper.make_node("Mul", ["box_cells", "ten"], ["box_px"], name="box_scale"),
             helper.make_node("Reshape", ["box_px", "box_shape"], ["boxes"], name="box_flat"),
             helper.make_node("Conv", ["image", "cls_w", "cls_b"], ["cls_raw"], name="cls_conv", **conv),
             helper.make_node("Sigmoid", ["cls_raw"], ["cls_prob"], name="cls_sigmoid"),
             helper.make_node("Reshape", ["cls_prob", "cls_shape"], ["scores"], name="cls_flat"),
             helper.make_node("Concat", ["boxes", "scores"], ["output0"], name="pack", axis=1)]
    graph = helper.make_graph(nodes, "packed", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                               [1, 3, SIDE, SIDE])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, CELLS * CELLS])],
                              initializer=inits)
    return _save(graph, path)


def detector_images(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images with 1-3 objects, each a 4x4 square filling one anchor's cell in its class's channel;
    and their boxes as labels [N, 3, 5] (class, x1, y1, x2, y2 in pixels of 320; class -1 pads)."""
    rng = np.random.default_rng(seed)
    images = (rng.random((count, 3, SIDE, SIDE)) * 0.05).astype(np.float32)
    labels = np.full((count, 3, 5), -1.0, np.float32)
    for i in range(count):
        cells = rng.choice(CELLS * CELLS, size=int(rng.integers(1, 4)), replace=False)
        for j, cell in enumerate(cells):
            y, x, c = cell // CELLS, cell % CELLS, int(rng.integers(0, 2))
            images[i, c, y * STRIDE:(y + 1) * STRIDE, x * STRIDE:(x + 1) * STRIDE] = 1.0
            cx, cy = (x * STRIDE + STRIDE / 2) * 10, (y * STRIDE + STRIDE / 2) * 10
            labels[i, j] = [c, cx - 20, cy - 20, cx + 20, cy + 20]
    return images, labels


def ctc_recognizer(path: Path, classes: int = 6, steps: int = 20) -> Path:
    """Features [1, 8, T] -> logits [T, 1, classes] (time first), while the model declares [1, seqlen]."""
    rng = np.random.default_rng(4)
    weights = (np.eye(8, classes) * 3 + rng.normal(size=(8, classes)) * 0.3).astype(np.float32)
    nodes = [helper.make_node("Transpose", ["features"], ["time_first"], perm=[2, 0, 1], name="to_time"),
             helper.make_node("MatMul", ["time_first", "w"], ["logits"], name="classify")]
    graph = helper.make_graph(nodes, "ctc", [helper.make_tensor_value_info("features", TensorProto.FLOAT,
                                                                           [1, 8, steps])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "seqlen"])],
                              initializer=[numpy_helper.from_array(weights, "w")])
    return _save(graph, path)


def ctc_features(count: int, steps: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy one-hot features of random class runs (blank 0 between), and the strings they spell (charset abcde)."""
    rng = np.random.default_rng(seed)
    features = (rng.normal(size=(count, 8, steps)) * 0.35).astype(np.float32)
    texts = []
    for i in range(count):
        path = rng.integers(0, 6, size=steps)
        features[i, path, np.arange(steps)] += 1.0
        decoded = [int(c) for t, c in enumerate(path) if c and (t == 0 or c != path[t - 1])]
        texts.append("".join("abcde"[c - 1] for c in decoded))
    return features, np.array(texts)


def _save(graph, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def two_output_detector(path: Path, background_logit: float) -> Path:
    """BlazeFace's layout at 128 px: `classificators` [1, 896, 1] face logits and `regressors` [1, 896, 16]
    box offsets (cx, cy, w, h, then keypoints) from its anchors. A 16x16 bright square in channel 0 is a
    face (logit +2); elsewhere the logit is `background_logit`: about -2000, as BlazeFace's own head
    calibrates, leaves static INT8 a step of 8 logits, where -8 keeps it fine."""
    slope = (2.0 - background_logit) / 0.975
    inits, nodes, scores, boxes = [], [], [], []
    for stride, per_cell in ((8, 2), (16, 6)):
        cls_w = np.zeros((per_cell, 3, stride, stride), np.float32)
        cls_w[:, 0] = slope / stride ** 2 if stride == 16 else 0.0  # the faces are the 16-pixel anchors'
        cls_b = np.full(per_cell, background_logit - (slope * 0.025 if stride == 16 else 0.0), np.float32)
        reg_b = np.tile(np.array([0, 0, 16, 16] + [0] * 12, np.float32), per_cell)
        reg_w = (np.random.default_rng(stride).normal(size=(16 * per_cell, 3, stride, stride)) * 0.001).astype(
            np.float32)
        for name, value in ((f"cls{stride}_w", cls_w), (f"cls{stride}_b", cls_b), (f"reg{stride}_w", reg_w),
                            (f"reg{stride}_b", reg_b)):
            inits.append(numpy_helper.from_array(value, name))
        conv = dict(kernel_shape=[stride, stride], strides=[stride, stride])
        for head, width, found in (("cls", 1, scores), ("reg", 16, boxes)):
            shape = numpy_helper.from_array(np.array([1, -1, width], np.int64), f"{head}{stride}_shape")
            inits.append(shape)
            nodes += [helper.make_node("Conv", ["input", f"{head}{stride}_w", f"{head}{stride}_b"], [f"{head}{stride}"],
                                       name=f"{head}{stride}_conv", **conv),
                      helper.make_node("Transpose", [f"{head}{stride}"], [f"{head}{stride}_t"], perm=[0, 2, 3, 1]),
                      helper.make_node("Reshape", [f"{head}{stride}_t", shape.name], [f"{head}{stride}_flat"])]
            found.append(f"{head}{stride}_flat")
    nodes += [helper.make_node("Concat", scores, ["classificators"], axis=1, name="classificators"),
              helper.make_node("Concat", boxes, ["regressors"], axis=1, name="regressors")]
    graph = helper.make_graph(nodes, "faces", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                              [1, 3, 128, 128])],
                              [helper.make_tensor_value_info("classificators", TensorProto.FLOAT, [1, 896, 1]),
                               helper.make_tensor_value_info("regressors", TensorProto.FLOAT, [1, 896, 16])],
                              initializer=inits)
    return _save(graph, path)


def face_images(count: int, seed: int = 0) -> np.ndarray:
    """128x128 images with one or two 16x16 'faces' on the 16-pixel grid, in [0, 0.05] elsewhere."""
    rng = np.random.default_rng(seed)
    images = (rng.random((count, 3, 128, 128)) * 0.05).astype(np.float32)
    for i in range(count):
        for cell in rng.choice(64, size=int(rng.integers(1, 3)), replace=False):
            y, x = cell // 8 * 16, cell % 8 * 16
            images[i, 0, y:y + 16, x:x + 16] = 1.0
    return images
