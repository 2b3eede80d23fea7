"""QNN (Qualcomm QCS): the Hexagon NPU through onnxruntime-qnn's plugin provider and its HTP backend.

The HTP compiles static graphs of quantized ops: `int8_qnn` (uint8 activations and weights) and
`a16w8_qnn` (uint16 activations: QNN's answer when 8-bit activations lose accuracy) are built with
onnxruntime's QNN recipe (`qnn_preprocess_model`, `get_qnn_qdq_config`) from the model with every
input fixed to the spec's deployment shape (`make_input_shape_fixed`): a free dimension is refused by
the HTP ("Cannot get shape"). A context binary (the graph the HTP finalized, `ep.context_enable`,
embedded) is built once on the controller per variant and board options, so a board loads it instead
of compiling. The agent registers the plugin, chooses the HTP backend and disables CPU fallback, which
proves every node runs on the NPU. On x86_64 the HTP backend simulates the Hexagon: op support and
arithmetic are the NPU's, timing is a simulator's (the agent says "HTP simulated on x86_64").
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx

from farm.build.datafile import DataSet
from farm.build.modelfile import ModelInfo
from farm.build.spec import ModelSpec
from farm.build.toolchains.base import BoardFile, Toolchain, options
from farm.build.toolchains.shapes import fixed_shapes
from farm.config.inventory import Board
from farm.statuses import BuildStatus
from farm.util import file_sha256

PROVIDER = "QNNExecutionProvider"
PLUGIN = "onnxruntime_qnn"
ACTIVATIONS = {"int8_qnn": "QUInt8", "a16w8_qnn": "QUInt16"}
# Options that change the compiled graph: a context binary is built per set of them.
COMPILE_OPTIONS = ("soc_model", "htp_arch", "vtcm_mb", "enable_htp_fp16_precision")


def qnn_version() -> str | None:
    try:
        import onnxruntime_qnn
    except ImportError:
        return None
    return onnxruntime_qnn.__version__


def htp_devices(ort):
    """The QNN plugin's devices in this process, registered once."""
    import onnxruntime_qnn

    found = [d for d in ort.get_ep_devices() if d.ep_name == PROVIDER]
    if not found:
        ort.register_execution_provider_library(PROVIDER, onnxruntime_qnn.get_library_path())
        found = [d for d in ort.get_ep_devices() if d.ep_name == PROVIDER]
    return found, onnxruntime_qnn.get_qnn_htp_path()


class QnnToolchain(Toolchain):
    name = "qnn"
    provider = PROVIDER
    builds = ("int8_qnn", "a16w8_qnn", "fp16")
    calibrated = ("int8_qnn", "a16w8_qnn")

    def recipe(self, variant: str) -> dict:
        if variant not in ACTIVATIONS:
            return super().recipe(variant)
        return {"format": "QDQ", "recipe": "onnxruntime.quantization.execution_providers.qnn",
                "activation_type": ACTIVATIONS[variant], "weight_type": "QUInt8", "static_shapes": True}

    def build(self, variant: str, info: ModelInfo, data: DataSet, spec: ModelSpec, count: int | None,
              target: Path, notes: list[str], calibration=None) -> None:
        if variant not in ACTIVATIONS:
            return super().build(variant, info, data, spec, count, target, notes)
        from onnxruntime.quantization import QuantType, quantize
        from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config, qnn_preprocess_model

        model = onnx.ModelProto.FromString(info.proto.SerializeToString())
        shapes = fixed_shapes(model, spec)
        notes.append("inputs fixed to the deployment shape for the HTP: "
                     + ", ".join(f"{name} {shape}" for name, shape in shapes.items()))
        with tempfile.TemporaryDirectory(prefix="farm-qnn-") as tmp:
            fixed, prepared = Path(tmp) / "fixed.onnx", Path(tmp) / "prepared.onnx"
            onnx.save(model, str(fixed))
            source = prepared if qnn_preprocess_model(str(fixed), str(prepared)) else fixed
            activations = getattr(QuantType, ACTIVATIONS[variant])
            config = get_qnn_qdq_config(str(source), calibration, activation_type=activations,
                                        weight_type=QuantType.QUInt8)
            quantize(str(source), str(target), config)

    def board_files(self, board: Board, variant: str, entry: dict, folder: Path) -> list[BoardFile]:
        if entry.get("status") != BuildStatus.OK or variant not in self.builds:
            return []
        found = context_binary(folder / entry["file"], entry["sha256"], options(board), folder)
        return [found] if found else []

    def agent_args(self, board: Board, files: dict[str, str], workdir: str) -> list[str]:
        args = ["--plugin-ep", PLUGIN, "--offload", "--provider-option", "backend_path=@get_qnn_htp_path"]
        for key, value in sorted(options(board).items()):
            args += ["--provider-option", f"{key}={value}"]
        if "context" in files:
            args += ["--context-model", files["context"], "--context-sha256", files["context_sha256"]]
        return args


def context_binary(model: Path, sha256: str, board_options: dict, folder: Path) -> BoardFile | None:
    """The HTP's finalized graph for `model` (embedded in an EPContext model), built once per model, QNN
    version and compile options with fallback disabled; None (and why, in the log) when it cannot be."""
    import json
    import logging

    import onnxruntime as ort

    version = qnn_version()
    if version is None:
        logging.getLogger("farm").info("no QNN context binary: onnxruntime-qnn is not installed here (farm[qnn])")
        return None
    compile_options = {k: v for k, v in board_options.items() if k in COMPILE_OPTIONS}
    key = file_key(sha256, version, compile_options)
    target = folder / f"{model.stem}.ctx.{key}.onnx"
    note = f"context binary for QNN {version}, options {json.dumps(compile_options, sort_keys=True)}"
    if not target.exists():
        partial = target.with_name(f".partial-{target.name}")
        devices, htp = htp_devices(ort)
        session_options = ort.SessionOptions()
        for entry, value in (("session.disable_cpu_ep_fallback", "1"), ("ep.context_enable", "1"),
                             ("ep.context_embed_mode", "1"), ("ep.context_file_path", str(partial))):
            session_options.add_session_config_entry(entry, value)
        session_options.add_provider_for_devices(devices, {"backend_path": htp, **compile_options})
        try:
            ort.InferenceSession(str(model), session_options)
        except Exception as exc:  # the HTP refused a node: there is nothing to precompile
            partial.unlink(missing_ok=True)
            logging.getLogger("farm").info(f"no QNN context binary for {model.name}: {exc}")
            return None
        partial.replace(target)
    return BoardFile("context", target, file_sha256(target), note)


def file_key(*parts) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
