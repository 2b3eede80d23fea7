"""`farm serve` in a real browser (Debian's headless Chromium through Selenium) over a history of real runs."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import closed_port, farm, history_run, ssh_signer, start_farm

from farm.record.history import History
from farm.results import RunResult

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
XSS_BOARD, XSS_POOL = "<script>alert(1)</script>", "<img src=x onerror=alert(2)>"
SHOTS = Path(os.environ.get("FARM_SCREENSHOTS", "")) if os.environ.get("FARM_SCREENSHOTS") else None


class Server:
    def __init__(self, cwd: Path, *args: str, env: dict | None = None):
        self.port = closed_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = start_farm("serve", "--port", str(self.port), *args, cwd=cwd, env=env, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self.process.poll() is None, self.process.stdout.read()
                time.sleep(0.2)
        raise AssertionError("farm serve did not start")

    def get(self, path: str, headers: dict | None = None) -> tuple[int, str, dict]:
        """A raw request: the path is sent exactly as given (no client-side normalisation of `..`)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace"), dict(response.getheaders())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def lab_history(tmp_path_factory, shared_dir):
    """Two real `farm run`s on stand-ins, then a run another tool wrote with hostile names."""
    cwd = tmp_path_factory.mktemp("dashboard")
    (cwd / "lab.yaml").write_text(textwrap.dedent("""
        standins:
          - {name: dash-a53, class: cortex-a53, cores: 1, pools: [dash]}
          - {name: dash-a72, class: cortex-a72, cores: 1, pools: [dash]}
        """))
    env = {"FARM_LAB_DIR": str(shared_dir / "lab-dashboard")}
    for _ in range(2):
        proc = farm("run", "--inventory", "lab.yaml", "--variants", "fp32,int8_dynamic", "--runs", "10",
                    "--warmup", "1", cwd=cwd, env=env)
        assert proc.returncode in (0, 1), proc.stderr[-2000:]
    history = History(cwd / "results" / "history.sqlite")
    real = history.runs(limit=10)
    hostile = history.load_run(real[0]["run_id"])
    doc = hostile.to_json()
    doc["run_id"] = "20000101T000000Z-xss0"
    doc["started"] = "2000-01-01T00:00:00+00:00"
    for i, board in enumerate(doc["boards"]):
        board["name"], board["pools"] = XSS_BOARD if i == 0 else f"hostile-{i}", [XSS_POOL]
    history.record(RunResult.from_json(doc))
    return cwd, [r["run_id"] for r in real]


@pytest.fixture(scope="module")
def server(lab_history):
    cwd, _ = lab_history
    served = Server(cwd, "--out", "results")
    yield served
    served.stop()


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM.exists() and DRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (scripts/setup.sh installs them)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=opts)
    yield driver
    driver.quit()


def shoot(driver, tmp_path: Path, name: str) -> None:
    driver.save_screenshot(str(tmp_path / f"{name}.png"))
    if SHOTS:
        SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / f"{name}.png", SHOTS / f"{name}.png")


def no_alert(driver) -> bool:
    try:
        driver.switch_to.alert  # noqa: B018 (reading it raises when no alert is open)
    except NoAlertPresentException:
        return True
    return False


def test_the_lab_page_links_each_board_to_its_trend_whose_figures_are_the_runs_own(server, browser, lab_history,
                                                                                    tmp_path):
    cwd, run_ids = lab_history
    browser.get(server.url + "/")
    shoot(browser, tmp_path, "lab")
    rows = {r.get_attribute("data-board"): r for r in browser.find_elements(By.CSS_SELECTOR, "#boards tbody tr")}
    assert {"dash-a53", "dash-a72"} <= set(rows)
    assert "cortex-a53" in rows["dash-a53"].text and "0 of 2 (0 %)" in rows["dash-a53"].text

    rows["dash-a72"].find_element(By.CSS_SELECTOR, "a.board").click()
    assert "/trends?board=dash-a72" in browser.current_url
    browser.find_element(By.CSS_SELECTOR, "#plot-p95 .main-svg")  # plotly drew it, from farm's own copy
    shoot(browser, tmp_path, "trends")
    shown = {r.get_attribute("data-run"): r.find_element(By.CSS_SELECTOR, "td.p95").text
             for r in browser.find_elements(By.CSS_SELECTOR, "#points tbody tr")}
    for run_id in run_ids:
        results = RunResult.from_json(json.loads((cwd / "results" / run_id / "results.json").read_text()))
        p95 = results.board("dash-a72").variants["fp32"].latency_ms["p95"]
        assert shown[run_id] == f"{p95:.4g}"


def test_the_runs_page_filters_and_links_to_each_runs_report(server, browser, lab_history, tmp_path):
    cwd, run_ids = lab_history
    browser.get(server.url + "/runs?pool=dash")
    shoot(browser, tmp_path, "runs")
    listed = [r.get_attribute("data-run") for r in browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")]
    assert listed == run_ids  # newest first; the hostile run is in another pool
    browser.find_element(By.CSS_SELECTOR, f"tr[data-run='{run_ids[0]}'] a.file[href$='report.html']").click()
    assert f"/files/{run_ids[0]}/report.html" in browser.current_url  # pytest-html adds ?sort=
    assert run_ids[0] in browser.page_source  # pytest-html's report of that run
    status, body, _ = server.get(f"/files/{run_ids[0]}/results.json")
    assert status == 200 and json.loads(body)["run_id"] == run_ids[0]
    api = json.loads(server.get("/api/runs?status=passed")[1])
    history = History(cwd / "results" / "history.sqlite")
    assert [r["run_id"] for r in api["runs"]] == [r["run_id"] for r in history.runs(limit=10) if r["all_passed"]]


def test_a_change_point_is_listed_and_drawn_where_the_level_moved(browser, tmp_path):
    history = History(tmp_path / "results" / "history.sqlite")
    for night, wobble in enumerate([1.0, 1.03, 0.97, 1.02, 0.98, 1.01, 0.99, 1.04, 0.96, 1.0] * 2):
        history.record(history_run(f"night-{night:02d}", "stepped", (1.3 if night >= 10 else 1.0) * wobble,
                                   started=f"2026-02-{night + 1:02d}T02:00:00"))
    served = Server(tmp_path, "--out", "results")
    try:
        browser.get(served.url + "/trends?board=stepped&variant=fp32")
        shoot(browser, tmp_path, "trends-change")
        listed = {(li.get_attribute("data-figure"), li.get_attribute("data-run"))
                  for li in browser.find_elements(By.CSS_SELECTOR, "#changes li")}
        assert listed == {("p50", "night-10"), ("p95", "night-10")}
        drawn = browser.execute_script("return document.getElementById('plot-p50').layout.shapes"
                                       ".filter(s => s.name === 'change point').map(s => s.x0)")
        assert drawn == ["2026-02-11T02:00:00"]
        assert not browser.execute_script("return document.getElementById('plot-peak_rss_mb').layout.shapes"
                                          ".filter(s => s.name === 'change point').length")
        refused = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
        assert not refused  # the page's own scripts and plotly's styles run under its policy
    finally:
        served.stop()


def test_hostile_names_render_as_text(server, browser, tmp_path):
    browser.get(server.url + "/")
    assert no_alert(browser)
    cell = browser.find_element(By.CSS_SELECTOR, "#boards tbody tr:first-child td:first-child")
    assert XSS_BOARD in cell.text
    assert XSS_POOL in browser.find_element(By.CSS_SELECTOR, "#boards tbody tr:first-child td:nth-child(3)").text
    assert not browser.find_elements(By.CSS_SELECTOR, "#boards img")
    browser.get(server.url + "/runs")
    assert no_alert(browser)


@pytest.mark.parametrize("path", ["/files/../../etc/passwd", "/files/..%2F..%2Fetc/passwd",
                                  "/files/%2E%2E/passwd", "/files/x/..%2F..%2F..%2Fetc%2Fpasswd",
                                  "/files/20000101T000000Z-xss0/../../../../etc/passwd"])
def test_a_path_out_of_the_results_folder_is_refused(server, path):
    status, body, _ = server.get(path)
    assert status == 404 and "root:" not in body


def test_metrics_parse_and_say_which_boards_are_up(server):
    from prometheus_client.parser import text_string_to_metric_families

    status, body, _ = server.get("/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body)}
    up = {s.labels["board"]: s.value for s in families["farm_board_up"].samples}
    assert up["dash-a53"] == 1.0 and up["dash-a72"] == 1.0
    pools = {(s.labels["pool"], s.labels["state"]): s.value for s in families["farm_pool_boards"].samples}
    assert pools[("dash", "up")] == 2.0
    assert families["farm_last_run_duration_seconds"].samples[0].value > 0


def test_signoffs_and_queue_pages_say_what_they_cannot_show(server, browser, tmp_path):
    browser.get(server.url + "/signoffs")
    shoot(browser, tmp_path, "signoffs")
    assert "No sign-off recorded" in browser.page_source and "--allowed-signers" in browser.page_source
    browser.get(server.url + "/queue")
    assert "No queue" in browser.page_source


def test_a_token_is_asked_for_when_given_and_required_off_loopback(lab_history):
    cwd, _ = lab_history
    refused = farm("serve", "--host", "0.0.0.0", cwd=cwd, timeout=30)
    assert refused.returncode == 2 and "--token" in refused.stderr
    guarded = Server(cwd, "--out", "results", "--token", "s3cret")
    try:
        assert guarded.get("/")[0] == 401 and guarded.get("/metrics")[0] == 401
        status, body, headers = guarded.get("/?token=s3cret")
        assert status == 200 and "s3cret" not in body
        assert guarded.get("/api/lab", {"Authorization": "Bearer s3cret"})[0] == 200
        assert guarded.get("/", {"Cookie": headers["set-cookie"].split(";")[0]})[0] == 200
    finally:
        guarded.stop()


def test_a_postgresql_history_serves_the_same_pages(lab_history, postgres_server):
    cwd, run_ids = lab_history
    url = postgres_server("farm_dashboard")
    source, target = History(cwd / "results" / "history.sqlite"), History(url)
    for run_id in run_ids:
        target.record(source.load_run(run_id))
    served = Server(cwd, "--out", "results", "--history", url)
    try:
        lab = json.loads(served.get("/api/lab")[1])
        assert {b["name"] for b in lab["boards"]} == {"dash-a53", "dash-a72"}
        runs = json.loads(served.get("/api/runs?board=dash-a53")[1])
        assert [r["run_id"] for r in runs["runs"]] == run_ids
        assert served.get("/trends?board=dash-a53&variant=int8_dynamic")[0] == 200
    finally:
        served.stop()


def test_every_page_answers_urllib_too(server):
    for path in ("/", "/runs", "/trends", "/signoffs", "/queue", "/api/lab", "/static/plotly.min.js"):
        with urllib.request.urlopen(server.url + path, timeout=30) as response:
            assert response.status == 200, path


HOSTILE_RUN = "20260101T000000Z-evil"
# A report.html someone else made (`farm fetch` brings any run's files): its script tries the dashboard's origin.
HOSTILE_REPORT = """<!doctype html><html><body><p id="out">no script ran</p><script>
const out = document.getElementById("out");
out.textContent = "ran in origin " + window.origin;
fetch("/api/lab", {credentials: "include"}).then(r => r.text()).then(t => { out.textContent += "; read " + t; });
</script></body></html>"""


@pytest.fixture(scope="module")
def small_lab(tmp_path_factory):
    """A history of two made-up runs and one run folder holding a hostile report.html: no stand-ins needed."""
    cwd = tmp_path_factory.mktemp("dashboard-trust")
    history = History(cwd / "results" / "history.sqlite")
    for night in range(2):
        history.record(history_run(f"night-{night}", "trusty", 1.0 + night, started=f"2026-03-0{night + 1}T02:00:00"))
    (cwd / "results" / HOSTILE_RUN).mkdir()
    (cwd / "results" / HOSTILE_RUN / "report.html").write_text(HOSTILE_REPORT)
    return cwd


@pytest.mark.real  # starts a process
def test_a_foreign_host_header_is_refused_and_loopback_names_and_allowed_hosts_are_served(small_lab):
    served = Server(small_lab, "--out", "results", "--allowed-host", "dash.lab.example")
    try:
        for host in ("127.0.0.1", f"127.0.0.1:{served.port}", f"localhost:{served.port}", "[::1]",
                     "dash.lab.example", "DASH.lab.example:80"):
            assert served.get("/api/lab", {"Host": host})[0] == 200, host
        for host in ("rebind.attacker.example", f"rebind.attacker.example:{served.port}", "127.0.0.1.nip.io",
                     "lab.example"):  # DNS rebinding: the attacker's name, resolving to 127.0.0.1
            status, body, _ = served.get("/api/lab", {"Host": host})
            assert status == 400 and "trusty" not in body, host
    finally:
        served.stop()
    bad = farm("serve", "--out", "results", "--allowed-host", "*", cwd=small_lab, timeout=30)
    assert bad.returncode == 2 and "--allowed-host '*'" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("path, status", [("/", 200), ("/runs", 200), ("/api/lab", 200), ("/static/trends.js", 200),
                                          ("/static/nothing.js", 404), ("/runs?until=2026-13-45", 400),
                                          ("/metrics", 200)])
@pytest.mark.real  # starts a process
def test_every_response_carries_the_security_headers(small_lab, path, status):
    served = Server(small_lab, "--out", "results")
    try:
        got, _, headers = served.get(path)
        refused, _, refused_headers = served.get(path, {"Host": "rebind.attacker.example"})
    finally:
        served.stop()
    assert got == status and refused == 400
    for answer in (headers, refused_headers):
        answer = {k.lower(): v for k, v in answer.items()}
        assert answer["x-frame-options"] == "DENY" and answer["x-content-type-options"] == "nosniff"
        assert answer["referrer-policy"] == "no-referrer"
        policy = dict(d.strip().split(" ", 1) for d in answer["content-security-policy"].split(";"))
        assert policy["script-src"] == "'self'" and policy["frame-ancestors"] == "'none'"  # no inline script


def test_a_run_s_report_is_served_sandboxed_and_its_script_never_runs_on_the_dashboard_s_origin(small_lab, browser):
    served = Server(small_lab, "--out", "results", "--token", "s3cret")
    try:
        status, body, headers = served.get(f"/files/{HOSTILE_RUN}/report.html", {"Authorization": "Bearer s3cret"})
        assert status == 200 and body == HOSTILE_REPORT
        assert headers["content-security-policy"].split(";")[0] == "sandbox"
        assert headers["x-content-type-options"] == "nosniff"
        browser.get(served.url + "/?token=s3cret")  # the cookie a hostile script would ride on
        assert "trusty" in browser.page_source
        browser.get(served.url + f"/files/{HOSTILE_RUN}/report.html")  # returns once its scripts (if any) ran
        shown = browser.find_element(By.ID, "out").text
        assert shown == "no script ran", shown
    finally:
        served.stop()


@pytest.mark.parametrize("query, field", [("until=2026-13-45", "until"), ("since=2026-02-30", "since"),
                                          ("since=yesterday", "since"), ("until=2026-01-01T25:00", "until"),
                                          ("status=maybe", "status"), ("board=%3Cscript%3E", "board")])
@pytest.mark.real  # starts a process
def test_a_bad_query_value_is_a_400_naming_the_field(small_lab, query, field):
    served = Server(small_lab, "--out", "results")
    try:
        for page in ("/runs", "/api/runs"):
            status, body, _ = served.get(f"{page}?{query}")
            assert status == 400 and body.startswith(f"bad request: {field}") and "Traceback" not in body, body
        assert served.get("/api/runs?since=2026-03-02&until=2026-03-02")[0] == 200
        assert [r["run_id"] for r in json.loads(served.get("/api/runs?since=2026-03-02")[1])["runs"]] == ["night-1"]
    finally:
        served.stop()


@pytest.mark.real  # starts a process
def test_serve_never_creates_a_history_file_that_did_not_exist(tmp_path):
    refused = farm("serve", "--out", "typo-results", cwd=tmp_path, timeout=30)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"no history at {Path('typo-results') / 'history.sqlite'}" in refused.stderr
    assert not (tmp_path / "typo-results").exists()
    elsewhere = farm("serve", "--history", str(tmp_path / "none-here.sqlite"), cwd=tmp_path, timeout=30)
    assert elsewhere.returncode == 2 and not (tmp_path / "none-here.sqlite").exists()


@pytest.mark.real  # starts a process
def test_a_sign_off_is_verified_once_per_record_and_again_when_the_signers_change(tmp_path):
    from farm.record import sshsig
    from farm.record.signoff import SCHEMA, canonical

    key = ssh_signer(tmp_path, "ada", "ada@example.com")
    history = History(tmp_path / "results" / "history.sqlite")
    run = history_run("signed-run", "trusty", 1.0)
    for when in ("2026-03-01T10:00:00+00:00", "2026-03-02T10:00:00+00:00"):
        record = {"schema": SCHEMA, "run_id": run.run_id, "signed_at": when, "note": None,
                  "signer": {"principal": "ada@example.com", "key": sshsig.fingerprint(key),
                             "namespace": "farm-signoff"},
                  "model": {"name": "digits", "sha256": "ab" * 32, "variants": {}},
                  "checklist": {"name": "dms"}, "policy": {"rules": {}, "counted": [], "notes": []},
                  "boards": [], "files": {}, "evidence": {"run": run.to_json(), "baselines": []}}
        history.record_signoff(record, sshsig.sign(canonical(record), key, "farm-signoff"))
    # ssh-keygen as the server finds it on its PATH: the real one, each call written down.
    wrapper = tmp_path / "bin" / "ssh-keygen"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "keygen.log"}\nexec {shutil.which("ssh-keygen")} "$@"\n')
    wrapper.chmod(0o755)
    calls = lambda: len((tmp_path / "keygen.log").read_text().splitlines()) if (tmp_path / "keygen.log").exists() \
        else 0  # noqa: E731
    served = Server(tmp_path, "--out", "results", "--allowed-signers", "allowed_signers",
                    env={"PATH": f"{wrapper.parent}:{os.environ['PATH']}"})
    try:
        first = json.loads(served.get("/api/signoffs")[1])["signoffs"]
        after_first = calls()
        again = json.loads(served.get("/api/signoffs")[1])["signoffs"]
        assert after_first >= 2 * 2 and calls() == after_first  # 2 records verified once each, then not again
        assert again == first and len(first) == 2
        assert not any("not allowed to sign" in p for row in first for p in row["problems"])
        (tmp_path / "allowed_signers").write_text("")  # ada's key revoked: the cached verdict no longer holds
        revoked = json.loads(served.get("/api/signoffs")[1])["signoffs"]
        assert calls() > after_first
        assert all(not row["verified"] and any("not allowed to sign" in p for p in row["problems"]) for row in revoked)
    finally:
        served.stop()


def test_metrics_name_each_bad_or_retired_board_with_its_reason(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    from farm.ui.web import data, metrics

    history = History(tmp_path / "history.sqlite")
    history.record(history_run("run-1", "rpi-01", 1.0))
    history.set_health("rpi-01", "bad", "health check: unreachable")
    history.set_health("rpi-02", "retired", "retired by ana: fan noise")
    history.set_health("rpi-03", "good", "health check passed")
    body, _ = metrics.exposition(data.Sources(history, tmp_path))
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    bad = {s.labels["board"]: (s.labels["state"], s.labels["reason"]) for s in families["farm_board_bad"].samples}
    assert bad == {"rpi-01": ("bad", "health check: unreachable"), "rpi-02": ("retired", "retired by ana: fan noise")}


def test_the_lab_page_shows_a_bad_board_s_health_and_why(tmp_path):
    from farm.ui.web import data
    from farm.ui.web.app import PAGES, templates

    history = History(tmp_path / "history.sqlite")
    history.record(history_run("run-1", "rpi-01", 1.0))
    history.set_health("rpi-01", "bad", "health check: unreachable")
    lab = data.lab(data.Sources(history, tmp_path))
    assert lab["boards"][0]["health"]["state"] == "bad"
    page = templates.get_template("lab.html").render(pages=PAGES, current="lab", **lab)
    assert "bad: health check: unreachable" in page
