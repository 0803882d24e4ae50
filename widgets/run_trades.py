"""The Backtest tab's trades table: a run's fills, those after the replay's bar greyed, rows
formatted when first shown."""

from __future__ import annotations

import time

import numpy as np
from PySide6.QtCore import QAbstractTableModel, Qt
from PySide6.QtGui import QBrush, QColor

from engine.replay import Replay
from widgets.roles import ALIGNMENT, DISPLAY, FOREGROUND, HORIZONTAL


def utc_text(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ms / 1000))


class TradesModel(QAbstractTableModel):
    """The run's fills; those after the current bar are greyed. Rows are formatted once, when
    first shown: a repaint asks for a few hundred cells and must stay cheap."""

    COLUMNS = ("time", "bar", "kind", "side", "price", "qty", "fee", "pnl", "position")
    _RIGHT = int(Qt.AlignRight | Qt.AlignVCenter)
    _LEFT_COLUMNS = (0, 2, 3)
    _GREY = QBrush(QColor(160, 160, 160))
    _WIN, _LOSS = QBrush(QColor(46, 125, 50)), QBrush(QColor(198, 40, 40))

    def __init__(self):
        super().__init__()
        self.run: Replay | None = None
        self.done = 0  # fills up to the current bar
        self._rows: dict[int, tuple[str, ...]] = {}
        self._pnl: list[float] = []

    def set_run(self, run: Replay | None) -> None:
        self.beginResetModel()
        self.run, self.done, self._rows = run, 0, {}
        self._pnl = run.trades["pnl"].tolist() if run is not None else []
        self.endResetModel()

    def widest_rows(self) -> list[int]:
        """The rows whose texts are the widest of each column, or near it (the first and the
        last, the highest price, the largest quantity, profit and position): the column widths
        are fitted to these, not to the first thousand rows Qt samples."""
        t = self.run.trades if self.run is not None else None
        if t is None or len(t) == 0:
            return []
        picks = {0, len(t) - 1}
        for name in ("price", "qty", "fee", "pnl", "position"):
            picks.add(int(np.argmax(np.abs(t[name]))))
        return sorted(picks)

    def set_done(self, done: int) -> None:
        if done == self.done or self.run is None:
            return
        lo, hi = sorted((done, self.done))
        self.done = done
        self.dataChanged.emit(self.index(lo, 0), self.index(hi - 1, len(self.COLUMNS) - 1), [FOREGROUND])

    def rowCount(self, parent=None) -> int:
        return 0 if (parent is not None and parent.isValid()) or self.run is None else len(self._pnl)

    def columnCount(self, parent=None) -> int:
        return len(self.COLUMNS)

    def headerData(self, section, orientation, role=DISPLAY):
        if role == DISPLAY and orientation == HORIZONTAL:
            return self.COLUMNS[section]
        return None

    def _row(self, i: int) -> tuple[str, ...]:
        row = self._rows.get(i)
        if row is None:
            t = self.run.trades[i]
            side = int(t["side"])
            row = (utc_text(int(t["time"])), f"{int(t['bar']):,}", self.run.labels[int(t["label"])],
                   "buy" if side > 0 else "sell" if side < 0 else "", f"{t['price']:,.2f}", f"{t['qty']:.6g}",
                   f"{t['fee']:,.4f}", f"{t['pnl']:,.4f}", f"{t['position']:.6g}")
            self._rows[i] = row
        return row

    def data(self, index, role=DISPLAY):
        if role == DISPLAY:
            return self._row(index.row())[index.column()]
        if role == FOREGROUND:
            i = index.row()
            if i >= self.done:
                return self._GREY
            if index.column() == 7 and self._pnl[i] != 0:
                return self._WIN if self._pnl[i] > 0 else self._LOSS
            return None
        if role == ALIGNMENT and index.column() not in self._LEFT_COLUMNS:
            return self._RIGHT
        return None
