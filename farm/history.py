"""The results history: every run, per board and variant, with its raw samples.

SQLite in WAL mode by default (`<results>/history.sqlite`), safe when two runs
finish at once: each run is recorded in one IMMEDIATE transaction, and writers
wait for each other (busy timeout) instead of failing. The baseline of a board
x model x variant is its last run in which every check passed, unless one was
pinned with `farm baseline set`.
"""

from __future__ import annotations

import json
import sqlite3
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from farm.errors import HistoryError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, started TEXT, finished TEXT, model_name TEXT, model_sha256 TEXT,
    inventory TEXT, checklist TEXT, all_passed INTEGER, document BLOB);
CREATE TABLE IF NOT EXISTS measurements (
    run_id TEXT, board TEXT, variant TEXT, model_name TEXT, started TEXT, pools TEXT,
    all_passed INTEGER, p50 REAL, p95 REAL, peak_rss_mb REAL, top1 REAL, entry BLOB,
    PRIMARY KEY (run_id, board, variant));
CREATE INDEX IF NOT EXISTS measurements_lookup ON measurements (board, model_name, variant, started);
CREATE TABLE IF NOT EXISTS pins (
    board TEXT, model_name TEXT, variant TEXT, run_id TEXT, pinned_at TEXT,
    PRIMARY KEY (board, model_name, variant));
"""


def _pack(doc: dict) -> bytes:
    return zlib.compress(json.dumps(doc).encode(), 6)


def _unpack(blob: bytes) -> dict:
    return json.loads(zlib.decompress(blob))


def _passed(checks: list[dict]) -> bool:
    return all(c["status"] in ("pass", "skip") for c in checks)


class History:
    def __init__(self, url: str | Path):
        text = str(url)
        if text.startswith("postgresql://") or text.startswith("postgres://"):
            raise HistoryError("a postgresql:// history is not supported yet; use an SQLite file (the default) "
                               "on storage every controller reaches")
        self.path = Path(text[len("sqlite:///") - 1:] if text.startswith("sqlite:///") else text)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        except sqlite3.Error as exc:
            raise HistoryError(f"{self.path}: cannot open the history ({exc})") from exc
        db.row_factory = sqlite3.Row
        try:
            yield db
        finally:
            db.close()

    def record(self, results: dict) -> None:
        """Store a run (replacing a run of the same id): one transaction, all or nothing."""
        model = results["model"]
        boards_passed = []
        rows = []
        for board in results["boards"]:
            board_ok = board["status"] == "ok"
            for variant, entry in board.get("variants", {}).items():
                passed = board_ok and _passed(entry.get("checks", []))
                boards_passed.append(passed)
                stats = entry.get("latency_ms") or {}
                top1 = (entry.get("accuracy") or {}).get("top1")
                rows.append((results["run_id"], board["name"], variant, model.get("name"), results["started"],
                             json.dumps(board.get("pools", [])), int(passed), stats.get("p50"), stats.get("p95"),
                             entry.get("peak_rss_mb"), top1, _pack(entry)))
            if not board_ok:
                boards_passed.append(False)
        all_passed = bool(boards_passed) and all(boards_passed)
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM measurements WHERE run_id = ?", (results["run_id"],))
                db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (results["run_id"], results["started"], results["finished"], model.get("name"),
                            model.get("sha256"), results["inventory"], results["checklist"]["name"],
                            int(all_passed), _pack(results)))
                db.executemany("INSERT INTO measurements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def runs(self, board: str | None = None, model: str | None = None, limit: int = 50) -> list[dict]:
        query = ("SELECT r.run_id, r.started, r.model_name, r.model_sha256, r.all_passed, "
                 "GROUP_CONCAT(DISTINCT m.board) AS boards FROM runs r LEFT JOIN measurements m USING (run_id) "
                 "WHERE (? IS NULL OR m.board = ?) AND (? IS NULL OR r.model_name = ?) "
                 "GROUP BY r.run_id ORDER BY r.started DESC, r.run_id DESC LIMIT ?")
        with self._connect() as db:
            return [dict(row) for row in db.execute(query, (board, board, model, model, limit))]

    def load_run(self, run_id: str) -> dict:
        with self._connect() as db:
            row = db.execute("SELECT document FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise HistoryError(f"run {run_id} is not in the history {self.path}")
        return _unpack(row["document"])

    def baseline(self, board: str, model: str, variant: str, before: str | None = None) -> dict | None:
        """The pinned run, else the last run before `before` in which every check passed."""
        with self._connect() as db:
            pinned = db.execute("SELECT run_id FROM pins WHERE board = ? AND model_name = ? AND variant = ?",
                                (board, model, variant)).fetchone()
            if pinned:
                row = db.execute("SELECT run_id, entry FROM measurements WHERE run_id = ? AND board = ? AND "
                                 "variant = ?", (pinned["run_id"], board, variant)).fetchone()
            else:
                row = db.execute(
                    "SELECT run_id, entry FROM measurements WHERE board = ? AND model_name = ? AND variant = ? "
                    "AND all_passed = 1 AND (? IS NULL OR run_id != ?) ORDER BY started DESC, run_id DESC LIMIT 1",
                    (board, model, variant, before, before)).fetchone()
        if row is None:
            return None
        return {"run_id": row["run_id"], "pinned": bool(pinned), **_unpack(row["entry"])}

    def pin(self, run_id: str, pool: str | None = None) -> list[tuple[str, str]]:
        """Make a run the baseline of its boards (those of `pool` only, when given)."""
        from farm.job import utc_now

        with self._connect() as db:
            rows = db.execute("SELECT board, model_name, variant, pools FROM measurements WHERE run_id = ?",
                              (run_id,)).fetchall()
            if not rows:
                raise HistoryError(f"run {run_id} is not in the history {self.path}")
            chosen = [r for r in rows if pool is None or pool in json.loads(r["pools"])]
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR REPLACE INTO pins VALUES (?, ?, ?, ?, ?)",
                           [(r["board"], r["model_name"], r["variant"], run_id, utc_now()) for r in chosen])
            db.execute("COMMIT")
        return [(r["board"], r["variant"]) for r in chosen]

    def trend(self, board: str, model: str, variant: str, figure: str = "p95", limit: int = 20) -> list[tuple]:
        """(run_id, started, value) of the last runs, oldest first: the report's trend plot."""
        column = {"p50": "p50", "p95": "p95"}[figure]
        with self._connect() as db:
            rows = db.execute(f"SELECT run_id, started, {column} AS value FROM measurements WHERE board = ? AND "
                              "model_name = ? AND variant = ? ORDER BY started DESC, run_id DESC LIMIT ?",
                              (board, model, variant, limit)).fetchall()
        return [(r["run_id"], r["started"], r["value"]) for r in reversed(rows)]
