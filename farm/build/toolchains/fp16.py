"""FP16 for the toolchains that run it (QNN's HTP, TensorRT): onnxconverter-common's float16 converter.

Inputs and outputs stay float32 (`keep_io_types`): the board is fed and judged as for FP32, and its
accuracy is judged against FP32 like INT8's. Inputs are fixed to the deployment shape first, as the
HTP needs (TensorRT then builds one engine profile, for the shape that is measured).
"""

from __future__ import annotations

from pathlib import Path

import onnx

from farm.build.modelfile import ModelInfo
from farm.build.spec import ModelSpec
from farm.build.toolchains.shapes import fixed_shapes


def build_fp16(info: ModelInfo, spec: ModelSpec, target: Path, notes: list[str]) -> None:
    import warnings

    from onnxconverter_common import float16

    model = onnx.ModelProto.FromString(info.proto.SerializeToString())
    fixed_shapes(model, spec)
    with warnings.catch_warnings(record=True) as caught:  # one warning per weight it truncates: counted instead
        warnings.simplefilter("always")
        converted = float16.convert_float_to_float16(model, keep_io_types=True)
    truncated = sum("truncated" in str(w.message) for w in caught)
    notes.append("float16 weights and activations (onnxconverter-common, keep_io_types: float32 inputs and outputs)"
                 + (f"; {truncated} weight value(s) outside float16's range were clamped" if truncated else ""))
    onnx.save(converted, str(target))
