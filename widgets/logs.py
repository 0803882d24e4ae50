"""Logs tab: the runtime's structured events as they happen, filtered by level, system and
text, paused and resumed, exported to one JSON file. Events are shown in batches (a few times
a second, one append each): a grid laid by ten systems at once is hundreds of events, and one
append each would hold the GUI thread. The view is a list over the kept lines (only those in
sight are drawn): a text document of 20,000 coloured lines took ~3 KB a line, and the app grew
by 230 MB over an hour of trading until it was full."""

from __future__ import annotations

import json
import time

from PySide6.QtCore import QAbstractListModel, QModelIndex, QTimer
from PySide6.QtGui import QColor, QFontDatabase, QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLineEdit,
    QListView,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.store import export_logs
from widgets.roles import DISPLAY, FOREGROUND

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


class LogLines(QAbstractListModel):
    """The lines shown, the last KEEP: (level, system, line) each, errors red, warnings amber."""

    def __init__(self):
        super().__init__()
        self.lines: list[tuple[str, str, str]] = []
        self._colors = {level: QColor(c) for level, c in LEVEL_COLORS.items() if c}

    def rowCount(self, parent=None):
        return 0 if parent is not None and parent.isValid() else len(self.lines)

    def data(self, index, role=DISPLAY):
        level, _, line = self.lines[index.row()]
        if role == DISPLAY:
            return line
        if role == FOREGROUND:
            return self._colors.get(level)
        return None

    def append(self, records: list) -> None:
        records = records[-KEEP:]
        drop = min(len(self.lines), len(self.lines) + len(records) - KEEP)
        if drop > 0:
            self.beginRemoveRows(QModelIndex(), 0, drop - 1)
            del self.lines[:drop]
            self.endRemoveRows()
        if records:
            self.beginInsertRows(QModelIndex(), len(self.lines), len(self.lines) + len(records) - 1)
            self.lines.extend(records)
            self.endInsertRows()

    def reset(self, records: list) -> None:
        self.beginResetModel()
        self.lines = list(records[-KEEP:])
        self.endResetModel()


class LogsTab(QWidget):
    def __init__(self, controller, parent=None, *, flush_ms: int = 200):
        super().__init__(parent)
        self.setObjectName("logsTab")
        self.controller = controller
        self.lines = LogLines()
        self.view = QListView(objectName="logView")
        self.view.setModel(self.lines)
        self.view.setFont(QFontDatabase.systemFont(QFontDatabase.FixedFont))
        self.view.setUniformItemSizes(True)  # (one line each: no row measured)
        self.view.setWordWrap(False)
        self.view.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.view.setEditTriggers(QAbstractItemView.NoEditTriggers)
        QShortcut(QKeySequence.Copy, self.view, self.copy)
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
                bar = self.view.verticalScrollBar()
                at_end = bar.value() >= bar.maximum()
                self.lines.append(shown)
                if at_end:  # (kept where it is when the user scrolled up to read)
                    self.view.scrollToBottom()

    def _paused(self, on: bool) -> None:
        self.pause.setText("Resume" if on else "Pause")
        if not on:
            self._refilter()

    def _refilter(self, *_) -> None:
        self.flush()
        self.lines.reset([r for r in self.records if self._shown(r)])
        self.view.scrollToBottom()

    def text(self) -> str:
        """The lines shown, as text."""
        return "\n".join(line for _, _, line in self.lines.lines)

    def copy(self) -> None:
        """The selected lines to the clipboard (Ctrl+C)."""
        rows = sorted(i.row() for i in self.view.selectionModel().selectedIndexes())
        QGuiApplication.clipboard().setText("\n".join(self.lines.lines[r][2] for r in rows))

    def export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export logs", "griddesk-logs.json", "JSON (*.json)")
        if path:
            n, problems = export_logs(self.controller.data_dir / "logs", path)
            self.controller.events.log("logs_exported", path=path, events=n, problems=len(problems))

