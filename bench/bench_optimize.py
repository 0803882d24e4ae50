"""Optimizer speed: the spot-grid sweep kernel and a whole walk-forward study.

1. 256 spot-grid configurations over one year of 1-minute candles (525,600 GBM bars) scored
   in one parallel sweep, next to the same configurations run one backtest at a time (a
   sample of them, scaled), in one run. Two sets of configurations: static grids (arithmetic or
   geometric, 5-100 levels, +-3-50%), and the spot grid's whole default search space (trailing
   grids included, which re-lay the grid thousands of times on a 60%-volatility year).
2. A 200-trial walk-forward study of the adaptive long/short grid on 15-minute candles:
   3 windows, 3 markets (BTC and ETH from ../shared/data resampled to 15 minutes, and a GBM
   market of the same length), SQLite storage in a scratch folder.

    python bench/bench_optimize.py [--configs 256] [--trials 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_spot_grid import gbm_candles  # noqa: E402

from engine.strategies.spot_grid import (  # noqa: E402
    SpotGridConfig,
    run_spot_grid,
    sweep_spot_grid,
)

SHARED = Path(os.environ.get("GRIDDESK_SHARED_DATA", ROOT.parent / "shared" / "data"))


def configs(n: int, rng, whole_space: bool) -> list[SpotGridConfig]:
    out = []
    for _ in range(n):
        cfg = SpotGridConfig(spacing=str(rng.choice(["arithmetic", "geometric"])), levels=int(rng.integers(5, 101)),
                             range_pct=float(np.exp(rng.uniform(np.log(0.03), np.log(0.5)))))
        if whole_space:
            cfg.trailing = str(rng.choice(["none", "up", "down", "both"]))
        out.append(cfg)
    return out


def bench_sweep(n_configs: int, n_bars: int) -> None:
    candles = gbm_candles(n_bars)
    rng = np.random.default_rng(7)
    t = time.perf_counter()
    warm = configs(2, rng, False)
    sweep_spot_grid(candles, warm)
    run_spot_grid(candles, warm[0])
    print(f"sweep kernel ready in {time.perf_counter() - t:.2f}s (compiled or loaded from numba's cache)")
    for whole in (False, True):
        cfgs = configs(n_configs, rng, whole)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            got = sweep_spot_grid(candles, cfgs)
            times.append(time.perf_counter() - t)
        import numba

        threads = numba.get_num_threads()
        numba.set_num_threads(1)  # the same sweep on one core: what a core does, and how the cores add up
        try:
            t = time.perf_counter()
            sweep_spot_grid(candles, cfgs)
            single = time.perf_counter() - t
        finally:
            numba.set_num_threads(threads)
        sample = cfgs[:: max(1, n_configs // 16)]
        t = time.perf_counter()
        for j, cfg in enumerate(sample):
            r = run_spot_grid(candles, cfg)
            assert r.equity[-1] == got["final_equity"][j * max(1, n_configs // 16)]
        one = (time.perf_counter() - t) / len(sample)
        best = min(times)
        label = "default search space (trailing too)" if whole else "static grids"
        print(f"{label}: {n_configs} configs x {n_bars:,} bars: sweep {best:.3f}s (median {np.median(times):.3f}s), "
              f"{n_configs / best:,.0f} configs/s; one at a time {one * 1e3:.1f} ms each "
              f"({1 / one:,.0f} configs/s), sweep {one * n_configs / best:.2f}x faster; "
              f"fills per config median {np.median(got['fills']):,.0f}; on one core {n_configs / single:,.0f} "
              f"configs/s, on {threads} {n_configs / best / threads:,.0f} a core ({single / best:.2f}x one core)")


def bench_study(trials: int) -> None:
    from engine.data import load_candles, resample
    from engine.optimize.study import Search, Setup
    from engine.optimize.walkforward import DataSet

    sets = []
    for name in ("BTCUSDT-5m-binance-2020-2021.csv", "ETHUSDT-5m-binance-2020-2021.csv"):
        sets.append(DataSet(name.split("-")[0], resample(load_candles(SHARED / name), "15m")))
    n = len(sets[0].candles)
    syn = gbm_candles(n * 15)  # 1-minute GBM resampled like the others
    sets.append(DataSet("GBM", resample(syn, "15m")))
    with tempfile.TemporaryDirectory() as tmp:
        setup = Setup("adaptive-grid", sets, windows=3)
        search = Search(setup, storage=f"sqlite:///{tmp}/bench.db", seed=1)
        search.run(2)  # warm the kernels' cache before timing
        t = time.perf_counter()
        search.run(trials + 2)
        dt = time.perf_counter() - t
        table = search.table()
        counts = table["state"].value_counts().to_dict()
        hold = search.holdout()
        best = search.best_trial()
        search.close()
    bars = sum(len(d.candles) for d in sets)
    print(f"walk-forward study: adaptive grid, {trials} trials, 3 windows, 3 markets x {n:,} bars of 15m "
          f"({bars:,} bars): {dt:.1f}s ({trials / dt:.1f} trials/s), {counts}; best in-sample {best.value:.3f}, "
          f"out-of-sample {best.user_attrs['oos']:.3f}, held-out tail {hold['score']:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", type=int, default=256)
    ap.add_argument("--bars", type=int, default=525_600)
    ap.add_argument("--trials", type=int, default=200)
    args = ap.parse_args()
    print(f"{os.cpu_count()} cores")
    bench_sweep(args.configs, args.bars)
    bench_study(args.trials)


if __name__ == "__main__":
    main()
