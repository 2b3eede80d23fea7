"""The dashboard app without a browser or a server: Starlette's TestClient over a seeded SQLite history.

tests/ui/test_dashboard.py drives the same pages through `farm serve` after real runs, in Chromium;
these check what needs no JavaScript (status codes, headers, escaping, filters, tokens, host names, static
files, /metrics, and `farm serve`'s refusals, called in-process) in milliseconds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from urllib.parse import unquote

import anyio
import pytest
from helpers import history_run
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from farm.record.history import History
from farm.results import BoardStatus, RunResult
from farm.ui.cli import main
from farm.ui.cli.serve import allowed_hosts
from farm.ui.web import app as web_app
from farm.ui.web.app import create_app
from farm.ui.web.data import Sources

LOCAL = "http://127.0.0.1"  # a loopback Host: the dashboard refuses any other (DNS rebinding)

XSS_BOARD, XSS_POOL = "<script>alert(1)</script>", "<img src=x onerror=alert(2)>"


def _run(run_id: str, started: str, boards: list[tuple[str, str, BoardStatus, float]], pools: list[str]) -> RunResult:
    """A run of `boards` (name, class, status, p50): the structure the history stores, figures made up."""
    base = history_run(run_id, "x", 1.0, started=started)
    results = []
    for name, board_class, status, p50 in boards:
        variant = dataclasses.replace(base.boards[0].variants["fp32"], latency_ms={"p50": p50, "p95": p50 * 1.2},
                                      samples_ms=[p50] * 20)
        ok = status is BoardStatus.OK
        results.append(dataclasses.replace(base.boards[0], name=name, board_class=board_class, status=status,
                                           error=None if ok else f"{name}: no route to host", pools=pools,
                                           variants={"fp32": variant} if ok else {}))
    return dataclasses.replace(base, boards=results)


def raw_get(app, raw_path: str) -> tuple[int, bytes]:
    """A GET whose path reaches the app as uvicorn hands it on (`..` kept, %-decoded): TestClient's httpx
    removes dot segments before the app sees them, so `/files/../x` would never reach it as sent."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": unquote(raw_path), "raw_path": raw_path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1")], "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 50000)}
    sent: list[dict] = []
    requested = False

    async def receive() -> dict:  # the request once, then no disconnect: a streamed body is sent to its end
        nonlocal requested
        if requested:
            await anyio.sleep_forever()
        requested = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    anyio.run(app, scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Sources:
    """Two runs on two boards (the second finds dash-a72 unreachable), and a run with hostile names."""
    results = tmp_path_factory.mktemp("dashboard-app") / "results"
    history = History(results / "history.sqlite")
    runs = [_run("r1", "2026-01-01T01:00:00+00:00", [("dash-a53", "cortex-a53", BoardStatus.OK, 1.0),
                                                     ("dash-a72", "cortex-a72", BoardStatus.OK, 2.0)], ["dash"]),
            _run("r2", "2026-01-02T01:00:00+00:00", [("dash-a53", "cortex-a53", BoardStatus.OK, 1.1),
                                                     ("dash-a72", "cortex-a72", BoardStatus.UNREACHABLE, 0)], ["dash"]),
            _run("20000101T000000Z-xss0", "2000-01-01T00:00:00+00:00",
                 [(XSS_BOARD, "cortex-a53", BoardStatus.OK, 1.0)], [XSS_POOL])]
    runs[1] = dataclasses.replace(runs[1], finished="2026-01-02T01:01:35.500000+00:00")  # the newest: 95.5 s
    for run in runs:
        history.record(run)
    (results / "r1").mkdir()
    (results / "r1" / "results.json").write_text(json.dumps(runs[0].to_json()))
    (results / "r1" / "report.html").write_text("<html>report of r1</html>")
    (results.parent / "results.json").write_text('{"root:": "outside the results folder"}')  # for `/files/../`
    return Sources(history, results)


@pytest.fixture(scope="module")
def client(sources) -> TestClient:
    return TestClient(create_app(sources), base_url=LOCAL)


@pytest.mark.parametrize("path", ["/", "/runs", "/trends", "/trends?board=dash-a53&variant=fp32", "/signoffs",
                                  "/queue", "/api/lab", "/api/runs", "/api/trends?board=dash-a53", "/api/signoffs",
                                  "/api/queue", "/metrics", "/static/plotly.min.js", "/static/farm.css"])
def test_every_page_and_api_answers(client, path):
    assert client.get(path).status_code == 200


def test_the_lab_lists_each_board_with_its_class_pools_and_infrastructure_failures(client):
    boards = {b["name"]: b for b in client.get("/api/lab").json()["boards"]}
    assert {"dash-a53", "dash-a72", XSS_BOARD} == set(boards)
    a53, a72 = boards["dash-a53"], boards["dash-a72"]
    assert (a53["class"], a53["pools"], a53["runs"], a53["failure_rate"]) == ("cortex-a53", ["dash"], 2, 0.0)
    assert (a72["last_status"], a72["runs"], a72["failure_rate"]) == ("unreachable", 2, 0.5)
    assert a72["last_seen"] == "2026-01-01T01:00:00+00:00"  # the run that reached it, not the one that did not


@pytest.mark.parametrize(("query", "expected"), [("", ["r2", "r1", "20000101T000000Z-xss0"]),
                                                 ("pool=dash", ["r2", "r1"]),
                                                 ("status=passed", ["r1", "20000101T000000Z-xss0"]),
                                                 ("status=failed", ["r2"]),
                                                 ("board=dash-a72&since=2026-01-02", ["r2"]),
                                                 ("until=2026-01-01T12:00:00", ["r1", "20000101T000000Z-xss0"])])
def test_the_runs_api_applies_every_filter_newest_first(client, query, expected):
    assert [r["run_id"] for r in client.get(f"/api/runs?{query}").json()["runs"]] == expected


def test_each_run_links_only_the_files_its_folder_holds(client):
    files = {r["run_id"]: r["files"] for r in client.get("/api/runs").json()["runs"]}
    assert files["r1"] == ["report.html", "results.json"] and files["r2"] == []


@pytest.mark.parametrize("query", ["pool=%3Cscript%3E", "board=a;b", "model=%27%20OR%201=1", "since=yesterday",
                                   "until=2026-01-01%3Cb%3E", "board=" + "a" * 101])
def test_a_filter_outside_its_pattern_is_a_400_naming_it(client, query):
    response = client.get(f"/api/runs?{query}")
    assert response.status_code == 400 and query.split("=")[0] in response.text


@pytest.mark.parametrize("path", ["/", "/runs"])
def test_hostile_names_are_escaped_in_the_html(client, path):
    body = client.get(path).text
    assert XSS_BOARD not in body and XSS_POOL not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body or path == "/runs"
    assert "&lt;img src=x onerror=alert(2)&gt;" in body


@pytest.mark.parametrize("path", ["/files/../../etc/passwd", "/files/..%2F..%2Fetc/passwd", "/files/%2E%2E/passwd",
                                  "/files/x/..%2F..%2F..%2Fetc%2Fpasswd", "/files/r1/../../../../etc/passwd",
                                  "/files/r1/manifest.json", "/files/r2/results.json", "/files/.r1/results.json",
                                  "/files/../results.json", "/files/%2E%2E/results.json"])
def test_a_path_out_of_the_results_folder_or_a_file_not_served_is_a_404(client, path):
    status, body = raw_get(client.app, path)
    assert status == 404 and b"root:" not in body


def test_the_runs_page_filters_and_links_to_each_runs_files(client, sources):
    page = client.get("/runs?pool=dash").text
    assert re.findall(r'<tr data-run="([^"]+)"', page) == ["r2", "r1"]  # newest first; the hostile run is elsewhere
    links = re.findall(r'<a class="file" href="([^"]+)"', page)
    assert links == ["/files/r1/report.html", "/files/r1/results.json"]
    assert client.get(links[0]).text == "<html>report of r1</html>"
    assert client.get(links[1]).json()["run_id"] == "r1"
    api = client.get("/api/runs?status=passed").json()
    passed = [r["run_id"] for r in sources.history.runs(limit=10) if r["all_passed"]]
    assert [r["run_id"] for r in api["runs"]] == passed


@pytest.mark.parametrize(("name", "media"), [("results.json", "application/json"), ("report.html", "text/html")])
def test_a_runs_own_files_are_served_with_their_media_type(client, name, media):
    response = client.get(f"/files/r1/{name}")
    assert response.status_code == 200 and response.headers["content-type"].startswith(media)
    if name == "results.json":
        assert response.json()["run_id"] == "r1"


def test_metrics_say_which_boards_are_up_and_how_each_pool_stands(client):
    response = client.get("/metrics")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    up = {s.labels["board"]: s.value for s in families["farm_board_up"].samples}
    assert up["dash-a53"] == 1.0 and up["dash-a72"] == 0.0
    pools = {(s.labels["pool"], s.labels["state"]): s.value for s in families["farm_pool_boards"].samples}
    assert (pools[("dash", "up")], pools[("dash", "failing")], pools[("dash", "busy")]) == (1.0, 1.0, 0.0)
    runs = {s.labels["status"]: s.value for s in families["farm_runs"].samples}
    assert runs == {"passed": 2.0, "failed": 1.0}
    ratio = {s.labels["board"]: s.value for s in families["farm_board_infrastructure_failure_ratio"].samples}
    assert ratio["dash-a72"] == 0.5


def test_metrics_give_the_newest_runs_wall_time(client):
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    assert [s.value for s in families["farm_last_run_duration_seconds"].samples] == [95.5]


def test_the_trend_of_a_board_holds_each_runs_figures_and_its_baseline(client):
    trend = client.get("/api/trends?board=dash-a53&variant=fp32").json()["trend"]
    assert [(p["run_id"], p["p50"]) for p in trend["points"]] == [("r1", 1.0), ("r2", 1.1)]
    assert trend["baseline"]["run_id"] == "r2" and trend["changes"] == []


def test_a_trend_is_asked_for_by_board(client):
    assert client.get("/api/trends").json()["trend"] is None


def test_the_signoffs_and_queue_pages_say_what_they_cannot_show(client):
    signoffs = client.get("/signoffs").text
    assert "No sign-off recorded" in signoffs and "--allowed-signers" in signoffs
    assert "No queue" in client.get("/queue").text
    assert client.get("/api/queue").json() == {"enabled": False, "pools": {}, "jobs": []}


@pytest.fixture(scope="module")
def guarded(sources) -> TestClient:
    return TestClient(create_app(sources, token="s3cret"), base_url=LOCAL)


@pytest.mark.parametrize("path", ["/", "/metrics", "/api/lab", "/files/r1/results.json", "/static/farm.css"])
def test_with_a_token_every_path_refuses_a_client_without_it(guarded, path):
    assert guarded.get(path).status_code == 401
    assert guarded.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert guarded.get(path, params={"token": "s3cre"}).status_code == 401


def test_the_token_is_taken_once_in_the_query_then_from_its_cookie_and_never_shown(sources):
    guarded = TestClient(create_app(sources, token="s3cret"), base_url=LOCAL)
    first = guarded.get("/?token=s3cret")
    assert first.status_code == 200 and "s3cret" not in first.text
    assert "HttpOnly" in first.headers["set-cookie"] and "SameSite=Strict" in first.headers["set-cookie"]
    assert guarded.get("/runs").status_code == 200  # the client sends the cookie back
    assert guarded.get("/api/lab", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    cookie = first.headers["set-cookie"].split(";")[0]  # sent by hand, by a client that kept no cookie of its own
    fresh = TestClient(create_app(sources, token="s3cret"), base_url=LOCAL)
    assert fresh.get("/", headers={"Cookie": cookie}).status_code == 200


@pytest.mark.parametrize("path, status", [("/", 200), ("/runs", 200), ("/api/lab", 200), ("/static/trends.js", 200),
                                          ("/static/nothing.js", 404), ("/runs?until=2026-13-45", 400),
                                          ("/metrics", 200)])
def test_every_response_carries_the_security_headers(client, path, status):
    got, refused = client.get(path), client.get(path, headers={"Host": "rebind.attacker.example"})
    assert got.status_code == status and refused.status_code == 400
    for answer in (got.headers, refused.headers):
        assert answer["x-frame-options"] == "DENY" and answer["x-content-type-options"] == "nosniff"
        assert answer["referrer-policy"] == "no-referrer"
        policy = dict(d.strip().split(" ", 1) for d in answer["content-security-policy"].split(";"))
        assert policy["script-src"] == "'self'" and policy["frame-ancestors"] == "'none'"  # no inline script


@pytest.mark.parametrize("query, field", [("until=2026-13-45", "until"), ("since=2026-02-30", "since"),
                                          ("since=yesterday", "since"), ("until=2026-01-01T25:00", "until"),
                                          ("status=maybe", "status"), ("board=%3Cscript%3E", "board")])
def test_a_bad_query_value_is_a_400_naming_the_field(client, query, field):
    for page in ("/runs", "/api/runs"):
        response = client.get(f"{page}?{query}")
        assert response.status_code == 400 and response.text.startswith(f"bad request: {field}"), response.text
        assert "Traceback" not in response.text
    assert client.get("/api/runs?since=2026-01-02&until=2026-01-02").status_code == 200
    assert [r["run_id"] for r in client.get("/api/runs?since=2026-01-02").json()["runs"]] == ["r2"]


def test_a_foreign_host_header_is_refused_and_loopback_names_and_allowed_hosts_are_served(sources):
    served = TestClient(create_app(sources, allowed_hosts=allowed_hosts(["dash.lab.example"], "127.0.0.1")),
                        base_url=LOCAL)
    for host in ("127.0.0.1", "127.0.0.1:8000", "localhost:8000", "[::1]", "dash.lab.example", "DASH.lab.example:80"):
        assert served.get("/api/lab", headers={"Host": host}).status_code == 200, host
    for host in ("rebind.attacker.example", "rebind.attacker.example:8000", "127.0.0.1.nip.io",
                 "lab.example"):  # DNS rebinding: the attacker's name, resolving to 127.0.0.1
        response = served.get("/api/lab", headers={"Host": host})
        assert response.status_code == 400 and "dash-a53" not in response.text, host


@pytest.mark.parametrize(("name", "media"), [("farm.css", "text/css"), ("trends.js", "javascript"),
                                             ("plotly.min.js", "javascript")])
def test_farms_own_style_and_scripts_carry_their_media_type(client, name, media):
    response = client.get(f"/static/{name}")  # under nosniff, a script served as anything else never runs
    assert response.status_code == 200 and media in response.headers["content-type"]
    served = web_app.PLOTLY_JS if name == "plotly.min.js" else Path(web_app.__file__).with_name("static") / name
    assert response.content == served.read_bytes()


@pytest.mark.parametrize("path", ["/static/../app.py", "/static/%2E%2E/app.py", "/static/..%2Fapp.py",
                                  "/static/../templates/base.html", "/static/base.html", "/static/",
                                  "/static/nothing.js"])
def test_static_serves_its_own_folder_and_nothing_else(client, path):
    status, body = raw_get(client.app, path)
    assert status == 404 and b"import" not in body and b"{%" not in body


@pytest.fixture
def serving(monkeypatch) -> list[tuple]:
    """`farm serve` in-process: what it would have served (host, port, token), instead of serving."""
    for name in [name for name in os.environ if name.startswith("FARM_")]:  # the command line alone
        monkeypatch.delenv(name)
    calls: list[tuple] = []
    monkeypatch.setattr(web_app, "serve", lambda sources, host, port, token, *rest: calls.append((host, port, token)))
    return calls


def test_serve_off_loopback_is_refused_without_a_token_and_served_with_one(sources, serving, monkeypatch, capsys):
    monkeypatch.chdir(sources.results.parent)
    assert main(["serve", "--host", "0.0.0.0"]) == 2 and "--token" in capsys.readouterr().err
    assert serving == []
    assert main(["serve", "--host", "0.0.0.0", "--token", "s3cret", "--port", "8123"]) == 0
    assert serving == [("0.0.0.0", 8123, "s3cret")]


def test_serve_refuses_an_allowed_host_of_any_name(sources, serving, monkeypatch, capsys):
    monkeypatch.chdir(sources.results.parent)
    assert main(["serve", "--out", "results", "--allowed-host", "*"]) == 2
    assert "--allowed-host '*'" in capsys.readouterr().err and serving == []


def test_serve_never_creates_a_history_file_that_did_not_exist(tmp_path, serving, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["serve", "--out", "typo-results"]) == 2
    assert f"no history at {Path('typo-results') / 'history.sqlite'}" in capsys.readouterr().err
    assert not (tmp_path / "typo-results").exists()
    assert main(["serve", "--history", str(tmp_path / "none-here.sqlite")]) == 2
    assert not (tmp_path / "none-here.sqlite").exists() and serving == []


def test_serve_refuses_half_a_tls_pair_and_a_certificate_that_is_not_there(sources, serving, monkeypatch, capsys):
    monkeypatch.chdir(sources.results.parent)
    (sources.results.parent / "cert.pem").write_text("a certificate")
    assert main(["serve", "--tls-cert", "cert.pem"]) == 2 and "--tls-key" in capsys.readouterr().err
    assert main(["serve", "--tls-cert", "cert.pem", "--tls-key", "key.pem"]) == 2
    assert "key.pem: no such file" in capsys.readouterr().err and serving == []
