"""Grid tab: a live pyqtgraph chart of one system: candles (one batch of bodies, one of wicks),
grid levels, resting orders, fills, average entries and (perpetuals) liquidation prices;
crosshair readout; follows the newest candle unless the user has scrolled back. Only the
candles in view are drawn, merged when there are more than the chart can show, so a new candle
costs the same with 100 or 100,000 loaded."""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from widgets.candles import DOWN, UP, CandleBatch
from widgets.replay_chart import LINES

MARKS = ("avg_entry", "avg_short", "liq_long", "liq_short")  # lines drawn where the books have them

FOLLOW_BARS = 150  # candles in view while following the newest
MAX_CANDLES = 1200  # drawn at most; beyond, neighbours are merged into one candle


def merged_candles(t, o, h, lo, c, width: float, i0: int, i1: int, most: int = MAX_CANDLES):
    """Candles ``[i0, i1)``, every k merged into one (first open, highest high, lowest low, last
    close) when there are more than ``most``: (time, open, high, low, close, width)."""
    i0, i1 = max(0, i0), min(len(t), i1)
    k = max(1, -(-(i1 - i0) // most))
    if k == 1:
        return t[i0:i1], o[i0:i1], h[i0:i1], lo[i0:i1], c[i0:i1], width
    starts = np.arange(i0, i1, k)
    ends = np.minimum(starts + k, i1) - 1
    return (t[starts], o[starts], np.maximum.reduceat(h[i0:i1], starts - i0),
            np.minimum.reduceat(lo[i0:i1], starts - i0), c[ends], width * k)


def marks_text(marks: dict, close: float) -> str:
    """The entries and liquidation prices with their distance from the close: a liquidation far
    from the price is off the chart but must still be in sight."""
    parts = []
    for name in MARKS:
        y = marks.get(name)
        if not (y and np.isfinite(y)):
            continue
        label = LINES[name][3]
        if name == "avg_entry":  # what the position makes at the close: + in profit, - under water
            parts.append(f"{label} {y:,.2f} (long {close / y - 1:+.1%})")
        elif name == "avg_short":
            parts.append(f"{label} {y:,.2f} (short {y / close - 1:+.1%})")
        else:
            parts.append(f"{label} {y:,.2f} ({abs(y / close - 1):.1%} {'below' if y < close else 'above'} the price)")
    return "   ".join(parts)


class GridTab(QWidget):
    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.setObjectName("gridTab")
        self.controller = controller
        self.system = QComboBox(objectName="gridSystem")
        self.system.currentTextChanged.connect(lambda _: self.refresh(force=True))
        self.readout = QLabel(objectName="gridReadout")
        self.books = QLabel(objectName="gridBooks")  # entries and liquidation prices, also when off the chart
        self.plot = pg.PlotWidget(objectName="gridChart", axisItems={"bottom": pg.DateAxisItem()})
        # no axis grid: pyqtgraph paints it through the axes at two thirds of a redraw's cost; the
        # grid's own levels are the guide lines
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.candles = CandleBatch()
        self.plot.addItem(self.candles)
        self.levels = self.plot.plot(pen=pg.mkPen((120, 120, 120), width=1, style=pg.QtCore.Qt.DashLine),
                                     connect="pairs")
        self.buys = pg.ScatterPlotItem(symbol="t1", size=9, brush=pg.mkBrush(*UP), pen=None)
        self.sells = pg.ScatterPlotItem(symbol="t", size=9, brush=pg.mkBrush(*DOWN), pen=None)
        self.fill_buys = pg.ScatterPlotItem(symbol="o", size=7, brush=pg.mkBrush(*UP), pen=pg.mkPen("w"))
        self.fill_sells = pg.ScatterPlotItem(symbol="o", size=7, brush=pg.mkBrush(*DOWN), pen=pg.mkPen("w"))
        for item in (self.buys, self.sells, self.fill_buys, self.fill_sells):
            self.plot.addItem(item)
        self.marks = {}  # average entries and liquidation prices, styled as on the replay chart
        for i, name in enumerate(MARKS):
            color, width, style, label = LINES[name]
            self.marks[name] = pg.InfiniteLine(angle=0, pen=pg.mkPen(color, width=width, style=style), label=label,
                                               labelOpts={"position": 0.05 + 0.2 * i, "color": color})
            self.plot.addItem(self.marks[name])
        # a liquidation beyond the chart's range, marked at its edge with its price
        self.edges = {name: pg.TextItem(color=LINES[name][0], anchor=(1.0, 0.0)) for name in ("liq_long", "liq_short")}
        for item in self.edges.values():
            self.plot.addItem(item, ignoreBounds=True)
            item.setVisible(False)
        self.plot.getViewBox().sigRangeChanged.connect(lambda *_: self._edge_marks())
        self.vline = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen((150, 150, 150), width=0.5))
        self.hline = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen((150, 150, 150), width=0.5))
        self.plot.addItem(self.vline, ignoreBounds=True)
        self.plot.addItem(self.hline, ignoreBounds=True)
        self.plot.scene().sigMouseMoved.connect(self._mouse)
        self.plot.getViewBox().sigRangeChangedManually.connect(self._user_moved)
        self.follow = True
        self._last = None
        self._data = None
        self._setting_range = False
        self._redraw = QTimer(self, singleShot=True, interval=0)  # what came into view, once it settles
        self._redraw.timeout.connect(self._draw_candles)
        self.plot.getViewBox().sigXRangeChanged.connect(
            lambda *_: None if self._setting_range or self.follow else self._redraw.start())
        bar = QHBoxLayout()
        bar.addWidget(QLabel("System"))
        bar.addWidget(self.system)
        bar.addWidget(self.books)
        bar.addStretch(1)
        bar.addWidget(self.readout)
        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(self.plot)
        controller.systemsChanged.connect(self._systems)
        controller.tick.connect(self.refresh)
        self._systems()

    def _systems(self) -> None:
        cur = self.system.currentText()
        self.system.blockSignals(True)
        self.system.clear()
        self.system.addItems([s.name for s in self.controller.systems])
        if cur:
            self.system.setCurrentText(cur)
        self.system.blockSignals(False)

    def _user_moved(self, *_):
        self.follow = False

    def _mouse(self, pos) -> None:
        vb = self.plot.getViewBox()
        if self.plot.sceneBoundingRect().contains(pos):
            p = vb.mapSceneToView(pos)
            self.vline.setPos(p.x())
            self.hline.setPos(p.y())
            self.readout.setText(f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(p.x()))} UTC   {p.y():,.2f}")

    def refresh(self, force: bool = False) -> None:
        if not self.isVisible() and not force:
            return
        d = self.controller.chart(self.system.currentText())
        if d is None:
            return
        key = (len(d["time"]), float(d["time"][-1]), len(d["orders"]), len(d["fills"]))
        if key == self._last and not force:
            return
        self._last = key
        self._data = d
        t = d["time"]
        lv = np.asarray(d["levels"], dtype=float)
        if len(lv):
            x0, x1 = float(t[0]), float(t[-1]) + d["timeframe_s"] * 5
            self.levels.setData(np.repeat([[x0, x1]], len(lv), axis=0).ravel(), np.repeat(lv, 2))
        x_edge = float(t[-1]) + d["timeframe_s"] * 2
        for side, item in (("buy", self.buys), ("sell", self.sells)):
            ys = [p for s, p in d["orders"] if s == side]
            item.setData([x_edge] * len(ys), ys)
        for side, item in (("buy", self.fill_buys), ("sell", self.fill_sells)):
            pts = [(x, y) for x, y, s in d["fills"] if s == side and x >= t[0]]
            item.setData([x for x, _ in pts], [y for _, y in pts])
        for name, line in self.marks.items():
            y = d["marks"].get(name)
            line.setVisible(bool(y and np.isfinite(y)))
            if line.isVisible():
                line.setPos(y)
        self.books.setText(marks_text(d["marks"], float(d["close"][-1])))
        if self.follow or force:
            n = min(len(t), FOLLOW_BARS)
            lo = float(np.min(d["low"][-n:]))
            hi = float(np.max(d["high"][-n:]))
            self._setting_range = True
            try:
                self.plot.setXRange(float(t[-n]), x_edge + d["timeframe_s"] * 3, padding=0)
                self.plot.setYRange(lo, hi, padding=0.08)
            finally:
                self._setting_range = False
            self.follow = True
        self._draw_candles()
        self._edge_marks()

    def _edge_marks(self) -> None:
        d = self._data
        (_, x1), (y0, y1) = self.plot.getViewBox().viewRange()
        for name, item in self.edges.items():
            y = d["marks"].get(name) if d is not None else None
            off = bool(y and np.isfinite(y)) and not (y0 <= y <= y1)
            item.setVisible(off)
            if off:
                below = y < y0
                item.setText(f"{'▼' if below else '▲'} {LINES[name][3]} {y:,.2f}")
                item.setAnchor((1.0, 1.0) if below else (1.0, 0.0))
                item.setPos(x1, y0 if below else y1)

    def _draw_candles(self) -> None:
        """The candles in view (a little either side), merged when there are too many."""
        d = self._data
        if d is None:
            return
        t = d["time"]
        (xa, xb), _ = self.plot.getViewBox().viewRange()
        i0 = int(np.searchsorted(t, xa)) - 2
        i1 = int(np.searchsorted(t, xb)) + 2
        self.candles.set_data(*merged_candles(t, d["open"], d["high"], d["low"], d["close"], d["timeframe_s"],
                                              i0, i1))
