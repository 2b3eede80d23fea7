"""A job's closed shape and the URLs printed without passwords: the rules alone (the worker and the database
themselves in test_queue_trust.py)."""

from __future__ import annotations

import pytest

from farm.errors import QueueError
from farm.queue.execute import WorkerConfig, child_argv
from farm.queue.request import check, inside
from farm.record.storeurl import redact_url, scrub, split_password

SHA = "ab" * 32


def request(**changes) -> dict:
    base = {"kind": "run", "pool": "east", "options": {"runs": 5, "variants": "fp32,int8"},
            "files": {role: {"sha256": SHA, "name": f"{role}.bin"} for role in ("model", "data", "checklist")}}
    return {**base, **changes}


@pytest.mark.parametrize("bad, why", [
    ({"kind": "config"}, "kind 'config'"),
    ({"pool": "west"}, "pool 'west'"),
    ({"files": {**request()["files"], "inventory": {"sha256": SHA, "name": "lab.yaml"}}}, "role 'inventory'"),
    ({"files": {**request()["files"], "../../x": {"sha256": SHA, "name": "a"}}}, "role '../../x'"),
    ({"files": {"model": {"sha256": SHA, "name": "m"}}}, "no data file"),
    ({"files": {**request()["files"], "model": {"sha256": SHA, "name": "../m.onnx"}}}, "not a plain name"),
    ({"files": {**request()["files"], "model": {"sha256": SHA, "name": "/etc/passwd"}}}, "not a plain name"),
    ({"files": {**request()["files"], "model": {"sha256": "../x", "name": "m"}}}, "sha256"),
    ({"options": {"inventory": "lab.yaml"}}, "option 'inventory'"),
    ({"options": {"board": "x y"}}, "not a plain value"),
])
def test_a_request_outside_the_closed_shape_is_refused_naming_what(bad, why):
    with pytest.raises(QueueError, match="refused") as refused:
        check(request(**bad), 7, "farm-pool-east", ("east",))
    assert why in str(refused.value)


def test_a_request_in_another_pools_queue_is_refused():
    with pytest.raises(QueueError, match="pool 'east' in queue 'farm-pool-west'"):
        check(request(), 7, "farm-pool-west", ("east", "west"))


def test_the_childs_flags_are_fixed_names_each_with_its_value_attached(tmp_path):
    config = WorkerConfig("w", "postgresql://q", tmp_path / "lab.yaml", tmp_path / "out", "unused", 5.0, ("east",))
    req = request(options={"board": "-x", "runs": 5})
    check(req, 7, "farm-pool-east", ("east",))
    paths = {"model": tmp_path / "m", "data": tmp_path / "d", "checklist": tmp_path / "c"}
    argv = child_argv(config, req, "RUN", paths, "postgresql://u@h/db")
    flags = argv[4:]
    assert all(a.startswith("--") and "=" in a for a in flags), flags
    assert f"--inventory={tmp_path / 'lab.yaml'}" in flags and "--board=-x" in flags
    assert [a.split("=")[0] for a in flags].count("--inventory") == 1


def test_a_file_may_not_resolve_outside_the_job_folder(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "link").symlink_to("/etc")
    assert inside(tmp_path, "model", "m.onnx") == tmp_path.resolve() / "model" / "m.onnx"
    with pytest.raises(QueueError, match="outside the job folder"):
        inside(tmp_path, "model", "link")


@pytest.mark.parametrize("url, shown", [
    ("postgresql://farm:s3cret@db.lab:5432/farm", "postgresql://farm:***@db.lab:5432/farm"),
    ("postgresql://db.lab/farm?password=s3cret&sslmode=require", "postgresql://:***@db.lab/farm?sslmode=require"),
    ("postgresql://farm@db.lab/farm", "postgresql://farm@db.lab/farm"),
    ("mysql://farm:s3cret@db.lab/farm", "mysql://farm:***@db.lab/farm"),
    ("results/history.sqlite", "results/history.sqlite"),
])
def test_a_url_is_printed_without_its_password(url, shown):
    assert redact_url(url) == shown


def test_the_password_is_split_off_for_the_child_and_scrubbed_from_messages():
    url = "postgresql://farm:p%40ss@db.lab/farm?sslmode=require"
    assert split_password(url) == ("postgresql://farm@db.lab/farm?sslmode=require", "p@ss")
    assert scrub(f"failed for {url}: password p@ss rejected", url) == (
        "failed for postgresql://farm:***@db.lab/farm?sslmode=require: password *** rejected")
