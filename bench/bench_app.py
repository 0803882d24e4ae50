"""App speed: cold start to a painted main window, and the Grid chart's redraw of a new candle
with 10,000 candles loaded.

1. Cold start: a fresh Python process (numba's cache warm: a first, unmeasured start fills
   it) that builds the app as ``griddesk`` does (first launch into an empty data folder: the
   default systems copied, the theme applied, every tab built) and reports when the main
   window's first paint is done; wall time from spawning the process.
2. Grid chart: the Grid tab offscreen, fed 10,000 candles, 40 grid levels, resting orders and
   fills through the controller's chart snapshot (the same dict ``Controller.chart`` gives),
   then one new candle per redraw: the time to rebuild the chart and let Qt paint it.

    QT_QPA_PLATFORM=offscreen python bench/bench_app.py [--starts 5] [--candles 10000] [--redraws 200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

CHILD = r"""
import sys
sys.path.insert(0, {root!r})
from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QApplication
app = QApplication(sys.argv)
from app.controller import Controller
from app.main_window import MainWindow
window = MainWindow(Controller({data!r}))

class FirstPaint(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Paint:
            QApplication.instance().quit()
        return False

spy = FirstPaint()
window.tabs.currentWidget().installEventFilter(spy)
window.show()
app.exec()
print("painted", flush=True)
"""


def cold_start(data_dir: str) -> float:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), data=data_dir)], capture_output=True,
                         text=True, check=True, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    elapsed = time.perf_counter() - t
    assert "painted" in out.stdout, out.stderr
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--starts", type=int, default=5)
    ap.add_argument("--candles", type=int, default=10_000)
    ap.add_argument("--redraws", type=int, default=200)
    args = ap.parse_args()

    cold_start(tempfile.mkdtemp())  # numba's cache (and the OS's file cache) warm
    starts = [cold_start(tempfile.mkdtemp()) for _ in range(args.starts)]
    print(f"cold start to a painted window (fresh process, first launch): best {min(starts):.2f} s, "
          f"median {np.median(starts):.2f} s (n={len(starts)})")

    from bench_spot_grid import gbm_candles
    from PySide6.QtCore import QObject, Signal
    from PySide6.QtWidgets import QApplication

    from widgets.grid_chart import GridTab

    class Feed(QObject):
        """The controller's side of the Grid tab: its signals, its systems and ``chart()``."""

        systemsChanged = Signal()
        tick = Signal()

        def __init__(self, n: int):
            super().__init__()
            self.systems = [type("System", (), {"name": "bench"})()]
            self.c = gbm_candles(n + args.redraws + 1)
            self.n = n

        def chart(self, name):
            c, n = self.c, self.n
            last = float(c.close[n - 1])
            levels = last * (1 + np.linspace(-0.1, 0.1, 40))
            return {"time": c.time[:n] / 1000.0, "open": c.open[:n], "high": c.high[:n], "low": c.low[:n],
                    "close": c.close[:n], "timeframe_s": 60.0, "levels": levels,
                    "orders": [("buy" if p < last else "sell", float(p)) for p in levels],
                    "fills": [(float(c.time[i] / 1000.0), float(c.close[i]), "buy" if i % 2 else "sell")
                              for i in range(0, n, 50)],
                    "marks": {"avg_entry": last, "liq_long": last * 0.5}}

    app = QApplication.instance() or QApplication([])
    feed = Feed(args.candles)
    tab = GridTab(feed)
    tab.resize(1400, 800)
    tab.show()
    tab.refresh(force=True)
    app.processEvents()
    times = []
    for _ in range(args.redraws):
        feed.n += 1  # a new candle closed
        t = time.perf_counter()
        tab.refresh()
        app.processEvents()  # Qt paints it
        times.append((time.perf_counter() - t) * 1000)
    a = np.asarray(times)
    print(f"grid chart, a new candle with {args.candles:,} loaded (40 levels, orders, fills, entry and "
          f"liquidation): redraw + paint median "
          f"{np.median(a):.1f} ms, p99 {np.percentile(a, 99):.1f} ms, worst {a.max():.1f} ms (n={len(a)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
