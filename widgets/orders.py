"""Orders tab: open and recent orders across systems, colored by status, filtered, with the
whole lifecycle of one on double-click."""

from __future__ import annotations

import time

from PySide6.QtCore import QAbstractTableModel, QSortFilterProxyModel, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.controller import qty_text
from widgets.columns import choosable_columns
from widgets.roles import ALIGNMENT, BACKGROUND, DISPLAY, FOREGROUND, HORIZONTAL

COLUMNS = [("ts", "Time (UTC)"), ("system", "System"), ("side", "Side"), ("price", "Price"), ("qty", "Qty"),
           ("filled", "Filled"), ("state", "Status"), ("cid", "Client order id")]
# Row tints for what has ended (filled, refused), translucent so the text keeps the theme's
# color on a light or dark base; a working order has no tint (a page of open orders is not one
# yellow block), its status in amber.
_GREEN, _RED = QColor(76, 175, 80, 60), QColor(244, 67, 54, 70)
COLORS = {"filled": _GREEN, "rejected": _RED, "expired": _RED}
STATE_TEXT = {"open": QColor("#f9a825"), "partially_filled": QColor("#f9a825"), "submitted": QColor("#f9a825"),
              "new": QColor("#f9a825"), "pending_cancel": QColor("#f9a825"), "cancelled": QColor("#9e9e9e"),
              "rejected": QColor("#e53935"), "expired": QColor("#e53935"), "filled": QColor("#43a047")}
SIDE_TEXT = {"buy": QColor("#43a047"), "sell": QColor("#e53935")}
SORT = Qt.UserRole + 1  # the raw value a column sorts by (a price as a number, not its text)


class OrdersModel(QAbstractTableModel):
    def __init__(self):
        super().__init__()
        self.rows: list[dict] = []

    def set_rows(self, rows: list[dict]) -> None:
        self.beginResetModel()
        self.rows = sorted(rows, key=lambda r: (not r.get("working"),
                                                -r.get("ts", 0) or 0, -r["price"]))
        self.endResetModel()

    def rowCount(self, parent=None):
        return 0 if parent is not None and parent.isValid() else len(self.rows)

    def columnCount(self, parent=None):
        return len(COLUMNS)

    def headerData(self, section, orientation, role=DISPLAY):
        return COLUMNS[section][1] if role == DISPLAY and orientation == HORIZONTAL else None

    def data(self, index, role=DISPLAY):
        r = self.rows[index.row()]
        key = COLUMNS[index.column()][0]
        if role == DISPLAY:
            v = r.get(key, "")
            if key == "ts":
                return time.strftime("%m-%d %H:%M:%S", time.gmtime(v / 1000)) if v else ""
            if key == "price":
                return f"{v:,.2f}"
            if key in ("qty", "filled"):
                return qty_text(v) if v else "0"
            return str(v)
        if role == BACKGROUND:
            return COLORS.get(r["state"])
        if role == FOREGROUND:
            return SIDE_TEXT.get(r["side"]) if key == "side" else STATE_TEXT.get(r["state"]) if key == "state" \
                else None
        if role == ALIGNMENT and key in ("price", "qty", "filled"):
            return int(Qt.AlignRight | Qt.AlignVCenter)
        if role == SORT:
            return r.get(key, "")
        if role == Qt.UserRole:
            return r
        return None


class OrdersTab(QWidget):
    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.setObjectName("ordersTab")
        self.controller = controller
        self.model = OrdersModel()
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT)
        self.table = QTableView(objectName="ordersTable")
        self.table.setModel(self.proxy)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(-1, Qt.AscendingOrder)  # the model's order (working first, newest) until asked
        self.table.setWordWrap(False)
        head = self.table.horizontalHeader()
        head.setSectionResizeMode(QHeaderView.Interactive)
        head.setStretchLastSection(False)
        for c, width in enumerate((120, 170, 50, 100, 100, 100, 110, 170)):
            head.resizeSection(c, width)
        head.setSectionResizeMode(1, QHeaderView.Stretch)  # the system's name takes the room left
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.column_actions = choosable_columns(self.table)
        self.table.doubleClicked.connect(self.show_details)
        self.system_filter = QComboBox(objectName="ordersSystemFilter")
        self.status_filter = QComboBox(objectName="ordersStatusFilter")
        self.status_filter.addItems(["all", "open", "filled", "cancelled", "rejected"])
        for w in (self.system_filter, self.status_filter):
            w.currentTextChanged.connect(self.refresh)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("System"))
        bar.addWidget(self.system_filter)
        bar.addWidget(QLabel("Status"))
        bar.addWidget(self.status_filter)
        bar.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(self.table)
        controller.tick.connect(self.refresh)
        controller.systemsChanged.connect(self._systems)
        self._systems()
        self._sig = None

    def _systems(self) -> None:
        cur = self.system_filter.currentText()
        self.system_filter.blockSignals(True)
        self.system_filter.clear()
        self.system_filter.addItems(["all"] + [s.name for s in self.controller.systems])
        self.system_filter.setCurrentText(cur or "all")
        self.system_filter.blockSignals(False)

    def refresh(self) -> None:
        if not self.isVisible() and self._sig is not None:
            return
        rows = self.controller.order_rows()
        system, status = self.system_filter.currentText(), self.status_filter.currentText()
        if system not in ("", "all"):
            rows = [r for r in rows if r["system"] == system]
        if status == "open":
            rows = [r for r in rows if r.get("working") or r["state"] == "new"]
        elif status != "all":
            rows = [r for r in rows if r["state"] == status]
        sig = [(r["cid"], r["state"], r["filled"]) for r in rows]
        if sig != self._sig:
            self._sig = sig
            self.model.set_rows(rows)

    def show_details(self, index) -> None:
        r = self.proxy.data(index, Qt.UserRole)
        steps = self.controller.order_history(r["system"], r["cid"])
        lines = [f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(s['ts'] / 1000))}  {s.get('state', s['type']):18} "
                 f"{s.get('note', '')}" for s in steps if "ts" in s]
        fills = [s for s in steps if s["type"] == "fill"]
        lines += [f"fill: {f['qty']:.8g} @ {f['price']:,.2f}, fee {f['fee']:.4f}" for f in fills]
        QMessageBox.information(self, r["cid"], "\n".join(lines) or "no journal entries")
