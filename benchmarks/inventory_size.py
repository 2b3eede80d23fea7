"""How long `farm inventory check` takes on a large inventory, up to farm's size bound.

Writes farm inventories of N boards (each with a class, pools, tags and a budget, about 130 bytes
a board), runs `farm inventory check` on each in a fresh process, and prints the file size, the
wall time, the time per 1,000 boards and the peak memory (ru_maxrss of the child). The largest
size is just under MAX_INVENTORY_BYTES; one just over it is refused at once (printed last).

    .venv/bin/python benchmarks/inventory_size.py [--boards 1000,5000,12000]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from farm.config.inventory import MAX_INVENTORY_BYTES  # noqa: E402

ROW = ("  - {{name: a72-{i:06d}, host: 10.{a}.{b}.{c}, class: cortex-a72, pools: [nightly, pool-{p}], "
       "tags: [rack-{r}, usb3], latency_budget_ms: 25}}\n")


def write(path: Path, boards: int) -> int:
    with open(path, "w") as handle:
        handle.write("defaults: {user: farm, workdir: /tmp/farm}\nboards:\n")
        for i in range(boards):
            handle.write(ROW.format(i=i, a=i // 65536 % 256, b=i // 256 % 256, c=i % 256, p=i % 7, r=i % 40))
    return path.stat().st_size


def check(path: Path) -> tuple[float, float, int, str]:
    """(seconds, peak MB of the child, exit code, last line)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "farm", "inventory", "check", str(path)], capture_output=True,
                          text=True, env={k: v for k, v in os.environ.items() if not k.startswith("FARM_")})
    took = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    line = (proc.stdout.strip() or proc.stderr.strip()).splitlines()[-1]
    return took, max(peak, before) / 1024, proc.returncode, line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", default="1000,5000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        per_board = write(Path(folder) / "sample.yaml", 10_000) / 10_000
        sizes = [int(n) for n in args.boards.split(",")] + [int(MAX_INVENTORY_BYTES / per_board * 0.99)]
        print(f"{'boards':>8} {'MB':>6} {'seconds':>8} {'s/1k boards':>12} {'peak MB':>8}  exit")
        for boards in sizes:
            path = Path(folder) / f"lab-{boards}.yaml"
            size = write(path, boards)
            took, peak, code, _ = check(path)
            print(f"{boards:>8} {size / 1e6:>6.2f} {took:>8.2f} {took / boards * 1000:>12.3f} {peak:>8.0f}  {code}")
        over = Path(folder) / "over.yaml"
        size = write(over, int(MAX_INVENTORY_BYTES / per_board * 1.01))
        took, _, code, line = check(over)
        print(f"over the bound ({size / 1e6:.2f} MB): exit {code} in {took:.2f} s: {line}")


if __name__ == "__main__":
    main()
