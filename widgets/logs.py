"""Logs tab: the runtime's structured events as they happen, filterable, exportable."""

from __future__ import annotations

import json
import time

from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLineEdit, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from engine.store import export_logs


class LogsTab(QWidget):
    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.setObjectName("logsTab")
        self.controller = controller
        self.view = QPlainTextEdit(objectName="logView")
        self.view.setReadOnly(True)
        self.view.setMaximumBlockCount(20_000)
        self.filter = QLineEdit(objectName="logFilter", placeholderText="filter: system, event or word")
        self.filter.textChanged.connect(self._refilter)
        export = QPushButton("Export logs…", objectName="exportLogs")
        export.clicked.connect(self.export)
        bar = QHBoxLayout()
        bar.addWidget(self.filter)
        bar.addWidget(export)
        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(self.view)
        self.lines: list[str] = []
        controller.logEvent.connect(self.add)

    def add(self, event: str, fields: dict) -> None:
        line = f"{time.strftime('%H:%M:%S')}  {event:18} " + json.dumps(fields, default=str)[:400]
        self.lines.append(line)
        del self.lines[:-20_000]
        f = self.filter.text().lower()
        if not f or f in line.lower():
            self.view.appendPlainText(line)

    def _refilter(self, text: str) -> None:
        f = text.lower()
        self.view.setPlainText("\n".join(line for line in self.lines if f in line.lower()))

    def export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export logs", "griddesk-logs.json", "JSON (*.json)")
        if path:
            n, problems = export_logs(self.controller.data_dir / "logs", path)
            self.controller.events.log("logs_exported", path=path, events=n, problems=len(problems))
