"""Toolchains: declared by the class, overridable in the inventory; TensorRT's options and engine cache keys
and TIDL's compile step and artifacts, through the agent's own argument parsing (no GPU, no TI tools here)."""

from __future__ import annotations

import json
import sys
import tarfile

import pytest
from farm._agents import farm_agent as agent

from farm.build.toolchains import toolchain_for
from farm.build.toolchains.tidl import MARK
from farm.config.inventory import load_inventory
from farm.errors import ModelError


def inventory(tmp_path, text: str):
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    return {b.name: b for b in load_inventory(path).boards}


def test_toolchain_comes_from_the_class_and_the_inventory_overrides_it_and_adds_options(tmp_path):
    boards = inventory(tmp_path, """boards:
  - {name: q, host: h, class: qcs8255}
  - {name: q2, host: h, class: qcs8255, toolchain_options: {soc_model: "60", htp_arch: "73"}}
  - {name: j, host: h, class: jetson-orin, toolchain: cpu}
  - {name: pi, host: h, class: cortex-a72}
""")
    assert boards["q"].toolchain == "qnn" and dict(boards["q"].toolchain_options) == {"htp_performance_mode": "burst"}
    assert dict(boards["q2"].toolchain_options) == {"htp_performance_mode": "burst", "soc_model": "60",
                                                    "htp_arch": "73"}
    assert boards["j"].toolchain == "cpu" and boards["j"].toolchain_options == ()
    assert boards["pi"].toolchain == "cpu" and toolchain_for(boards["pi"]).agent_args(boards["pi"], {}, "/w") == []


def test_an_unknown_toolchain_is_refused_with_the_line_and_the_choices(tmp_path):
    from farm.errors import InventoryError

    with pytest.raises(InventoryError, match=r"lab.yaml:2.*toolchain.*cpu, qnn, tensorrt, tidl"):
        inventory(tmp_path, "boards:\n  - {name: q, host: h, toolchain: snpe}\n")


class FakeOrt:
    """onnxruntime as a Jetson has it: the TensorRT provider listed; sessions record what they were given."""

    def __init__(self):
        self.opened = []

    def get_available_providers(self):
        return ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]

    def SessionOptions(self):
        class Options:
            def add_session_config_entry(self, key, value):
                pass
        return Options()

    def InferenceSession(self, path, options, providers=None):
        self.opened.append(providers)
        return providers


def trt_runtime(tmp_path, monkeypatch, board, model, trt_version="10.3.0", gpu="Orin (nvgpu)"):
    monkeypatch.setattr(agent, "tensorrt_version", lambda: trt_version)
    monkeypatch.setattr(agent, "gpu_name", lambda: gpu)
    argv = ["--model", str(model), "--providers", ",".join(toolchain_for(board).providers(board)),
            *toolchain_for(board).agent_args(board, {}, str(tmp_path / "work"))]
    args = agent.parse_args(argv)
    report = agent.Report("latency")
    ort = FakeOrt()
    runtime = agent.Runtime(ort, args, report)
    runtime.open(str(model), runtime.options())
    return ort.opened[0], report


def test_tensorrt_options_reach_the_provider_with_an_engine_cache_keyed_by_model_tensorrt_and_gpu(
        tmp_path, monkeypatch):
    board = inventory(tmp_path, """boards:
  - {name: j, host: h, class: jetson-orin,
     toolchain_options: {trt_int8_enable: "0", trt_max_workspace_size: "1073741824"}}
""")["j"]
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model one")
    providers, report = trt_runtime(tmp_path, monkeypatch, board, model)
    name, options = providers[0]
    assert name == "TensorrtExecutionProvider" and providers[1:] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert options["trt_fp16_enable"] == "1" and options["trt_int8_enable"] == "0"  # the board's entry wins
    assert options["trt_max_workspace_size"] == "1073741824"
    assert options["trt_engine_cache_enable"] == "1" and options["trt_timing_cache_enable"] == "1"
    key = agent.engine_cache_key(agent.sha256_of(str(model)), "10.3.0", "Orin (nvgpu)")
    assert options["trt_engine_cache_path"] == str(tmp_path / "work" / "trt-engines" / key)
    assert report.doc["facts"]["engine_cache"]["warm"] is False
    others = {trt_runtime(tmp_path, monkeypatch, board, model, trt_version="10.4.0")[0][0][1]["trt_engine_cache_path"],
              trt_runtime(tmp_path, monkeypatch, board, model, gpu="RTX A2000")[0][0][1]["trt_engine_cache_path"]}
    model.write_bytes(b"model two")
    others.add(trt_runtime(tmp_path, monkeypatch, board, model)[0][0][1]["trt_engine_cache_path"])
    assert len(others) == 3 and options["trt_engine_cache_path"] not in others  # never a stale engine


FAKE_COMPILE = """import pathlib, sys
model, out = sys.argv[1], pathlib.Path(sys.argv[2])
(out / "subgraph_0_tidl_net.bin").write_bytes(b"net of " + pathlib.Path(model).read_bytes()[:8])
(out / "allowedNode.txt").write_text("1\\n")
"""


def tidl_board(tmp_path, options: dict):
    row = {"name": "t", "host": "h", "class": "tda4vm", "toolchain_options": options}
    return inventory(tmp_path, f"boards:\n  - {json.dumps(row)}\n")["t"]


@pytest.mark.real  # starts a process
def test_tidl_runs_the_inventory_compile_command_once_and_the_agent_gets_the_artifacts_folder(tmp_path):
    script = tmp_path / "compile.py"
    script.write_text(FAKE_COMPILE)
    board = tidl_board(tmp_path, {"compile": [sys.executable, str(script), "{model}", "{out}"]})
    folder = tmp_path / "cache"
    folder.mkdir()
    model = folder / "m.fp32.onnx"
    model.write_bytes(b"ONNXMODEL-bytes")
    entry = {"status": "ok", "file": model.name, "sha256": agent.sha256_of(str(model))}
    tidl = toolchain_for(board)
    first = tidl.board_files(board, "fp32", entry, folder)
    again = tidl.board_files(board, "fp32", entry, folder)
    assert [f.role for f in first] == ["artifacts"] and first[0].sha256 == again[0].sha256  # packed the same
    with tarfile.open(first[0].path) as tar:
        assert sorted(tar.getnames()) == ["allowedNode.txt", MARK, "subgraph_0_tidl_net.bin"]
    assert tidl.board_files(board, "int8_static", entry, folder) == [] and not tidl.measures("int8_static", None)
    blobs = tmp_path / "board" / "blobs"
    blobs.mkdir(parents=True)
    blob = blobs / first[0].sha256
    blob.write_bytes(first[0].path.read_bytes())
    args = agent.parse_args(["--model", str(model), "--providers", "TIDLExecutionProvider,CPUExecutionProvider",
                             *tidl.agent_args(board, {"artifacts": str(blob)}, str(tmp_path / "board"))])
    runtime = agent.Runtime(FakeOrt(), args, agent.Report("latency"))
    unpacked = runtime.provider_options["artifacts_folder"]
    assert (tmp_path / "board" / "artifacts" / first[0].sha256 / "subgraph_0_tidl_net.bin").read_bytes() == \
        b"net of ONNXMODE" and unpacked == str(tmp_path / "board" / "artifacts" / first[0].sha256)
    other = tmp_path / "other.onnx"
    other.write_bytes(b"another model")
    args.model = str(other)
    with pytest.raises(ValueError, match="compiled artifacts are for model sha256 .*, not this model's"):
        agent.Runtime(FakeOrt(), args, agent.Report("latency"))


@pytest.mark.real  # starts a process
def test_tidl_artifacts_of_another_model_are_refused_in_one_line_before_any_board(tmp_path):
    given = tmp_path / "artifacts"
    given.mkdir()
    (given / MARK).write_text("0" * 64 + "\n")
    board = tidl_board(tmp_path, {"artifacts": str(given)})
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model")
    entry = {"status": "ok", "file": model.name, "sha256": agent.sha256_of(str(model))}
    with pytest.raises(ModelError, match=r"^board t: the TIDL artifacts in .* were compiled from model sha256 "
                                         r"000000000000, not m.onnx's [0-9a-f]{12}: compile them again") as refused:
        toolchain_for(board).board_files(board, "fp32", entry, tmp_path)
    assert "\n" not in str(refused.value)
    failing = tidl_board(tmp_path, {"compile": [sys.executable, "-c", "import sys; sys.exit('no TIDL tools')"]})
    with pytest.raises(ModelError, match="the TIDL compile command exited 1: no TIDL tools"):
        toolchain_for(failing).board_files(failing, "fp32", entry, tmp_path)
