"""The main job, without pytest: select boards, build variants, deploy, judge, record.

The pytest plugin drives it; so can any script. Constructing a Job validates
the whole configuration (inventory, checklist, model, data, selection) before a
board is touched, so every mistake is a ConfigError (exit 2). Everything lands
in `<out>/<run-id>/` as soon as it exists: the manifest before deployment, each
board's JSON as it arrives, results.json at the end (also after Ctrl-C).
"""

from __future__ import annotations

import functools
import logging
import socket
import subprocess
from dataclasses import replace
from pathlib import Path

import farm
from farm.build.loading import load_model_and_data
from farm.build.quantizers import Recipe, calibrated
from farm.build.toolchains import built_for, toolchain_for
from farm.build.uservariants import check_user_variants
from farm.build.variants import (
    RUN_FIX,
    build_variants,
    check_calibration,
    check_variants,
    model_result,
    reuse_variants,
)
from farm.config import locality
from farm.config.checklist import Checklist, load_checklist
from farm.config.inventory import Board
from farm.config.settings import RunSettings
from farm.deploy.fanout import Fanout, GroupResult
from farm.deploy.interrupts import deferred_interrupts, stop_signals
from farm.deploy.selection import Selection
from farm.deploy.session import DeployPlan, Progress, no_progress
from farm.errors import HistoryError
from farm.judge.explain import explain
from farm.judge.stats import percentile_of, runs_needed
from farm.judge.verdicts import BoardVerdict, judge_board
from farm.record.history import History, sqlite_path
from farm.record.rundir import RunDir
from farm.results import Baseline, BoardResult, BoardStatus, RunResult
from farm.statuses import UNFIT
from farm.util import utc_now

log = logging.getLogger(__name__)
TREND_FIGURE = "p95"


@functools.cache
def git_commit(folder: Path) -> str | None:
    """The commit of a checkout (provenance of farm itself); None outside git (an installed wheel)."""
    if not (Path(folder) / ".git").exists():
        return None
    try:
        proc = subprocess.run(["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() or None


class Job:
    """One run of the checklist over the selected boards."""

    def __init__(self, settings: RunSettings, health_check: bool = False):
        """`health_check`: a health check's run, which measures bad boards too (to find them well again)."""
        self.settings = settings
        check_variants(settings.variants)
        self.selection = Selection(settings.inventory, *settings.selection,
                                   unfit=None if health_check else self._unfit(settings))
        self.checklist: Checklist = load_checklist(settings.checklist)
        self.settings = settings = self._enough_runs(settings)
        self.model, self.data, self.spec = load_model_and_data(settings.model, settings.data, settings.spec)
        self.run_dir = RunDir(settings.out, settings.run_id)
        self.cache_dir = settings.variants_dir or Path(settings.cache) / f"{self.model.name}-{self.model.sha256[:12]}"
        self.manifest: dict = {}
        # a team's own variants, checked now against the model like the rest of the configuration
        self.user_variants = {n: i.path for n, i in check_user_variants(settings.user_variants, self.model,
                                                                         self.spec).items()}
        if settings.variants_dir:  # checked now, like the rest of the configuration: before any board
            self.manifest = reuse_variants(settings.variants_dir, self.model, self.data, self.spec,
                                           [*settings.variants, *self.user_variants])
        elif any(calibrated(v) for v in settings.variants):  # refused here, in one line, not inside the suite's session
            check_calibration(self.data, Recipe(), allow=False, fix=RUN_FIX)
        self.group = GroupResult({})
        self.trends: dict[str, dict[str, list[tuple]]] = {}
        self.result = RunResult(settings.run_id, utc_now())
        self._fanout: Fanout | None = None

    def _enough_runs(self, settings: RunSettings) -> RunSettings:
        """As many timed runs as the latency item's upper bound needs (MLPerf's minimum query count)."""
        latency = self.checklist.items.get("latency") or {}
        q = percentile_of(latency.get("metric", ""))
        if q is None or not latency.get("confidence"):
            return settings
        needed = runs_needed(q, latency["confidence"])
        if settings.measurement.runs >= needed:
            return settings
        log.info(f"latency: a {latency['metric']} upper bound at {latency['confidence'] * 100:g} % confidence needs "
                 f"{needed} timed runs per agent process; measuring {needed}, not {settings.measurement.runs}")
        return replace(settings, measurement=replace(settings.measurement, runs=needed))

    def _unfit(self, settings: RunSettings) -> dict[str, dict]:
        """The boards the history marks bad or retired; none when there is no history to ask."""
        if settings.history_url is None:
            return {}
        path = sqlite_path(settings.history_url)
        if path is not None and not path.exists():
            return {}  # no history yet: no board marked, and no results folder made before the configuration is checked
        try:
            return {name: row for name, row in History(settings.history_url).health().items()
                    if row["state"] in UNFIT}
        except HistoryError as exc:
            log.warning(f"board health unknown (history unavailable: {exc}); no board is left out")
            return {}

    @property
    def board_names(self) -> list[str]:
        return self.selection.names

    @property
    def declared(self) -> dict[str, Board]:
        """The selected boards as the inventory declares them (stand-ins before they run)."""
        return {**{spec.name: spec.board() for spec in self.selection.standin_specs}, **self.selection.boards}

    @property
    def variants(self) -> list[str]:
        """The variants asked for, and those the selected boards' toolchains build for themselves (unless
        --variants-dir gives what was built)."""
        if self.settings.variants_dir:
            return list(self.settings.variants)
        own = [v for board in self.declared.values() for v in toolchain_for(board).builds]
        return list(dict.fromkeys([*self.settings.variants, *own]))

    def variants_of(self, board: str) -> list[str]:
        """The variants one board measures (its toolchain's own among them)."""
        toolchain = toolchain_for(self.declared[board])
        return [v for v in [*self.variants, *self.user_variants] if toolchain.measures(v, built_for(v))]

    # -- steps ------------------------------------------------------------------------------
    def build(self) -> None:
        if self.settings.variants_dir:
            log.info(f"build: reusing {len(self.manifest['variants'])} variant(s) from {self.settings.variants_dir}")
        else:
            self.manifest = build_variants(self.model, self.data, self.spec, self.cache_dir,
                                           variants=self.variants, user_variants=self.user_variants)
        self.run_dir.save_manifest(self.manifest)

    def plan(self, boards: list[Board] = ()) -> DeployPlan:
        """The run's plan; each board's toolchain builds its precompiled files here, once per set of options."""
        plan = DeployPlan.from_manifest(self.manifest, self.cache_dir, self.settings.run_id, self.settings.measurement,
                                        variant_deadline_s=self.settings.variant_deadline_s,
                                        lock_wait_s=self.settings.lock_wait_s)
        for board in boards:
            toolchain = toolchain_for(board)
            found = {v: toolchain.board_files(board, v, entry, self.cache_dir)
                     for v, entry in self.manifest["variants"].items() if v in plan.variants_for(board)}
            plan.board_files[board.name] = {v: files for v, files in found.items() if files}
            for variant, files in plan.board_files[board.name].items():
                for file in files:
                    log.info(f"build: {board.name} {variant}: {file.note} ({file.path.name})")
        return plan

    def deploy(self, boards: list[Board], progress: Progress) -> None:
        self._fanout = Fanout(self.plan(boards), self.run_dir, progress)
        self.group = self._fanout.run(boards)
        for result in self.group:
            if result.lock_note:
                log.warning(f"{result.name}: {result.lock_note}")

    def cancel(self) -> None:
        if self._fanout is not None:
            self._fanout.cancel()

    def _history(self) -> tuple[History | None, str | None]:
        """The history store, or why there is none this run (the run goes on without it)."""
        url = self.settings.history_url
        if url is None:
            return None, None
        try:
            return History(url), None
        except HistoryError as exc:
            log.warning(f"history unavailable: {exc}")
            return None, f"history unavailable: {exc}"

    def judge(self, history: History | None, problem: str | None) -> None:
        """Every variant measured to its end is judged: on a board stopped half-way too.

        The history is read here, the verdicts decided by `judge_board` (pure), and written onto each
        board's result, which `finish` stores."""
        model = model_result(self.manifest)
        for result in self.group:
            measured = {v: found for v, found in result.variants.items() if found.status == BoardStatus.OK}
            if not measured or result.name not in self.selection.boards:
                continue
            baselines: dict[str, Baseline] | None = None
            if history is not None and "regression" in self.checklist.items:
                try:
                    baselines = self._baselines(history, result.name, list(measured), model.name)
                except HistoryError as exc:
                    problem = f"history unavailable: {exc}"
            _write_verdict(result, judge_board(self.checklist, self.selection.boards[result.name], measured, model,
                                               baselines, problem))

    def _baselines(self, history: History, board: str, variants: list[str], model: str) -> dict[str, Baseline]:
        """Each variant's baseline in the history, with the runs before this one (for the change-point test)."""
        return {v: replace(b, series=history.series_before(board, v, model, self.settings.run_id, self.result.started))
                for v in variants if (b := history.baseline(board, model, v, before=self.settings.run_id))}

    def _trends(self, history: History | None) -> None:
        name = self.manifest.get("model", {}).get("name")
        if history is None or not name:
            return
        try:
            self.trends = {r.name: {v: history.trend(r.name, name, v, TREND_FIGURE) for v in r.variants}
                           for r in self.group}
        except HistoryError as exc:
            log.warning(f"no trend plot: {exc}")

    def run(self, progress: Progress = no_progress) -> RunResult:
        """The whole job. Stopped (Ctrl-C, SIGTERM, SIGHUP) or not, everything collected is judged and
        written: results.json, the history, and so the report."""
        self.run_dir.path.mkdir(parents=True, exist_ok=True)
        with stop_signals():
            try:
                self.build()
                with self.selection.standins_up() as boards:
                    self.deploy(boards, progress)
            finally:
                with deferred_interrupts():
                    self._record()
        return self.result

    def _record(self) -> None:
        if self._fanout is not None:
            self.group = self._fanout.outcome()
        history, problem = self._history() if self.manifest else (None, None)
        if self.manifest:
            self.judge(history, problem)
            self._trends(history)
        self.finish(history)

    # -- record -----------------------------------------------------------------------------
    def _board(self, name: str) -> BoardResult:
        found = self.group.results.get(name)
        if found is not None:
            return found
        board = self.selection.boards.get(name)
        return BoardResult(name=name, board_class=board.board_class if board else None,
                           standin=bool(board and board.standin),
                           on_controller=bool(board and board.shares_controller_cpu))

    def finish(self, history: History | None) -> None:
        """Build the run's result once, write results.json, record it in the history, point `latest` at it."""
        settings = self.settings
        self.result = RunResult(
            run_id=settings.run_id, started=self.result.started, finished=utc_now(), inventory=str(settings.inventory),
            checklist=self.checklist.describe(),
            provenance={"farm": farm.__version__, "git_commit": git_commit(Path(farm.__file__).resolve().parent.parent),
                        "controller": socket.gethostname(),
                        "controller_boot_id": locality.controller_boot_id(),
                        "measurement": settings.measurement.to_json(),
                        "variant_deadline_s": settings.variant_deadline_s},
            model=model_result(self.manifest) if self.manifest else model_result({"model": self.model.describe()}),
            boards=[self._board(name) for name in self.board_names])
        self.result.explanations = [e for b in self.result.boards for e in explain(b, self.result.model)]
        self.run_dir.save_results(self.result)
        if self.manifest and history is not None:
            try:
                if not history.record(self.result):
                    log.warning(f"the history holds a later attempt of run {settings.run_id}: this one is not recorded")
            except (HistoryError, OSError) as exc:  # the run's own files are already safe on disk
                log.warning(f"could not record the run in the history: {exc}")
        elif self.manifest and settings.history_url:
            log.warning("could not record the run in the history: it is unavailable")
        try:
            self.run_dir.point_latest()
        except OSError as exc:
            log.warning(f"could not point {self.run_dir.out / 'latest'} at the run: {exc}")


def _write_verdict(result: BoardResult, verdict: BoardVerdict) -> None:
    """A board's verdicts onto its result: the limits, and each variant's checks, intervals and baseline."""
    result.limits = verdict.limits
    for name, found in verdict.variants.items():
        variant = result.variants[name]
        variant.checks, variant.latency_intervals, variant.baseline = (found.checks, found.latency_intervals,
                                                                       found.baseline)
