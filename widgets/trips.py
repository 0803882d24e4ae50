"""A run's round trips as FreqUI lists a bot's trades (engine/trips.py): each close with its
opening, how long it was held and what it made; sortable by any column's value, filtered by
outcome and by text (side, exit), those closing after the replay's bar greyed, a double-click
seeks to the close."""

from __future__ import annotations

import time

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.controller import running_text
from widgets.roles import ALIGNMENT, DISPLAY, FOREGROUND, HORIZONTAL

SORT = Qt.UserRole + 1  # the value a column sorts by
COLUMNS = ("#", "side", "opened", "closed", "held", "entry", "exit", "qty", "exit by", "profit", "profit %")
OUTCOMES = ("all", "wins", "losses")


def _utc(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ms / 1000)) if ms >= 0 else "—"


def held_text(ms: int) -> str:
    return running_text(ms) if ms >= 0 else "—"  # (an opening not known: a close of several)


class TripsModel(QAbstractTableModel):
    _GREY = QBrush(QColor(160, 160, 160))
    _WIN, _LOSS = QBrush(QColor(46, 125, 50)), QBrush(QColor(198, 40, 40))
    _RIGHT = int(Qt.AlignRight | Qt.AlignVCenter)

    def __init__(self):
        super().__init__()
        self.trips = np.zeros(0)
        self.labels: tuple[str, ...] = ()
        self.bar = -1  # trips closing after it are greyed

    def set_run(self, run) -> None:
        self.beginResetModel()
        self.trips = run.trips if run is not None else np.zeros(0)
        self.labels = run.labels if run is not None else ()
        self.bar = -1
        self.endResetModel()

    def set_bar(self, bar: int) -> None:
        """Grey the trips closing after ``bar``: only the rows between the old bar and the new
        change (the trips are in the order they closed), so playback stays cheap."""
        if bar == self.bar or not len(self.trips):
            return
        closes = self.trips["close_bar"]
        lo, hi = sorted((int(np.searchsorted(closes, min(bar, self.bar), side="right")),
                         int(np.searchsorted(closes, max(bar, self.bar), side="right"))))
        first = self.bar < 0
        self.bar = bar
        if first:
            lo, hi = 0, len(self.trips)
        if hi > lo:
            self.dataChanged.emit(self.index(lo, 0), self.index(hi - 1, len(COLUMNS) - 1), [FOREGROUND])

    def rowCount(self, parent=None) -> int:
        return 0 if parent is not None and parent.isValid() else len(self.trips)

    def columnCount(self, parent=None) -> int:
        return len(COLUMNS)

    def headerData(self, section, orientation, role=DISPLAY):
        if role == DISPLAY and orientation == HORIZONTAL:
            return COLUMNS[section]
        return None

    def value(self, row: int, col: int):
        """What column ``col`` of trip ``row`` sorts by (numbers as numbers)."""
        t = self.trips[row]
        return (row, int(t["side"]), int(t["open_time"]), int(t["close_time"]),
                int(t["close_time"] - t["open_time"]) if t["open_row"] >= 0 else -1, float(t["open_price"]),
                float(t["close_price"]), float(t["qty"]), self.labels[int(t["label"])], float(t["pnl"]),
                float(t["ret"]))[col]

    def data(self, index, role=DISPLAY):
        r, c = index.row(), index.column()
        if role == DISPLAY:
            v = self.value(r, c)
            if c == 0:
                return f"{v + 1:,}"
            if c == 1:
                return "long" if v > 0 else "short"
            if c in (2, 3):
                return _utc(v)
            if c == 4:
                return held_text(v)
            if c in (5, 6):
                return f"{v:,.2f}"
            if c == 7:
                return f"{v:.6g}"
            if c == 9:
                return f"{v:+,.4f}"
            if c == 10:
                return f"{v:+.2%}"
            return v
        if role == SORT:
            return self.value(r, c)
        if role == FOREGROUND:
            t = self.trips[r]
            if self.bar >= 0 and t["close_bar"] > self.bar:
                return self._GREY
            if c in (9, 10) and t["pnl"] != 0:
                return self._WIN if t["pnl"] > 0 else self._LOSS
            return None
        if role == ALIGNMENT and c not in (1, 2, 3, 8):
            return self._RIGHT
        return None


class TripsFilter(QSortFilterProxyModel):
    def __init__(self):
        super().__init__()
        self.setSortRole(SORT)
        self.setDynamicSortFilter(False)  # (the values never change; the filters are applied when set)
        self.outcome = "all"
        self.text = ""

    def set_filter(self, outcome: str, text: str) -> None:
        self.beginFilterChange()
        self.outcome, self.text = outcome, text.strip().lower()
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, row, parent) -> bool:
        m = self.sourceModel()
        pnl = float(m.trips[row]["pnl"])
        if (self.outcome == "wins" and not pnl > 0) or (self.outcome == "losses" and not pnl < 0):
            return False
        if self.text:
            words = f"{m.data(m.index(row, 1))} {m.data(m.index(row, 8))}".lower()
            return all(w in words for w in self.text.split())
        return True


class TripsView(QWidget):
    """The filters over the table, and a line that sums what is shown."""

    seek = Signal(int)  # a trip's close bar, on a double-click

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = TripsModel()
        self.proxy = TripsFilter()
        self.proxy.setSourceModel(self.model)
        self.outcome = QComboBox(objectName="tripsOutcome")
        self.outcome.addItems(OUTCOMES)
        self.text = QLineEdit(objectName="tripsFilter", placeholderText="filter: long, short, STOP…")
        self.total = QLabel(objectName="tripsTotal", wordWrap=True)
        self.table = QTableView(objectName="tripsTable")
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Interactive)
        self.table.doubleClicked.connect(self._double_clicked)
        for w in (self.outcome, self.text):
            (w.currentTextChanged if w is self.outcome else w.textChanged).connect(lambda *_: self._filter())
        top = QHBoxLayout()
        top.addWidget(self.outcome)
        top.addWidget(self.text, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.total)

    def set_run(self, run) -> None:
        self.model.set_run(run)
        self._fit_columns()
        self._sum()

    def _filter(self) -> None:
        self.proxy.set_filter(self.outcome.currentText(), self.text.text())
        self._sum()

    def _sum(self) -> None:
        rows = [self.proxy.mapToSource(self.proxy.index(r, 0)).row() for r in range(self.proxy.rowCount())]
        t = self.model.trips[rows] if len(rows) else self.model.trips[:0]
        if not len(t):
            self.total.setText("no round trips" if not len(self.model.trips) else "none shown")
            return
        wins = int(np.count_nonzero(t["pnl"] > 0))
        self.total.setText(f"{len(t):,} round trips, {wins / len(t):.0%} won, profit {t['pnl'].sum():+,.2f} "
                           f"(fees {t['fees'].sum():,.2f}); average {t['ret'].mean():+.3%}")

    def _fit_columns(self) -> None:
        fm = self.table.fontMetrics()
        for c, sample in enumerate(("99,999", "short", "2024-05-26 04:45", "2024-05-26 04:45", "99d 23h",
                                    "100,000.00", "100,000.00", "0.00123456", "SELL_CLOSE_LONG", "+1,234.5678",
                                    "+12.34%")):
            self.table.setColumnWidth(c, max(fm.horizontalAdvance(sample), fm.horizontalAdvance(COLUMNS[c])) + 14)

    def _double_clicked(self, index) -> None:
        row = self.proxy.mapToSource(index).row()
        self.seek.emit(int(self.model.trips[row]["close_bar"]))
