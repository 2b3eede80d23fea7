"""`<out>/<run-id>/`: where a run's files land, each as soon as it exists.

manifest.json before deployment, boards/<board>.json after every variant a
board finishes, logs/<board>.log as it goes (record/boardlog.py), results.json at the end (also
after Ctrl-C), and `<out>/latest` pointing at the newest run.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from farm.results import BoardResult, RunResult
from farm.util import NAME_RE, write_json_atomic

# The files farm writes in a run folder, and nothing else: what `farm fetch` accepts from a queue's rows.
RUN_FILES = ("results.json", "junit.xml", "report.html", "manifest.json")
PER_BOARD = {"boards": ".json", "logs": ".log"}  # folder -> suffix of <folder>/<board><suffix>


def run_file_problem(name: str) -> str | None:
    """Why `name` is not a file farm writes in a run folder (None: it is one)."""
    if name in RUN_FILES:
        return None
    folder, _, file = name.partition("/")
    suffix = PER_BOARD.get(folder)
    if suffix and file.endswith(suffix) and NAME_RE.match(file[:-len(suffix)]) and "/" not in file:
        return None
    if PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts or "\\" in name:
        return "an absolute path or one that climbs out of the run folder"
    return ("not a file farm writes in a run folder (" + ", ".join(RUN_FILES) + ", "
            + ", ".join(f"{f}/<board>{s}" for f, s in PER_BOARD.items()) + ")")


class RunDir:
    def __init__(self, out: Path | str, run_id: str):
        self.out = Path(out)
        self.run_id = run_id
        self.path = self.out / run_id

    @property
    def results(self) -> Path:
        return self.path / "results.json"

    @property
    def junit(self) -> Path:
        return self.path / "junit.xml"

    @property
    def report(self) -> Path:
        return self.path / "report.html"

    def board_file(self, name: str) -> Path:
        return self.path / "boards" / f"{name}.json"

    def log_file(self, name: str) -> Path:
        return self.path / "logs" / f"{name}.log"

    def save_manifest(self, manifest: dict) -> None:
        write_json_atomic(self.path / "manifest.json", manifest)

    def save_board(self, board: BoardResult) -> None:
        write_json_atomic(self.board_file(board.name), board.to_json())

    def save_results(self, result: RunResult) -> None:
        write_json_atomic(self.results, result.to_json())

    def point_latest(self) -> None:
        """`<out>/latest` -> this run (a relative link: the results folder can move)."""
        latest = self.out / "latest"
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(self.run_id)

