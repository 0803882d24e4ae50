"""Risk tab: the kill switch (one large control, Ctrl+K), cancel-all, dry-run, limits and the
audit trail of every denial."""

from __future__ import annotations

import html
import time

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.risk import PAPER

# A red control either way: ready to stop everything (red), or engaged (dark, ringed in red).
KILL_OFF_STYLE = ("QPushButton { background: #c62828; color: white; font-size: 20px; font-weight: bold; padding: 18px;"
                  " border: 2px solid #8e0000; }")
KILL_ON_STYLE = ("QPushButton { background: #3b0d0d; color: #ff8a80; font-size: 20px; font-weight: bold; padding: 18px;"
                 " border: 3px solid #ff1744; }")


class RiskTab(QWidget):
    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.setObjectName("riskTab")
        self.controller = controller
        self.kill_button = QPushButton(objectName="killSwitch")
        self.kill_button.setCheckable(True)
        self.kill_button.setToolTip("Stop every new order at once (Ctrl+K). Resting orders stay.")
        self.kill_button.clicked.connect(self._kill_clicked)
        self.cancel_all_button = QPushButton("Cancel all our orders…", objectName="cancelAllButton")
        self.cancel_all_button.clicked.connect(self.cancel_all)
        self.dry_run_all = QCheckBox("Dry-run for every system", objectName="dryRunAll")
        self.dry_run_all.toggled.connect(lambda on: controller.set_dry_run(on))
        top = QHBoxLayout()
        top.addWidget(self.kill_button, 3)
        side = QVBoxLayout()
        side.addWidget(self.cancel_all_button)
        side.addWidget(self.dry_run_all)
        top.addLayout(side, 1)

        limits = QGroupBox("Limits")
        form = QFormLayout(limits)
        lim = controller.risk.limits
        self.limit_fields = {}
        for name, label, lo, hi, dec in (
                ("max_symbol_notional", "Exposure per symbol (quote, 0 = none)", 0, 1e12, 2),
                ("max_total_notional", "Total exposure (quote, 0 = none)", 0, 1e12, 2),
                ("max_symbol_share", "Exposure per symbol (share of the account, 0 = none)", 0, 100, 2),
                ("max_total_share", "Total exposure (share of the account, 0 = none)", 0, 100, 2),
                ("paper_portfolio", "Paper account (quote)", 1, 1e12, 2),
                ("max_spread", "Widest spread (fraction)", 0.0001, 1, 4),
                ("max_deviation", "Market order slippage limit (fraction)", 0.0001, 1, 4),
                ("atr_jump", "ATR jump that pauses a grid (fraction)", 0.01, 10, 2)):
            w = QDoubleSpinBox(objectName=f"limit_{name}")
            w.setFixedWidth(180)  # (a number, not a 1,000-pixel box)
            w.setRange(lo, hi)
            w.setDecimals(dec)
            v = getattr(lim, name)
            w.setValue(0 if v == float("inf") else v)
            w.editingFinished.connect(lambda n=name, w=w: self._set_limit(n, w.value()))
            form.addRow(label, w)
            self.limit_fields[name] = w

        self.portfolio = QLabel(objectName="portfolioLabel")
        self.portfolio.setToolTip("What the shares are of: the paper account, and each live account's holdings "
                                  "(quote plus the traded coins at their last price), measured every minute")
        form.addRow("Accounts", self.portfolio)
        self.exposure = QLabel(objectName="exposureLabel", wordWrap=True, textFormat=Qt.RichText)
        self.exposure.setToolTip("Each symbol's and the total exposure (positions and resting buys, in quote) "
                                 "against its tightest limit; red from 90% of it")
        form.addRow("Exposure now", self.exposure)

        self.audit = QTableWidget(0, 5, objectName="auditTable")
        self.audit.setHorizontalHeaderLabels(["Time (UTC)", "System", "Order", "Rule", "Reason"])
        self.audit.horizontalHeader().setStretchLastSection(True)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(limits)
        lay.addWidget(QLabel("Denied orders"))
        lay.addWidget(self.audit)
        controller.riskChanged.connect(self.refresh)
        controller.tick.connect(self.refresh_audit)
        self._audit_len = -1
        self.refresh()

    def _set_limit(self, name: str, value: float) -> None:
        setattr(self.controller.risk.limits, name, value if value > 0 else float("inf"))

    def _kill_clicked(self, checked: bool) -> None:
        if checked:
            self.controller.set_kill(True)
            return
        ok = QMessageBox.question(self, "Kill switch", "Turn the kill switch OFF and let the systems send orders "
                                  "again?", QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        if ok == QMessageBox.Yes:
            self.controller.set_kill(False)
        self.refresh()

    def cancel_all(self) -> None:
        n = self.controller.open_order_count()
        ok = QMessageBox.question(self, "Cancel all our orders",
                                  f"Pause every system, then cancel our {n:,} resting order{'s' if n != 1 else ''}? "
                                  "The systems stay paused (no order at all) until you switch them off and on. "
                                  "(Orders that are not ours are never touched.)", QMessageBox.Yes | QMessageBox.No,
                                  QMessageBox.No)
        if ok == QMessageBox.Yes:
            self.controller.spawn(self.controller.cancel_all())

    def refresh(self) -> None:
        on = self.controller.risk.kill_all
        self.kill_button.setChecked(on)
        self.kill_button.setText("KILL SWITCH ON — no new orders (click to release)" if on
                                 else "KILL SWITCH (Ctrl+K)")
        self.kill_button.setStyleSheet(KILL_ON_STYLE if on else KILL_OFF_STYLE)
        self.dry_run_all.blockSignals(True)
        self.dry_run_all.setChecked(self.controller.risk.dry_run_all)
        self.dry_run_all.blockSignals(False)

    def refresh_audit(self) -> None:
        risk = self.controller.risk
        accounts = [PAPER, *sorted({risk.account(n) for n in self.controller.runner.traders} - {PAPER})]
        text = " · ".join(f"{a}: {'not measured yet' if v is None else f'{v:,.2f}'}"
                          for a, v in ((a, risk.portfolio(a)) for a in accounts))
        if text != self.portfolio.text():
            self.portfolio.setText(text)
        parts = []
        for what, used, limit, words in risk.exposure_in_sight():
            share = used / limit if limit > 0 else 1.0
            text = html.escape(f"{what} {used:,.2f} of {limit:,.2f} ({share:.0%}; {words})")
            parts.append(f"<span style='color:#e53935'>{text}</span>" if share >= 0.9 else text)
        exposure = "<br>".join(parts) or "nothing held or resting"
        if exposure != self.exposure.text():
            self.exposure.setText(exposure)
        rows = list(risk.audit)
        if len(rows) == self._audit_len:
            return
        self._audit_len = len(rows)
        rows = rows[-500:][::-1]
        self.audit.setRowCount(len(rows))
        for i, d in enumerate(rows):
            for j, v in enumerate((time.strftime("%H:%M:%S", time.gmtime(d.ts / 1000)), d.system, d.client_order_id,
                                   d.rule, d.reason)):
                self.audit.setItem(i, j, QTableWidgetItem(v))
