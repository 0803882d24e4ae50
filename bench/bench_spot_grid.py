"""Spot-grid kernel speed, measured side by side with a pure-Python loop of the same grid.

One year of synthetic 1-minute GBM candles (volatility 60%/year, seeded), the reference
grid's settings (GRID_SEMANTICS.md: capital 100,000, fee 0.1%, lot 1e-8, 0.8/1.2 x the
first open), 20 and 200 levels. Prints bars/s of both, their ratio, and checks that both
agree on fills and final equity. Then a busy year (the same volatility pulled back to the
start, so the price stays inside the grid and it trades all year: 71,919 fills at 200
levels): fills per second of the kernel and its speed as a share of a minimal event-driven
loop of the same grid (``minimal_grid_nb``, equity per bar and the fills kept), fills and
final equity checked equal. Also times a cold process (import, cached kernel, run) and its
peak memory.

    python bench/bench_spot_grid.py [--bars 525600] [--repeat 7] [--python-bars 525600]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numba import njit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from engine.data import Candles  # noqa: E402


def gbm_candles(n: int, seed: int = 42, vol: float = 0.60, price: float = 30_000.0, substeps: int = 4) -> Candles:
    rng = np.random.default_rng(seed)
    dt = 1.0 / (365 * 24 * 60) / substeps
    steps = rng.standard_normal((n, substeps)) * vol * np.sqrt(dt) - 0.5 * vol**2 * dt
    return minute_candles(price * np.exp(np.cumsum(steps.ravel())).reshape(n, substeps), price, "gbm")


def minute_candles(path: np.ndarray, price: float, source: str) -> Candles:
    """1-minute candles of a price path sampled ``path.shape[1]`` times a minute, from ``price``."""
    n = len(path)
    close = path[:, -1].copy()
    open_ = np.r_[price, close[:-1]]
    high = np.maximum(path.max(axis=1), open_)
    low = np.minimum(path.min(axis=1), open_)
    t = 1_704_067_200_000 + np.arange(n, dtype=np.int64) * 60_000
    return Candles(time=t, open=open_, high=high, low=low, close=close, volume=np.ones(n),
                   timeframe_ms=60_000, source=source, symbol="BTC/USDT")  # (priced as BTC)


def busy_candles(n: int, seed: int = 11, vol: float = 0.60, price: float = 30_000.0, pull: float = 2e-4,
                 substeps: int = 4) -> Candles:
    """A year of 1-minute candles that stays inside a +-20% grid: GBM's volatility with a pull
    back to ``price`` (Ornstein-Uhlenbeck on the log price), so the grid trades all year."""
    rng = np.random.default_rng(seed)
    dt = 1.0 / (365 * 24 * 60) / substeps
    shocks = rng.standard_normal(n * substeps) * vol * np.sqrt(dt)
    x = np.empty(n * substeps)
    level = 0.0
    for i in range(n * substeps):  # (once per run: a second or two)
        level += -pull * level + shocks[i]
        x[i] = level
    return minute_candles((price * np.exp(x)).reshape(n, substeps), price, "ou")


@njit(cache=False)
def minimal_grid_nb(open_, high, low, close, levels, qty, fee, capital, equity, trades):
    """The reference arithmetic grid (tests/oracle.py, GRID_SEMANTICS.md) as a minimal
    event-driven loop: slot k buys at levels[k] and, holding, sells at levels[k + 1]; a bar
    whose range crosses no resting order costs two comparisons and the mark; the others scan
    the slots between the frontier and the price. Keeps what the kernel keeps at the least:
    each fill (bar, side, price, qty) and the equity of every bar. Returns the fills."""
    n = len(levels) - 1
    holding = np.zeros(n, dtype=np.bool_)
    changed = np.full(n, -1, dtype=np.int64)  # the bar a slot last filled: no round trip in one bar
    cash, pos, nt = capital, 0.0, 0
    kb, ks = n - 1, n  # the highest slot resting a buy, the lowest resting a sell (n: none)
    equity[0] = capital
    for i in range(1, len(close)):
        lo, hi, op = low[i], high[i], open_[i]
        if (kb < 0 or lo > levels[kb]) and (ks >= n or hi < levels[ks + 1]):
            equity[i] = cash + pos * close[i]
            continue
        k = kb
        while k >= 0 and levels[k] >= lo:
            if not holding[k] and changed[k] != i:
                price = min(op, levels[k])
                v = price * qty[k]
                cash -= v + v * fee
                pos += qty[k]
                holding[k] = True
                changed[k] = i
                trades[nt, 0], trades[nt, 1], trades[nt, 2], trades[nt, 3] = i, 1.0, price, qty[k]
                nt += 1
            k -= 1
        k = ks
        while k < n and levels[k + 1] <= hi:
            if holding[k] and changed[k] != i:
                price = max(op, levels[k + 1])
                v = price * qty[k]
                cash += v - v * fee
                pos -= qty[k]
                holding[k] = False
                changed[k] = i
                trades[nt, 0], trades[nt, 1], trades[nt, 2], trades[nt, 3] = i, -1.0, price, qty[k]
                nt += 1
            k += 1
        kb, ks = -1, n
        for k in range(n):  # (the frontier again: only on bars that filled)
            if holding[k]:
                if ks == n:
                    ks = k
            else:
                kb = k
        equity[i] = cash + pos * close[i]
    return nt


def minimal_grid(c: Candles, lower: float, upper: float, levels: int, capital: float, fee: float, lot: float):
    """(seconds, fills, final equity) of the minimal loop, the allocation of what it keeps included."""
    lv = np.linspace(lower, upper, levels)
    qty = np.array([math.floor(capital / levels / lv[k] / lot) * lot for k in range(levels - 1)])
    t = time.perf_counter()
    equity = np.empty(len(c))
    trades = np.empty((len(c) * 2 + levels, 4))
    nt = minimal_grid_nb(c.open, c.high, c.low, c.close, lv, qty, fee, capital, equity, trades)
    return time.perf_counter() - t, nt, float(equity[-1])


COLD = r"""
import time, sys
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
from engine.strategies.spot_grid import run_spot_grid
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

    from engine.strategies.spot_grid import SpotGridConfig, run_spot_grid

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
    # a busy year: the price stays inside the grid, so it trades all year; the kernel against a
    # minimal event-driven loop of the same grid, in this process, each its best of --repeat
    busy = busy_candles(args.bars)
    b0 = float(busy.open[0])
    for levels in (20, 200):
        cfg = SpotGridConfig(lower=0.8 * b0, upper=1.2 * b0, levels=levels, capital=100_000.0, fee=0.001, lot=1e-8)
        minimal_grid(busy, 0.8 * b0, 1.2 * b0, levels, 100_000.0, 0.001, 1e-8)  # compile
        run_spot_grid(busy, cfg)
        best_k, best_m = float("inf"), float("inf")
        for _ in range(args.repeat):  # side by side, alternating
            r = run_spot_grid(busy, cfg)
            best_k = min(best_k, r.timings["kernel"])
            m_s, m_fills, m_eq = minimal_grid(busy, 0.8 * b0, 1.2 * b0, levels, 100_000.0, 0.001, 1e-8)
            best_m = min(best_m, m_s)
        fills = r.counters["fills"]
        report[f"busy_levels_{levels}"] = {
            "fills": fills, "active_bars": r.counters["active_bars"], "kernel_s": best_k, "minimal_s": best_m,
            "kernel_fills_per_s": fills / best_k, "ratio_to_minimal": best_m / best_k,
            "fills_agree": fills == m_fills, "final_equity_diff_usd": abs(float(r.equity[-1]) - m_eq),
        }
        print(f"busy year, {levels:>3} levels: {fills:,} fills; kernel {best_k * 1e3:.2f} ms "
              f"({fills / best_k / 1e6:.1f} M fills/s), minimal loop {best_m * 1e3:.2f} ms: "
              f"{best_m / best_k:.2f} of the minimal loop's speed (fills agree: {fills == m_fills}, "
              f"equity diff {abs(float(r.equity[-1]) - m_eq):.2e})")
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
