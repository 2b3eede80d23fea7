"""`farm serve` in a real browser (Debian's headless Chromium through Selenium) and as a real process over real runs:
what needs JavaScript, a real process or a real part; tests/ui/test_dashboard_app.py checks the rest in-process."""

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


def test_every_page_answers_urllib_too(server, lab_history):
    """The real path: `farm serve` as a process over real runs (tests/ui/test_dashboard_app.py: the rest)."""
    _, run_ids = lab_history
    for path in ("/", "/runs", "/trends", "/signoffs", "/queue", "/api/lab", "/metrics", "/static/plotly.min.js",
                 "/static/farm.css", "/static/trends.js", f"/files/{run_ids[0]}/results.json"):
        with urllib.request.urlopen(server.url + path, timeout=30) as response:
            assert response.status == 200, path
    with urllib.request.urlopen(f"{server.url}/files/{run_ids[0]}/report.html", timeout=30) as response:
        assert run_ids[0] in response.read().decode()  # pytest-html's report of that run
    status, body, _ = server.get("/files/../../etc/passwd")  # sent as written: uvicorn keeps the `..`
    assert status == 404 and "root:" not in body


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
