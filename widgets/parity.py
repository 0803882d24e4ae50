"""The parity report of a running system (engine/parity.py, through the controller): its figures
over a table of every difference, in a window of its own beside the Grid tab."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFontDatabase
from PySide6.QtWidgets import QDialog, QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout

from engine.data import utc_text
from engine.parity import KINDS

COLUMNS = ("Candle (UTC)", "Level", "Difference", "Money", "The system", "The backtest")
PERP_COLUMNS = ("Candle (UTC)", "What", "Difference", "Money", "The system", "The backtest")


class ParityDialog(QDialog):
    def __init__(self, report, parent=None):
        super().__init__(parent, objectName="parityDialog", windowTitle=f"Parity: {report.system}")
        self.report = report
        head = report.text(limit=0).splitlines()[1:]
        self.heading = QLabel("\n".join(line.strip() for line in head if line.strip()), objectName="parityHeading")
        self.heading.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.heading.setFont(QFontDatabase.systemFont(QFontDatabase.FixedFont))  # (its columns line up)
        self.table = QTableWidget(len(report.differences), len(COLUMNS), objectName="parityTable")
        perp = any((d.system or d.backtest) and (d.system or d.backtest).label for d in report.differences)
        self.table.setHorizontalHeaderLabels(PERP_COLUMNS if perp else COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        for r, d in enumerate(report.differences):
            f = d.system or d.backtest
            what = f.label if f is not None and f.label else "" if f is None else str(d.level)
            cells = (utc_text(d.time), what, d.kind, f"{d.money:+,.2f}",
                     d.system.text() if d.system else "—", d.backtest.text() if d.backtest else "—")
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setTextAlignment((Qt.AlignRight if c in (1, 3) else Qt.AlignLeft) | Qt.AlignVCenter)
                if c == 2:
                    item.setToolTip(KINDS.get(d.kind, "both filled it, another " + d.kind.replace(", ", " and ")))
                if c == 3 and abs(d.money) >= 0.005:  # (what shows as -0.00 is not coloured a loss)
                    item.setForeground(QColor("#2e7d32") if d.money > 0 else QColor("#c62828"))
                self.table.setItem(r, c, item)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        lay = QVBoxLayout(self)
        lay.addWidget(self.heading)
        lay.addWidget(self.table, 1)
        lay.addWidget(QLabel("Money: what the difference adds to the system's equity at the last close, minus what "
                             "it adds to the backtest's; together they are the gap between the two.", wordWrap=True))
        self.resize(1100, 520)
