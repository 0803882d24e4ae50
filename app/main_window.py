"""The main window: Market, Risk, Orders, Grid, Logs, Backtest, Optimizer and Assistant tabs, a
kill-switch badge in the status bar, geometry, last tab, splitters and column widths restored."""

from __future__ import annotations

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QIcon, QKeySequence
from PySide6.QtWidgets import QLabel, QMainWindow, QTableView, QTabWidget

from app.controller import ROOT
from app.theme import DEFAULT_THEME, THEMES, apply_theme
from widgets.assistant import AssistantTab
from widgets.backtest import BacktestTab
from widgets.grid_chart import GridTab
from widgets.logs import LogsTab
from widgets.market import MarketTab
from widgets.optimizer import OptimizerTab
from widgets.orders import OrdersTab
from widgets.risk import RiskTab


class MainWindow(QMainWindow):
    closed = Signal()

    def __init__(self, controller):
        super().__init__()
        self.setObjectName("mainWindow")
        self.controller = controller
        self.setWindowTitle("GridDesk")
        self.setWindowIcon(QIcon(str(ROOT / "resources" / "icons" / "griddesk.svg")))
        self.settings = QSettings(str(controller.data_dir / "window.ini"), QSettings.IniFormat)
        self.theme = apply_theme(str(self.settings.value("theme", DEFAULT_THEME)))  # before the charts exist
        self.tabs = QTabWidget(objectName="mainTabs")
        self.market = MarketTab(controller)
        self.risk = RiskTab(controller)
        self.orders = OrdersTab(controller)
        self.grid = GridTab(controller)
        self.logs = LogsTab(controller)
        self.backtest = BacktestTab(controller)
        self.optimizer = OptimizerTab(controller)
        self.optimizer.replayRequested.connect(self._replay_best)
        self.assistant = AssistantTab(controller)
        for w, name in ((self.market, "Market"), (self.risk, "Risk"), (self.orders, "Orders"), (self.grid, "Grid"),
                        (self.logs, "Logs"), (self.backtest, "Backtest"), (self.optimizer, "Optimizer"),
                        (self.assistant, "Assistant")):
            self.tabs.addTab(w, name)
        self.setCentralWidget(self.tabs)
        self.badge = QLabel(objectName="killBadge")
        self.statusBar().addPermanentWidget(self.badge)
        controller.riskChanged.connect(self._badge)
        controller.tick.connect(self._status)
        # The kill switch from anywhere in the app, whatever tab or dialog has the focus
        self.kill_action = QAction("Kill switch: stop every new order", self, objectName="killAction")
        self.kill_action.setShortcut(QKeySequence("Ctrl+K"))
        self.kill_action.setShortcutContext(Qt.ApplicationShortcut)
        self.kill_action.triggered.connect(lambda: controller.set_kill(True))
        self.addAction(self.kill_action)
        self._theme_menu()
        geometry = self.settings.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 800)
        self.tabs.setCurrentIndex(int(self.settings.value("tab", 0)))
        self._layout_restored = False
        self._badge()

    def _theme_menu(self) -> None:
        menu = self.menuBar().addMenu("&View").addMenu("&Theme")
        menu.setObjectName("themeMenu")
        group = QActionGroup(self)
        self.theme_actions = {}
        for name in THEMES:
            act = menu.addAction(name.capitalize(), lambda n=name: self.set_theme(n))
            act.setCheckable(True)
            act.setChecked(name == self.theme)
            act.setObjectName(f"theme_{name}")
            group.addAction(act)
            self.theme_actions[name] = act

    def set_theme(self, name: str) -> None:
        """Switch the theme now (charts included) and keep it for the next start."""
        self.theme = apply_theme(name)
        self.theme_actions[self.theme].setChecked(True)
        self.settings.setValue("theme", self.theme)

    def _replay_best(self, strategy, cfg, candles, funding, label) -> None:
        self.tabs.setCurrentWidget(self.backtest)
        self.backtest.replay(strategy, cfg, candles, funding, label)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._layout_restored:  # once the window has its size, or splitters re-spread
            self._layout_restored = True
            for key, (_, restore) in self._layout_parts():
                state = self.settings.value(key)
                if state is not None:
                    restore(state)

    def _layout_parts(self):
        """(settings key, (save, restore)) for each splitter and table header the user can
        arrange: restored on start, saved on close."""
        parts = [("splitter/backtest", (self.backtest.splitter.saveState, self.backtest.splitter.restoreState)),
                 ("splitter/optimizer", (self.optimizer.splitter.saveState, self.optimizer.splitter.restoreState))]
        for table in self.findChildren(QTableView):
            if table.objectName():
                h = table.horizontalHeader()
                parts.append((f"columns/{table.objectName()}", (h.saveState, h.restoreState)))
        return parts

    def _badge(self) -> None:
        if self.controller.risk.kill_all:
            self.badge.setText("  KILL SWITCH ON  ")
            self.badge.setStyleSheet("background: #c62828; color: white; font-weight: bold;")
        else:
            self.badge.setText("  trading allowed  ")
            self.badge.setStyleSheet("background: #2e7d32; color: white;")

    def _status(self) -> None:
        on = sum(self.controller.is_on(s.name) for s in self.controller.systems)
        engine = f"  ·  {self.controller.engine_note}" if self.controller.engine_note else ""
        self.statusBar().showMessage(f"{on} of {len(self.controller.systems)} systems ON{engine}  ·  data in "
                                     f"{self.controller.data_dir}")

    def closeEvent(self, event) -> None:
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("tab", self.tabs.currentIndex())
        for key, (save, _) in self._layout_parts():
            self.settings.setValue(key, save())
        super().closeEvent(event)
        self.closed.emit()
