"""Prometheus /metrics: the lab's state at each scrape, named in the style of labgrid's exporter.

A custom collector reads the history when Prometheus scrapes (no state kept here):
boards up / busy / failing per pool, the last runs and their checks by status, and
the newest run's duration.
"""

from __future__ import annotations

import datetime as dt

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from farm.statuses import UNFIT, BoardStatus, RunOutcome
from farm.ui.web import data

LAST_RUNS = 20


class LabCollector:
    def __init__(self, sources: data.Sources):
        self.sources = sources

    def collect(self):
        lab = data.lab(self.sources, LAST_RUNS)
        states = GaugeMetricFamily("farm_pool_boards", "boards of a pool by their last run's state "
                                   "(up: ok; busy: held by another run; failing: any other status)",
                                   labels=["pool", "state"])
        board_up = GaugeMetricFamily("farm_board_up", "1 when the board's last run reached it and measured",
                                     labels=["board", "class"])
        health = GaugeMetricFamily("farm_board_infrastructure_failure_ratio", "share of the board's last runs "
                                   "that were unreachable, link-lost or not-ready", labels=["board"])
        for pool in lab["pools"]:
            counts = {"up": 0, "busy": 0, "failing": 0}
            for board in lab["boards"]:
                if pool in board["pools"]:
                    status = board["last_status"]
                    kind = "up" if status == BoardStatus.OK else "busy" if status == BoardStatus.BUSY else "failing"
                    counts[kind] += 1
            for state, count in counts.items():
                states.add_metric([pool, state], count)
        for board in lab["boards"]:
            board_up.add_metric([board["name"], board["class"] or ""], float(board["last_status"] == BoardStatus.OK))
            health.add_metric([board["name"]], board["failure_rate"])
        bad = GaugeMetricFamily("farm_board_bad", "1 while the board is bad (failed its health check) or retired: "
                                "left out of selection", labels=["board", "state", "reason"])
        for name, row in sorted(self.sources.history.health().items()):
            if row["state"] in UNFIT:
                bad.add_metric([name, row["state"], row["reason"] or ""], 1.0)
        runs = GaugeMetricFamily("farm_runs", f"the last {LAST_RUNS * 5} runs by outcome", labels=["status"])
        checks = GaugeMetricFamily("farm_checks", f"checks of the last {LAST_RUNS} runs by status", labels=["status"])
        duration = GaugeMetricFamily("farm_last_run_duration_seconds", "wall time of the newest run")
        table = self.sources.history.runs(limit=LAST_RUNS * 5)
        for outcome in RunOutcome:
            runs.add_metric([outcome], sum(1 for r in table if bool(r["all_passed"]) == (outcome == RunOutcome.PASSED)))
        for status, count in sorted(self.sources.history.check_counts(LAST_RUNS).items()):
            checks.add_metric([status], count)
        if table and table[0]["finished"]:
            seconds = (dt.datetime.fromisoformat(table[0]["finished"]) -
                       dt.datetime.fromisoformat(table[0]["started"])).total_seconds()
            duration.add_metric([], seconds)
        yield from (states, board_up, health, bad, runs, checks, duration)


def exposition(sources: data.Sources) -> tuple[bytes, str]:
    registry = CollectorRegistry()
    registry.register(LabCollector(sources))
    return generate_latest(registry), CONTENT_TYPE_LATEST
