"""Does the app's GUI thread stay responsive? Offscreen, with N paper systems trading (a
candle every --candle-seconds each) and spot-grid backtests of one year of 1-minute candles
running back to back in the worker pool, a 10 ms QTimer measures how late each tick fires:
the longest stall is the longest the GUI thread was blocked. Also prints the process's memory
(with --no-backtest: what the app takes with the systems alone).

With --cold the app starts on a copy of the sources with no compiled kernel (numba's cache
empty): the systems switched ON wait while the engine is prepared in a process of its own (the
kernels compiling on both cores), and the GUI timer is measured from the start, the time the
engine took to prepare apart from the time after.

    QT_QPA_PLATFORM=offscreen python bench/bench_gui_stalls.py [--systems 10] [--seconds 20] [--cold]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import qasync  # noqa: E402
from bench_spot_grid import gbm_candles  # noqa: E402
from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from app.controller import Controller  # noqa: E402
from app.main_window import MainWindow  # noqa: E402
from engine.strategies.spot_grid import SpotGridConfig  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--systems", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--candle-seconds", type=float, default=0.2)
    ap.add_argument("--no-backtest", action="store_true", help="the systems alone")
    ap.add_argument("--cold", action="store_true", help="from a start with no kernel compiled")
    args = ap.parse_args()
    if args.cold and not os.environ.get("GRIDDESK_BENCH_COLD"):  # on a copy of the sources, their cache empty
        copy = Path(tempfile.mkdtemp(prefix="griddesk-cold-")) / "griddesk"
        shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "docs", "build"))
        try:
            raise SystemExit(subprocess.call([sys.executable, str(copy / "bench" / Path(__file__).name), *sys.argv[1:]],
                                             cwd=copy, env={**os.environ, "GRIDDESK_BENCH_COLD": "1"}))
        finally:
            shutil.rmtree(copy.parent, ignore_errors=True)
    d = Path(tempfile.mkdtemp())
    systems = [{"name": f"paper {i}", "symbol": "BTC/USDT", "timeframe": "15m",
                "params": {"levels": 40, "spacing": "geometric", "trailing": "both"}, "capital": 10_000,
                "mode": "paper", "dry_run": True, "enabled": True, "data": "sample",
                "replay_seconds": args.candle_seconds} for i in range(args.systems)]
    (d / "cryptos.json").write_text(json.dumps({"schema_version": 1, "systems": systems}))
    app = QApplication.instance() or QApplication(sys.argv)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    from app.gui import gui_thread_gc

    collector = gui_thread_gc()  # as the app does  # noqa: F841
    controller = Controller(d, refresh_ms=250)
    # ten 10,000 systems on one symbol: within the default 20% per symbol of a 1,000,000 paper account
    controller.risk.limits.paper_portfolio = 1_000_000.0
    window = MainWindow(controller)
    window.show()
    candles = None if args.no_backtest else gbm_candles(525_600)
    cfg = SpotGridConfig(levels=200, spacing="arithmetic", lower=24_000.0, upper=36_000.0, capital=100_000.0)
    lateness: list[float] = []
    last = [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        lateness.append(now - last[0] - 0.010)
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)

    preparing: dict[str, float] = {}

    async def scenario():
        from engine.kernels import kernels_warm

        if args.cold:  # measured from the start, while the engine is prepared
            assert not kernels_warm(), "--cold: the copy's kernels are compiled already"
            timer.start()
            t0 = time.perf_counter()
        controller.start()
        window.tabs.setCurrentWidget(window.grid)
        if args.cold:
            await controller.prepare_engine()
            preparing.update(seconds=time.perf_counter() - t0, ticks=len(lateness))
        for _ in range(600):  # every system booted (sample loaded, first grid laid) before measuring
            await asyncio.sleep(0.1)
            ts = controller.runner.traders.values()
            if len(ts) == args.systems and all(t.strategy is not None and t.strategy.started for t in ts):
                break
        if not args.no_backtest and not args.cold:
            await controller.backtest(candles, "spot-grid", cfg)  # the cache loaded before measuring
        if not args.cold:
            lateness.clear()
            last[0] = time.perf_counter()
            timer.start()
        end = time.monotonic() + args.seconds
        runs = 0
        while time.monotonic() < end:
            if args.no_backtest:
                await asyncio.sleep(0.1)
                continue
            await controller.backtest(candles, "spot-grid", cfg)
            runs += 1
        timer.stop()
        fills = sum(t.strategy.books(1.0)["fills"] for t in controller.runner.traders.values() if t.strategy.started)
        await controller.shutdown()
        return runs, fills

    with loop:
        runs, fills = loop.run_until_complete(scenario())
    late = np.array(lateness) * 1000
    if preparing:
        n = int(preparing["ticks"])
        first = late[:n]
        print(f"preparing the engine (every kernel compiled in a process of its own): {preparing['seconds']:.0f} s; "
              f"GUI timer late by median {np.median(first):.1f} ms, p99 {np.percentile(first, 99):.1f} ms, worst "
              f"{first.max():.1f} ms ({n} ticks); stalls over 50 ms: {int(np.count_nonzero(first > 50))}")
        late = late[n:]
    status = Path("/proc/self/status").read_text()
    rss, peak = (int(status.split(f"{k}:")[1].split()[0]) / 1024 for k in ("VmRSS", "VmHWM"))
    print(f"{args.systems} paper systems (a candle every {args.candle_seconds} s each, {fills} fills) and "
          f"{runs} backtests of 525,600 bars x 200 levels in {args.seconds:.0f} s: GUI timer late by median "
          f"{np.median(late):.1f} ms, p99 {np.percentile(late, 99):.1f} ms, worst {late.max():.1f} ms "
          f"({len(late)} ticks); memory {rss:.0f} MB (peak {peak:.0f} MB)")


if __name__ == "__main__":
    main()
