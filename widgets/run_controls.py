"""The controls under a long piece of work (a backtest, an optimizer search): Run and Cancel
side by side, a progress bar, a status line. Run is never live while the work is, nor
Cancel after it (``start``, ``finish``)."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QSizePolicy, QVBoxLayout, QWidget


class RunControls(QWidget):
    def __init__(self, name: str, run_text: str, cancel_text: str, *, run_id: str = "", cancel_tip: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run_button = QPushButton(run_text, objectName=run_id or f"{name}Run")
        self.cancel_button = QPushButton(cancel_text, objectName=f"{name}Cancel", enabled=False,
                                         toolTip=cancel_tip)
        self.progress = QProgressBar(objectName=f"{name}Progress", textVisible=True)
        self.status = QLabel(objectName=f"{name}Status", wordWrap=True)
        self.status.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)  # long text wraps, never widens
        row = QHBoxLayout()
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(row)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        self.finish()

    def start(self, what: str = "") -> None:
        """Work started: the bar busy, with ``what`` on it, until ``show_progress``."""
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)
        self.progress.setFormat(what)

    def finish(self, clear: bool = True) -> None:
        """Work ended; ``clear=False`` leaves the bar at how far it went."""
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if clear:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.progress.setFormat("")

    def show_progress(self, done: int, total: int, text: str) -> None:
        """``text``: the bar's format (``%v`` done, ``%m`` total)."""
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(min(done, total))
        self.progress.setFormat(text)
