"""Stress-test speed (issue "Grid products": 1,000 one-year 1m paths of a 100-level grid in
under 20 s on the 2-core machine): block-bootstrap paths of a year of 1-minute GBM bars through
a 100-level geometric spot grid, in all the cores and in one, side by side in one run.

    python bench/bench_stress.py [--paths 1000] [--block 1440]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_spot_grid import gbm_candles  # noqa: E402

from engine.strategies.spot_grid import SpotGridConfig  # noqa: E402
from engine.stress import stress  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--paths", type=int, default=1000)
    ap.add_argument("--block", type=int, default=1440)
    args = ap.parse_args()
    history = gbm_candles(525_600)
    cfg = SpotGridConfig(levels=100, spacing="geometric", range_pct=0.3)
    stress(history, cfg, paths=4, block=args.block, scenarios=("bootstrap",))  # (kernels loaded)
    cores = os.cpu_count() or 1
    took = {}
    for workers, paths in ((cores, args.paths), (1, max(20, args.paths // 10))):
        t = time.perf_counter()
        (r,) = stress(history, cfg, paths=paths, block=args.block, scenarios=("bootstrap",), workers=workers)
        took[workers] = (time.perf_counter() - t) / paths
        if workers == cores:
            s = r.summary()
            print(f"{paths:,} one-year 1m paths (525,600 bars each), 100 levels, {cores} threads: "
                  f"{took[cores] * paths:.1f} s ({1 / took[cores]:,.0f} paths/s); return p5/p50/p95 "
                  f"{s['return_p5']:+.1%}/{s['return_p50']:+.1%}/{s['return_p95']:+.1%}, "
                  f"leaves its range {s['left_range']:.0%}")
    print(f"one thread: {took[1] * 1000:.1f} ms a path; {cores} threads: {took[cores] * 1000:.1f} ms a path "
          f"({took[1] / took[cores]:.2f}x); 1,000 paths: {took[cores] * 1000:.1f} s, goal < 20 s "
          f"({'met' if took[cores] * 1000 < 20 else 'NOT met'})")


if __name__ == "__main__":
    main()
