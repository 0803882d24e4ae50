"""Assistant tab: questions about the portfolio, answered by a Claude model that sees the systems
only through read-only tools (engine/runtime/assistant.py, through the controller). It never
places or cancels an order, and says so; without an Anthropic API key the tab says how to add one."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from widgets.tasks import when_done

NOTE = ("Ask about your systems, their results, their risk or a backtest of their settings. The assistant reads "
        "what the Market, Orders and Risk tabs show and may run a backtest; it never places, changes or cancels "
        "an order, and never touches a switch.")
NO_KEY = ("The assistant needs an Anthropic API key (console.anthropic.com, API keys). Add one here: it is kept in "
          "the OS keyring, never in a file. Or start GridDesk with ANTHROPIC_API_KEY set.")
EXAMPLES = ("How are my systems doing?", "Which system is closest to its liquidation price?",
            "Backtest BTC sample grid and compare it with buy and hold.")


class AssistantTab(QWidget):
    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.note = QLabel(NOTE, wordWrap=True, objectName="assistantNote")
        self.no_key = QLabel(NO_KEY, wordWrap=True, objectName="assistantNoKey")
        self.add_key = QPushButton("Add API key…", objectName="assistantAddKey")
        self.add_key.clicked.connect(self.ask_key)
        self.transcript = QTextBrowser(objectName="assistantTranscript")
        self.transcript.setOpenExternalLinks(False)
        self.question = QLineEdit(objectName="assistantQuestion", placeholderText=EXAMPLES[0])
        self.question.returnPressed.connect(self.send)
        self.send_button = QPushButton("Ask", objectName="assistantAsk")
        self.send_button.clicked.connect(self.send)
        row = QHBoxLayout()
        row.addWidget(self.question, 1)
        row.addWidget(self.send_button)
        keys = QHBoxLayout()
        keys.addWidget(self.no_key, 1)
        keys.addWidget(self.add_key, 0, Qt.AlignRight)
        lay = QVBoxLayout(self)
        lay.addWidget(self.note)
        lay.addLayout(keys)
        lay.addWidget(self.transcript, 1)
        lay.addLayout(row)
        self.entries: list[str] = []  # the conversation, as HTML paragraphs
        self.busy = False
        self.refresh()

    def refresh(self) -> None:
        has = self.controller.has_assistant_key()
        self.no_key.setVisible(not has)
        self.add_key.setText("Replace API key…" if has else "Add API key…")
        self.question.setEnabled(has and not self.busy)
        self.send_button.setEnabled(has and not self.busy)
        self._render()

    def _render(self) -> None:
        """The conversation (or the examples before it starts), and a line while the answer comes."""
        if not self.entries:
            parts = ["<p style='color:#888'>For example: " + " · ".join(map(html.escape, EXAMPLES)) + "</p>"]
        else:
            parts = list(self.entries)
        if self.busy:
            parts.append("<p style='color:#888'><i>looking it up…</i></p>")
        self.transcript.setHtml("".join(parts))
        bar = self.transcript.verticalScrollBar()
        bar.setValue(bar.maximum())

    def ask_key(self) -> None:
        key, ok = QInputDialog.getText(self, "Anthropic API key", "API key (kept in the OS keyring):",
                                       QLineEdit.Password)
        if not ok or not key.strip():
            return
        try:
            self.controller.store_assistant_key(key)
        except Exception as exc:  # (SecretsError: no keyring, with what to install)
            QMessageBox.warning(self, "Anthropic API key", str(exc))
            return
        self.refresh()

    def _add(self, who: str, text: str, color: str = "") -> None:
        style = f" style='color:{color}'" if color else ""
        self.entries.append(f"<p{style}><b>{who}:</b> {html.escape(text).replace(chr(10), '<br>')}</p>")

    def send(self) -> None:
        q = self.question.text().strip()
        if not q or self.busy:
            return
        self._add("You", q)
        self.question.clear()
        self.busy = True
        self.refresh()
        when_done(self, self.controller.ask(q), self._answer, self._failed)

    def _answer(self, reply) -> None:
        self._add("Assistant", reply.text, "#c62828" if reply.error else "")
        if reply.tools:
            self.entries.append(f"<p style='color:#888'>(looked at: {html.escape(', '.join(reply.tools))})</p>")
        self.busy = False
        self.refresh()
        self.question.setFocus()

    def _failed(self, exc: Exception) -> None:
        self._add("Assistant", f"{type(exc).__name__}: {exc}", "#c62828")
        self.busy = False
        self.refresh()
