"""Dashboard: how long each page takes over a history of 1,000 runs (the aim: under 1 s), SQLite and PostgreSQL.

The history is written with the real History.record from one real results.json
(the demo run on stand-ins is made first if none is given), renamed 1,000 times
over 4 boards; pages are fetched over HTTP from a real `farm serve`.

`--signoffs N` also signs that run N times (real records of the run, real ssh-keygen
signatures, `signed_at` one minute apart) and times /signoffs with --allowed-signers:
its first GET verifies every record (what every GET did before verdicts were kept),
each later GET only looks its records' hashes up.

    .venv/bin/python benchmarks/dashboard.py [--runs 1000] [--results results/<run>/results.json]
                                             [--postgres postgresql://...] [--signoffs 100]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from farm import resources  # noqa: E402
from farm.record import sshsig  # noqa: E402
from farm.record.history import History  # noqa: E402
from farm.record.signoff import build_record, canonical, review  # noqa: E402
from farm.results import RunResult  # noqa: E402

PAGES = ("/", "/runs", "/trends?board=bench-0&variant=fp32", "/signoffs", "/api/runs", "/metrics")


def sample_run(given: str | None, folder: Path) -> Path:
    """A real run's results.json: the one given, else a fresh demo run on stand-ins."""
    if given:
        return Path(given)
    subprocess.run([sys.executable, "-m", "farm", "run", "--variants", "fp32,int8_dynamic", "--runs", "20",
                    "--out", str(folder / "seed")], check=False, capture_output=True)
    return (folder / "seed" / "latest" / "results.json").resolve()


def sign_many(history: History, results: Path, count: int, folder: Path) -> Path:
    """`count` signed records of one real run in the history; the allowed_signers that verifies them."""
    key = folder / "bench-signer"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", str(key)], check=True)
    signers = folder / "allowed_signers"
    public = " ".join(key.with_suffix(".pub").read_text().split()[:2])
    signers.write_text(f'bench@example.com namespaces="farm-signoff" {public}\n')
    found = review(results.parent, checklist=resources.checklist("dms-demo"), history=history)
    start = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
    for i in range(count):
        record = build_record(found, principal="bench@example.com", key=sshsig.fingerprint(key), note=None,
                              signed_at=(start + dt.timedelta(minutes=i)).isoformat())
        history.record_signoff(record, sshsig.sign(canonical(record), key, record["signer"]["namespace"]))
    return signers


def fill(history: History, doc: dict, runs: int) -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    template = doc["boards"][0]
    for i in range(runs):
        when = start + dt.timedelta(hours=i)
        copy = json.loads(json.dumps(doc))
        copy["run_id"], copy["started"], copy["finished"] = f"bench-{i:05d}", when.isoformat(), when.isoformat()
        copy["boards"] = [{**json.loads(json.dumps(template)), "name": f"bench-{b}", "pools": ["bench"]}
                          for b in range(4)]
        history.record(RunResult.from_json(copy))


def started_server(history: str, results: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "farm", "serve", "--port", str(port), "--history", history,
                               "--out", str(results), *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    return server, port


def timed_signoffs(history: str, results: Path, signers: Path, repeat: int) -> tuple[float, float]:
    """/signoffs with verification: the first GET's seconds, and the median of the next `repeat`."""
    server, port = started_server(history, results, "--allowed-signers", str(signers))
    try:
        times = []
        for _ in range(repeat + 1):
            began = time.perf_counter()
            urllib.request.urlopen(f"http://127.0.0.1:{port}/signoffs", timeout=600).read()
            times.append(time.perf_counter() - began)
        return times[0], statistics.median(times[1:])
    finally:
        server.terminate()
        server.wait()


def timed_pages(history: str, results: Path, repeat: int) -> dict[str, float]:
    server, port = started_server(history, results)
    try:
        times = {}
        for page in PAGES:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{page}").read()  # warm
            samples = []
            for _ in range(repeat):
                began = time.perf_counter()
                urllib.request.urlopen(f"http://127.0.0.1:{port}{page}").read()
                samples.append(time.perf_counter() - began)
            times[page] = statistics.median(samples)
        return times
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--results", help="a results.json to copy (default: a fresh demo run)")
    parser.add_argument("--postgres", help="an empty PostgreSQL database to fill as well")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--signoffs", type=int, default=0, help="sign the run this many times; time /signoffs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="farm-dash-") as tmp:
        folder = Path(tmp)
        results = sample_run(args.results, folder)
        doc = json.loads(results.read_text())
        stores = {"sqlite": str(folder / "history.sqlite")}
        if args.postgres:
            stores["postgresql"] = args.postgres
        table = {}
        for name, url in stores.items():
            began = time.perf_counter()
            fill(History(url), doc, args.runs)
            print(f"{name}: {args.runs} runs x 4 boards recorded in {time.perf_counter() - began:.1f} s")
            table[name] = timed_pages(url, folder, args.repeat)
            if args.signoffs:
                signers = sign_many(History(url), results, args.signoffs, folder)
                cold, warm = timed_signoffs(url, folder, signers, args.repeat)
                print(f"{name}: /signoffs verifying {args.signoffs} records: first GET {cold * 1000:.0f} ms, "
                      f"then {warm * 1000:.0f} ms a GET (median of {args.repeat}; {cold / warm:.0f}x)")
        print(f"{'page':<42}" + "".join(f"{n + ' ms':>14}" for n in table))
        for page in PAGES:
            print(f"{page:<42}" + "".join(f"{table[n][page] * 1000:>14.0f}" for n in table))
        worst = max(v for t in table.values() for v in t.values())
        print(f"slowest page: {worst * 1000:.0f} ms (aim: under 1000 ms over {args.runs} runs)")


if __name__ == "__main__":
    main()
