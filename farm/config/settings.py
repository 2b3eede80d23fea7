"""What one run is asked to do: which boards, which model, how to measure, where to write."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from farm import resources
from farm.util import new_run_id

VARIANTS = ("fp32", "int8_dynamic", "int8_static", "int8_mixed")
# built unless --variants says otherwise: int8_mixed costs a per-layer sensitivity analysis
DEFAULT_VARIANTS = VARIANTS[:3]
# Built for the boards of one toolchain only (farm.build.toolchains), added to a run that has such boards.
TOOLCHAIN_VARIANTS = ("fp16", "int8_qnn", "a16w8_qnn", "int8_trt")
ALL_VARIANTS = VARIANTS + TOOLCHAIN_VARIANTS
FLOAT_VARIANTS = ("fp32", "fp16")  # not quantized: never a no-op for quantizing nothing
STATIC_VARIANTS = ("int8_static", "int8_mixed")  # calibrated QDQ; int8_mixed keeps its most sensitive layers in float
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class Measurement:
    """How the agent measures: the same settings for every board of a run."""

    warmup: int = 10         # the least warm-up runs; the agent goes on until the latency settles (capped)
    runs: int = 100          # the least timed runs...
    min_duration_s: float = 0.0  # ...and the least seconds of them (MLPerf's run rules: both)
    duration_s: float | None = None  # the most seconds of timed runs, whatever the minimums
    threads: int = 0
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    rounds: int = 1  # agent processes per variant: between-process noise shows only across several

    def to_json(self) -> dict:
        return {"warmup": self.warmup, "runs": self.runs, "min_duration_s": self.min_duration_s,
                "duration_s": self.duration_s, "threads": self.threads,
                "providers": list(self.providers), "rounds": self.rounds}


def history_url(out: Path | str, history: str | None = "") -> str | None:
    """The history store: the one given, else `<out>/history.sqlite`; None when it is 'none'."""
    if history == "none" or history is None:
        return None
    return history or str(Path(out) / "history.sqlite")


@dataclass
class RunSettings:
    inventory: Path = field(default_factory=resources.standin_inventory)
    model: Path = field(default_factory=resources.demo_model)
    data: Path = field(default_factory=resources.demo_data)
    spec: Path | None = None  # the model spec; None: inferred from the model and its data
    variants_dir: Path | None = None  # reuse what `farm quantize --out DIR` built there
    checklist: Path = field(default_factory=lambda: resources.checklist("dms"))
    variants: list[str] = field(default_factory=lambda: list(DEFAULT_VARIANTS))
    user_variants: dict[str, Path] = field(default_factory=dict)  # a team's own: name -> ONNX file
    pools: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    boards: list[str] = field(default_factory=list)
    measurement: Measurement = Measurement()
    out: Path = Path("results")
    run_id: str = field(default_factory=new_run_id)
    lock_wait_s: float = 0.0
    variant_deadline_s: float = 300.0
    cache: Path = Path(".farm") / "variants"
    history: str = ""  # "": <out>/history.sqlite; "none": keep none

    @property
    def history_url(self) -> str | None:
        return history_url(self.out, self.history)

    @property
    def selection(self) -> tuple[list[str], list[str], list[str]]:
        return self.pools, self.tags, self.boards
