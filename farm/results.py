"""The one result model of a run: `RunResult` > `BoardResult` > `VariantResult` > `Check`.

Built once per run by the job and read by everyone else: the report, the CLI
summary, the pytest plugin, the history, `farm compare` and the sign-off. Its
JSON form is results.json (schema farm.run/1); a board's part alone is
boards/<board>.json. Nothing else walks those documents by hand.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

# The statuses are part of the result model; they live below it so that farm.errors can use them too.
from farm.statuses import PER_VARIANT as PER_VARIANT
from farm.statuses import BoardStatus as BoardStatus
from farm.statuses import BuildStatus as BuildStatus
from farm.statuses import CheckStatus as CheckStatus

SCHEMA = "farm.run/1"


def _known(cls, doc: dict) -> dict:
    """The keys of `doc` that are fields of `cls` (older documents may lack some, never add)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in doc.items() if k in names}


@dataclass(frozen=True)
class Check:
    """One checklist item judged for one board x variant: status, the value and the limit it was held to."""

    item: str
    status: CheckStatus
    value: Any = None
    limit: Any = None
    unit: str = ""
    why: str = ""
    details: tuple = ()  # per-figure comparisons of the regression item

    @property
    def passed(self) -> bool:
        return self.status in (CheckStatus.PASS, CheckStatus.SKIP)

    @property
    def limit_shown(self) -> str:
        """The limit as a person writes it: 500, not 500.0 (judged limits are floats, however written)."""
        return f"{self.limit:g}" if isinstance(self.limit, float) else str(self.limit)

    @property
    def versus(self) -> str:
        """'(value vs limit unit)': how a failure line and a sign-off's disagreement show the figures."""
        return f"({self.value} vs {self.limit_shown} {self.unit})".replace(" )", ")")

    def message(self, board: str, variant: str) -> str:
        shown = f"{self.value:.4g}" if isinstance(self.value, (int, float)) else self.value
        text = f"{board} {variant} {self.item}: {shown} {self.unit} (limit {self.limit_shown} {self.unit})".replace(
            "  ", " ")
        return f"{text}: {self.why}" if self.why else text

    def to_json(self) -> dict:
        return {"item": self.item, "status": self.status.value, "value": self.value, "limit": self.limit,
                "unit": self.unit, "why": self.why, "details": list(self.details)}

    @classmethod
    def from_json(cls, doc: dict) -> Check:
        known = _known(cls, doc)
        return cls(**{**known, "status": CheckStatus(doc["status"]), "details": tuple(doc.get("details") or ())})


@dataclass
class VariantResult:
    """One variant measured on one board: the agent's figures and, once judged, the checks."""

    name: str
    status: BoardStatus = BoardStatus.OK  # or the one that stopped this variant alone (PER_VARIANT)
    error: str | None = None
    sha256: str | None = None
    provider_used: str | None = None
    opset: int | None = None
    latency_ms: dict | None = None       # summary of samples_ms: n, mean, std, min, max, p50..p99, cv
    samples_ms: list = field(default_factory=list)
    latency_intervals: dict | None = None  # per percentile: order-statistic bounds (low, high, upper) at a confidence
    rounds: list = field(default_factory=list)  # each agent process's summary, when measured in several
    peak_rss_mb: float | None = None
    memory_mb: dict = field(default_factory=dict)
    load_ms: float | None = None
    cold_run_ms: float | None = None
    run_rules: dict | None = None  # the agent's: minimums asked, runs and seconds done, warm-up runs, settled
    board_state: dict | None = None  # {before, after, flags}: governor, clocks, temperatures, throttling, load
    accuracy: dict | None = None  # {"n", "outputs": {output: the figures of its metric}}
    accuracy_peak_rss_mb: float | None = None  # the accuracy pass's own process: never the model's memory
    profile: dict | None = None  # onnxruntime's profile of the accuracy process: time share per op type
    toolchain: str | None = None  # the board's (farm.build.toolchains)
    offload: dict | None = None  # the agent's: nodes and time on the accelerator, fallback disabled, ops that fell back
    simulated: str | None = None  # "HTP simulated on x86_64": the accelerator's arithmetic, a simulator's timing
    load_ms_without_context: float | None = None  # QNN: the board compiling the model itself (no context binary)
    context_binary: dict | None = None  # the precompiled context model measured instead: sha256, size
    warnings: list = field(default_factory=list)
    errors: list = field(default_factory=list)  # the agent's {stage, message}
    baseline: dict | None = None  # {run_id, pinned}: the run the regression item compared with
    checks: list = field(default_factory=list)

    @classmethod
    def from_agent(cls, name: str, doc: dict) -> VariantResult:
        """From the agent's latency document (farm.agent/2, mode latency)."""
        model = doc.get("model") or {}
        return cls(name=name, sha256=model.get("sha256"), provider_used=model.get("provider_used"),
                   opset=model.get("opset"), latency_ms=doc.get("latency_ms"), samples_ms=doc.get("samples_ms") or [],
                   peak_rss_mb=doc.get("peak_rss_mb"), memory_mb=doc.get("memory_mb") or {},
                   load_ms=doc.get("load_ms"), cold_run_ms=doc.get("cold_run_ms"), run_rules=doc.get("run_rules"),
                   board_state=doc.get("board_state"), offload=doc.get("offload"), simulated=model.get("simulated"),
                   context_binary=model.get("context_binary"),
                   warnings=list(doc.get("warnings") or []), errors=list(doc.get("errors") or []))

    def add_accuracy(self, doc: dict) -> None:
        """The accuracy process's document (mode accuracy): figures per output, its own memory, the profile."""
        self.accuracy = doc.get("accuracy")
        self.accuracy_peak_rss_mb = doc.get("accuracy_peak_rss_mb")
        self.profile = doc.get("profile")
        self.load_ms_without_context = doc.get("load_ms_without_context")
        self.warnings += [w for w in doc.get("warnings") or [] if w not in self.warnings]
        self.errors += list(doc.get("errors") or [])

    def errors_text(self) -> str:
        return "; ".join(f"{e['stage']}: {e['message']}" for e in self.errors) or "not measured"

    @property
    def top1(self) -> float | None:
        """Top-1 of the first output judged by it: the history's accuracy column (None for other metrics)."""
        outputs = (self.accuracy or {}).get("outputs") or {}
        return next((f["top1"] for f in outputs.values() if isinstance(f, dict) and f.get("top1") is not None), None)

    def check(self, item: str) -> Check | None:
        return next((c for c in self.checks if c.item == item), None)

    def to_json(self) -> dict:
        doc = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "checks"}
        doc["checks"] = [c.to_json() for c in self.checks]
        return doc

    @classmethod
    def from_json(cls, doc: dict) -> VariantResult:
        known = _known(cls, doc)
        known["checks"] = [Check.from_json(c) for c in doc.get("checks") or []]
        known["status"] = BoardStatus(doc.get("status", BoardStatus.OK))
        return cls(**known)


@dataclass
class Step:
    """One step of a board's session and how long it took."""

    name: str
    seconds: float

    def to_json(self) -> dict:
        return {"name": self.name, "seconds": self.seconds}


@dataclass
class Recovery:
    """What farm did when a board stopped answering mid-run: one power cycle, and how it went."""

    cause: str                  # the fault that started it: `link-lost: ...`, `unreachable: ...`, `timeout: ...`
    action: str = "power cycle"
    seconds: float | None = None  # from the fault to the board answering with a new boot id
    recovered: bool = False       # it came back, and its work was tried again
    why: str | None = None        # when it did not come back: why

    @property
    def note(self) -> str:
        """One line for the report, the summary and the history."""
        if self.recovered:
            return f"recovered after {self.action}, {self.seconds:.0f} s"
        return f"{self.action} did not recover it: {self.why}"

    def to_json(self) -> dict:
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "note": self.note}

    @classmethod
    def from_json(cls, doc: dict) -> Recovery:
        return cls(**_known(cls, doc))


@dataclass
class BoardResult:
    """One board's run, whatever happened: `status` says which, `error` why."""

    name: str
    status: BoardStatus = BoardStatus.CANCELLED
    error: str | None = "the run stopped before this board was reached"
    board_class: str | None = None
    standin: bool = False
    emulated: bool = False
    qemu_cpu: str | None = None
    address: str | None = None
    # A stand-in, or a board reached on this machine (by any address of it, or running its kernel): the
    # controller's CPU (farm.config.locality, decided at the probe and again when a run is signed off)
    on_controller: bool = False
    pools: list = field(default_factory=list)
    providers_requested: list = field(default_factory=list)
    host_key_policy: str | None = None
    host_key: str | None = None  # `TYPE SHA256:...` of the key the board presented
    facts: dict = field(default_factory=dict)
    limits: dict = field(default_factory=dict)  # item -> the settings this board was judged by
    bytes_sent: int = 0
    lock_note: str | None = None
    recovery: Recovery | None = None  # a power cycle during the run, when there was one
    steps: list = field(default_factory=list)
    variants: dict = field(default_factory=dict)  # variant name -> VariantResult
    started: str | None = None
    finished: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == BoardStatus.OK

    @property
    def kernel_boot_id(self) -> str | None:
        """The board's kernel's boot id (the controller's for a stand-in); `boot_id` is what a power cycle changes.

        Records written before the two were told apart held the kernel's in `boot_id`."""
        return self.facts.get("kernel_boot_id", self.facts.get("boot_id"))

    @property
    def usable(self) -> bool:
        """Measured to the end: every variant ok, or some stopped for reasons of their own."""
        return self.ok or (self.status in PER_VARIANT
                           and any(v.status == BoardStatus.OK for v in self.variants.values()))

    def to_json(self) -> dict:
        doc = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("steps", "variants")}
        doc["status"] = self.status.value
        doc["recovery"] = self.recovery.to_json() if self.recovery else None
        doc["class"] = doc.pop("board_class")
        doc["steps"] = [s.to_json() for s in self.steps]
        doc["variants"] = {name: v.to_json() for name, v in self.variants.items()}
        return doc

    @classmethod
    def from_json(cls, doc: dict) -> BoardResult:
        known = _known(cls, {**doc, "board_class": doc.get("class")})
        known["status"] = BoardStatus(doc["status"])
        known["steps"] = [Step(**s) for s in doc.get("steps") or []]
        known["recovery"] = Recovery.from_json(doc["recovery"]) if doc.get("recovery") else None
        known["variants"] = {name: VariantResult.from_json({**v, "name": name})
                             for name, v in (doc.get("variants") or {}).items()}
        return cls(**known)


@dataclass
class VariantBuild:
    """How one variant was built (from the manifest): what the board was given."""

    status: BuildStatus = BuildStatus.OK
    reason: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    recipe: dict = field(default_factory=dict)
    float_op_types: dict = field(default_factory=dict)
    quantized_op_types: dict = field(default_factory=dict)  # INT8 kernels of the graph onnxruntime runs
    # float ops it runs between DequantizeLinear and QuantizeLinear
    float_between_qdq: dict = field(default_factory=dict)
    host: dict = field(default_factory=dict)  # the agent run on the controller: an indication, never a verdict
    origin: dict | None = None  # a team's own variant: {"path", "sha256"} of the file it was given as
    mixed: MixedPrecision | None = None  # int8_mixed: the layers kept in float, why, and every mix tried

    def to_json(self) -> dict:
        doc = {f.name: getattr(self, f.name) for f in fields(self)}
        doc["mixed"] = self.mixed.to_json() if self.mixed else None
        return doc

    @classmethod
    def from_json(cls, doc: dict) -> VariantBuild:
        known = _known(cls, doc)
        known["mixed"] = MixedPrecision.from_json(doc["mixed"]) if doc.get("mixed") else None
        known["status"] = BuildStatus(doc.get("status", BuildStatus.OK))
        return cls(**known)


class _Layered:
    """A result holding a `layers` list of `LAYER` dataclasses: its JSON, both ways."""

    LAYER: ClassVar[type]

    def to_json(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]  # every subclass is a dataclass

    @classmethod
    def from_json(cls, doc: dict):
        known = _known(cls, doc)
        known["layers"] = [cls.LAYER(**_known(cls.LAYER, d)) for d in doc.get("layers") or []]
        return cls(**known)


@dataclass
class MixedPrecision:
    """How int8_mixed was found: the fewest most sensitive layers kept in float that meet every limit."""

    within: bool = False  # some mix met every judged output's limit on the host
    kept_in_float: list = field(default_factory=list)  # layer names, most sensitive first
    why: dict = field(default_factory=dict)  # layer -> its sensitivity figures
    tried: list = field(default_factory=list)  # every mix: float_layers, kept_in_float, losses, worst_ratio
    best: dict | None = None  # the chosen mix, or the nearest one when none met the limits

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict) -> MixedPrecision:
        return cls(**_known(cls, doc))


@dataclass
class LayerSensitivity:
    """One quantized layer (the nodes between two quantized activations) and how much INT8 costs it."""

    layer: str
    nodes: list = field(default_factory=list)
    op_types: list = field(default_factory=list)
    output: str | None = None
    sqnr_db: float | None = None  # its output in the INT8 model against FP32's (higher is better)
    added_db: float | None = None  # the SQNR it loses against its inputs': its own share of the error
    qdq_sqnr_db: float | None = None  # across its output's own quantize / dequantize pair
    alone: dict | None = None  # only this layer quantized: each judged output's loss, worst_ratio (1: at the limit)


@dataclass
class Sensitivity(_Layered):
    """Per-layer sensitivity of static INT8 (farm/build/sensitivity.py), most sensitive first, and its cost."""

    layers: list = field(default_factory=list)  # LayerSensitivity
    samples: int | None = None
    sample_cap: int | None = None
    group_cap: int | None = None
    activation_budget_mb: float | None = None
    seconds: float | None = None
    peak_rss_mb: float | None = None
    method: str = ""
    LAYER: ClassVar[type] = LayerSensitivity


@dataclass
class ExplainedLayer:
    """A sensitive layer beside what the board spends on its ops."""

    layer: str
    op_types: list = field(default_factory=list)
    sqnr_db: float | None = None
    added_db: float | None = None
    alone_losses: list = field(default_factory=list)  # only this layer quantized: {output, loss, unit}
    board_share_pct: float | None = None  # the board's time in ops of its types (the agent's profile)


@dataclass
class Explanation(_Layered):
    """Why one board x INT8 variant failed its accuracy item, and what int8_mixed did about it."""

    board: str
    variant: str
    why: str = ""  # the accuracy check's own words
    layers: list = field(default_factory=list)  # ExplainedLayer, the most sensitive first
    mixed_status: BuildStatus | None = None  # int8_mixed's (None: not built this run)
    mixed_reason: str | None = None
    kept_in_float: list = field(default_factory=list)
    mixed_accuracy: str | None = None  # int8_mixed's accuracy verdict on this board
    mixed_value: float | None = None
    speedup_vs_fp32: float | None = None  # int8_mixed's p50 against FP32's on this board
    speedup_vs_variant: float | None = None  # ... against the failing variant's
    LAYER: ClassVar[type] = ExplainedLayer

    @classmethod
    def from_json(cls, doc: dict) -> Explanation:
        mixed = doc.get("mixed_status")
        return super().from_json({**doc, "mixed_status": None if mixed is None else BuildStatus(mixed)})


@dataclass
class ModelResult:
    name: str | None = None
    sha256: str | None = None
    opset: int | None = None
    calibration_samples: int | None = None
    evaluation_samples: int | None = None
    labels: bool = False
    spec: dict = field(default_factory=dict)  # the resolved model spec: inputs, judged outputs, batch
    variants: dict = field(default_factory=dict)  # variant name -> VariantBuild
    sensitivity: Sensitivity | None = None  # per-layer sensitivity, when int8_mixed was built

    def to_json(self) -> dict:
        doc = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "variants"}
        doc["variants"] = {name: v.to_json() for name, v in self.variants.items()}
        doc["sensitivity"] = self.sensitivity.to_json() if self.sensitivity else None
        return doc

    @classmethod
    def from_json(cls, doc: dict) -> ModelResult:
        known = _known(cls, doc)
        known["variants"] = {name: VariantBuild.from_json(v) for name, v in (doc.get("variants") or {}).items()}
        known["sensitivity"] = Sensitivity.from_json(doc["sensitivity"]) if doc.get("sensitivity") else None
        return cls(**known)


@dataclass
class Baseline:
    """A board x variant of an earlier run that a new run is compared with."""

    run_id: str
    variant: VariantResult
    pinned: bool = False
    series: tuple = ()  # the board x variant's earlier runs, oldest first: ({run_id, p50, p95}, ...)


@dataclass
class RunResult:
    run_id: str
    started: str
    finished: str | None = None
    inventory: str | None = None
    checklist: dict = field(default_factory=dict)  # name, file, items (each with its settings)
    provenance: dict = field(default_factory=dict)
    model: ModelResult = field(default_factory=ModelResult)
    boards: list = field(default_factory=list)  # BoardResult, in inventory order
    explanations: list = field(default_factory=list)  # Explanation: each INT8 accuracy failure, explained

    def board(self, name: str) -> BoardResult | None:
        return next((b for b in self.boards if b.name == name), None)

    def problems(self) -> list[str]:
        """Every board not measured and every check neither passed nor skipped, one line each."""
        lines = []
        for board in self.boards:
            if not board.ok:
                lines.append(f"{board.name}: board {board.status}: {board.error}")
                if not board.usable:
                    continue
            for variant in board.variants.values():
                for check in variant.checks:
                    if not check.passed:
                        lines.append(f"{board.name} {variant.name} {check.item}: {check.status} "
                                     f"{check.versus} {check.why}".rstrip())
        if not self.boards:
            lines.append("the run has no boards")
        return lines

    @property
    def all_passed(self) -> bool:
        return not self.problems()

    def to_json(self) -> dict:
        return {"schema": SCHEMA, "run_id": self.run_id, "started": self.started, "finished": self.finished,
                "inventory": self.inventory, "checklist": self.checklist, "provenance": self.provenance,
                "model": self.model.to_json(), "boards": [b.to_json() for b in self.boards],
                "explanations": [e.to_json() for e in self.explanations]}

    @classmethod
    def from_json(cls, doc: dict) -> RunResult:
        if doc.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} document (schema {doc.get('schema')!r})")
        known = _known(cls, doc)
        known["model"] = ModelResult.from_json(doc.get("model") or {})
        known["boards"] = [BoardResult.from_json(b) for b in doc.get("boards") or []]
        known["explanations"] = [Explanation.from_json(e) for e in doc.get("explanations") or []]
        return cls(**known)
