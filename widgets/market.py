"""Market tab: the table of systems (model/view), Add System, ON/OFF, edit, duplicate, remove."""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import QAbstractTableModel, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.controller import running_text
from widgets.columns import choosable_columns
from widgets.roles import ALIGNMENT, DISPLAY, FOREGROUND, HORIZONTAL, TOOLTIP
from widgets.system_dialog import SystemDialog
from widgets.tasks import when_done

COLUMNS = [
    ("name", "Name"), ("venue", "Exchange"), ("symbol", "Symbol"), ("strategy", "Strategy"), ("mode", "Mode"),
    ("status", "Status"), ("trend", "Trend"), ("running_ms", "Running"), ("investment", "Investment"),
    ("total_pnl", "Total PnL"), ("roi", "ROI"), ("apr", "APR"), ("round_trips", "Grids done"),
    ("grid_profit", "Grid profit"), ("floating", "Floating PnL"), ("funding", "Funding"), ("position", "Position"),
]
TIPS = {
    "total_pnl": "equity less the investment: grid profit, floating PnL, funding and fees together",
    "roi": "total PnL / investment", "running_ms": "since the candle the grid started at",
    "apr": "annualized as the exchanges' grid bots do: ROI / running days x 365 (shown after a day)",
    "round_trips": "completed grids: a buy sold one level up (a perpetual's lot closed by its take-profit); "
                   "per day in the tooltip",
}
WIDEST = {  # what a column must have room for before any system has run
    "running_ms": "99d 23h", "investment": "100,000.00", "total_pnl": "+10,000.00", "roi": "+100.00%",
    "apr": "+1,000.00%", "round_trips": "10,000", "grid_profit": "+10,000.00", "floating": "+10,000.00",
    "funding": "+1,000.00", "position": "0.00123456",
}
MONEY = ("investment", "total_pnl", "grid_profit", "floating", "funding")
SIGNED = ("total_pnl", "roi", "apr", "grid_profit", "floating", "funding")
STATUS_COLORS = {"OFF": "#888888", "PREPARING": "#d08700", "STARTING": "#d08700", "PAUSED": "#c62828",
                 "VOL-SPIKE": "#d08700", "ERROR": "#c62828"}


class SystemsModel(QAbstractTableModel):
    def __init__(self, controller):
        super().__init__()
        self.controller = controller
        self.rows: list[dict] = []
        self.refresh()

    def refresh(self) -> None:
        new = self.controller.system_rows()
        if [r["name"] for r in new] != [r["name"] for r in self.rows]:
            self.beginResetModel()
            self.rows = new
            self.endResetModel()
        else:
            self.rows = new
            if new:
                self.dataChanged.emit(self.index(0, 0), self.index(len(new) - 1, len(COLUMNS) - 1))

    def rowCount(self, parent=None):
        return 0 if parent is not None and parent.isValid() else len(self.rows)

    def columnCount(self, parent=None):
        return len(COLUMNS)

    def headerData(self, section, orientation, role=DISPLAY):
        if role == DISPLAY and orientation == HORIZONTAL:
            return COLUMNS[section][1]
        return None

    def data(self, index, role=DISPLAY):
        row = self.rows[index.row()]
        key = COLUMNS[index.column()][0]
        v = row.get(key)
        if role == DISPLAY:
            return self._text(row, key, v)
        if role == TOOLTIP:
            if key == "status":
                return row["reason"] or row["status"]
            if key == "round_trips" and row.get("round_trips_per_day") is not None:
                return (f"{row['round_trips_per_day']:,.1f} a day; "
                        f"{row['fills']:,} fills ({row['fills_per_day']:,.1f} a day)")
            return TIPS.get(key)
        if role == FOREGROUND:
            if key == "trend":
                return QColor({"UP": "#2e7d32", "DOWN": "#c62828"}.get(v, "#888888"))
            if key == "status":
                return QColor(STATUS_COLORS.get(v, "#2e7d32"))
            if key in SIGNED and v:
                return QColor("#2e7d32" if v > 0 else "#c62828")
        if role == ALIGNMENT and key in (*MONEY, "roi", "apr", "round_trips", "running_ms", "position"):
            return int(Qt.AlignRight | Qt.AlignVCenter)
        return None

    @staticmethod
    def _text(row: dict, key: str, v) -> str:
        if key == "venue":
            return f"{row['exchange']} {row['market']}"
        if key == "mode":
            return f"{row['mode']}, dry-run" if row["dry_run"] else row["mode"]
        if key == "status":
            return f"PAUSED: {row['reason']}" if v == "PAUSED" and row["reason"] else str(v)
        if key == "investment":
            return f"{row['capital']:,.2f}"
        if v is None:  # not started yet (or not for an hour: no annualized figure)
            return "—"
        if key == "position":
            return f"{v:.6g}"
        if key in MONEY:
            return f"{v:+,.2f}" if key in SIGNED else f"{v:,.2f}"
        if key in ("roi", "apr"):
            return f"{v:+.2%}"
        if key == "running_ms":
            return running_text(v)
        return f"{v:,}" if isinstance(v, int) else str(v)


class MarketTab(QWidget):
    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.setObjectName("marketTab")
        self.controller = controller
        self.model = SystemsModel(controller)
        self.table = QTableView(objectName="systemsTable")
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Interactive)
        # (not stretched: a position at the far edge of a wide window was hard to read)
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.verticalHeader().setVisible(False)
        self.column_actions = choosable_columns(self.table)  # (a narrow screen: hide what is not wanted)
        self.table.doubleClicked.connect(lambda _: self.edit_system())
        buttons = QHBoxLayout()
        for name, text, slot in (("addSystemButton", "Add System…", self.add_system),
                                 ("toggleSystemButton", "ON / OFF", self.toggle_system),
                                 ("editSystemButton", "Edit…", self.edit_system),
                                 ("duplicateSystemButton", "Duplicate", self.duplicate_system),
                                 ("removeSystemButton", "Remove…", self.remove_system),
                                 ("apiKeysButton", "API keys…", self.api_keys)):
            b = QPushButton(text, objectName=name)
            b.clicked.connect(slot)
            buttons.addWidget(b)
            setattr(self, name, b)
        buttons.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addLayout(buttons)
        lay.addWidget(self.table)
        controller.systemsChanged.connect(self.model.refresh)
        controller.tick.connect(self.model.refresh)
        self.fit_columns()
        if self.model.rows:
            self.table.selectRow(0)

    def fit_columns(self) -> None:
        """Each column as wide as what it holds or will hold (the widths the user sets are kept by
        the window)."""
        self.table.resizeColumnsToContents()
        fm = self.table.fontMetrics()
        for c, (key, _) in enumerate(COLUMNS):
            if key in WIDEST:
                self.table.setColumnWidth(c, max(self.table.columnWidth(c), fm.horizontalAdvance(WIDEST[key]) + 16))

    def selected(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return self.model.rows[rows[0].row()]["name"] if rows else None

    def add_system(self) -> None:
        dlg = SystemDialog(self, existing={s.name for s in self.controller.systems}, symbols=self.controller.symbols,
                           exchanges=self.controller.exchanges(), prices=self.controller.last_price,
                           suggest=self.controller.suggest)
        if dlg.exec():
            self.controller.add_system(dlg.result_config)
            self.table.selectRow(len(self.model.rows) - 1)

    def toggle_system(self) -> None:
        name = self.selected()
        if name is not None:
            self.controller.set_on(name, not self.controller.is_on(name))
            self.model.refresh()

    def edit_system(self) -> None:
        name = self.selected()
        if name is None:
            return
        if self.controller.is_on(name):
            QMessageBox.information(self, "Edit system", f"{name} is running. Switch it OFF first, then edit it.")
            return
        cfg = self.controller.system(name)
        dlg = SystemDialog(self, cfg, existing={s.name for s in self.controller.systems} - {name},
                           symbols=self.controller.symbols, prices=self.controller.last_price,
                           exchanges=self.controller.exchanges(), suggest=self.controller.suggest)
        if dlg.exec():
            self.controller.replace_system(name, dlg.result_config)

    def duplicate_system(self) -> None:
        name = self.selected()
        if name is None:
            return
        cfg = self.controller.system(name)
        names = {s.name for s in self.controller.systems}
        n = 2
        while f"{name} ({n})" in names:
            n += 1
        copy = dataclasses.replace(cfg, name=f"{name} ({n})", id="", enabled=False, dry_run=True,
                                   params=dict(cfg.params))
        copy.__post_init__()
        self.controller.add_system(copy)

    def api_keys(self) -> None:
        dlg = KeysDialog(self.controller, self)
        if dlg.exec():
            try:
                self.controller.store_keys(dlg.exchange.currentText(), dlg.key.text().strip(),
                                           dlg.secret.text().strip())
            except RuntimeError as exc:
                QMessageBox.warning(self, "API keys", str(exc))
                return
            QMessageBox.information(self, "API keys", f"Keys for {dlg.exchange.currentText()} are in the OS keyring.")

    def remove_system(self) -> None:
        name = self.selected()
        if name is None:
            return
        box = QMessageBox(QMessageBox.Question, "Remove system",
                          f"Remove {name}? What should happen to its resting orders?", parent=self)
        cancel_btn = box.addButton("Cancel its orders, then remove", QMessageBox.DestructiveRole)
        keep_btn = box.addButton("Leave them on the exchange", QMessageBox.AcceptRole)
        box.addButton(QMessageBox.Cancel)
        box.exec()
        if box.clickedButton() in (cancel_btn, keep_btn):
            self.controller.spawn(self.controller.remove_system(name, box.clickedButton() is cancel_btn))


class KeysDialog(QDialog):
    """API key and secret for an exchange, stored in the OS keyring (never shown again): whether
    a key is stored, and a test of the connection (the account's balance) with the keys typed,
    or the stored ones."""

    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.setObjectName("keysDialog")
        self.setWindowTitle("API keys")
        self.exchange = QComboBox(objectName="keysExchange")
        self.exchange.setEditable(True)
        self.exchange.addItems(controller.exchanges())
        self.exchange.setCurrentText("binance")
        self.market = QComboBox(objectName="keysMarket")
        self.market.addItems(["spot", "perpetual"])
        self.market.setToolTip("the account to test: spot, or USDT-M futures")
        self.stored = QLabel(objectName="keysStored")
        self.key = QLineEdit(objectName="keysApiKey")
        self.secret = QLineEdit(objectName="keysSecret")
        for w in (self.key, self.secret):
            w.setEchoMode(QLineEdit.Password)
        self.test_button = QPushButton("Test connection", objectName="keysTest")
        self.test_button.clicked.connect(self.test_connection)
        self.result = QLabel(objectName="keysResult")
        self.result.setWordWrap(True)
        form = QFormLayout(self)
        form.addRow("Exchange", self.exchange)
        form.addRow("", self.stored)
        form.addRow("API key", self.key)
        form.addRow("Secret", self.secret)
        form.addRow("Account", self.market)
        form.addRow(self.test_button, self.result)
        buttons = QDialogButtonBox(QDialogButtonBox.Save | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.exchange.currentTextChanged.connect(self.show_stored)
        self.show_stored()

    def show_stored(self, *_) -> None:
        ex = self.exchange.currentText().strip()
        self.stored.setText(f"a key for {ex} is stored (typing new ones replaces it)" if self.controller.has_keys(ex)
                            else f"no key stored for {ex}")

    def test_connection(self) -> None:
        ex, market = self.exchange.currentText().strip(), self.market.currentText()
        coro = self.controller.test_connection(ex, market, self.key.text().strip(), self.secret.text().strip())
        if when_done(self, coro, self._tested, lambda exc: self._tested(f"failed: {exc}", ok=False)):
            self.test_button.setEnabled(False)
            self.result.setText(f"asking {ex} for the account's balance…")
        else:
            self.result.setText("the app's loop is not running")

    def _tested(self, text: str, ok: bool = True) -> None:
        self.test_button.setEnabled(True)
        self.result.setStyleSheet("" if ok else "color: #c62828")
        self.result.setText(text)
