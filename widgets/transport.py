"""The replay's transport: a full-width timeline with the run's trades marked on it (as
MetaTrader's visual tester and TradingView's bar replay have), and under it play, step, jump
to a trade, a speed slider, a date to go to, follow and the overlays menu, the current bar and
the chart's hover readout. Nothing in it can widen the window: its labels elide."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt, QTimeZone
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import (
    QDateTimeEdit,
    QHBoxLayout,
    QLabel,
    QMenu,
        QSizePolicy,
    QSlider,
    QStyle,
    QStyleOptionSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

SPEEDS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)  # bars a second
UTC = QTimeZone.utc()
MARK = QColor(255, 167, 38, 200)


class ElidedLabel(QLabel):
    """A one-line label that asks for no width of its own and elides what does not fit (the
    whole text in its tooltip): a long readout never widens the window."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self._full = ""

    def setText(self, text: str) -> None:
        self._full = text
        self.setToolTip(text)
        self._elide()

    def text(self) -> str:
        return self._full

    def minimumSizeHint(self) -> QSize:
        return QSize(0, super().minimumSizeHint().height())

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        super().setText(self.fontMetrics().elidedText(self._full, Qt.ElideRight, max(self.width(), 0)))


class Timeline(QSlider):
    """A horizontal slider over the run's bars with a tick at each bar that traded."""

    def __init__(self, **kw):
        super().__init__(Qt.Horizontal, **kw)
        self.setMinimumWidth(120)
        self._bars = np.zeros(0, np.int64)
        self._cache: tuple | None = None

    def set_marks(self, bars: np.ndarray) -> None:
        """The bars to mark (the trades' bars, in any order, repeats allowed)."""
        self._bars = np.unique(np.asarray(bars, np.int64))
        self._cache = None
        self.update()

    def mark_positions(self) -> np.ndarray:
        """The x of each mark, in pixels (one a pixel), where the handle's centre stands at that bar."""
        lo, hi = self.minimum(), self.maximum()
        opt = QStyleOptionSlider()
        self.initStyleOption(opt)
        groove = self.style().subControlRect(QStyle.CC_Slider, opt, QStyle.SC_SliderGroove, self)
        handle = self.style().subControlRect(QStyle.CC_Slider, opt, QStyle.SC_SliderHandle, self)
        key = (lo, hi, groove.x(), groove.width(), handle.width(), len(self._bars))
        if self._cache is None or self._cache[0] != key:
            span = max(groove.width() - handle.width(), 1)
            x0 = groove.x() + handle.width() / 2
            inside = self._bars[(self._bars >= lo) & (self._bars <= hi)]
            xs = x0 + (inside - lo) * (span / max(hi - lo, 1))
            self._cache = (key, np.unique(np.round(xs).astype(np.int64)))
        return self._cache[1]

    def paintEvent(self, event) -> None:
        if len(self._bars):
            p = QPainter(self)
            p.setPen(QPen(MARK, 1))
            h = self.height()
            for x in self.mark_positions():
                p.drawLine(int(x), h - 6, int(x), h - 1)
            p.end()
        super().paintEvent(event)


def _tool(name: str, text: str, tip: str, checkable: bool = False) -> QToolButton:
    b = QToolButton(objectName=name, text=text, toolTip=tip, checkable=checkable)
    b.setFocusPolicy(Qt.NoFocus)
    return b


class Transport(QWidget):
    """The controls; the Backtest tab connects them to the replay."""

    def __init__(self, overlays: dict[str, str], parent=None):
        super().__init__(parent)
        self.scrubber = Timeline(objectName="replayScrubber")
        self.scrubber.setRange(0, 0)
        self.scrubber.setToolTip("Drag through the run; the ticks are the bars it traded on")
        self.play_button = _tool("replayPlay", "▶", "Play / pause (Space)", checkable=True)
        self.back_button = _tool("replayStepBack", "◀|", "One bar back (Left)")
        self.forward_button = _tool("replayStepForward", "|▶", "One bar forward (Right)")
        self.prev_trade = _tool("replayPrevTrade", "◀◆", "Previous trade (Ctrl+Left)")
        self.next_trade = _tool("replayNextTrade", "◆▶", "Next trade (Ctrl+Right)")
        self.speed = QSlider(Qt.Horizontal, objectName="replaySpeed", toolTip="Playback speed")
        self.speed.setRange(0, len(SPEEDS) - 1)
        self.speed.setValue(SPEEDS.index(50))
        self.speed.setPageStep(1)
        self.speed.setFixedWidth(80)
        self.speed.setFocusPolicy(Qt.NoFocus)
        self.speed_label = QLabel(objectName="replaySpeedLabel")
        self.speed_label.setMinimumWidth(self.speed_label.fontMetrics().horizontalAdvance("10,000 bars/s "))
        self.speed.valueChanged.connect(self._speed_changed)
        self._speed_changed()
        self.date = QDateTimeEdit(objectName="replayDate", calendarPopup=True)
        self.date.setTimeZone(UTC)
        self.date.setDisplayFormat("yyyy-MM-dd HH:mm")
        self.go = _tool("replayGo", "Go", "Show the bar of this date")
        self.follow_button = _tool("replayFollow", "Follow", "Follow the current bar again")
        self.overlay_button = _tool("replayOverlays", "Overlays", "Indicators over the candles")
        self.overlay_button.setPopupMode(QToolButton.InstantPopup)
        menu = QMenu(self.overlay_button)
        self.overlay_actions = {}
        for name, label in overlays.items():
            act = menu.addAction(label)
            act.setCheckable(True)
            act.setObjectName(f"overlay_{name}")
            self.overlay_actions[name] = act
        self.overlay_button.setMenu(menu)
        self.bar_label = ElidedLabel(objectName="replayBar")
        self.readout = ElidedLabel(objectName="replayReadout")
        self.readout.setAlignment(Qt.AlignRight | Qt.AlignVCenter)

        controls = QHBoxLayout()
        for w in (self.back_button, self.play_button, self.forward_button, self.prev_trade, self.next_trade,
                  self.speed, self.speed_label):
            controls.addWidget(w)
        controls.addWidget(self.bar_label, 1)
        info = QHBoxLayout()
        info.addWidget(self.readout, 1)
        for w in (self.date, self.go, self.follow_button, self.overlay_button):
            info.addWidget(w)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.scrubber)
        lay.addLayout(controls)
        lay.addLayout(info)

    @property
    def bars_per_second(self) -> int:
        return SPEEDS[self.speed.value()]

    def _speed_changed(self, *_) -> None:
        self.speed_label.setText(f"{self.bars_per_second:,} bar{'s' if self.bars_per_second != 1 else ''}/s")

    def enable(self, on: bool) -> None:
        for w in (self.play_button, self.back_button, self.forward_button, self.prev_trade, self.next_trade,
                  self.scrubber, self.date, self.go):
            w.setEnabled(on)
