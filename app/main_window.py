"""The main window: Market, Risk, Orders, Grid, Logs, Backtest, Optimizer and Assistant tabs, a
kill-switch badge in the status bar, geometry, last tab, splitters and column widths restored."""

from __future__ import annotations

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QIcon, QKeySequence
from PySide6.QtWidgets import QLabel, QMainWindow, QMessageBox, QTableView, QTabWidget

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

API_PORT = 8765  # the control API's port from the Remote menu (griddesk gui --api-port chooses another)


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
        self._remote_menu()
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

    def _remote_menu(self) -> None:
        self.api_port = API_PORT
        menu = self.menuBar().addMenu("&Remote")
        self.api_action = menu.addAction(f"Control API on 127.0.0.1:{API_PORT}")
        self.api_action.setObjectName("apiAction")
        self.api_action.setCheckable(True)
        self.api_action.setToolTip("start, stop, kill switch, cancel all, orders, fills over HTTP, with a token "
                                   "(README: the control API); this machine only")
        self.api_action.toggled.connect(self.set_api)
        # (served again at the next start; or served already: griddesk gui --api-port)
        if self.controller.api_server is not None or self.settings.value("api/on", False, type=bool):
            self.api_action.setChecked(True)

    def set_api(self, on: bool) -> None:
        """Serve the control API (its token shown the time it is made) or stop serving it; kept
        for the next start."""
        if not on:
            if self.controller.api_server is not None:
                self.controller.spawn(self.controller.stop_api())
            self.settings.setValue("api/on", False)
            return
        if self.controller.api_server is not None:
            return
        try:
            server, token = self.controller.serve_api(self.api_port)
        except ValueError as exc:  # (the port taken, no keyring for the token)
            self.api_action.setChecked(False)
            QMessageBox.warning(self, "Control API", f"The control API cannot be served: {exc}")
            return
        self.settings.setValue("api/on", True)
        if token:
            box = QMessageBox(QMessageBox.Information, "Control API",
                              f"Serving at {server.url} (its OpenAPI page at {server.url}/docs).\n\nEvery request "
                              "needs this token (Authorization: Bearer ...). It is shown this once and kept in the "
                              f"OS keyring; copy it now:\n\n{token}", parent=self)
            box.setTextInteractionFlags(Qt.TextSelectableByMouse)
            box.setObjectName("apiTokenBox")
            self.token_box = box  # (for a test to read)
            box.open()

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
        if self.controller.api_server is not None:
            engine += f"  ·  control API at {self.controller.api_server.url}"
        self.statusBar().showMessage(f"{on} of {len(self.controller.systems)} systems ON{engine}  ·  data in "
                                     f"{self.controller.data_dir}")

    def closeEvent(self, event) -> None:
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("tab", self.tabs.currentIndex())
        for key, (save, _) in self._layout_parts():
            self.settings.setValue(key, save())
        super().closeEvent(event)
        self.closed.emit()
