"""The offload item: the share of nodes on the accelerator, and simulated timing reported, never judged."""

from __future__ import annotations

from farm import resources
from farm.build.variants import model_result
from farm.config.checklist import load_checklist
from farm.config.inventory import Board
from farm.judge.items import judge, limits_for
from farm.results import VariantResult

TOP1 = {"outputs": [{"name": "logits", "metric": "top1", "labels": True, "max_loss_pct": None}]}
ACCURATE = {"n": 10, "outputs": {"logits": {"metric": "top1", "top1": 0.98, "agreement": 1.0}}}
MANIFEST = {"model": {}, "spec": TOP1, "data": {"evaluation_samples": 10, "calibration_samples": 300},
            "variants": {"fp32": {"host": {"accuracy": ACCURATE}}, "int8_qnn": {}, "int8_static": {}}}
PROVEN = {"provider": "QNNExecutionProvider", "fallback_disabled": True, "refused": None, "nodes": 44,
          "on_accelerator": 44, "node_pct": 100.0, "time_pct": 100.0, "fallen_back": {}}
REFUSED = {"provider": "QNNExecutionProvider", "fallback_disabled": False, "nodes": 44, "on_accelerator": 0,
           "node_pct": 0.0, "time_pct": 0.0, "fallen_back": {"Conv": 3, "DequantizeLinear": 23, "Gemm": 3},
           "free_dims": ["image ['batch', 1, 32, 32]"],
           "refused": "graph nodes that are assigned to the default CPU EP, but fallback to CPU EP has been disabled"}


def measured(name: str, offload: dict | None, simulated: str | None = None, p50: float = 900.0) -> VariantResult:
    doc = {"model": {"opset": 17, "simulated": simulated}, "latency_ms": {"n": 100, "p50": p50, "p95": p50},
           "samples_ms": [p50] * 100, "peak_rss_mb": 100.0, "errors": [], "offload": offload}
    result = VariantResult.from_agent(name, doc)
    result.add_accuracy({"accuracy": ACCURATE, "errors": []})
    return result


def checks(variants: dict[str, VariantResult]) -> dict[str, dict]:
    board = Board(name="q", host="h")
    found = judge(limits_for(load_checklist(resources.checklist("dms")), board), board.emulated_cpu, variants,
                  model_result(MANIFEST))
    return {v: {c.item: c for c in cs} for v, cs in found.items()}


def test_offload_passes_only_when_every_node_loaded_with_cpu_fallback_disabled():
    judged = checks({"int8_qnn": measured("int8_qnn", PROVEN)})["int8_qnn"]["offload"]
    assert judged.status == "pass" and judged.value == 100.0 and judged.limit == 100.0
    assert "44/44 nodes on QNNExecutionProvider" in judged.why and "fallback disabled" in judged.why
    full_but_unproven = checks({"int8_qnn": measured("int8_qnn", {**PROVEN, "fallback_disabled": False})})
    assert full_but_unproven["int8_qnn"]["offload"].status == "pass"  # 100 % meets the default limit either way


def test_offload_fails_naming_the_ops_that_fell_back_and_the_free_dimension():
    judged = checks({"int8_static": measured("int8_static", REFUSED)})["int8_static"]["offload"]
    assert judged.status == "fail" and judged.value == 0.0
    assert "Conv x3, DequantizeLinear x23, Gemm x3" in judged.why
    assert "free dimensions: image ['batch', 1, 32, 32]" in judged.why and "fallback to CPU EP" in judged.why


def test_offload_is_skipped_on_a_cpu_board_and_an_error_when_the_placement_is_unknown():
    assert checks({"fp32": measured("fp32", None)})["fp32"]["offload"].status == "skip"
    unknown = checks({"int8_qnn": measured("int8_qnn", {"provider": "QNNExecutionProvider", "refused": "no device"})})
    assert unknown["int8_qnn"]["offload"].status == "error" and "no device" in unknown["int8_qnn"]["offload"].why


def test_simulated_accelerator_timing_is_reported_never_judged_while_accuracy_and_offload_are():
    variants = {"fp32": measured("fp32", REFUSED, "HTP simulated on x86_64", 2.0),
                "int8_qnn": measured("int8_qnn", PROVEN, "HTP simulated on x86_64", 900.0)}
    judged = checks(variants)["int8_qnn"]
    for item in ("latency", "speedup"):
        assert judged[item].status == "skip" and "HTP simulated on x86_64, not silicon timing" in judged[item].why
    assert judged["latency"].value == 900.0  # the figure stays
    assert judged["offload"].status == "pass" and judged["accuracy"].status == "pass"
    real = checks({"int8_qnn": measured("int8_qnn", PROVEN, None, 900.0)})["int8_qnn"]
    assert real["latency"].status == "fail"  # the same figures on silicon are judged
