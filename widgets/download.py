"""The Backtest tab's "Download…": which candles to fetch from an exchange (the controller
fetches them)."""

from __future__ import annotations

from PySide6.QtCore import QDateTime
from PySide6.QtWidgets import QComboBox, QDateTimeEdit, QDialog, QDialogButtonBox, QFormLayout, QLineEdit

from engine.data import TIMEFRAMES_MS
from widgets.transport import UTC


class DownloadDialog(QDialog):
    def __init__(self, parent=None, exchanges=("binance",)):
        super().__init__(parent)
        self.setObjectName("downloadDialog")
        self.setWindowTitle("Download candles")
        self.exchange = QComboBox(objectName="downloadExchange", editable=True)
        self.exchange.addItems(list(exchanges))
        self.exchange.setCurrentText("binance")
        self.symbol = QLineEdit("BTC/USDT", objectName="downloadSymbol")
        self.timeframe = QComboBox(objectName="downloadTimeframe")
        self.timeframe.addItems(list(TIMEFRAMES_MS))
        self.timeframe.setCurrentText("1h")
        now = QDateTime.currentDateTimeUtc()
        self.since = QDateTimeEdit(now.addDays(-90), objectName="downloadSince", calendarPopup=True)
        self.until = QDateTimeEdit(now, objectName="downloadUntil", calendarPopup=True)
        for w in (self.since, self.until):
            w.setTimeZone(UTC)
            w.setDisplayFormat("yyyy-MM-dd HH:mm 'UTC'")
        f = QFormLayout(self)
        for label, w in (("Exchange", self.exchange), ("Symbol", self.symbol), ("Timeframe", self.timeframe),
                         ("From", self.since), ("To", self.until)):
            f.addRow(label, w)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        f.addRow(buttons)

    def request(self) -> tuple[str, str, str, int, int]:
        return (self.exchange.currentText().strip(), self.symbol.text().strip(), self.timeframe.currentText(),
                self.since.dateTime().toMSecsSinceEpoch(), self.until.dateTime().toMSecsSinceEpoch())
