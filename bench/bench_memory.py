"""What the app's memory comes to in use: offscreen, the bundled sample's two systems ON (the spot
grid and the perpetual trading their replays), every tab visited in turn, and now and then a
backtest of the sample run and compared with the one before it, as a user would over an hour.
Prints the resident memory each minute and at the end (the issue's bound: 600 MB after an hour).

    QT_QPA_PLATFORM=offscreen python bench/bench_memory.py [--minutes 60] [--backtest-every 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import qasync  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from app.controller import Controller  # noqa: E402
from app.main_window import MainWindow  # noqa: E402


def rss_mb() -> tuple[float, float]:
    status = Path("/proc/self/status").read_text()
    return tuple(int(status.split(f"{k}:")[1].split()[0]) / 1024 for k in ("VmRSS", "VmHWM"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--backtest-every", type=float, default=300, help="seconds between backtests")
    ap.add_argument("--tab-every", type=float, default=5, help="seconds on each tab")
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="griddesk-memory-"))
    shutil.copy(ROOT / "cryptos.json", d / "cryptos.json")
    app = QApplication.instance() or QApplication(sys.argv)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    from app.gui import gui_thread_gc

    collector = gui_thread_gc()  # as the app does  # noqa: F841
    controller = Controller(d)
    window = MainWindow(controller)
    window.resize(1600, 1000)
    window.show()
    samples: list[tuple[float, float]] = []

    async def scenario():
        controller.start()
        for s in controller.systems:
            controller.set_on(s.name, True)
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        next_sample, next_backtest, runs, tab = t0, t0, 0, 0
        tabs = [window.tabs.widget(i) for i in range(window.tabs.count())]
        while time.monotonic() < end:
            now = time.monotonic()
            window.tabs.setCurrentWidget(tabs[tab % len(tabs)])
            tab += 1
            if now >= next_backtest:
                bt = window.backtest
                bt.editor.apply_preset(list(bt.editor.preset.itemText(i) for i in range(bt.editor.preset.count()))
                                       [runs % max(1, bt.editor.preset.count())])
                task = bt.start_run()
                if task is not None:
                    await task
                runs += 1
                next_backtest = now + args.backtest_every
            if now >= next_sample:
                samples.append(((now - t0) / 60, rss_mb()[0]))
                print(f"{samples[-1][0]:5.1f} min: {samples[-1][1]:.0f} MB ({runs} backtests)", flush=True)
                next_sample = now + 60
            await asyncio.sleep(args.tab_every)
        fills = sum(t.strategy.books(1.0)["fills"] for t in controller.runner.traders.values()
                    if t.strategy is not None and t.strategy.started)
        await controller.shutdown()
        return runs, fills

    with loop:
        runs, fills = loop.run_until_complete(scenario())
    rss, peak = rss_mb()
    print(f"{args.minutes:g} min with both sample systems ON ({fills:,} fills), every tab visited, {runs} backtests "
          f"run and compared: {rss:.0f} MB at the end, peak {peak:.0f} MB; first minute {samples[0][1]:.0f} MB")
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
