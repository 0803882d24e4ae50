"""The stress test's figures (engine/stress.py, through the controller): one row per scenario, in
a window of their own beside the Backtest tab."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout

from engine.stress import EXPLAINED
from engine.stress import SUMMARY_COLUMNS as COLUMNS


class StressDialog(QDialog):
    def __init__(self, rows: list[dict], title: str, parent=None):
        super().__init__(parent, objectName="stressDialog", windowTitle=f"Stress test: {title}")
        self.table = QTableWidget(len(rows), len(COLUMNS), objectName="stressTable")
        self.table.setHorizontalHeaderLabels([c[1] for c in COLUMNS])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        for r, row in enumerate(rows):
            for c, (key, _, fmt) in enumerate(COLUMNS):
                item = QTableWidgetItem(fmt.format(row[key]))
                item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter if c else Qt.AlignLeft | Qt.AlignVCenter)
                self.table.setItem(r, c, item)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.heading = QLabel(title, wordWrap=True, objectName="stressHeading")
        lay = QVBoxLayout(self)
        lay.addWidget(self.heading)
        lay.addWidget(self.table, 1)
        lay.addWidget(QLabel(EXPLAINED, wordWrap=True))
        self.resize(820, 300)
