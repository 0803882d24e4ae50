"""The replay chart: price (candles, resting orders, fills, average entry), equity with its
drawdown shaded, and position, in three panes sharing the time axis. It draws a run as it
stood at one bar, from a :class:`~engine.replay.Replay`; only what is in view is drawn, and
zoomed out the candles, curves and markers are merged so a repaint stays cheap."""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QGraphicsPathItem

from engine.replay import MARKER_KINDS, Replay
from widgets.candles import DOWN, UP, CandleBatch

COMPARE = (239, 108, 0)
MAX_CANDLES = 1200
MAX_MARKERS = 600  # per kind in view; beyond it every k-th is drawn (zoomed out)
# Marker look per fill kind: symbol, size, fill, outline.
MARKER_STYLE = {
    "buy_open": ("t1", 10, UP, None),
    "sell_close": ("t", 10, DOWN, None),
    "sell_open": ("t", 10, (255, 255, 255), DOWN),
    "buy_close": ("t1", 10, (255, 255, 255), UP),
    "stop": ("x", 13, (255, 143, 0), (255, 143, 0)),
    "prune": ("d", 10, (142, 36, 170), None),
    "liquidation": ("star", 18, (0, 0, 0), (255, 235, 59)),
    "hedge": ("s", 9, (30, 136, 229), None),
    "halt": ("h", 12, (120, 144, 156), None),
}


class ReplayChart(pg.GraphicsLayoutWidget):
    """Draws ``run`` as it stood at ``bar``. Follows the current bar (a window of
    ``window_bars``) until the user pans or zooms; ``follow_bar()`` resumes following."""

    hovered = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("replayChart")
        self.run: Replay | None = None
        self.compare: Replay | None = None
        self.bar = 0
        self.follow = True
        self.window_bars = 240
        self.last_draw_ms = 0.0
        self._setting_range = False
        # One date axis, under the last pane; no grid lines: pyqtgraph draws them through the
        # axes, and they cost two thirds of a repaint (the grid's own levels are the guide lines).
        self.price = self.addPlot(row=0, col=0)
        self.equity_plot = self.addPlot(row=1, col=0)
        self.position_plot = self.addPlot(row=2, col=0, axisItems={"bottom": pg.DateAxisItem()})
        self.price.hideAxis("bottom")
        self.equity_plot.hideAxis("bottom")
        layout = self.ci.layout
        for row, stretch in enumerate((6, 2, 1.5)):
            layout.setRowStretchFactor(row, int(stretch * 2))
        for p, label in ((self.price, "price"), (self.equity_plot, "equity"), (self.position_plot, "position")):
            p.getAxis("left").enableAutoSIPrefix(False)
            p.getAxis("left").setWidth(70)
            p.setLabel("left", label)
            p.setClipToView(False)
            p.getViewBox().sigRangeChangedManually.connect(self._user_moved)
            if p is not self.price:
                p.setXLink(self.price)
        self.candles = CandleBatch()
        self.price.addItem(self.candles)
        self.buy_orders = pg.PlotCurveItem(pen=pg.mkPen((*UP, 200), width=1.5), connect="pairs")
        self.sell_orders = pg.PlotCurveItem(pen=pg.mkPen((*DOWN, 200), width=1.5), connect="pairs")
        self.avg_entry = pg.PlotCurveItem(pen=pg.mkPen((33, 150, 243), width=1.5, style=Qt.DashLine),
                                          connect="finite")
        for item in (self.buy_orders, self.sell_orders, self.avg_entry):
            self.price.addItem(item)
        self.markers: dict[str, pg.ScatterPlotItem] = {}
        for kind in MARKER_KINDS:
            symbol, size, fill, outline = MARKER_STYLE[kind]
            pen = pg.mkPen(outline, width=1.2) if outline else pg.mkPen((40, 40, 40), width=0.5)
            item = pg.ScatterPlotItem(symbol=symbol, size=size, brush=pg.mkBrush(*fill), pen=pen, name=kind)
            self.markers[kind] = item
            self.price.addItem(item)
        self.equity_curve = pg.PlotCurveItem(pen=pg.mkPen((21, 101, 192), width=1.5))
        self.peak_curve = pg.PlotCurveItem(pen=pg.mkPen((21, 101, 192, 60), width=1))
        # drawdown: the area between the running peak and the equity, one closed path
        self.drawdown_fill = QGraphicsPathItem()
        self.drawdown_fill.setBrush(pg.mkBrush(214, 48, 49, 70))
        self.drawdown_fill.setPen(pg.mkPen(None))
        self.compare_curve = pg.PlotCurveItem(pen=pg.mkPen(COMPARE, width=1.3))
        for item in (self.drawdown_fill, self.peak_curve, self.equity_curve, self.compare_curve):
            self.equity_plot.addItem(item)
        self.position_curve = pg.PlotCurveItem(pen=pg.mkPen((96, 125, 139), width=1.3), stepMode=None)
        self.long_curve = pg.PlotCurveItem(pen=pg.mkPen(UP, width=1.3))
        self.short_curve = pg.PlotCurveItem(pen=pg.mkPen(DOWN, width=1.3))
        for item in (self.position_curve, self.long_curve, self.short_curve):
            self.position_plot.addItem(item)
        # The current bar's line: a plain two-point curve (an InfiniteLine recomputes its bounds
        # while painting and so paints every frame twice).
        self.cursors = []
        for p in (self.price, self.equity_plot, self.position_plot):
            line = pg.PlotCurveItem(pen=pg.mkPen((120, 120, 120), width=1, style=Qt.DotLine))
            p.addItem(line, ignoreBounds=True)
            self.cursors.append((p, line))
        self.price.scene().sigMouseMoved.connect(self._mouse)
        self._redraw = QTimer(self, singleShot=True, interval=0)
        self._redraw.timeout.connect(lambda: self.show_bar(self.bar))
        self.price.getViewBox().sigXRangeChanged.connect(self._range_changed)

    # -- state --------------------------------------------------------------------------------
    def set_runs(self, run: Replay | None, compare: Replay | None = None) -> None:
        """The run to draw (and one to overlay); drawn by the next ``show_bar``."""
        self.run, self.compare = run, compare
        self.follow = True

    def follow_bar(self) -> None:
        self.follow = True
        self.show_bar(self.bar)

    def _user_moved(self, *_) -> None:
        if not self._setting_range:
            self.follow = False

    def _range_changed(self, *_) -> None:
        if not self._setting_range and not self.follow:
            self._redraw.start()  # redraw what came into view, once the range settles

    def _mouse(self, pos) -> None:
        if self.run is None or not self.price.sceneBoundingRect().contains(pos):
            return
        p = self.price.getViewBox().mapSceneToView(pos)
        bar = self.run.bar_at(int(p.x() * 1000))
        c = self.run.candles
        self.hovered.emit(f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(p.x()))} UTC  {p.y():,.2f}   "
                          f"bar {bar:,}: O {c.open[bar]:,.2f} H {c.high[bar]:,.2f} L {c.low[bar]:,.2f} "
                          f"C {c.close[bar]:,.2f}")

    # -- drawing ------------------------------------------------------------------------------
    def visible_bars(self) -> tuple[int, int]:
        """Bars ``[i0, i1)`` to draw: the follow window, or what the view shows, never past
        the current bar."""
        r = self.run
        if self.follow:
            return max(0, self.bar - self.window_bars + 1), self.bar + 1
        (xa, xb), _ = self.price.getViewBox().viewRange()
        i0 = max(0, int(np.searchsorted(r.x, xa)) - 1)
        i1 = min(int(np.searchsorted(r.x, xb)) + 1, self.bar + 1)
        return i0, max(i1, i0)

    def show_bar(self, bar: int) -> None:
        r = self.run
        if r is None:
            return
        t0 = time.perf_counter()
        self.setUpdatesEnabled(False)  # one repaint for all the changes below
        try:
            self._draw(r, r.clamp(bar))
        finally:
            self.setUpdatesEnabled(True)
        self.last_draw_ms = (time.perf_counter() - t0) * 1000

    def _draw(self, r: Replay, bar: int) -> None:
        self.bar = bar
        i0, i1 = self.visible_bars()
        x, o, h, lo, c, width = r.candles_in(i0, i1, MAX_CANDLES)
        self.candles.set_data(x, o, h, lo, c, width)
        x_now = float(r.x[bar])
        x_edge = x_now + r.timeframe_s
        orders = self._draw_orders(bar, float(r.x[i0]) if i1 > i0 else x_now, x_edge)
        self._draw_markers(i0, i1)
        perp = r.long_qty is not None
        for item, name in ((self.avg_entry, "avg_entry"), (self.equity_curve, "equity"), (self.peak_curve, "peak"),
                           (self.position_curve, None if perp else "position"),
                           (self.long_curve, "long_qty" if perp else None),
                           (self.short_curve, "short_down" if perp else None)):
            if name is not None and r.series(name) is not None:
                item.setData(*r.series_in(name, i0, i1))
            elif item.xData is not None and len(item.xData):
                item.setData([], [])
        xs, peak = self.peak_curve.getData()
        _, eq = self.equity_curve.getData()
        if xs is not None and len(xs) > 1:
            self.drawdown_fill.setPath(pg.arrayToQPath(np.r_[xs, xs[::-1]], np.r_[peak, eq[::-1]]))
        if self.compare is not None:
            j0, j1 = self.compare.bar_at(int(r.x[i0] * 1000)), self.compare.bar_at(int(x_now * 1000)) + 1
            self.compare_curve.setData(*self.compare.series_in("equity", j0, j1))
        elif self.compare_curve.xData is not None and len(self.compare_curve.xData):
            self.compare_curve.setData([], [])
        if self.follow and i1 > i0:
            self._frame(r, i0, i1, x_edge, lo, h, orders)
        x_cursor = x_now + r.timeframe_s / 2
        for plot, line in self.cursors:
            y0, y1 = plot.getViewBox().viewRange()[1]
            line.setData([x_cursor, x_cursor], [y0, y1])

    def _draw_orders(self, bar: int, x_left: float, x_edge: float):
        """Each resting order as a segment from when it was placed to the current bar."""
        r = self.run
        orders = r.orders_at(bar)
        for side, item in ((1, self.buy_orders), (-1, self.sell_orders)):
            if orders is None or len(orders) == 0:
                item.setData([], [])
                continue
            sel = orders[orders["side"] == side]
            start = r.x[np.minimum(sel["placed"] + 1, bar)]
            xs = np.column_stack((np.maximum(start, x_left), np.full(len(sel), x_edge))).ravel()
            item.setData(xs, np.repeat(sel["price"], 2))
        return orders

    def _draw_markers(self, i0: int, i1: int) -> None:
        r = self.run
        t = r.trades
        a, b = int(np.searchsorted(t["bar"], i0)), r.trades_through(i1 - 1) if i1 > i0 else 0
        part = t[a:max(a, b)]
        for k, kind in enumerate(MARKER_KINDS):
            sel = part[part["marker"] == k]
            if len(sel) > MAX_MARKERS:
                sel = sel[:: -(-len(sel) // MAX_MARKERS)]
            self.markers[kind].setData(r.x[sel["bar"]] + r.timeframe_s / 2, sel["price"])

    def _frame(self, r: Replay, i0: int, i1: int, x_edge: float, lo, h, orders) -> None:
        self._setting_range = True
        try:
            span = (r.x[i1 - 1] - r.x[i0]) if i1 - i0 > 1 else r.timeframe_s * self.window_bars
            left = float(r.x[i1 - 1]) - max(span, r.timeframe_s * (self.window_bars - 1))
            self.price.setXRange(left, x_edge + r.timeframe_s * max(3, self.window_bars // 12), padding=0)
            if len(lo):
                y0, y1 = float(lo.min()), float(h.max())
                if orders is not None and len(orders):  # the nearest order on each side stays in view
                    below, above = orders["price"][orders["price"] < y0], orders["price"][orders["price"] > y1]
                    y0 = max(below.max(), y0 - (y1 - y0)) if len(below) else y0
                    y1 = min(above.min(), y1 + (y1 - y0)) if len(above) else y1
                _fit_y(self.price, y0, y1, 0.06)
            for plot, ys in ((self.equity_plot, (r.equity[i0:i1], r.peak[i0:i1])),
                             (self.position_plot, (r.position[i0:i1],) if r.long_qty is None
                              else (r.long_qty[i0:i1], -r.short_qty[i0:i1]))):
                _fit_y(plot, min(float(np.min(y)) for y in ys), max(float(np.max(y)) for y in ys), 0.08)
        finally:
            self._setting_range = False


def _fit_y(plot, lo: float, hi: float, padding: float) -> None:
    """Set the y range to hold [lo, hi] only when the data leaves it or fills less than half of
    it: a steady axis reads better in playback, and an axis that does not move is not redrawn."""
    if hi - lo < 1e-9:
        lo, hi = lo - max(abs(lo) * 1e-3, 1e-6), hi + max(abs(hi) * 1e-3, 1e-6)
    (v0, v1) = plot.getViewBox().viewRange()[1]
    if lo >= v0 and hi <= v1 and (hi - lo) >= 0.5 * (v1 - v0):
        return
    plot.setYRange(lo, hi, padding=padding)
