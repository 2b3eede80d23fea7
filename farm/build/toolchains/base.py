"""What every toolchain answers; the CPU's answers are the defaults."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from farm.build.datafile import DataSet
from farm.build.modelfile import ModelInfo
from farm.build.spec import ModelSpec
from farm.build.toolchains.fp16 import build_fp16
from farm.config.inventory import Board


@dataclass(frozen=True)
class BoardFile:
    """A precompiled file for one variant on one kind of board, pushed by its sha256 like every blob."""

    role: str  # context (QNN context binary) | artifacts (TIDL archive)
    path: Path
    sha256: str
    note: str = ""


class Toolchain:
    name = "cpu"
    provider = "CPUExecutionProvider"
    builds: tuple[str, ...] = ()      # variants only this toolchain builds (measured on its boards only)
    calibrated: tuple[str, ...] = ()  # of those, the ones calibrated on the data file's calibration set
    measures_generic = True           # its boards also measure fp32 / int8_dynamic / int8_static

    def measures(self, variant: str, built_for: list[str] | None) -> bool:
        """Whether a board of this toolchain measures a variant (one built for other toolchains: never)."""
        return self.name in built_for if built_for else self.measures_generic

    def recipe(self, variant: str) -> dict:
        return {"format": "float16", "converter": "onnxconverter_common.float16", "keep_io_types": True}

    def build(self, variant: str, info: ModelInfo, data: DataSet, spec: ModelSpec, count: int | None,
              target: Path, notes: list[str], calibration=None) -> None:
        """The variants every accelerator toolchain builds alike (fp16); the others are the toolchain's own."""
        build_fp16(info, spec, target, notes)

    def board_files(self, board: Board, variant: str, entry: dict, folder: Path) -> list[BoardFile]:
        """Files built on the controller for this board's options, beside the variant `entry` of the manifest."""
        return []

    def agent_args(self, board: Board, files: dict[str, str], workdir: str) -> list[str]:
        """The agent's extra arguments on this board; `files`: role -> its path on the board."""
        return []

    def providers(self, board: Board) -> tuple[str, ...]:
        return board.providers


def options(board: Board) -> dict[str, str]:
    return dict(board.toolchain_options)
