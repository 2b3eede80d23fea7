"""TensorRT (Jetson): onnxruntime's TensorRT provider builds an engine on the board itself.

The provider's options come from the board (its class's, then its entry's `toolchain_options`:
trt_fp16_enable, trt_int8_enable, trt_max_workspace_size...). The engine cache lives on the board,
one folder per model sha256 + TensorRT version + GPU (the agent's `engine_cache_key`), so a stale
engine is never reused; whether it was warm is reported with the load time. INT8 for TensorRT is
a symmetric QDQ model (`int8_trt`: int8 activations and weights, TensorRT's explicit quantization),
so no calibration table is needed on the board.
"""

from __future__ import annotations

from pathlib import Path

from farm.build.datafile import DataSet
from farm.build.modelfile import ModelInfo
from farm.build.spec import ModelSpec
from farm.build.toolchains.base import Toolchain, options
from farm.config.inventory import Board

PROVIDER = "TensorrtExecutionProvider"
DEFAULT_OPTIONS = {"trt_fp16_enable": "1", "trt_int8_enable": "1"}  # TensorRT picks per layer among them
ENGINE_CACHE = "trt-engines"  # under the board's workdir


class TensorrtToolchain(Toolchain):
    name = "tensorrt"
    provider = PROVIDER
    builds = ("int8_trt", "fp16")
    calibrated = ("int8_trt",)

    def recipe(self, variant: str) -> dict:
        if variant != "int8_trt":
            return super().recipe(variant)
        return {"format": "QDQ", "activation_type": "QInt8", "weight_type": "QInt8", "symmetric": True,
                "per_channel": True}

    def build(self, variant: str, info: ModelInfo, data: DataSet, spec: ModelSpec, count: int | None,
              target: Path, notes: list[str], calibration=None) -> None:
        if variant != "int8_trt":
            return super().build(variant, info, data, spec, count, target, notes)
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        quantize_static(str(info.path), str(target), calibration, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
        notes.append("symmetric int8 QDQ: TensorRT's explicit quantization (no calibration table on the board)")

    def provider_options(self, board: Board) -> dict[str, str]:
        return {**DEFAULT_OPTIONS, **options(board)}

    def agent_args(self, board: Board, files: dict[str, str], workdir: str) -> list[str]:
        args = ["--offload", "--engine-cache-root", f"{workdir.rstrip('/')}/{ENGINE_CACHE}"]
        for key, value in sorted(self.provider_options(board).items()):
            args += ["--provider-option", f"{key}={value}"]
        return args
