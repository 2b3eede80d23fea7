"""An FP32 ONNX model as farm sees it: validated once, hashed once, its inputs, outputs and opset."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import onnx

from farm.build.datafile import TensorSpec
from farm.errors import ModelError
from farm.util import file_sha256

# Op types that only move or reshape data: never worth naming as "left in float".
LAYOUT_OPS = {"Reshape", "Flatten", "Shape", "Gather", "Concat", "Transpose", "Squeeze", "Unsqueeze",
              "Identity", "Cast", "Constant", "Slice", "Split", "QuantizeLinear", "DequantizeLinear",
              "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger"}


@dataclass
class ModelInfo:
    path: Path
    name: str
    sha256: str
    opset: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    proto: onnx.ModelProto = field(repr=False)

    def describe(self) -> dict:
        specs = lambda items: [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype} for t in items]  # noqa: E731
        return {"name": self.name, "file": self.path.name, "sha256": self.sha256, "opset": self.opset,
                "inputs": specs(self.inputs), "outputs": specs(self.outputs)}


def _tensor_specs(values) -> list[TensorSpec]:
    specs = []
    for value in values:
        tensor = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim)
        specs.append(TensorSpec(value.name, dims, onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name))
    return specs


def default_opset(model: onnx.ModelProto) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def inspect_model(path: str | Path) -> ModelInfo:
    """Validate a model file: exists, parses, passes onnx.checker; ModelError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:
        raise ModelError(f"{path}: not an ONNX model ({type(exc).__name__}: {exc})") from exc
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ModelError(f"{path}: onnx.checker rejects the model: {exc}") from exc
    initializers = {i.name for i in proto.graph.initializer}
    inputs = _tensor_specs(i for i in proto.graph.input if i.name not in initializers)
    if not inputs:
        raise ModelError(f"{path}: the model has no inputs")
    return ModelInfo(path, path.stem, file_sha256(path), default_opset(proto), inputs,
                     _tensor_specs(proto.graph.output), proto)


# Integer kernels, by the float op they replace.
QUANTIZED_FORMS = {"MatMulInteger": "MatMul", "DynamicQuantizeMatMul": "MatMul", "QLinearMatMul": "MatMul",
                   "ConvInteger": "Conv", "QLinearConv": "Conv", "QGemm": "Gemm", "DynamicQuantizeLSTM": "LSTM",
                   "QAttention": "Attention"}


def graphs(graph: onnx.GraphProto):
    """A graph and every subgraph in it (If / Loop / Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from graphs(attribute.g)
            for sub in attribute.graphs:
                yield from graphs(sub)


FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)


def _runs_in_int8(node, weights: set, parameters: set, dequantized: dict, consumers: dict) -> bool:
    """QDQ: an op with weights runs in INT8 when they come through DequantizeLinear (an op kept in float
    may still read a dequantized activation); an op without weights when its output is quantized again."""
    inputs = [i for i in node.input if i and i not in parameters]
    if any(i in weights for i in inputs):
        return False
    if any(i in dequantized and dequantized[i].input[0] in weights | parameters for i in inputs):
        return True
    return bool(inputs) and all(i in dequantized for i in inputs) and all(
        consumers.get(o) and all(c == "QuantizeLinear" for c in consumers[o]) for o in node.output)


def quantization_census(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """(ops of each type that run in INT8, compute ops of each type left in float), subgraphs included.

    What the manifest records per variant, what makes a variant a no-op, and what a
    speedup failure names ("ops left in float").
    """
    quantized: dict[str, int] = {}
    left: dict[str, int] = {}
    for graph in graphs(onnx.load(str(path), load_external_data=False).graph):
        # float tensors of more than one value are weights; integer tensors and scalars are parameters
        weights = {i.name for i in graph.initializer if i.data_type in FLOAT_TYPES and any(d > 1 for d in i.dims)}
        parameters = {i.name for i in graph.initializer} - weights
        dequantized = {o: n for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        consumers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                consumers.setdefault(name, []).append(node.op_type)
        for node in graph.node:
            if node.op_type in QUANTIZED_FORMS:
                op = QUANTIZED_FORMS[node.op_type]
                quantized[op] = quantized.get(op, 0) + 1
            elif node.op_type in LAYOUT_OPS or node.op_type.startswith("QLinear"):
                continue
            elif _runs_in_int8(node, weights, parameters, dequantized, consumers):
                quantized[node.op_type] = quantized.get(node.op_type, 0) + 1
            else:
                left[node.op_type] = left.get(node.op_type, 0) + 1
    return dict(sorted(quantized.items())), dict(sorted(left.items()))
