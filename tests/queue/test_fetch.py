"""`farm fetch` against rows a hostile database user wrote: a real PostgreSQL, the real command."""

from __future__ import annotations

import hashlib
import json

import pytest
from helpers import farm

from farm.queue.app import ensure_schema


@pytest.fixture(scope="module")
def store(postgres_server):
    return ensure_schema(postgres_server("farm_fetch"))


def stored_run(store, tmp_path, run_id: str, names: list[str]) -> None:
    """Rows of farm_run_files for `run_id`, as the queue keeps them: each file a blob by sha256."""
    for number, name in enumerate(names):
        path = tmp_path / f"blob-{number}"
        path.write_text(json.dumps({"run_id": run_id, "name": name}))
        sha = store.put_blob(path)
        with store.connect() as db:
            db.execute("INSERT INTO farm_run_files VALUES (%s, %s, %s, 1)", (run_id, name, sha))


def test_fetch_writes_the_run_files_farm_writes_inside_to(store, tmp_path):
    stored_run(store, tmp_path, "run-ok", ["results.json", "report.html", "boards/so-a53.json", "logs/so-a53.log"])
    to = tmp_path / "to"
    proc = farm("fetch", "run-ok", "--queue", store.url, "--to", str(to), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((to / "run-ok" / "boards" / "so-a53.json").read_text())["name"] == "boards/so-a53.json"
    assert sorted(p.relative_to(to).as_posix() for p in to.rglob("*") if p.is_file()) == [
        "run-ok/boards/so-a53.json", "run-ok/logs/so-a53.log", "run-ok/report.html", "run-ok/results.json"]


@pytest.mark.parametrize("hostile", ["../../w/x.txt", "/abs/x.txt", "boards/../../x.json", "evil_suite.py"])
def test_a_stored_name_outside_the_run_files_is_refused_naming_the_row_and_nothing_is_written(store, tmp_path,
                                                                                               hostile):
    run_id = "run-" + hashlib.sha256(hostile.encode()).hexdigest()[:8]
    absolute = tmp_path / "abs" / "x.txt"
    name = str(absolute) if hostile.startswith("/") else hostile
    stored_run(store, tmp_path, run_id, ["results.json", name])
    to = tmp_path / "a" / "b" / "to"
    to.mkdir(parents=True)
    proc = farm("fetch", run_id, "--queue", store.url, "--to", str(to), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"run {run_id}, file row {name!r}" in proc.stderr and "nothing fetched" in proc.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file() and not p.name.startswith("blob-")]
    assert written == [], written


def test_a_link_inside_to_that_leads_out_is_refused(store, tmp_path):
    stored_run(store, tmp_path, "run-link", ["results.json", "boards/so-a53.json"])
    to, elsewhere = tmp_path / "to", tmp_path / "elsewhere"
    (to / "run-link").mkdir(parents=True)
    elsewhere.mkdir()
    (to / "run-link" / "boards").symlink_to(elsewhere)
    proc = farm("fetch", "run-link", "--queue", store.url, "--to", str(to), cwd=tmp_path)
    assert proc.returncode == 2 and "outside --to" in proc.stderr, proc.stderr
    assert list(elsewhere.iterdir()) == [] and not (to / "run-link" / "results.json").exists()
