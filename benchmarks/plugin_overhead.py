"""What farm's pytest plugin costs a pytest session that does not use farm.

Times `python -m pytest --version` with the plugin (it is loaded through the
pytest11 entry point into every session of the environment) and with
`-p no:farm`, alternating, in one run; prints both medians and the difference
(aim: < 50 ms). Also lists which heavy modules loading the plugin imports
(aim: none of onnxruntime, onnx, numpy, fabric, paramiko, matplotlib, scipy).

    .venv/bin/python benchmarks/plugin_overhead.py [--repeat 30]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

HEAVY = ("onnxruntime", "onnx", "numpy", "fabric", "paramiko", "matplotlib", "scipy", "rich", "yaml")


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    base = [sys.executable, "-m", "pytest", "--version"]
    timed(base)  # warm the file cache
    with_farm, without = [], []
    for _ in range(args.repeat):
        with_farm.append(timed(base))
        without.append(timed([*base, "-p", "no:farm"]))
    a, b = statistics.median(with_farm) * 1000, statistics.median(without) * 1000
    print(f"pytest --version with farm's plugin  {a:7.1f} ms (median of {args.repeat})")
    print(f"pytest --version with -p no:farm     {b:7.1f} ms")
    print(f"plugin cost                          {a - b:+7.1f} ms  (aim < 50 ms)")
    probe = ("import sys, farm.pytestplugin; "
             f"print(','.join(m for m in {HEAVY!r} if m in sys.modules) or 'none')")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    print(f"heavy modules imported by loading the plugin: {loaded}")


if __name__ == "__main__":
    main()
