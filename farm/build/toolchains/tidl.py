"""TIDL (TI TDA4): TI's compile step makes the artifacts TIDLExecutionProvider runs from.

edgeai-tidl-tools is not on the package registries, so farm does not compile itself: the board's
`toolchain_options` name either `compile` (an argument list run on the controller with `{model}`
and `{out}` replaced: the model file and an empty folder for the artifacts) or `artifacts` (a folder
compiled before). farm writes the model's sha256 beside what it compiled (`farm-model.sha256`), packs
the folder into one archive pushed by its sha256, and the agent passes the unpacked folder as
`artifacts_folder`. Artifacts compiled from another model are refused, in one line, before any board.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import tarfile
import tempfile
from pathlib import Path

from farm.build.toolchains.base import BoardFile, Toolchain, options
from farm.build.toolchains.qnn import file_key
from farm.config.inventory import Board
from farm.errors import ModelError
from farm.statuses import BuildStatus
from farm.util import file_sha256

PROVIDER = "TIDLExecutionProvider"
MARK = "farm-model.sha256"  # the agent's ARTIFACTS_MARK
COMPILE_TIMEOUT_S = 3600


def compile_argv(board: Board) -> list[str] | None:
    """The compile command of the board's options: a JSON list, or one line split like a shell would."""
    text = options(board).get("compile")
    if not text:
        return None
    try:
        argv = json.loads(text) if text.lstrip().startswith("[") else shlex.split(text)
    except (ValueError, json.JSONDecodeError) as exc:
        raise ModelError(f"board {board.name}: toolchain_options.compile is not an argument list ({exc}); "
                         'write it as a list, e.g. ["python3", "compile.py", "{model}", "{out}"]') from exc
    if not argv or not all(isinstance(a, str) for a in argv):
        raise ModelError(f"board {board.name}: toolchain_options.compile must be a non-empty list of words")
    return argv


def compiled(board: Board, model: Path, sha256: str, folder: Path) -> Path:
    """The artifacts folder for `model` on this board: compiled once per model and command, or given."""
    argv = compile_argv(board)
    given = options(board).get("artifacts")
    if argv is None and not given:
        raise ModelError(f"board {board.name}: the TIDL toolchain needs toolchain_options.compile (TI's compile "
                         "command, run here) or toolchain_options.artifacts (a folder compiled before)")
    if argv is None:
        out = Path(str(given)).expanduser()
        if not out.is_dir():
            raise ModelError(f"board {board.name}: toolchain_options.artifacts {out} is not a folder")
    else:
        out = folder / f"{model.stem}.tidl.{file_key(sha256, argv)}"
        if not (out / MARK).is_file():
            out.mkdir(parents=True, exist_ok=True)
            command = [a.replace("{model}", str(model)).replace("{out}", str(out)) for a in argv]
            try:
                proc = subprocess.run(command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise ModelError(f"board {board.name}: the TIDL compile command {command[0]} failed to run: "
                                 f"{exc}") from exc
            if proc.returncode != 0:
                raise ModelError(f"board {board.name}: the TIDL compile command exited {proc.returncode}: "
                                 f"{proc.stderr.strip()[-300:] or '(no stderr)'}")
            (out / MARK).write_text(sha256 + "\n")
    built_from = (out / MARK).read_text().strip() if (out / MARK).is_file() else None
    if built_from != sha256:
        raise ModelError(f"board {board.name}: the TIDL artifacts in {out} were compiled from model sha256 "
                         f"{(built_from or 'unknown (no ' + MARK + ')')[:12]}, not {model.name}'s {sha256[:12]}: "
                         "compile them again from this model")
    return out


def pack(artifacts: Path, folder: Path) -> Path:
    """The artifacts as one archive (sorted, no owners or times: the same folder packs to the same sha256)."""
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".partial-tidl-", suffix=".tar", delete=False) as handle:
        partial = Path(handle.name)
    with tarfile.open(partial, "w") as tar:
        for path in sorted(p for p in artifacts.rglob("*") if p.is_file()):
            info = tar.gettarinfo(str(path), str(path.relative_to(artifacts)))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            with path.open("rb") as data:
                tar.addfile(info, data)
    target = folder / f"tidl-artifacts.{file_sha256(partial)[:16]}.tar"
    partial.replace(target)
    return target


class TidlToolchain(Toolchain):
    name = "tidl"
    provider = PROVIDER

    def board_files(self, board: Board, variant: str, entry: dict, folder: Path) -> list[BoardFile]:
        if variant != "fp32" or entry.get("status") != BuildStatus.OK:  # TIDL quantizes the float model itself
            return []
        archive = pack(compiled(board, folder / entry["file"], entry["sha256"], folder), folder)
        return [BoardFile("artifacts", archive, file_sha256(archive), f"TIDL artifacts for {entry['file']}")]

    def measures(self, variant: str, built_for: list[str] | None) -> bool:
        return variant == "fp32"  # TIDL runs what it compiled from the float model

    def agent_args(self, board: Board, files: dict[str, str], workdir: str) -> list[str]:
        args = ["--offload"]
        if "artifacts" in files:
            args += ["--artifacts-archive", files["artifacts"]]
        for key, value in sorted(options(board).items()):
            if key not in ("compile", "artifacts"):
                args += ["--provider-option", f"{key}={value}"]
        return args
