"""A cold ``griddesk backtest`` of a year of 1-minute candles in CSV (525,600 rows, ISO 8601
times and epoch-ms times) against a process that only reads the same file with pyarrow, side
by side in one run (issue "Fast where users wait": the goal is <= 2x). Beside them, the floor
of any process that runs a numba kernel: one that imports numba and calls a cached 3-line
kernel once (numba's import and its first dispatch, which sets up its typing and target
registries before it can load anything from the cache).

    python bench/bench_csv.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def write_year(folder: Path) -> dict[str, Path]:
    n = 525_600
    rng = np.random.default_rng(7)
    t = pd.date_range("2023-01-01", periods=n, freq="1min", tz="UTC")
    close = 30_000 * np.exp(np.cumsum(rng.normal(0, 0.0008, n)))
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) * (1 + rng.random(n) * 0.001)
    low = np.minimum(open_, close) * (1 - rng.random(n) * 0.001)
    frame = pd.DataFrame({"open": open_.round(2), "high": high.round(2), "low": low.round(2),
                          "close": close.round(2), "volume": rng.random(n).round(4)})
    paths = {"ISO 8601 times": folder / "iso.csv", "epoch-ms times": folder / "epoch.csv"}
    frame.insert(0, "date", t.strftime("%Y-%m-%dT%H:%M:%SZ"))
    frame.to_csv(paths["ISO 8601 times"], index=False)
    frame["date"] = t.asi8 // 10**6
    frame.to_csv(paths["epoch-ms times"], index=False)
    return paths


def seconds(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        paths = write_year(Path(folder))
        (Path(folder) / "tiny.py").write_text("from numba import njit\n\n@njit(cache=True)\n"
                                              "def f(x):\n    return x.sum()\n")
        floor = [sys.executable, "-c", f"import sys; sys.path.insert(0, {folder!r}); import numpy, tiny; "
                 "tiny.f(numpy.ones(3))"]
        seconds(floor)  # (compiled into its cache once)
        for what, path in paths.items():
            read = [sys.executable, "-c", f"import pyarrow.csv as c; c.read_csv({str(path)!r})"]
            backtest = [sys.executable, "-m", "app.cli", "backtest", "--data", str(path)]
            seconds(backtest)  # (the kernel's cache loaded once before timing)
            a, b, f = [], [], []
            for _ in range(args.rounds):  # alternating, so that load on the machine falls on all three
                a.append(seconds(read))
                b.append(seconds(backtest))
                f.append(seconds(floor))
            ra, rb, rf = statistics.median(a), statistics.median(b), statistics.median(f)
            print(f"{what}: pyarrow read {ra:.2f} s, cold griddesk backtest {rb:.2f} s: ratio {rb / ra:.2f} "
                  f"(goal <= 2); a process that calls one cached numba kernel {rf:.2f} s ({rf / ra:.2f}x the "
                  f"read), the backtest {rb / rf:.2f}x that")


if __name__ == "__main__":
    main()
