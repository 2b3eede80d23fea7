"""Board classes: what a board of a known kind is, unless its inventory entry says otherwise.

An inventory entry names its class (`class: jetson-orin`) and inherits these
fields. A stand-in of a class whose accelerator it lacks runs on CPU, and the
agent's provider warning says so: it never pretends to be the accelerator.
"""

from __future__ import annotations

import json

_CPU = ("CPUExecutionProvider",)
# How a class's variants are built and run (farm.build.toolchains: one module each). A board's inventory
# entry may name another (`toolchain:`) and add options (`toolchain_options:`: soc_model, htp_arch...).
TOOLCHAINS = ("cpu", "qnn", "tensorrt", "tidl")

BOARD_CLASSES: dict[str, dict] = {
    "cortex-a53": {"cpu": "cortex-a53", "cores": 4, "memory_mb": 1024, "providers": _CPU,
                   "threads": 4, "latency_budget_ms": 50.0},
    "cortex-a72": {"cpu": "cortex-a72", "cores": 4, "memory_mb": 4096, "providers": _CPU,
                   "threads": 4, "latency_budget_ms": 50.0},
    "cortex-a76": {"cpu": "cortex-a76", "cores": 4, "memory_mb": 8192, "providers": _CPU,
                   "threads": 4, "latency_budget_ms": 50.0},
    "jetson-orin": {"cpu": "cortex-a78ae", "cores": 8, "memory_mb": 16384,
                    "providers": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
                    "threads": 4, "latency_budget_ms": 10.0, "toolchain": "tensorrt"},
    "qcs8255": {"cpu": "kryo", "cores": 8, "memory_mb": 8192,
                "providers": ("QNNExecutionProvider", "CPUExecutionProvider"), "threads": 4,
                "latency_budget_ms": 20.0, "toolchain": "qnn", "toolchain_options": {"htp_performance_mode": "burst"}},
    "tda4vm": {"cpu": "cortex-a72", "cores": 2, "memory_mb": 4096,
               "providers": ("TIDLExecutionProvider", "CPUExecutionProvider"), "threads": 2,
               "latency_budget_ms": 30.0, "toolchain": "tidl"},
}

# How far a health check's reference latency (p50) may move from the board's own level (the median of its
# last passing checks) before the board is `bad`: a factor either way (3: a third to three times the level).
# Timing between processes is noisy (30-50 % on a shared machine, more under load): 3x leaves that room and
# still catches a board that is plainly wrong (throttled to a crawl, a stale image, an accelerator fallen back
# to CPU, or a reference that cannot have run at that speed). Passively cooled boards throttle more.
HEALTH_ALLOWANCE: dict[str, float] = {"cortex-a53": 4.0, "cortex-a72": 3.0, "cortex-a76": 3.0, "jetson-orin": 3.0,
                                      "qcs8255": 3.0, "tda4vm": 3.0}
HEALTH_ALLOWANCE_DEFAULT = 3.0  # a board of no class, or of a class not listed


def health_allowance(board_class: str | None) -> float:
    """The factor a board's health-check latency may move from its own level (HEALTH_ALLOWANCE)."""
    return HEALTH_ALLOWANCE.get(board_class or "", HEALTH_ALLOWANCE_DEFAULT)


# A stand-in's CPU is this machine's: it keeps its class's budgets and providers, but not the
# class's cores, memory or threads (threads beyond its taskset stall onnxruntime's spinning pool).
_HARDWARE = ("cores", "memory_mb", "threads")


def class_fields(board_class: str | None, *, standin: bool = False) -> dict:
    """The fields a board inherits from its class: the one place classes are merged.

    Not its `cpu`: that is what a stand-in of the class emulates (StandinSpec.qemu_cpu), no board field."""
    inherited = {k: v for k, v in BOARD_CLASSES.get(board_class or "", {}).items() if k != "cpu"}
    if standin:
        for key in _HARDWARE:
            inherited.pop(key, None)
    return inherited


def toolchain_fields(inherited: dict, own: dict) -> dict:
    """A board's toolchain and its options: the class's options, then its entry's; a board that names
    another toolchain than its class's keeps none of the class's options (they were for another one)."""
    toolchain = own.get("toolchain") or inherited.get("toolchain") or "cpu"
    options = dict(inherited.get("toolchain_options") or {}) if toolchain == inherited.get("toolchain") else {}
    options.update(own.get("toolchain_options") or {})
    text = lambda v: json.dumps(v) if isinstance(v, (list, dict)) else str(v)  # noqa: E731  (a list stays a list)
    return {"toolchain": toolchain, "toolchain_options": tuple(sorted((str(k), text(v)) for k, v in options.items()))}
