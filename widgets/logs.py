"""Logs tab: the runtime's structured events as they happen, filtered by level, system and
text, paused and resumed, exported to one JSON file. Events are shown in batches (a few times
a second, one append each): a grid laid by ten systems at once is hundreds of events, and one
append each would hold the GUI thread."""

from __future__ import annotations

import html
import json
import time

from PySide6.QtCore import QTimer
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.store import export_logs

# An event's level, by its name (the rest are "info").
ERRORS = {"error", "system_error", "order_rejected", "cancel_failed", "feed_error", "state_problem", "journal_problem",
          "solvency_check_failed", "liquidation", "order_missing", "position_mismatch", "system_paused",
          "books_mismatch"}
WARNINGS = {"risk_denied", "order_refused", "order_unknown", "fill_outside_grid", "fill_apart_from_grid", "feed_gap",
            "feed_silent", "stream_error", "stream_gap",
            "solvency_haircut", "kill_switch", "paused", "circuit_breaker", "cancel_all", "funding_defaulted"}
LEVELS = {"all levels": ("info", "warning", "error"), "warnings and errors": ("warning", "error"),
          "errors": ("error",)}
KEEP = 20_000  # events kept (and lines shown) at most
ALL_SYSTEMS = "all systems"


LEVEL_COLORS = {"error": "#e53935", "warning": "#f9a825", "info": ""}


def level_of(event: str) -> str:
    return "error" if event in ERRORS else "warning" if event in WARNINGS else "info"


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:.10g}"  # (a price is not 15 digits)
    if isinstance(v, str):
        return v if v and " " not in v and "=" not in v else json.dumps(v)
    return json.dumps(v, default=str)


def event_line(event: str, fields: dict, level: str) -> str:
    """One event as a line: its date and time (UTC), level, name, and its fields as key=value."""
    ts = fields.get("ts")
    when = time.gmtime(ts / 1000 if isinstance(ts, int | float) and ts > 1e11 else time.time())
    rest = " ".join(f"{k}={_value(v)}" for k, v in fields.items() if k != "ts")
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', when)}  {level:7}  {event:18} {rest}"[:500]


class LogsTab(QWidget):
    def __init__(self, controller, parent=None, *, flush_ms: int = 200):
        super().__init__(parent)
        self.setObjectName("logsTab")
        self.controller = controller
        self.view = QPlainTextEdit(objectName="logView")
        self.view.setReadOnly(True)
        self.view.setFont(QFontDatabase.systemFont(QFontDatabase.FixedFont))
        self.view.setLineWrapMode(QPlainTextEdit.NoWrap)
        self.view.setMaximumBlockCount(KEEP)
        self.level = QComboBox(objectName="logLevel")
        self.level.addItems(list(LEVELS))
        self.system = QComboBox(objectName="logSystem")
        self.filter = QLineEdit(objectName="logFilter", placeholderText="filter: event or word")
        self.pause = QPushButton("Pause", objectName="logPause", checkable=True)
        self.pause.setToolTip("stop the view from moving; events are still recorded and shown on resume")
        self.pause.toggled.connect(self._paused)
        for w in (self.level, self.system):
            w.currentTextChanged.connect(self._refilter)
        self.filter.textChanged.connect(self._refilter)
        export = QPushButton("Export logs…", objectName="exportLogs")
        export.clicked.connect(self.export)
        bar = QHBoxLayout()
        bar.addWidget(self.level)
        bar.addWidget(self.system)
        bar.addWidget(self.filter, 1)
        bar.addWidget(self.pause)
        bar.addWidget(export)
        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(self.view)
        self.records: list[tuple[str, str, str]] = []  # (level, system, line)
        self.pending: list[tuple[str, str, str]] = []  # recorded, not shown yet
        self._flush = QTimer(self, interval=flush_ms)
        self._flush.timeout.connect(self.flush)
        self._flush.start()
        controller.logEvent.connect(self.add)
        controller.systemsChanged.connect(self._systems)
        self._systems()

    def _systems(self) -> None:
        cur = self.system.currentText() or ALL_SYSTEMS
        self.system.blockSignals(True)
        self.system.clear()
        self.system.addItems([ALL_SYSTEMS, *(s.name for s in self.controller.systems)])
        self.system.setCurrentText(cur)
        self.system.blockSignals(False)

    def add(self, event: str, fields: dict) -> None:
        level = level_of(event)
        self.pending.append((level, str(fields.get("system", "")), event_line(event, fields, level)))

    def _shown(self, rec: tuple[str, str, str]) -> bool:
        level, system, line = rec
        sys_ = self.system.currentText()
        text = self.filter.text().lower()
        return (level in LEVELS[self.level.currentText()] and (sys_ in (ALL_SYSTEMS, "") or system == sys_)
                and (not text or text in line.lower()))

    def flush(self) -> None:
        """What came since the last flush: recorded, and shown (one append) unless paused."""
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        self.records.extend(batch)
        del self.records[:-KEEP]
        if not self.pause.isChecked():
            shown = [r for r in batch if self._shown(r)]
            if shown:
                self.view.appendHtml(_html(shown[-KEEP:]))

    def _paused(self, on: bool) -> None:
        self.pause.setText("Resume" if on else "Pause")
        if not on:
            self._refilter()

    def _refilter(self, *_) -> None:
        self.flush()
        self.view.clear()
        shown = [r for r in self.records if self._shown(r)]
        if shown:
            self.view.appendHtml(_html(shown))
        self.view.moveCursor(self.view.textCursor().MoveOperation.End)

    def export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export logs", "griddesk-logs.json", "JSON (*.json)")
        if path:
            n, problems = export_logs(self.controller.data_dir / "logs", path)
            self.controller.events.log("logs_exported", path=path, events=n, problems=len(problems))


def _html(records) -> str:
    """Lines as they are (spaces kept), errors in red and warnings in amber."""
    out = []
    for level, _, line in records:
        color = LEVEL_COLORS[level]
        style = f"white-space:pre;color:{color}" if color else "white-space:pre"
        out.append(f"<span style='{style}'>{html.escape(line)}</span>")
    return "<br>".join(out)
