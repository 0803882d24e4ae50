"""Spot-grid kernel speed, measured side by side with a pure-Python loop of the same grid.

One year of synthetic 1-minute GBM candles (volatility 60%/year, seeded), the reference
grid's settings (GRID_SEMANTICS.md: capital 100,000, fee 0.1%, lot 1e-8, 0.8/1.2 x the
first open), 20 and 200 levels. Prints bars/s of both, their ratio, and checks that both
agree on fills and final equity. Also times a cold process (import, cached kernel, run)
and its peak memory.

    python bench/bench_spot_grid.py [--bars 525600] [--repeat 7] [--python-bars 525600]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from engine.data import Candles  # noqa: E402


def gbm_candles(n: int, seed: int = 42, vol: float = 0.60, price: float = 30_000.0, substeps: int = 4) -> Candles:
    rng = np.random.default_rng(seed)
    dt = 1.0 / (365 * 24 * 60) / substeps
    steps = rng.standard_normal((n, substeps)) * vol * np.sqrt(dt) - 0.5 * vol**2 * dt
    path = price * np.exp(np.cumsum(steps.ravel())).reshape(n, substeps)
    close = path[:, -1].copy()
    open_ = np.r_[price, close[:-1]]
    high = np.maximum(path.max(axis=1), open_)
    low = np.minimum(path.min(axis=1), open_)
    t = 1_704_067_200_000 + np.arange(n, dtype=np.int64) * 60_000
    return Candles(time=t, open=open_, high=high, low=low, close=close, volume=np.ones(n),
                   timeframe_ms=60_000, source="gbm", symbol="BTC/USDT")  # (priced as BTC)


COLD = r"""
import time, sys
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
from engine.backtest import run_spot_grid
from engine.data import load_candles
from engine.strategies.spot_grid import SpotGridConfig
ti = time.perf_counter()
c = load_candles({path!r})
t1 = time.perf_counter()
o0 = float(c.open[0])
r = run_spot_grid(c, SpotGridConfig(lower=0.8 * o0, upper=1.2 * o0, levels=200, capital=100000.0, fee=0.001, lot=1e-8))
t2 = time.perf_counter()
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across fork and exec, so a child would report
# the RSS of the benchmark process that started it.
peak = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
print(json.dumps({{"total_s": t2 - t0, "import_s": ti - t0, "load_s": t1 - ti, "backtest_s": t2 - t1,
                  "kernel_s": r.timings["kernel"], "fills": r.counters["fills"], "peak_rss_mb": peak}}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bars", type=int, default=525_600)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--python-bars", type=int, default=525_600, help="bars for the pure-Python loop")
    args = ap.parse_args()

    from oracle import reference_grid

    from engine.backtest import run_spot_grid
    from engine.strategies.spot_grid import SpotGridConfig

    c = gbm_candles(args.bars)
    o0 = float(c.open[0])
    report = {"bars": args.bars}
    for levels in (20, 200):
        cfg = SpotGridConfig(lower=0.8 * o0, upper=1.2 * o0, levels=levels, capital=100_000.0, fee=0.001, lot=1e-8)
        run_spot_grid(c, cfg)  # compile or load from cache
        best = float("inf")
        for _ in range(args.repeat):
            r = run_spot_grid(c, cfg)
            best = min(best, r.timings["kernel"])
        pb = min(args.python_bars, args.bars)
        t = time.perf_counter()
        fills, eq = reference_grid(c.open[:pb], c.high[:pb], c.low[:pb], c.close[:pb], 0.8 * o0, 1.2 * o0,
                                   levels, 100_000.0, 0.001, 1e-8)
        py_s = time.perf_counter() - t
        if pb == args.bars:
            agree_fills = len(fills) == r.counters["fills"]
            agree_eq = abs(eq[-1] - r.equity[-1])
        else:
            agree_fills, agree_eq = None, None
        kernel_rate = args.bars / best
        py_rate = pb / py_s
        report[f"levels_{levels}"] = {
            "fills": r.counters["fills"], "active_bars": r.counters["active_bars"],
            "kernel_s": best, "kernel_mbars_s": kernel_rate / 1e6,
            "python_s": py_s, "python_mbars_s": py_rate / 1e6, "speedup": kernel_rate / py_rate,
            "fills_agree": agree_fills, "final_equity_diff_usd": agree_eq,
            "final_equity": float(r.equity[-1]),
        }
        print(f"{levels:>4} levels: kernel {kernel_rate / 1e6:8.1f} M bars/s ({best * 1e3:.2f} ms), "
              f"pure Python {py_rate / 1e6:6.3f} M bars/s, ratio {kernel_rate / py_rate:,.0f}x, "
              f"fills {r.counters['fills']:,} (agree: {agree_fills}), equity diff {agree_eq}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gbm-1m.parquet"
        c.to_frame().to_parquet(path, index=False)
        code = COLD.format(root=str(ROOT), path=str(path))
        out = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, check=True)
    cold = json.loads(out.stdout.strip().splitlines()[-1])
    report["cold_process"] = cold
    print(f"cold process (import, load Parquet, cached kernel, {args.bars:,}-bar 200-level backtest): "
          f"{cold['total_s']:.2f} s total (import {cold['import_s']:.2f} s, load {cold['load_s']:.3f} s, "
          f"backtest {cold['backtest_s']:.3f} s), peak RSS {cold['peak_rss_mb']:.0f} MB")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
