"""Grid tab: a live pyqtgraph chart of one system: candles (one batch of bodies, one of wicks),
grid levels (their prices on the right axis), resting orders, fills, the last price, average
entries and (perpetuals) liquidation prices; crosshair readout; follows the newest candle unless
the user has scrolled back. Only the candles in view are drawn, merged when there are more than
the chart can show, so a new candle costs the same with 100 or 100,000 loaded. Beside it, the
bot's summary (as the exchanges' grid bots show it) and the order ladder."""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QAbstractTableModel, Qt, QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.controller import qty_text, running_text
from widgets.candles import DOWN, UP, CandleBatch
from widgets.parity import ParityDialog
from widgets.replay_chart import LINES
from widgets.roles import ALIGNMENT, DISPLAY, FOREGROUND, HORIZONTAL
from widgets.tasks import when_done

# lines drawn where the books have them; off the chart, marked at its edge with their price
MARKS = ("avg_entry", "avg_short", "liq_long", "liq_short", "stop_long", "stop_short")

FOLLOW_BARS = 150  # candles in view while following the newest
MAX_CANDLES = 1200  # drawn at most; beyond, neighbours are merged into one candle
MAX_LEVEL_TICKS = 40  # level prices written on the right axis; more levels: every k-th
LADDER_COLUMNS = ("#", "Side", "Price", "Away", "Qty", "State")
BUY_COLOR, SELL_COLOR, PRICE_COLOR = "#43a047", "#e53935", "#fbc02d"


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


class LadderModel(QAbstractTableModel):
    """The order ladder's cells: a model, so that a refresh is one change of the view (a table
    of items re-measured its columns at each cell set: half the GUI thread's time with ten
    systems trading)."""

    RIGHT = (0, 2, 3, 4)

    def __init__(self):
        super().__init__()
        self.cells: list[tuple[str, ...]] = []
        self.colors: list[tuple] = []
        self._align = (int(Qt.AlignRight | Qt.AlignVCenter), int(Qt.AlignLeft | Qt.AlignVCenter))
        self._qcolors = {None: None, **{c: QColor(c) for c in (BUY_COLOR, SELL_COLOR, PRICE_COLOR)}}

    def rowCount(self, parent=None):
        return 0 if parent is not None and parent.isValid() else len(self.cells)

    def columnCount(self, parent=None):
        return len(LADDER_COLUMNS)

    def headerData(self, section, orientation, role=DISPLAY):
        return LADDER_COLUMNS[section] if role == DISPLAY and orientation == HORIZONTAL else None

    def data(self, index, role=DISPLAY):
        if role == DISPLAY:
            return self.cells[index.row()][index.column()]
        if role == FOREGROUND:
            return self._qcolors[self.colors[index.row()][index.column()]]
        if role == ALIGNMENT:
            return self._align[index.column() not in self.RIGHT]
        return None

    def set_rows(self, rows: list, price: float) -> None:
        cells, colors = [], []
        for row in rows:
            if row is None:  # the price, where it stands among the orders
                cells.append(("", "price", f"{price:,.2f}", "", "", ""))
                colors.append((PRICE_COLOR,) * 6)
            else:
                level, side, p, dist, qty, state = row
                color = BUY_COLOR if side.startswith("buy") else SELL_COLOR
                cells.append((str(level), side, f"{p:,.2f}", f"{dist:+.2%}", qty_text(qty), state))
                colors.append((None, color, color, None, None, None))
        if cells == self.cells:
            return
        if len(cells) != len(self.cells):
            self.beginResetModel()
            self.cells, self.colors = cells, colors
            self.endResetModel()
        else:
            self.cells, self.colors = cells, colors
            self.dataChanged.emit(self.index(0, 0), self.index(len(cells) - 1, len(LADDER_COLUMNS) - 1))


def summary_rows(bot: dict | None, levels: int, orders: int) -> list[tuple[str, str, float]]:
    """The bot's summary as (label, text, sign): the sign colours gains and losses."""
    if not bot:
        return [("Grid", "not started yet", 0.0)]

    def per_day(n, rate):
        return f"{n:,}" + (f" ({rate:,.1f} a day)" if rate is not None else "")

    return [
        ("Investment", f"{bot['investment']:,.2f}", 0.0),
        ("Total PnL", f"{bot['total_pnl']:+,.2f} ({bot['roi']:+.2%})", bot["total_pnl"]),
        ("Grid profit", f"{bot['grid_profit']:+,.2f}", bot["grid_profit"]),
        ("Floating PnL", f"{bot['floating']:+,.2f}", bot["floating"]),
        ("Funding", f"{bot['funding']:+,.2f}", bot["funding"]),
        ("Fees", f"{bot['fees']:,.2f}", 0.0),
        ("Running", running_text(bot["running_ms"]), 0.0),
        ("APR", "—" if bot["apr"] is None else f"{bot['apr']:+.2%}", bot["apr"] or 0.0),
        ("Grids done", per_day(bot["round_trips"], bot["round_trips_per_day"]), 0.0),
        ("Fills", per_day(bot["fills"], bot["fills_per_day"]), 0.0),
        ("Levels / orders", f"{levels} / {orders}", 0.0),
    ]


def ladder_rows(ladder: list[dict], price: float) -> list[tuple | None]:
    """The resting orders from the highest price down, as (level, side, price, distance from the
    price, qty, state), with None where the price stands among them."""
    rows: list[tuple | None] = []
    placed = False
    for o in sorted(ladder, key=lambda o: -o["price"]):
        if not placed and o["price"] < price:
            rows.append(None)
            placed = True
        side = f"{o['side']} {o['position']}".strip() if o.get("position") else o["side"]
        rows.append((o["level"], side, o["price"], o["price"] / price - 1.0 if price else 0.0, o["qty"],
                     o["state"]))
    if not placed:
        rows.append(None)
    return rows


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
                                               labelOpts={"position": 0.02 + 0.15 * i, "color": color,
                                                          "anchors": [(0, 1), (0, 1)]})  # (starts in sight)
            self.plot.addItem(self.marks[name])
        # a liquidation or a stop beyond the chart's range, marked at its edge with its price
        self.edges = {name: pg.TextItem(color=LINES[name][0], anchor=(1.0, 0.0)) for name in MARKS[2:]}
        for item in self.edges.values():
            self.plot.addItem(item, ignoreBounds=True)
            item.setVisible(False)
        self.plot.getViewBox().sigRangeChanged.connect(lambda *_: self._edge_marks())
        # the last price, labelled at the right; the levels' prices on the right axis
        self.price_line = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen(PRICE_COLOR, width=1,
                                                                               style=pg.QtCore.Qt.DotLine),
                                          label="{value:,.2f}", labelOpts={"position": 0.97, "color": PRICE_COLOR,
                                                                           "anchors": [(1, 1), (1, 1)]})
        self.plot.addItem(self.price_line, ignoreBounds=True)
        self.plot.showAxis("right")
        self.plot.getAxis("right").enableAutoSIPrefix(False)
        self.plot.getAxis("right").setStyle(tickLength=4)
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
        self.parity_button = QPushButton("Parity…", objectName="gridParity")
        self.parity_button.setToolTip("this system's fills beside the backtest of its settings on the same candles, "
                                      "every difference named with the money it accounts for")
        self.parity_button.clicked.connect(self.show_parity)
        self.parity_dialog = None
        bar = QHBoxLayout()
        bar.addWidget(QLabel("System"))
        bar.addWidget(self.system)
        bar.addWidget(self.parity_button)
        bar.addWidget(self.books)
        bar.addStretch(1)
        bar.addWidget(self.readout)
        # beside the chart: the bot's summary and the order ladder
        self.summary_host = QWidget(objectName="botSummary")
        self.summary_form = QFormLayout(self.summary_host)
        self.summary_form.setContentsMargins(4, 0, 4, 0)
        self.summary_labels: dict[str, QLabel] = {}
        self._price_row = -1
        self.ladder_model = LadderModel()
        self.ladder = QTableView(objectName="orderLadder")
        self.ladder.setModel(self.ladder_model)
        self.ladder.verticalHeader().setVisible(False)
        self.ladder.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.ladder.setSelectionMode(QAbstractItemView.NoSelection)
        self.ladder.setWordWrap(False)
        self.ladder.verticalHeader().setDefaultSectionSize(self.ladder.fontMetrics().height() + 4)
        self.ladder.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.ladder.horizontalHeader().setStretchLastSection(True)
        side = QWidget()
        side_lay = QVBoxLayout(side)
        side_lay.setContentsMargins(0, 0, 0, 0)
        side_lay.addWidget(self.summary_host)
        side_lay.addWidget(QLabel("Order ladder"))
        side_lay.addWidget(self.ladder, 1)
        self.splitter = QSplitter(Qt.Horizontal, objectName="gridSplitter")
        self.splitter.addWidget(self.plot)
        self.splitter.addWidget(side)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setSizes([860, 420])
        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(self.splitter, 1)
        controller.systemsChanged.connect(self._systems)
        controller.tick.connect(self.refresh)
        self._systems()

    def show_parity(self) -> bool:
        """The parity report of the system shown, in a window once it is made (errors in the readout)."""
        name = self.system.currentText()
        if not name:
            return False
        self.parity_button.setEnabled(False)
        self.readout.setText(f"parity of {name}: the backtest of its candles…")

        def shown(report) -> None:
            self.parity_button.setEnabled(True)
            self.readout.setText(f"parity of {name}: {len(report.differences)} difference(s), {report.gap:+,.2f}")
            self.parity_dialog = ParityDialog(report, self)
            self.parity_dialog.show()

        def failed(exc: Exception) -> None:
            self.parity_button.setEnabled(True)
            self.readout.setText(f"parity of {name}: {exc}")

        return when_done(self, self.controller.parity(name), shown, failed)

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
        close = float(d["close"][-1])
        self.books.setText(marks_text(d["marks"], close))
        self.price_line.setPos(close)
        k = max(1, -(-len(lv) // MAX_LEVEL_TICKS))
        self.plot.getAxis("right").setTicks([[(float(y), f"{y:,.2f}") for y in lv[::k]], []] if len(lv) else None)
        self._show_summary(d)
        self._show_ladder(d["ladder"], close)
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
        """The liquidations and stops beyond the chart's range, at its top or bottom edge with
        their prices, the nearest to the edge first."""
        d = self._data
        (_, x1), (y0, y1) = self.plot.getViewBox().viewRange()
        step = (y1 - y0) * 0.045  # a line of text, stacked
        stacked = {True: 0, False: 0}
        marks = d["marks"] if d is not None else {}
        for name in sorted(self.edges, key=lambda n: abs((marks.get(n) or 0.0) - (y0 + y1) / 2)):
            item = self.edges[name]
            y = marks.get(name)
            off = bool(y and np.isfinite(y)) and not (y0 <= y <= y1)
            item.setVisible(off)
            if off:
                below = y < y0
                item.setText(f"{'▼' if below else '▲'} {LINES[name][3]} {y:,.2f}")
                item.setAnchor((1.0, 1.0) if below else (1.0, 0.0))
                shift = stacked[below] * step
                stacked[below] += 1
                item.setPos(x1, y0 + shift if below else y1 - shift)

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

    def _show_summary(self, d: dict) -> None:
        rows = summary_rows(d["bot"], d["levels_count"], len(d["ladder"]))
        if [r[0] for r in rows] != list(self.summary_labels):
            while self.summary_form.rowCount():
                self.summary_form.removeRow(0)
            self.summary_labels = {}
            for name, _, _ in rows:
                value = QLabel(objectName=f"bot_{name.split()[0].lower()}")
                value.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.summary_labels[name] = value
                self.summary_form.addRow(name, value)
        for name, text, sign in rows:
            w = self.summary_labels[name]
            w.setText(text)
            w.setStyleSheet("" if not sign else f"color: {BUY_COLOR if sign > 0 else SELL_COLOR}")

    def _show_ladder(self, ladder: list[dict], price: float) -> None:
        rows = ladder_rows(ladder, price)
        moved = len(rows) != self.ladder_model.rowCount() or rows.index(None) != self._price_row
        self._price_row = rows.index(None)
        self.ladder_model.set_rows(rows, price)
        if moved:  # the price in sight, the nearest orders either side of it
            self.ladder.scrollTo(self.ladder_model.index(self._price_row, 2), QAbstractItemView.PositionAtCenter)
