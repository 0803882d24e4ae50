"""The replay chart: price (candles, resting orders, fills, average entry; for perpetuals each
side's entry, liquidation price and stop; optional indicator overlays and the regime band),
equity with its drawdown shaded, and position, in three panes sharing the time axis. It draws
a run as it stood at one bar, from a :class:`~engine.replay.Replay`; only what is in view is
drawn, and zoomed out the candles, curves and markers are merged so a repaint stays cheap."""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QGraphicsPathItem

from app.theme import legend_colors
from engine.replay import MARKER_KINDS, OVERLAYS, Replay
from widgets.candles import DOWN, UP, BandItem, CandleBatch, MarkerBatch

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
# Lines over the candles: series name -> (pen color, width, style, legend label).
LINES = {
    "avg_entry": ((33, 150, 243), 1.5, Qt.DashLine, "average entry"),
    "avg_short": ((142, 36, 170), 1.5, Qt.DashLine, "short average entry"),
    "liq_long": ((183, 28, 28), 2.0, Qt.DashDotLine, "liquidation (long)"),
    "liq_short": ((183, 28, 28), 2.0, Qt.DashDotLine, "liquidation (short)"),
    "stop_long": ((255, 143, 0), 1.2, Qt.DotLine, "stop (long)"),
    "stop_short": ((255, 143, 0), 1.2, Qt.DotLine, "stop (short)"),
    "ema": ((251, 192, 45), 1.4, Qt.SolidLine, None),
    "kama": ((0, 137, 123), 1.4, Qt.SolidLine, None),
    "atr_upper": ((120, 144, 156), 1.0, Qt.DashLine, None),
    "atr_lower": ((120, 144, 156), 1.0, Qt.DashLine, None),
}
OVERLAY_LINES = {"ema": ("ema",), "kama": ("kama",), "atr_bands": ("atr_upper", "atr_lower")}
LINE_OVERLAY = {line: o for o, lines in OVERLAY_LINES.items() for line in lines}
# Regime band colors, by state (engine.kernels.indicators: NOISE, UPTREND, DOWNTREND, BREAKOUT_UP, BREAKOUT_DOWN).
REGIME_COLORS = {0: (158, 158, 158, 110), 1: (102, 187, 106, 150), 2: (239, 83, 80, 150), 3: (27, 94, 32, 190),
                 4: (183, 28, 28, 190)}
REGIME_BAND = 0.035  # of the price pane's height, at its bottom


class ReplayChart(pg.GraphicsLayoutWidget):
    """Draws ``run`` as it stood at ``bar``. Follows the current bar (a window of
    ``window_bars``) until the user pans or zooms; ``follow_bar()`` resumes following."""

    hovered = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("replayChart")
        self.run: Replay | None = None
        self.compare: Replay | None = None
        self.overlays: set[str] = set()
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
            for side in ("left", "bottom", "right", "top"):  # (each range change re-lays its label otherwise)
                p.getAxis(side).enableAutoSIPrefix(False)
            p.getAxis("left").setWidth(70)
            p.setLabel("left", label)
            p.setClipToView(False)
            p.getViewBox().sigRangeChangedManually.connect(self._user_moved)
            if p is not self.price:
                p.setXLink(self.price)
        self.candles = CandleBatch()
        self.price.addItem(self.candles)
        self.regime_band = BandItem(REGIME_COLORS)
        self.price.addItem(self.regime_band, ignoreBounds=True)
        self._regime_keys = {k: pg.ScatterPlotItem(symbol="s", size=10, brush=pg.mkBrush(*c), pen=pg.mkPen(None))
                             for k, c in REGIME_COLORS.items()}  # the legend's samples
        self.buy_orders = pg.PlotCurveItem(pen=pg.mkPen((*UP, 200), width=1.5), connect="pairs", name="buy orders")
        self.sell_orders = pg.PlotCurveItem(pen=pg.mkPen((*DOWN, 200), width=1.5), connect="pairs",
                                            name="sell orders")
        self.price.addItem(self.buy_orders)
        self.price.addItem(self.sell_orders)
        self.lines: dict[str, pg.PlotCurveItem] = {}
        # A dashed line zoomed out (each point a bin's low or high) is drawn solid: dashes along
        # that zigzag read as noise, and Qt stroked them in 2.5-3 ms a repaint against 0.5 for
        # the solid line. Per line: (as drawn, zoomed in, zoomed out), the pens as made.
        self._line_pens: dict[str, list] = {}
        for name, (color, width, style, label) in LINES.items():
            pen = pg.mkPen(color, width=width, style=style)
            self.lines[name] = item = pg.PlotCurveItem(pen=pen, connect="finite", name=label or name)
            self._line_pens[name] = [False, pen, pg.mkPen(color, width=width)]
            self.price.addItem(item)
        self.markers: dict[str, MarkerBatch] = {}
        self._marker_keys: dict[str, pg.ScatterPlotItem] = {}  # the legend's samples
        for kind in MARKER_KINDS:
            symbol, size, fill, outline = MARKER_STYLE[kind]
            pen = pg.mkPen(outline, width=1.2) if outline else pg.mkPen((40, 40, 40), width=0.5)
            self.markers[kind] = item = MarkerBatch(symbol, size, pen, pg.mkBrush(*fill))
            self._marker_keys[kind] = pg.ScatterPlotItem(symbol=symbol, size=size, brush=pg.mkBrush(*fill), pen=pen)
            self.price.addItem(item)
        self._fills_by_kind: tuple[Replay, list] | None = None  # (run, per kind: bars, x, price)
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
        self.legend = pg.LegendItem(offset=(4, 2), labelTextSize="7pt", brush=pg.mkBrush(0, 0, 0, 150),
                                    labelTextColor=(220, 220, 220), colCount=6)
        self.legend.setParentItem(self.price.getViewBox())
        self.legend.sigSampleClicked.connect(self._sample_clicked)
        self.legend.setVisible(False)  # (an empty legend is a dark square)
        # Before any run: a line saying what goes here, not -0.5..0.5 axes.
        self.placeholder = pg.TextItem("Run a backtest (left) to replay it here", color=(150, 150, 150),
                                       anchor=(0.5, 0.5))
        self.price.addItem(self.placeholder, ignoreBounds=True)
        self.placeholder.setPos(0.5, 0.5)
        for p in (self.price, self.equity_plot, self.position_plot):
            for side in ("left", "bottom"):
                p.getAxis(side).setStyle(showValues=False)
        self.price.setLimits(yMin=0.0)  # a price is never below zero: the wheel cannot zoom there
        self.price.scene().sigMouseMoved.connect(self._mouse)
        self._redraw = QTimer(self, singleShot=True, interval=0)
        self._redraw.timeout.connect(lambda: self.show_bar(self.bar))
        self.price.getViewBox().sigXRangeChanged.connect(self._range_changed)

    # -- state --------------------------------------------------------------------------------
    def set_runs(self, run: Replay | None, compare: Replay | None = None) -> None:
        """The run to draw (and one to overlay); drawn by the next ``show_bar``."""
        self.run, self.compare = run, compare
        self.follow = True
        self.placeholder.setVisible(run is None)
        for p in (self.price, self.equity_plot, self.position_plot):
            for side in ("left", "bottom"):
                p.getAxis(side).setStyle(showValues=run is not None)
        self.hovered.emit("")  # the readout was of the run before
        self._legend()

    def set_overlays(self, names) -> None:
        """The indicator overlays to draw (engine.replay.OVERLAYS); drawn by the next ``show_bar``."""
        self.overlays = set(names) & set(OVERLAYS)
        if self.overlays and self.run is not None:
            self.run.indicators()
        self._legend()

    def _legend(self) -> None:
        """What the run draws, named once: its kinds of fill, its lines, the overlays."""
        self.legend.clear()
        r = self.run
        self.legend.setVisible(r is not None)
        if r is None:
            return
        kinds = set(np.unique(r.trades["marker"]).tolist())
        for k, kind in enumerate(MARKER_KINDS):
            if k in kinds:
                self.legend.addItem(self._marker_keys[kind], kind.replace("_", " "))
        if r.orders_at(r.n_bars - 1) is not None:
            self.legend.addItem(self.buy_orders, "buy orders")
            self.legend.addItem(self.sell_orders, "sell orders")
        for name in self._line_names():
            if name != "atr_lower":
                self.legend.addItem(self.lines[name], LINES[name][3] or r.indicators()[LINE_OVERLAY[name]])
        if "regime" in self.overlays:
            for state, name in enumerate(r.regime_names if hasattr(r, "regime_names") else ()):
                self.legend.addItem(self._regime_keys[state], name.lower().replace("_", " "))
        legend_colors(self.legend)

    def _sample_clicked(self, sample) -> None:
        """A click on a kind of fill in the legend shows or hides its markers (pyqtgraph has
        toggled the sample; the markers are drawn by another item)."""
        for kind, key in self._marker_keys.items():
            if key is sample:
                self.markers[kind].setVisible(sample.isVisible())

    def _line_names(self) -> list[str]:
        """The lines of the price pane this run has, overlays included."""
        r = self.run
        if self.overlays - {"regime"}:
            r.indicators()
        wanted = [n for n in LINES if LINES[n][3] is not None] + \
            [n for o in sorted(self.overlays) for n in OVERLAY_LINES.get(o, ())]
        return [n for n in wanted if r.has_values(n)]

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
        if p.y() < 0:
            self.hovered.emit("")
            return
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
            # The views' transforms for their new ranges, now: pyqtgraph sets them as the paint
            # begins, and items moved by them during a paint are painted again (every seek
            # painted the chart twice).
            for plot in (self.price, self.equity_plot, self.position_plot):
                plot.getViewBox().prepareForPaint()
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
        drawn = set(self._line_names())
        for item, name in ((*((self.lines[n], n if n in drawn else None) for n in LINES),
                            (self.equity_curve, "equity"), (self.peak_curve, "peak"),
                            (self.position_curve, None if perp else "position"),
                            (self.long_curve, "long_qty" if perp else None),
                            (self.short_curve, "short_down" if perp else None))):
            if name is not None and r.series(name) is not None:
                x, y = r.series_in(name, i0, i1)
                pens = self._line_pens.get(name)
                if pens is not None and pens[0] != (len(x) != i1 - i0):
                    pens[0] = not pens[0]
                    item.setPen(pens[2] if pens[0] else pens[1])
                item.setData(x, y)
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
        elif i1 > i0:  # the user's zoom or pan: the panels under the price fit what is in view
            self._fit_lower(r, i0, i1)
        x_cursor = x_now + r.timeframe_s / 2
        for plot, line in self.cursors:
            y0, y1 = plot.getViewBox().viewRange()[1]
            line.setData([x_cursor, x_cursor], [y0, y1])
        if "regime" in self.overlays:
            y0, y1 = self.price.getViewBox().viewRange()[1]
            self.regime_band.set_runs(*r.regime_runs(i0, i1), y0, y0 + REGIME_BAND * (y1 - y0))
        elif self.regime_band.boundingRect().width():
            self.regime_band.set_runs(np.zeros(0), np.zeros(0), np.zeros(0), 0.0, 0.0)

    def _draw_orders(self, bar: int, x_left: float, x_edge: float):
        """Each resting order as a segment from when it was placed through the current bar, and
        a little beyond it: the ladder of prices the next bar can fill."""
        r = self.run
        orders = r.orders_at(bar)
        for side, item in ((1, self.buy_orders), (-1, self.sell_orders)):
            if orders is None or len(orders) == 0:
                item.setData([], [])
                continue
            sel = orders[orders["side"] == side]
            start = r.x[np.minimum(sel["placed"] + 1, bar)]
            ahead = x_edge + r.timeframe_s * max(2, self.window_bars // 40)
            xs = np.column_stack((np.maximum(start, x_left), np.full(len(sel), ahead))).ravel()
            item.setData(xs, np.repeat(sel["price"], 2))
        return orders

    def _draw_markers(self, i0: int, i1: int) -> None:
        r = self.run
        if self._fills_by_kind is None or self._fills_by_kind[0] is not r:
            t = r.trades
            per_kind = []
            for k in range(len(MARKER_KINDS)):
                sel = t[t["marker"] == k]
                per_kind.append((sel["bar"], r.x[sel["bar"]] + r.timeframe_s / 2, sel["price"]))
            self._fills_by_kind = (r, per_kind)
        for kind, (bars, x, price) in zip(MARKER_KINDS, self._fills_by_kind[1], strict=True):
            item = self.markers[kind]
            a, b = int(np.searchsorted(bars, i0)), int(np.searchsorted(bars, i1))
            if b <= a:
                if len(item.x):
                    item.set_data(x[:0], price[:0])
                continue
            step = -(-(b - a) // MAX_MARKERS)  # (zoomed out: every k-th)
            item.set_data(x[a:b:step], price[a:b:step])

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
            self._fit_lower(r, i0, i1)
        finally:
            self._setting_range = False

    def _fit_lower(self, r: Replay, i0: int, i1: int) -> None:
        """Equity (with the compared run's, scaled into the same panel) and position fit bars
        [i0, i1)."""
        equity = [r.equity[i0:i1], r.peak[i0:i1]]
        _, compared = self.compare_curve.getData()
        if compared is not None and len(compared):
            equity.append(compared)
        was = self._setting_range
        self._setting_range = True
        try:
            for plot, ys in ((self.equity_plot, equity),
                             (self.position_plot, (r.position[i0:i1],) if r.long_qty is None
                              else (r.long_qty[i0:i1], -r.short_qty[i0:i1]))):
                _fit_y(plot, min(float(np.nanmin(y)) for y in ys), max(float(np.nanmax(y)) for y in ys), 0.08)
        finally:
            self._setting_range = was


def _fit_y(plot, lo: float, hi: float, padding: float) -> None:
    """Set the y range to hold [lo, hi] only when the data leaves it or fills less than half of
    it: a steady axis reads better in playback, and an axis that does not move is not redrawn."""
    if hi - lo < 1e-9:
        lo, hi = lo - max(abs(lo) * 1e-3, 1e-6), hi + max(abs(hi) * 1e-3, 1e-6)
    (v0, v1) = plot.getViewBox().viewRange()[1]
    if lo >= v0 and hi <= v1 and (hi - lo) >= 0.5 * (v1 - v0):
        return
    plot.setYRange(lo, hi, padding=padding)
