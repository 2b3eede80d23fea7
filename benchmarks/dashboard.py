"""Dashboard: how long each page takes over a history of 1,000 runs (the aim: under 1 s), SQLite and PostgreSQL.

The history is written with the real History.record from one real results.json
(the demo run on stand-ins is made first if none is given), renamed 1,000 times
over 4 boards; pages are fetched over HTTP from a real `farm serve`.

    .venv/bin/python benchmarks/dashboard.py [--runs 1000] [--results results/<run>/results.json]
                                             [--postgres postgresql://...]
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

from farm.record.history import History  # noqa: E402
from farm.results import RunResult  # noqa: E402

PAGES = ("/", "/runs", "/trends?board=bench-0&variant=fp32", "/signoffs", "/api/runs", "/metrics")


def sample_run(given: str | None, folder: Path) -> dict:
    if given:
        return json.loads(Path(given).read_text())
    subprocess.run([sys.executable, "-m", "farm", "run", "--variants", "fp32,int8_dynamic", "--runs", "20",
                    "--out", str(folder / "seed")], check=False, capture_output=True)
    return json.loads((folder / "seed" / "latest" / "results.json").read_text())


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


def timed_pages(history: str, results: Path, repeat: int) -> dict[str, float]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "farm", "serve", "--port", str(port), "--history", history,
                               "--out", str(results)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="farm-dash-") as tmp:
        folder = Path(tmp)
        doc = sample_run(args.results, folder)
        stores = {"sqlite": str(folder / "history.sqlite")}
        if args.postgres:
            stores["postgresql"] = args.postgres
        table = {}
        for name, url in stores.items():
            began = time.perf_counter()
            fill(History(url), doc, args.runs)
            print(f"{name}: {args.runs} runs x 4 boards recorded in {time.perf_counter() - began:.1f} s")
            table[name] = timed_pages(url, folder, args.repeat)
        print(f"{'page':<42}" + "".join(f"{n + ' ms':>14}" for n in table))
        for page in PAGES:
            print(f"{page:<42}" + "".join(f"{table[n][page] * 1000:>14.0f}" for n in table))
        worst = max(v for t in table.values() for v in t.values())
        print(f"slowest page: {worst * 1000:.0f} ms (aim: under 1000 ms over {args.runs} runs)")


if __name__ == "__main__":
    main()
