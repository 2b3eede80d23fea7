"""The main job, without pytest: select boards, build variants, deploy, judge, record.

The pytest plugin drives this; so can any script. Everything lands in
`<out>/<run-id>/` as soon as it exists: the manifest before deployment, each
board's JSON as it arrives, results.json at the end (also after Ctrl-C).
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets
import socket
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import farm
from farm import models
from farm.agent import AGENT_PATH, Measurement
from farm.artifacts import Artifact
from farm.checklist import Checklist, Verdict, evaluate, load_checklist
from farm.errors import HistoryError
from farm.history import History
from farm.inventory import Board, Inventory, load_inventory
from farm.runner import BoardOutcome, Deployment, DeployPlan, write_json_atomic
from farm.standins import Lab, StandinSpec

REPO = Path(farm.__file__).resolve().parent.parent
DEFAULT_INVENTORY = REPO / "inventory" / "local.yaml"
DEFAULT_MODEL = REPO / "models" / "digits" / "digits.onnx"
DEFAULT_DATA = REPO / "models" / "digits" / "digits.npz"
DEFAULT_CHECKLIST = REPO / "suites" / "checklists" / "dms.yaml"
DEFAULT_NIGHTLY_CHECKLIST = REPO / "suites" / "checklists" / "dms-nightly.yaml"
DEFAULT_SUITE = REPO / "suites" / "test_deployment_checklist.py"
RUN_SCHEMA = "farm.run/1"

Say = Callable[[str], None]


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def git_commit() -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() or None


@dataclass
class JobSettings:
    inventory: Path = DEFAULT_INVENTORY
    model: Path = DEFAULT_MODEL
    data: Path = DEFAULT_DATA
    checklist: Path = DEFAULT_CHECKLIST
    variants: list[str] = field(default_factory=lambda: list(models.VARIANTS))
    pools: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    boards: list[str] = field(default_factory=list)
    measurement: Measurement = Measurement()
    out: Path = Path("results")
    run_id: str = field(default_factory=new_run_id)
    lock_wait_s: float = 0.0
    variant_deadline_s: float = 300.0
    cache: Path = Path(".farm") / "variants"
    history: str | None = ""  # "": <out>/history.sqlite; None: no history

    @property
    def history_url(self) -> str | None:
        return None if self.history is None else history_url(self.out, self.history)


def history_url(out: Path | str, history: str = "") -> str:
    """The history store: the one given, else `<out>/history.sqlite`."""
    return history or str(Path(out) / "history.sqlite")


class Job:
    """One run of the checklist over the selected boards."""

    def __init__(self, settings: JobSettings, say: Say = lambda message: None):
        self.settings = settings
        self.say = say
        self.inventory: Inventory = load_inventory(settings.inventory)
        self.checklist: Checklist = load_checklist(settings.checklist)
        self.model = models.inspect_model(settings.model)
        self.run_dir = Path(settings.out) / settings.run_id
        selection = (settings.pools, settings.tags, settings.boards)
        self.standin_specs = [StandinSpec.from_inventory(s) for s in self.inventory.select_standins(*selection)]
        self.boards: dict[str, Board] = {b.name: b for b in self.inventory.select(*selection)}
        self.board_names = [*self.boards, *(s.name for s in self.standin_specs)]
        self.cache_dir = Path(settings.cache) / f"{self.model.name}-{self.model.sha256[:12]}"
        self.manifest: dict = {}
        self.outcomes: dict[str, BoardOutcome] = {}
        self.verdicts: dict[str, dict[str, list[Verdict]]] = {}
        self.started = utc_now()
        self.finished: str | None = None
        self._lab: Lab | None = None
        self._started_standins: list[str] = []

    # -- steps ------------------------------------------------------------------------------
    def start_standins(self) -> None:
        if not self.standin_specs:
            return
        self._lab = Lab(progress=lambda m: self.say(f"lab: {m}"))
        boards, self._started_standins = self._lab.up(self.standin_specs)
        self.boards.update({b.name: b for b in boards})

    def stop_standins(self) -> None:
        """Stop only the stand-ins this job started (a lab brought up by hand stays up)."""
        if self._lab and self._started_standins:
            self._lab.down(self._started_standins)
            self._started_standins = []

    def build_variants(self) -> None:
        self.manifest = models.build(self.settings.model, self.settings.data, self.cache_dir,
                                     variants=self.settings.variants, progress=lambda m: self.say(f"build: {m}"))
        write_json_atomic(self.run_dir / "manifest.json", self.manifest)

    def plan(self) -> DeployPlan:
        built = {v: Artifact.of(self.cache_dir / e["file"]) for v, e in self.manifest["variants"].items()
                 if e["status"] == "ok"}
        reference = self.manifest.get("reference")
        return DeployPlan(
            run_id=self.settings.run_id, agent=Artifact.of(AGENT_PATH), variants=built,
            data=Artifact.of(self.cache_dir / self.manifest["data"]["file"]),
            reference=Artifact.of(self.cache_dir / reference["file"]) if reference else None,
            measurement=self.settings.measurement, variant_deadline_s=self.settings.variant_deadline_s,
            lock_wait_s=self.settings.lock_wait_s)

    def deploy(self, progress: Callable[[str, str], None] = lambda board, phase: None) -> None:
        deployment = Deployment(self.plan(), self.run_dir, progress)
        outcomes = deployment.run([self.boards[name] for name in self.board_names])
        self.outcomes = {o.board.name: o for o in outcomes}
        try:
            history, unavailable = self.history, None
        except HistoryError as exc:  # judge everything else; only the regression item needs the history
            history, unavailable = None, str(exc)
            self.say(f"history unavailable: {exc}")
        for name, outcome in self.outcomes.items():
            if outcome.status != "ok":
                continue
            baselines = None
            if history is not None and "regression" in self.checklist.items:
                baselines = {v: history.baseline(name, self.manifest["model"]["name"], v, before=self.settings.run_id)
                             for v in outcome.variants}
            verdicts = evaluate(self.checklist, outcome.board, outcome.variants, self.manifest, baselines)
            if unavailable:
                verdicts = {v: [replace(c, status="error", why=f"history unavailable: {unavailable}")
                                if c.item == "regression" else c for c in checks] for v, checks in verdicts.items()}
            self.verdicts[name] = verdicts

    @functools.cached_property
    def history(self) -> History | None:
        url = self.settings.history_url
        return History(url) if url else None

    def trends(self, figure: str = "p95") -> dict[str, dict[str, list[tuple]]]:
        """The last runs' `figure` per board and variant, for the report's trend plot."""
        history = self.history
        model = self.manifest.get("model", {}).get("name")
        if history is None or not model:
            return {}
        return {name: {v: history.trend(name, model, v, figure) for v in outcome.variants}
                for name, outcome in self.outcomes.items()}

    def run(self, progress: Callable[[str, str], None] = lambda board, phase: None) -> dict:
        """The whole job; results.json is written even when it is interrupted."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.build_variants()
            self.start_standins()
            self.deploy(progress)
        finally:
            self.stop_standins()
            self.write_results()
        return self.results()

    # -- record -----------------------------------------------------------------------------
    def _board_json(self, name: str) -> dict:
        outcome = self.outcomes.get(name)
        board = self.boards.get(name)
        doc: dict = {"name": name, "status": outcome.status if outcome else "cancelled",
                     "error": outcome.error if outcome else "the run stopped before this board was reached",
                     "class": board.board_class if board else None, "standin": bool(board and board.standin),
                     "address": board.address if board else None, "pools": list(board.pools) if board else [],
                     "emulated": bool(board and board.emulated_cpu), "qemu_cpu": board.emulated_cpu if board else None,
                     "providers_requested": list(board.providers) if board else [],
                     "host_key_policy": board.host_key_policy if board else None,
                     "facts": outcome.facts if outcome else {}, "bytes_sent": outcome.bytes_sent if outcome else 0,
                     "lock_note": outcome.lock_note if outcome else None, "variants": {}}
        for variant, agent_doc in (outcome.variants if outcome else {}).items():
            checks = self.verdicts.get(name, {}).get(variant, [])
            doc["variants"][variant] = {
                "sha256": (agent_doc.get("model") or {}).get("sha256"),
                "provider_used": (agent_doc.get("model") or {}).get("provider_used"),
                "latency_ms": agent_doc.get("latency_ms"), "samples_ms": agent_doc.get("samples_ms"),
                "peak_rss_mb": agent_doc.get("peak_rss_mb"), "accuracy": agent_doc.get("accuracy"),
                "warnings": agent_doc.get("warnings", []), "errors": agent_doc.get("errors", []),
                "checks": [c.to_json() for c in checks]}
        return doc

    def results(self) -> dict:
        manifest_model = self.manifest.get("model", {})
        return {
            "schema": RUN_SCHEMA, "run_id": self.settings.run_id, "started": self.started,
            "finished": self.finished or utc_now(),
            "inventory": str(self.settings.inventory), "checklist": self.checklist.describe(),
            "provenance": {"farm": farm.__version__, "git_commit": git_commit(), "controller": socket.gethostname(),
                           "measurement": vars(self.settings.measurement) | {
                               "providers": list(self.settings.measurement.providers)},
                           "variant_deadline_s": self.settings.variant_deadline_s},
            "model": {"name": manifest_model.get("name"), "sha256": manifest_model.get("sha256"),
                      "task": manifest_model.get("task"), "opset": manifest_model.get("opset"),
                      "calibration_samples": self.manifest.get("data", {}).get("calibration_samples"),
                      "variants": {v: {k: e.get(k) for k in ("status", "reason", "sha256", "size_bytes", "recipe",
                                                               "float_op_types")}
                                   for v, e in self.manifest.get("variants", {}).items()}},
            "boards": [self._board_json(name) for name in self.board_names],
        }

    def write_results(self) -> Path:
        self.finished = utc_now()
        path = self.run_dir / "results.json"
        results = self.results()
        write_json_atomic(path, results)
        if self.manifest and self.settings.history_url:
            try:
                self.history.record(results)
            except (HistoryError, OSError) as exc:  # the run's own files are already safe on disk
                self.say(f"could not record the run in the history: {exc}")
        latest = Path(self.settings.out) / "latest"
        try:
            if latest.is_symlink() or latest.exists():
                latest.unlink()
            latest.symlink_to(self.settings.run_id)
        except OSError as exc:
            self.say(f"could not point {latest} at the run: {exc}")
        return path
