"""Visual replay speed: the Backtest tab driven offscreen on one year of 1-minute candles
(525,600 synthetic GBM bars, seeded) with a 200-level grid.

Prints: seek-and-repaint times at random bars (the seek, then the event loop run until Qt has
painted everything it invalidated: chart, scrubber, metrics, trades table), when the
chart follows the current bar and when the whole year is in view; playback redraws per second
and frame times at speeds from 1 to 10,000 bars/s; memory with the run loaded.

    QT_QPA_PLATFORM=offscreen python bench/bench_replay.py [--bars 525600] [--seeks 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def rss_mb(field: str = "VmRSS") -> float:
    return int(open("/proc/self/status").read().split(f"{field}:")[1].split()[0]) / 1024


def stats(ms: list[float]) -> str:
    p50, p95, p99, worst = np.percentile(np.asarray(ms), [50, 95, 99, 100])
    return f"median {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms, worst {worst:.1f} ms (n={len(ms)})"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bars", type=int, default=525_600)
    ap.add_argument("--levels", type=int, default=200)
    ap.add_argument("--seeks", type=int, default=300)
    ap.add_argument("--play-seconds", type=float, default=3.0)
    args = ap.parse_args()

    import qasync
    from bench_spot_grid import gbm_candles
    from PySide6.QtWidgets import QApplication

    from app.controller import Controller
    from engine.strategies.spot_grid import SpotGridConfig
    from widgets.backtest import BacktestTab
    from widgets.transport import SPEEDS

    app = QApplication.instance() or QApplication([])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    from app.gui import gui_thread_gc

    collector = gui_thread_gc()  # as the app does  # noqa: F841
    base_rss = rss_mb()
    candles = gbm_candles(args.bars)
    o0 = float(candles.open[0])
    cfg = SpotGridConfig(lower=0.8 * o0, upper=1.2 * o0, levels=args.levels, capital=100_000.0, fee=0.001, lot=1e-8)
    controller = Controller(tempfile.mkdtemp(), keys=lambda ex: None)
    tab = BacktestTab(controller)
    tab.resize(1600, 900)
    tab.show()
    out = {}

    async def scenario():
        await controller.backtest(candles.slice(0, 5000), "spot-grid", cfg)  # numba cache loaded
        t = time.perf_counter()
        run = await controller.backtest(candles, "spot-grid", cfg, None, "bench")
        out["run_s"] = time.perf_counter() - t
        tab.add_run(run)
        app.processEvents()
        out["rss_loaded"] = rss_mb()
        rng = np.random.default_rng(1)
        bars = rng.integers(0, run.n_bars, args.seeks)

        def seeks(label: str):
            times = []
            for b in bars:
                t0 = time.perf_counter()
                tab.seek(int(b))
                app.processEvents()  # Qt paints what the seek invalidated
                app.processEvents()  # and what the scene queued while painting
                times.append((time.perf_counter() - t0) * 1000)
            print(f"seek + repaint, {label}: {stats(times)}")
            return times

        out["follow"] = seeks("following the current bar (240 bars in view)")
        tab.chart.follow = False
        tab.chart.price.setXRange(float(run.x[0]), float(run.x[-1]), padding=0)
        app.processEvents()
        out["whole"] = seeks("the whole year in view (merged candles)")
        tab.chart.follow_bar()
        print(f"orders in the log: {len(run.result.orders):,}, fills: {len(run.trades):,}")
        for speed in (1, 60, 1000, 10_000):
            tab.speed.setValue(SPEEDS.index(speed) if speed in SPEEDS else 0)
            if speed not in SPEEDS:
                continue
            tab.seek(run.n_bars // 3)
            frames0 = tab.frames
            ticks = []
            last = [time.perf_counter()]

            def tick(ticks=ticks, last=last):
                now = time.perf_counter()
                ticks.append((now - last[0]) * 1000)
                last[0] = now

            tab.timer.timeout.connect(tick)
            b0 = tab.bar
            tab.set_playing(True)
            await asyncio.sleep(args.play_seconds)
            tab.set_playing(False)
            tab.timer.timeout.disconnect(tick)
            redraws = tab.frames - frames0
            print(f"playback at {speed:>6,} bars/s: {len(ticks) / args.play_seconds:5.1f} frames/s, "
                  f"{redraws / args.play_seconds:5.1f} redraws/s, {(tab.bar - b0) / args.play_seconds:8,.0f} bars/s "
                  f"advanced; frame interval {stats(ticks)}")
        await controller.shutdown()

    with loop:
        loop.run_until_complete(scenario())
    print(f"backtest + replay layout of {args.bars:,} bars x {args.levels} levels: {out['run_s']:.2f} s")
    print(f"memory: {base_rss:.0f} MB before, {out['rss_loaded']:.0f} MB with the run loaded "
          f"(peak {rss_mb('VmHWM'):.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
