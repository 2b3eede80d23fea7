"""What a judged output's figures mean: the loss by the metric its spec names, the pass rule, the quality score."""

from __future__ import annotations

import math

import pytest

from farm.judge.accuracy import output_loss, passes, quality


@pytest.mark.parametrize(("output", "figures", "fp32", "loss", "unit"), [
    ({"metric": "top1", "labels": True}, {"top1": 0.90, "agreement": 0.97}, {"top1": 0.95}, 5.0, "%"),
    ({"metric": "top1"}, {"top1": 0.90, "agreement": 0.97}, {"top1": 0.95}, 3.0, "%"),  # no labels: FP32's decisions
    ({"metric": "binary", "labels": True}, {"accuracy": 0.94, "agreement": 0.9}, {"accuracy": 0.96}, 2.0, "%"),
    ({"metric": "binary", "labels": True}, {"agreement": 0.9}, None, 10.0, "%"),  # no FP32 reference: agreement
    ({"metric": "iou"}, {"iou": 0.8}, None, 20.0, "%"),
    ({"metric": "nme"}, {"nme": 0.02}, None, 2.0, "%"),
    ({"metric": "nme"}, {"nme": 0.02, "nme_labels": 0.05}, {"nme_labels": 0.04}, 1.0, "%"),
    ({"metric": "mae"}, {"mae": 1.5}, None, 1.5, ""),
    ({"metric": "sequence"}, {"timestep_agreement": 0.75, "sequence_match": 0.5}, None, 25.0, "%"),
    ({"metric": "cosine"}, {"cosine": 0.99}, None, 1.0, "%"),
    ({"metric": "snr_db"}, {"snr_db": 31.0}, None, 31.0, "dB"),
])
def test_each_metric_has_its_loss_in_its_unit(output, figures, fp32, loss, unit):
    value, found_unit, what = output_loss(output, figures, fp32)
    assert math.isclose(value, loss, abs_tol=1e-9) and found_unit == unit and what


@pytest.mark.parametrize("figures", [None, {}])
def test_an_output_not_measured_has_no_loss(figures):
    assert output_loss({"metric": "top1"}, figures, None) == (None, "", "not measured")


def test_a_decision_metric_without_labels_or_agreement_says_it_cannot_judge():
    assert output_loss({"metric": "binary"}, {"accuracy": 0.9}, None) == (None, "%", "no labels and no FP32 reference")


@pytest.mark.parametrize(("metric", "value", "limit", "ok"), [("top1", 0.5, 1.0, True), ("top1", 1.0, 1.0, False),
                                                              ("mae", 2.5, 2.0, False), ("snr_db", 30.0, 30.0, True),
                                                              ("snr_db", 29.9, 30.0, False)])
def test_a_loss_passes_below_its_limit_and_an_snr_at_or_above_it(metric, value, limit, ok):
    assert passes({"metric": metric}, value, limit) is ok


@pytest.mark.parametrize(("output", "figures", "score"), [({"metric": "top1"}, {"top1": 0.9, "agreement": 0.8}, 0.9),
                                                          ({"metric": "top1"}, {"agreement": 0.8}, 0.8),
                                                          ({"metric": "iou"}, {"iou": 0.7}, 0.7),
                                                          ({"metric": "mae"}, {"mae": 0.7}, None),
                                                          ({"metric": "cosine"}, None, None)])
def test_quality_is_the_higher_is_better_figure_of_scored_metrics_only(output, figures, score):
    assert quality(output, figures) == score
