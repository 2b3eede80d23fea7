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
                   "MatMulIntegerToFloat": "MatMul",
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


# What onnxruntime's optimizer fuses a float op into, by the op it still is.
FUSED_FORMS = {"FusedConv": "Conv", "FusedGemm": "Gemm", "FusedMatMul": "MatMul", "NhwcConv": "Conv"}
INTEGER_PRODUCERS = ("QuantizeLinear", "DynamicQuantizeLinear")


@dataclass
class OpCensus:
    """What a variant runs, counted on the graph onnxruntime executes (its optimized model)."""

    quantized: dict[str, int]  # INT8 kernels, by the float op they replace
    left: dict[str, int]  # compute ops that run in float
    between_qdq: dict[str, int]  # of those, the ones between DequantizeLinear and QuantizeLinear


def _count(table: dict[str, int], op: str) -> None:
    table[op] = table.get(op, 0) + 1


def optimized_model(path: Path, target: Path) -> onnx.ModelProto:
    """The graph onnxruntime runs for `path` on the CPU provider (QDQ groups fused into QLinear kernels,
    float ops fused), saved through SessionOptions.optimized_model_filepath. Extended level: the
    layout level's NCHWc rewrites are specific to one CPU and change no op's precision."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(target)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return onnx.load(str(target), load_external_data=False)


def quantization_census(path: Path) -> OpCensus:
    """INT8 kernels and float ops of the optimized graph, subgraphs included: what the manifest records
    per variant, what makes a variant a no-op, and what a speedup failure names ("ops left in float").

    A QDQ annotation is not an INT8 kernel: onnxruntime runs an op it has no integer kernel for
    (ConvTranspose, HardSigmoid, Div...) in float between DequantizeLinear and QuantizeLinear."""
    import tempfile

    census = OpCensus({}, {}, {})
    with tempfile.TemporaryDirectory(prefix="farm-census-") as tmp:
        model = optimized_model(path, Path(tmp) / "optimized.onnx")
    for graph in graphs(model.graph):
        parameters = {i.name for i in graph.initializer}
        integer: set[str] = set()  # tensors that hold quantized values
        dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        consumers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                consumers.setdefault(name, []).append(node.op_type)
        for node in graph.node:
            op = node.op_type
            inputs = [i for i in node.input if i and i not in parameters]
            if op in INTEGER_PRODUCERS or op.startswith("QLinear"):
                integer.update(node.output)
            if op in QUANTIZED_FORMS or op.startswith("QLinear"):
                _count(census.quantized, QUANTIZED_FORMS.get(op, op[len("QLinear"):]))
            elif op == "DequantizeLinear" or op in LAYOUT_OPS and not (inputs and all(i in integer for i in inputs)):
                continue
            elif inputs and all(i in integer for i in inputs):  # MaxPool, Reshape... on the quantized values
                integer.update(node.output)
                if op not in LAYOUT_OPS:
                    _count(census.quantized, op)
            else:
                _count(census.left, FUSED_FORMS.get(op, op))
                if any(i in dequantized for i in inputs) or any("QuantizeLinear" in consumers.get(o, ())
                                                                for o in node.output):
                    _count(census.between_qdq, FUSED_FORMS.get(op, op))
    return OpCensus(*(dict(sorted(t.items())) for t in (census.quantized, census.left, census.between_qdq)))
