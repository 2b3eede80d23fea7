"""The results history: every run, per board and variant, with its raw samples.

The store is a URL. Default: an SQLite file (`<results>/history.sqlite`) in WAL
mode, safe when two runs finish at once: each run is recorded in one
transaction that takes the write lock first, and writers wait for each other
instead of failing. `postgresql://user@host/db` (the `postgres` extra, psycopg)
serves a lab with several controllers. The baseline of a board x model x
variant is its last run in which every check passed, unless one was pinned.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from farm.errors import HistoryError
from farm.record.storeurl import redact_url, scrub
from farm.results import Baseline, RunResult, VariantResult
from farm.statuses import HealthState
from farm.util import utc_now

TABLES = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, started TEXT, finished TEXT, model_name TEXT, model_sha256 TEXT,
    inventory TEXT, checklist TEXT, all_passed INTEGER, document {blob});
CREATE TABLE IF NOT EXISTS measurements (
    run_id TEXT, board TEXT, variant TEXT, model_name TEXT, started TEXT, pools TEXT,
    all_passed INTEGER, p50 {real}, p95 {real}, peak_rss_mb {real}, top1 {real}, entry {blob},
    PRIMARY KEY (run_id, board, variant));
CREATE INDEX IF NOT EXISTS measurements_lookup ON measurements (board, model_name, variant, started);
CREATE TABLE IF NOT EXISTS board_runs (
    run_id TEXT, board TEXT, started TEXT, status TEXT, board_class TEXT, pools TEXT, standin INTEGER, error TEXT,
    PRIMARY KEY (run_id, board));
CREATE INDEX IF NOT EXISTS board_runs_lookup ON board_runs (board, started);
CREATE TABLE IF NOT EXISTS pins (
    board TEXT, model_name TEXT, variant TEXT, run_id TEXT, pinned_at TEXT,
    PRIMARY KEY (board, model_name, variant));
CREATE TABLE IF NOT EXISTS board_health (
    board TEXT PRIMARY KEY, state TEXT, reason TEXT, since TEXT, checked TEXT, run_id TEXT);
CREATE TABLE IF NOT EXISTS health_figures (
    board TEXT, checked TEXT, run_id TEXT, p50 {real});
CREATE INDEX IF NOT EXISTS health_figures_lookup ON health_figures (board, checked);
CREATE TABLE IF NOT EXISTS board_events (
    board TEXT, at TEXT, kind TEXT, note TEXT, run_id TEXT);
CREATE INDEX IF NOT EXISTS board_events_lookup ON board_events (board, at);
CREATE TABLE IF NOT EXISTS signoffs (
    run_id TEXT, signed_at TEXT, principal TEXT, signer_key TEXT, model_name TEXT, model_sha256 TEXT,
    checklist TEXT, note TEXT, record {blob}, signature TEXT, PRIMARY KEY (run_id, signed_at, principal));
"""


def _pack(doc: dict) -> bytes:
    return zlib.compress(json.dumps(doc).encode(), 6)


def _unpack(blob: bytes) -> dict:
    return json.loads(zlib.decompress(bytes(blob)))


def _store_errors(postgres: bool) -> tuple[type[BaseException], ...]:
    if postgres:
        import psycopg

        return (psycopg.Error, OSError)
    return (sqlite3.Error, OSError)


class _Store:
    """One connection, the same SQL for SQLite and PostgreSQL (placeholders adapted).

    Every failure of the store (a corrupt or read-only file, a server gone) is a
    HistoryError saying where and what to do: a run degrades to "no history".
    """

    def __init__(self, connection: Any, postgres: bool, where: str):
        self.connection, self.postgres, self.where = connection, postgres, where
        self._errors = _store_errors(postgres)

    def execute(self, query: str, params: tuple = ()) -> list[dict]:
        try:
            cursor = self.connection.cursor()
            cursor.execute(query.replace("?", "%s") if self.postgres else query, params)
            if cursor.description is None:
                return []
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]
        except self._errors as exc:
            fix = ("check the server and the URL" if self.postgres else
                   "a corrupt or read-only file: move it aside (the runs' own folders keep every result) or point "
                   "--history elsewhere")
            raise HistoryError(f"{self.where}: the history store failed ({type(exc).__name__}: {exc}); {fix}") from exc

    @contextmanager
    def transaction(self) -> Iterator[_Store]:
        """All or nothing; SQLite takes the write lock up front so two writers queue, not fail."""
        self.execute("BEGIN" if self.postgres else "BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.execute("ROLLBACK")
            raise
        self.execute("COMMIT")


def sqlite_path(url: str | Path) -> Path | None:
    """The SQLite file a history URL names; None for a PostgreSQL server."""
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        return None
    return Path(text[len("sqlite://"):] if text.startswith("sqlite:///") else text)


class History:
    def __init__(self, url: str | Path):
        text = str(url)
        self.url = text
        path = sqlite_path(text)
        self.postgres = path is None
        if path is not None:
            self.path = path
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._store() as store:
            if not self.postgres:
                store.execute("PRAGMA journal_mode=WAL")
            for statement in TABLES.format(blob="BYTEA" if self.postgres else "BLOB",
                                           real="DOUBLE PRECISION" if self.postgres else "REAL").split(";"):
                if statement.strip() and not (self.postgres and self._made(store, statement)):
                    store.execute(statement)

    @staticmethod
    def _made(store: _Store, statement: str) -> bool:
        """A table or index already there: a role that may only read the history (docs/queue.md) creates nothing."""
        name = re.search(r"IF NOT EXISTS (\w+)", statement).group(1)
        return store.execute("SELECT to_regclass(?) IS NOT NULL AS made", (name,))[0]["made"]

    @contextmanager
    def _store(self) -> Iterator[_Store]:
        try:
            if self.postgres:
                try:
                    import psycopg
                except ImportError as exc:
                    raise HistoryError("a postgresql:// history needs psycopg: "
                                       "pip install 'farm-hil[postgres]'") from exc
                connection = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            else:
                connection = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        except HistoryError:
            raise
        except Exception as exc:
            raise HistoryError(f"{self._where()}: cannot open the history ({scrub(str(exc), self.url)})") from exc
        try:
            yield _Store(connection, self.postgres, self._where())
        finally:
            connection.close()

    def _where(self) -> str:
        return redact_url(self.url) if self.postgres else str(self.path)  # never print a password

    def record(self, result: RunResult) -> bool:
        """Store a run (replacing a run of the same id): one transaction, all or nothing.

        A run recorded again under its id (a queued job's next attempt) replaces the earlier
        record, never the other way round: a record of an attempt that started earlier than the
        one stored is dropped (False), so a killed attempt finishing late cannot undo its retry.
        """
        model = result.model
        rows = []
        for board in result.boards:
            for name, variant in board.variants.items():
                passed = board.ok and all(c.passed for c in variant.checks)
                stats = variant.latency_ms or {}
                rows.append((result.run_id, board.name, name, model.name, result.started, json.dumps(board.pools),
                             int(passed), stats.get("p50"), stats.get("p95"), variant.peak_rss_mb,
                             variant.top1, _pack(variant.to_json())))
        with self._store() as store, store.transaction():
            kept = store.execute("SELECT started FROM runs WHERE run_id = ?", (result.run_id,))
            if kept and kept[0]["started"] and kept[0]["started"] > result.started:
                return False
            store.execute("DELETE FROM measurements WHERE run_id = ?", (result.run_id,))
            store.execute("DELETE FROM board_runs WHERE run_id = ?", (result.run_id,))
            for board in result.boards:  # every board, measured or not: the lab's health comes from these
                store.execute("INSERT INTO board_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                              (result.run_id, board.name, board.started or result.started, board.status.value,
                               board.board_class, ",".join(board.pools), int(board.standin), board.error))
            store.execute("DELETE FROM board_events WHERE run_id = ? AND kind = 'power cycle'", (result.run_id,))
            for board in result.boards:
                if board.recovery is not None:
                    store.execute("INSERT INTO board_events VALUES (?, ?, ?, ?, ?)",
                                  (board.name, board.finished or result.finished, "power cycle",
                                   f"{board.recovery.note} ({board.recovery.cause})", result.run_id))
            store.execute("DELETE FROM runs WHERE run_id = ?", (result.run_id,))
            store.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          (result.run_id, result.started, result.finished, model.name, model.sha256,
                           result.inventory, result.checklist.get("name"), int(result.all_passed),
                           _pack(result.to_json())))
            for row in rows:
                store.execute("INSERT INTO measurements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        return True

    def runs(self, board: str | None = None, model: str | None = None, limit: int = 50, *, pool: str | None = None,
             passed: bool | None = None, since: str | None = None, until: str | None = None) -> list[dict]:
        """The newest runs matching every filter given, each with its boards and pools (two queries in all).

        `model`: its name or a prefix of its sha256; `since` / `until`: ISO dates or times (UTC), `until`
        a date includes that day.
        """
        where, params = [], []
        if board:
            where.append("run_id IN (SELECT run_id FROM board_runs WHERE board = ?)")
            params.append(board)
        if pool:
            where.append("run_id IN (SELECT run_id FROM board_runs WHERE ',' || pools || ',' LIKE ?)")
            params.append(f"%,{pool},%")
        if model:
            where.append("(model_name = ? OR model_sha256 LIKE ?)")
            params += [model, f"{model.lower()}%"]
        if passed is not None:
            where.append("all_passed = ?")
            params.append(int(passed))
        if since:
            where.append("started >= ?")
            params.append(since)
        if until:
            where.append("started < ?")
            params.append((dt.date.fromisoformat(until) + dt.timedelta(days=1)).isoformat() if len(until) == 10
                          else until)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._store() as store:
            runs = store.execute(f"SELECT run_id, started, finished, model_name, model_sha256, all_passed FROM runs "
                                 f"{clause} ORDER BY started DESC, run_id DESC LIMIT ?", (*params, limit))
            boards = store.execute("SELECT run_id, board, pools FROM board_runs WHERE started >= ? ORDER BY board",
                                   (min((r["started"] for r in runs), default=""),)) if runs else []
        found: dict[str, list] = {}
        for row in boards:
            found.setdefault(row["run_id"], []).append(row)
        for run in runs:
            rows = found.get(run["run_id"], [])
            run["boards"] = ",".join(r["board"] for r in rows)
            run["pools"] = ",".join(sorted({p for r in rows for p in (r["pools"] or "").split(",") if p}))
        return runs

    # -- board health: `bad` boards are left out of selection until a health check passes -----------
    def set_health(self, board: str, state: HealthState, reason: str, run_id: str | None = None,
                   p50: float | None = None, forget_figures: bool = False) -> None:
        """A board's health after a check (`good` / `bad`) or a person's mark (`retired` / `good`), and its event.

        `p50`: a passing check's reference latency, kept as this board's own level for the next checks;
        `forget_figures`: a person's restore, after which the board's level is learnt afresh.
        """
        now = utc_now()
        with self._store() as store, store.transaction():
            store.execute("DELETE FROM board_health WHERE board = ?", (board,))
            store.execute("INSERT INTO board_health VALUES (?, ?, ?, ?, ?, ?)",
                          (board, state, reason, now, now, run_id))
            store.execute("INSERT INTO board_events VALUES (?, ?, ?, ?, ?)", (board, now, state, reason, run_id))
            if forget_figures:
                store.execute("DELETE FROM health_figures WHERE board = ?", (board,))
            if state == HealthState.GOOD and p50 is not None:  # ordered to the microsecond: checks come seconds apart
                at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
                store.execute("INSERT INTO health_figures VALUES (?, ?, ?, ?)", (board, at, run_id, p50))

    def health_figures(self, board: str, limit: int) -> list[float]:
        """The reference p50 (ms) of a board's last `limit` passing health checks, newest first."""
        with self._store() as store:
            rows = store.execute("SELECT p50 FROM health_figures WHERE board = ? ORDER BY checked DESC LIMIT ?",
                                 (board, limit))
        return [row["p50"] for row in rows]

    def health(self) -> dict[str, dict]:
        """Every board's last health state: board -> {state, reason, since, checked, run_id}."""
        with self._store() as store:
            rows = store.execute("SELECT * FROM board_health")
        try:
            return {row["board"]: {**row, "state": HealthState(row["state"])} for row in rows}
        except ValueError as exc:
            raise HistoryError(f"{self._where()}: board_health: {exc}: "
                               "mark the board again (farm boards restore)") from exc

    def events(self, board: str | None = None, limit: int = 50) -> list[dict]:
        """Power cycles and health changes, newest first."""
        clause, params = ("WHERE board = ? ", (board,)) if board else ("", ())
        with self._store() as store:
            return store.execute(f"SELECT * FROM board_events {clause}ORDER BY at DESC LIMIT ?", (*params, limit))

    def board_runs(self, last: int = 20) -> list[dict]:
        """Each board's status in its `last` runs, newest first: the lab's health (LAVA's idea)."""
        with self._store() as store:
            return store.execute("SELECT * FROM (SELECT b.*, ROW_NUMBER() OVER (PARTITION BY board ORDER BY started "
                                 "DESC, run_id DESC) AS n FROM board_runs b) recent WHERE n <= ? "
                                 "ORDER BY started DESC, run_id DESC", (last,))

    def series(self, board: str, variant: str, model: str | None = None, limit: int = 200,
               before: tuple[str, str] | None = None, verdicts: bool = False) -> list[dict]:
        """A board x variant's figures across runs, oldest first.

        `before`: (run_id, started) of a run: only the runs recorded before it, that run excluded.
        `verdicts`: each with its regression verdict too, read from the stored variant (samples and
        all), so only when shown.
        """
        clause, params = "", []
        if model:
            clause, params = "AND model_name = ? ", [model]
        if before:
            clause += "AND started < ? AND run_id <> ? "
            params += [before[1], before[0]]
        with self._store() as store:
            rows = store.execute(f"SELECT run_id, started, model_name, p50, p95, peak_rss_mb, top1"
                                 f"{', entry' if verdicts else ''} FROM measurements WHERE board = ? AND variant = ? "
                                 f"{clause}ORDER BY started DESC, run_id DESC LIMIT ?",
                                 (board, variant, *params, limit))
        for row in rows if verdicts else ():
            checks = _unpack(row.pop("entry")).get("checks") or []
            row["regression"] = next((c["status"] for c in checks if c["item"] == "regression"), None)
        return rows[::-1]

    def series_keys(self, board: str | None = None, variant: str | None = None,
                    model: str | None = None) -> list[tuple[str, str, str]]:
        """Every (board, variant, model name) with figures in the history: the series `series` reads."""
        where, params = [], []
        for column, value in (("board", board), ("variant", variant), ("model_name", model)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        with self._store() as store:
            rows = store.execute(f"SELECT DISTINCT board, variant, model_name FROM measurements {clause}"
                                 "ORDER BY board, variant, model_name", tuple(params))
        return [(r["board"], r["variant"], r["model_name"]) for r in rows]

    def series_before(self, board: str, variant: str, model: str, run_id: str, started: str,
                      limit: int = 30) -> tuple:
        """The runs a run's change-point test looks at: this board x variant's, recorded before it, oldest first."""
        return tuple({"run_id": r["run_id"], "p50": r["p50"], "p95": r["p95"]}
                     for r in self.series(board, variant, model, limit, before=(run_id, started)))

    def check_counts(self, last_runs: int = 20) -> dict[str, int]:
        """Checks of the newest runs by status."""
        with self._store() as store:
            rows = store.execute("SELECT entry FROM measurements WHERE run_id IN (SELECT run_id FROM runs ORDER BY "
                                 "started DESC LIMIT ?)", (last_runs,))
        counts: dict[str, int] = {}
        for row in rows:
            for check in _unpack(row["entry"]).get("checks") or []:
                counts[check["status"]] = counts.get(check["status"], 0) + 1
        return counts

    def load_run(self, run_id: str) -> RunResult:
        with self._store() as store:
            rows = store.execute("SELECT document FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise HistoryError(f"run {run_id} is not in the history {self._where()}")
        try:
            return RunResult.from_json(_unpack(rows[0]["document"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise HistoryError(f"run {run_id} in the history {self._where()} is not a farm results document "
                               f"({exc}); read its run folder's results.json instead") from exc

    def baseline(self, board: str, model: str, variant: str, before: str | None = None) -> Baseline | None:
        """The pinned run, else the last run (other than `before`) in which every check passed."""
        with self._store() as store:
            pinned = store.execute("SELECT run_id FROM pins WHERE board = ? AND model_name = ? AND variant = ?",
                                   (board, model, variant))
            if pinned:
                rows = store.execute("SELECT run_id, entry FROM measurements WHERE run_id = ? AND board = ? "
                                     "AND variant = ?", (pinned[0]["run_id"], board, variant))
            else:
                rows = store.execute(
                    "SELECT run_id, entry FROM measurements WHERE board = ? AND model_name = ? AND variant = ? "
                    "AND all_passed = 1 AND run_id != ? ORDER BY started DESC, run_id DESC LIMIT 1",
                    (board, model, variant, before or ""))
        if not rows:
            return None
        entry = VariantResult.from_json({**_unpack(rows[0]["entry"]), "name": variant})
        return Baseline(rows[0]["run_id"], entry, pinned=bool(pinned))

    def pin(self, run_id: str, pool: str | None = None) -> list[tuple[str, str]]:
        """Make a run the baseline of its boards (those of `pool` only, when given)."""
        with self._store() as store:
            rows = store.execute("SELECT board, model_name, variant, pools FROM measurements WHERE run_id = ?",
                                 (run_id,))
            if not rows:
                raise HistoryError(f"run {run_id} is not in the history {self._where()}")
            chosen = [r for r in rows if pool is None or pool in json.loads(r["pools"])]
            with store.transaction():
                for r in chosen:
                    key = (r["board"], r["model_name"], r["variant"])
                    store.execute("DELETE FROM pins WHERE board = ? AND model_name = ? AND variant = ?", key)
                    store.execute("INSERT INTO pins VALUES (?, ?, ?, ?, ?)", (*key, run_id, utc_now()))
        return [(r["board"], r["variant"]) for r in chosen]

    def record_signoff(self, record: dict, signature: str) -> None:
        """Keep a sign-off (its exact signed bytes and signature) where the model's sha finds it."""
        signer, model = record["signer"], record["model"]
        with self._store() as store, store.transaction():
            store.execute("DELETE FROM signoffs WHERE run_id = ? AND signed_at = ? AND principal = ?",
                          (record["run_id"], record["signed_at"], signer["principal"]))
            store.execute("INSERT INTO signoffs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          (record["run_id"], record["signed_at"], signer["principal"], signer["key"], model["name"],
                           model["sha256"], record["checklist"]["name"], record.get("note"), _pack(record),
                           signature))

    def signoffs(self, model: str | None = None, limit: int = 50) -> list[dict]:
        """The newest sign-offs, of a model (its name, or its or a variant's sha256 or a prefix of it) if given."""
        with self._store() as store:
            rows = store.execute("SELECT run_id, signed_at, principal, signer_key, model_name, model_sha256, "
                                 "checklist, note, record FROM signoffs ORDER BY signed_at DESC")
        found = []
        for row in rows:
            record = _unpack(row.pop("record"))
            shas = [row["model_sha256"] or "", *record["model"]["variants"].values()]
            if model is None or model == row["model_name"] or any(s.startswith(model.lower()) for s in shas):
                found.append(row)
        return found[:limit]

    def signoff_records(self, limit: int = 100) -> list[dict]:
        """The newest sign-offs with their signatures and records as stored (`stored_record` reads one), to verify
        them again: the same stored bytes are the same record, found without unpacking it."""
        with self._store() as store:
            rows = store.execute("SELECT run_id, signed_at, principal, model_name, model_sha256, checklist, note, "
                                 "record AS stored, signature FROM signoffs ORDER BY signed_at DESC LIMIT ?", (limit,))
        for row in rows:
            row["stored"] = bytes(row["stored"])
        return rows

    @staticmethod
    def stored_record(stored: bytes) -> dict:
        """A sign-off record from its stored bytes (`signoff_records`)."""
        return _unpack(stored)

    def trend(self, board: str, model: str, variant: str, figure: str = "p95", limit: int = 20) -> list[tuple]:
        """(run_id, started, value) of the last runs, oldest first: the report's trend plot."""
        return [(r["run_id"], r["started"], r[figure]) for r in self.series(board, variant, model, limit)]
