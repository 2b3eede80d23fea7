"""One toolchain per kind of accelerator (cpu, qnn, tensorrt, tidl), chosen by a board's class or entry.

A toolchain owns, in one module: the variants it builds on the controller for its boards (`variants`,
`build`), the precompiled files that travel to a board beside a variant (`board_files`: a QNN context
binary, TIDL artifacts), and the agent's arguments on such a board (`agent_args`: which provider, with
which options, fallback disabled, offload measured). The checklist's `offload` item judges what the
agent reports (farm.judge.items); the CPU toolchain asks for nothing new, so the CPU path is unchanged.
"""

from __future__ import annotations

from farm.build.toolchains.base import BoardFile, Toolchain
from farm.build.toolchains.cpu import CpuToolchain
from farm.build.toolchains.qnn import QnnToolchain
from farm.build.toolchains.tensorrt import TensorrtToolchain
from farm.build.toolchains.tidl import TidlToolchain
from farm.config.boardclasses import TOOLCHAINS as NAMES
from farm.config.inventory import Board
from farm.config.settings import TOOLCHAIN_VARIANTS

TOOLCHAINS: dict[str, Toolchain] = {t.name: t for t in (CpuToolchain(), QnnToolchain(), TensorrtToolchain(),
                                                         TidlToolchain())}
assert tuple(TOOLCHAINS) == NAMES, "farm.config.boardclasses.TOOLCHAINS names these modules"
assert {v for t in TOOLCHAINS.values() for v in t.builds} == set(TOOLCHAIN_VARIANTS), "settings names their variants"


def toolchain_for(board: Board) -> Toolchain:
    return TOOLCHAINS[board.toolchain]


def builder(variant: str) -> Toolchain | None:
    """The toolchain that builds a variant of its own (int8_qnn, fp16...), None for the generic ones."""
    return next((t for t in TOOLCHAINS.values() if variant in t.builds), None)


def built_for(variant: str) -> list[str]:
    """The toolchains whose boards measure a variant built for accelerators (fp16: QNN's and TensorRT's)."""
    return [t.name for t in TOOLCHAINS.values() if variant in t.builds]


__all__ = ["TOOLCHAINS", "BoardFile", "Toolchain", "builder", "built_for", "toolchain_for"]
