"""Adaptive long/short grid speed, numba against the same code as plain Python.

1. One year of 15-minute candles (the bundled sample, 35,040 bars): the whole backtest,
   indicators included, after compile.
2. One year of 1-minute candles (525,600 bars, GBM at 60%): the strategy loop (kernel) alone.
3. The same code run as plain Python (NUMBA_DISABLE_JIT=1, in a child process): the whole
   15-minute backtest, and the kernel on the first --python-bars of the 1-minute data, for the
   ratios.

    python bench/bench_adaptive_grid.py [--repeat 7] [--python-bars 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
from bench_spot_grid import gbm_candles
from engine.data import load_candles
from engine.sample import SAMPLE_PATH
from engine.strategies.adaptive_grid import AdaptiveGridConfig, run_adaptive_grid
out = {{}}
for name, c in (("sample", load_candles(SAMPLE_PATH)), ("minute", gbm_candles({n}).slice(0, {k}))):
    t = time.perf_counter()
    r = run_adaptive_grid(c, AdaptiveGridConfig())
    out[name] = {{"bars": len(c), "total_s": time.perf_counter() - t, "kernel_s": r.timings["kernel"],
                 "trades": len(r.trades), "final_equity": float(r.equity[-1])}}
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--python-bars", type=int, default=20_000)
    args = ap.parse_args()
    from bench_spot_grid import gbm_candles

    from engine.data import load_candles
    from engine.sample import SAMPLE_PATH
    from engine.strategies.adaptive_grid import AdaptiveGridConfig, run_adaptive_grid

    cfg = AdaptiveGridConfig()
    sample = load_candles(SAMPLE_PATH)
    run_adaptive_grid(sample, cfg)  # compile or load the cache
    best_total, best_kernel = float("inf"), float("inf")
    for _ in range(args.repeat):
        t = time.perf_counter()
        r = run_adaptive_grid(sample, cfg)
        best_total = min(best_total, time.perf_counter() - t)
        best_kernel = min(best_kernel, r.timings["kernel"])
    print(f"15m, one year ({len(sample):,} bars): whole backtest {best_total * 1e3:.1f} ms "
          f"= {len(sample) / best_total / 1e6:.2f} M bars/s incl. indicators (kernel {best_kernel * 1e3:.1f} ms); "
          f"{len(r.trades):,} trades")
    minute = gbm_candles(525_600)
    run_adaptive_grid(minute, cfg)
    best_m = float("inf")
    for _ in range(args.repeat):
        rm = run_adaptive_grid(minute, cfg)
        best_m = min(best_m, rm.timings["kernel"])
    rate = len(minute) / best_m
    print(f"1m, one year ({len(minute):,} bars): strategy loop {best_m * 1e3:.1f} ms = {rate / 1e6:.1f} M bars/s; "
          f"{len(rm.trades):,} trades")
    # the same code as plain Python, on the first bars of the same data
    k = args.python_bars
    code = CHILD.format(root=str(ROOT), bench=str(ROOT / "bench"), n=525_600, k=k)
    jit = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    j = json.loads(jit.stdout.strip().splitlines()[-1])
    py = json.loads(plain.stdout.strip().splitlines()[-1])
    same = all(j[w]["trades"] == py[w]["trades"] and abs(j[w]["final_equity"] - py[w]["final_equity"]) < 1e-6
               for w in ("sample", "minute"))
    py_total = py["sample"]["total_s"]
    py_rate = py["minute"]["bars"] / py["minute"]["kernel_s"]
    print(f"plain Python (NUMBA_DISABLE_JIT=1): the 15m year {py_total * 1e3:,.0f} ms, numba "
          f"{py_total / best_total:,.0f}x faster; the strategy loop on the first {k:,} 1m bars "
          f"{py_rate / 1e6:.3f} M bars/s, numba {rate / py_rate:,.0f}x faster; same trades and equity as numba: {same}")
    print(json.dumps({"sample_15m_total_s": best_total, "sample_15m_kernel_s": best_kernel,
                      "python_sample_15m_total_s": py_total, "minute_kernel_s": best_m,
                      "minute_mbars_s": rate / 1e6, "python_mbars_s": py_rate / 1e6, "ratio_15m": py_total / best_total,
                      "ratio_1m": rate / py_rate, "python_matches_numba": same}, indent=2))


if __name__ == "__main__":
    main()
