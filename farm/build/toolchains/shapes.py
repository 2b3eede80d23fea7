"""A model's inputs fixed to the spec's deployment shape: what the accelerators' compilers need.

QNN's HTP refuses a free dimension ("Cannot get shape"); TensorRT then builds one engine
profile, for the shape that is measured. Used by QNN's own builds and by fp16, which QNN and
TensorRT share.
"""

from __future__ import annotations

import onnx

from farm.build.spec import ModelSpec


def fixed_shapes(model: onnx.ModelProto, spec: ModelSpec) -> dict[str, list]:
    """Every input of the model fixed to the spec's deployment shape; returns what was fixed."""
    from onnxruntime.tools.make_dynamic_shape_fixed import fix_output_shapes, make_input_shape_fixed

    shapes = {i.name: list(i.shape) for i in spec.inputs}
    for name, shape in shapes.items():
        make_input_shape_fixed(model.graph, name, shape)
    fix_output_shapes(model)
    return shapes
