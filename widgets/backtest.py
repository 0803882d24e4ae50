"""Backtest tab: choose data and a strategy, run it in the worker pool, and replay the run bar
by bar: chart, transport (play, step, speed, scrubber, jump to a date or a trade), metrics up to
the current bar beside the full run's, the trades table in step with the chart, a second run
to compare, exports, and "create system from this backtest"."""

from __future__ import annotations

import asyncio
import dataclasses
import html
import time
from pathlib import Path

from PySide6.QtCore import (
    QDateTime,
    QItemSelection,
    QItemSelectionModel,
    Qt,
    QTimer,
)
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.controller import SystemConfig
from engine.data import TIMEFRAMES_MS, DataError
from engine.replay import BAR_METRICS, OVERLAYS, RUN_METRICS, Replay, format_metric
from engine.strategies.errors import ParamError
from engine.strategies.registry import CONFIGS, FILL_MODELS_EXPLAINED, spec
from widgets.download import DownloadDialog
from widgets.params_editor import ParamsEditor
from widgets.replay_chart import ReplayChart
from widgets.run_controls import RunControls
from widgets.run_trades import TradesModel, utc_text
from widgets.stress import StressDialog
from widgets.system_dialog import SystemDialog
from widgets.transport import UTC, Transport
from widgets.trips import TripsView

FRAME_MS = 16  # playback redraws at most this often; at high speed bars are skipped, not queued
KEEP_RUNS = 8  # runs kept to replay and compare (the oldest go first)
STRESS_PATHS = 200  # paths a scenario of the tab's stress test (a second or two a year of 5m bars)


def _source_key(source: str):
    """What a loaded data source is kept by: a file with its modification time and size (a file
    changed on disk is read again), anything else (the sample, a download) by its name."""
    try:
        st = Path(source).stat() if source != "sample" else None
    except OSError:
        st = None
    return (source, st.st_mtime_ns, st.st_size) if st is not None else source


class BacktestTab(QWidget):
    """Three panels side by side: the run's setup (data, strategy and settings, run), the
    replay (chart over the transport) and the runs (metrics, trades, compare, exports)."""

    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.setObjectName("backtestTab")
        self.controller = controller
        self.runs: list[Replay] = []  # the last KEEP_RUNS, numbered by self.runs_made
        self.runs_made = 0
        self.run: Replay | None = None
        self.compare: Replay | None = None
        self.loaded: dict = {}  # data source (a file: with its time and size) -> Candles
        self._task: asyncio.Task | None = None
        self.frames = 0  # redraws during playback (the benchmark counts them)
        self.last_stress: dict | None = None  # the last stress test: its settings, data, title and figures

        self.splitter = QSplitter(Qt.Horizontal, objectName="backtestSplitter")
        for w in (self._setup_panel(), self._replay_panel(), self._runs_panel()):
            self.splitter.addWidget(w)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setStretchFactor(2, 0)
        self.splitter.setSizes([300, 900, 380])
        lay = QVBoxLayout(self)
        lay.addWidget(self.splitter)

        self.timer = QTimer(self, interval=FRAME_MS, timerType=Qt.PreciseTimer)
        self.timer.timeout.connect(self._frame)
        self._last_frame = 0.0
        self._carry = 0.0
        for keys, slot in (("Space", lambda: self.play_button.toggle()), ("Left", lambda: self.step(-1)),
                           ("Right", lambda: self.step(1)), ("Home", lambda: self.seek(0)),
                           ("End", lambda: self.seek(self.run.n_bars - 1) if self.run else None),
                           ("Ctrl+Left", lambda: self.jump_trade(-1)), ("Ctrl+Right", lambda: self.jump_trade(1))):
            sc = QShortcut(QKeySequence(keys), self, context=Qt.WidgetWithChildrenShortcut)
            sc.activated.connect(slot)
        self._enable_replay(False)

    def _setup_panel(self) -> QWidget:
        """Data, funding, the strategy's settings, run and cancel, progress and status."""
        self.data = QComboBox(objectName="backtestData", editable=True)
        self.data.addItems(["sample"])
        self.data.setToolTip("'sample', a candle file (CSV, freqtrade JSON, Parquet), or a download")
        self.data.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.data.setMinimumContentsLength(8)
        self.data.lineEdit().textChanged.connect(lambda text: self.data.setToolTip(text))
        open_file = QToolButton(objectName="backtestOpenFile", text="Open…", toolTip="A candle file")
        open_file.clicked.connect(self._open_file)
        download = QToolButton(objectName="backtestDownload", text="Download…", toolTip="Candles from an exchange")
        download.clicked.connect(self._download)
        self.funding = QLineEdit(objectName="backtestFunding", placeholderText="funding-rate file (perpetuals)")
        funding_file = QToolButton(objectName="backtestFundingFile", text="…", toolTip="A funding-rate file")
        funding_file.clicked.connect(self._open_funding)
        self.editor = ParamsEditor()
        self.controls = RunControls("backtest", "Run backtest", "Cancel", run_id="runBacktestButton")
        self.run_button, self.cancel_button = self.controls.run_button, self.controls.cancel_button
        self.progress, self.status = self.controls.progress, self.controls.status
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.start_run)
        self.cancel_button.clicked.connect(self.cancel)
        panel = QWidget()
        ll = QVBoxLayout(panel)
        ll.setContentsMargins(0, 0, 4, 0)
        df = QFormLayout()
        df.addRow("Data", self.data)  # the whole width: a file's name in sight, not "025.csv"
        row = QHBoxLayout()
        row.addWidget(open_file)
        row.addWidget(download)
        row.addStretch(1)
        df.addRow("", row)
        frow = QHBoxLayout()
        frow.addWidget(self.funding, 1)
        frow.addWidget(funding_file)
        df.addRow("Funding", frow)
        ll.addLayout(df)
        ll.addWidget(self.editor, 1)
        ll.addWidget(self.controls)
        self.stress_button = QPushButton(f"Stress test ({STRESS_PATHS} paths)…", objectName="backtestStress")
        self.stress_button.setToolTip("the spot grid as set on paths resampled from the data, and on a crash, a "
                                      "trend and a range: returns, drawdowns, time outside the range")
        self.stress_button.clicked.connect(self.start_stress)
        ll.addWidget(self.stress_button)
        return panel

    def _replay_panel(self) -> QWidget:
        """The chart over the transport (widgets/transport.py)."""
        self.chart = ReplayChart()
        t = self.transport = Transport(OVERLAYS)
        self.readout = t.readout
        self.chart.hovered.connect(self.readout.setText)
        for name in ("play_button", "back_button", "forward_button", "prev_trade", "next_trade", "speed",
                     "scrubber", "date", "follow_button", "overlay_actions", "bar_label"):
            setattr(self, name, getattr(t, name))
        t.play_button.toggled.connect(self.set_playing)
        t.back_button.clicked.connect(lambda: self.step(-1))
        t.forward_button.clicked.connect(lambda: self.step(1))
        t.prev_trade.clicked.connect(lambda: self.jump_trade(-1))
        t.next_trade.clicked.connect(lambda: self.jump_trade(1))
        t.speed.valueChanged.connect(lambda _: self._show_position())
        t.scrubber.valueChanged.connect(self._scrubbed)
        t.go.clicked.connect(lambda: self.seek(self.run.bar_at(self.date.dateTime().toMSecsSinceEpoch()))
                             if self.run else None)
        t.follow_button.clicked.connect(self.chart.follow_bar)
        for act in t.overlay_actions.values():
            act.toggled.connect(self._overlays_changed)
        panel = QWidget()
        cl = QVBoxLayout(panel)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.addWidget(self.chart, 1)
        cl.addWidget(t)
        return panel

    def _runs_panel(self) -> QWidget:
        """The run shown and the one compared, their metrics, the trades, exports, a system."""
        self.run_select = QComboBox(objectName="replayRun")
        self.run_select.currentIndexChanged.connect(self._run_selected)
        self.compare_select = QComboBox(objectName="replayCompare")
        self.compare_select.currentIndexChanged.connect(self._compare_selected)
        for combo in (self.run_select, self.compare_select):
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(16)
        self.metrics = QTableWidget(len(BAR_METRICS) + len(RUN_METRICS), 3, objectName="metricsPanel")
        self.metrics.setHorizontalHeaderLabels(["at bar", "full run", "compare"])
        self.metrics.setVerticalHeaderLabels([k.replace("_", " ") for k in (*BAR_METRICS, *RUN_METRICS)])
        self.metrics.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.metrics.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        for r in range(self.metrics.rowCount()):
            for c in range(3):
                item = QTableWidgetItem("")
                item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.metrics.setItem(r, c, item)
        self.fill_models = QLabel(objectName="fillModels", wordWrap=True)
        self.fill_models.setToolTip(FILL_MODELS_EXPLAINED)
        self.trades_model = TradesModel()
        self.trades = QTableView(objectName="tradesTable")
        self.trades.setModel(self.trades_model)
        self.trades.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.trades.verticalHeader().setVisible(False)
        self.trades.verticalHeader().setDefaultSectionSize(20)
        self.trades.horizontalHeader().setSectionResizeMode(QHeaderView.Interactive)
        self.trades.doubleClicked.connect(self._trade_clicked)
        exports = QHBoxLayout()
        for name, text, slot in (("exportPng", "PNG", self.export_png), ("exportTrades", "Trades CSV", self.export_csv),
                                 ("exportJson", "JSON", self.export_json), ("exportHtml", "Report", self.export_html)):
            b = QPushButton(text, objectName=name)
            b.clicked.connect(slot)
            exports.addWidget(b)
        self.create_button = QPushButton("Create system from this backtest", objectName="createSystemButton")
        self.create_button.clicked.connect(self.create_system)
        panel = QWidget()
        rl = QVBoxLayout(panel)
        rl.setContentsMargins(4, 0, 0, 0)
        rf = QFormLayout()
        rf.addRow("Run", self.run_select)
        rf.addRow("Compare with", self.compare_select)
        rl.addLayout(rf)
        rl.addWidget(self.metrics, 3)
        rl.addWidget(self.fill_models)
        self.trips = TripsView()
        self.trips.seek.connect(self.seek)
        self.trade_tabs = QTabWidget(objectName="tradeTabs")
        self.trade_tabs.addTab(self.trades, "Fills")
        self.trade_tabs.addTab(self.trips, "Round trips")
        rl.addWidget(self.trade_tabs, 4)
        rl.addLayout(exports)
        rl.addWidget(self.create_button)
        return panel

    def _overlays_changed(self) -> None:
        self.chart.set_overlays(name for name, act in self.overlay_actions.items() if act.isChecked())
        if self.run is not None:
            self.chart.show_bar(self.bar)

    def set_overlays(self, names) -> None:
        """Check exactly the overlays ``names`` (engine.replay.OVERLAYS)."""
        for name, act in self.overlay_actions.items():
            act.setChecked(name in set(names))

    def _enable_replay(self, on: bool) -> None:
        self.transport.enable(on)
        self.create_button.setEnabled(on)

    # -- data ---------------------------------------------------------------------------------
    def _open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Candles", "",
                                              "Candles (*.csv *.json *.parquet *.feather);;All (*)")
        if path:
            self.data.setCurrentText(path)
            self.data.lineEdit().setCursorPosition(len(path))  # the file's name in sight, its folder before it

    def _open_funding(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Funding rates", "", "CSV (*.csv);;All (*)")
        if path:
            self.funding.setText(path)

    def _download(self) -> None:
        dlg = DownloadDialog(self, self.controller.exchanges())
        if dlg.exec():
            self.download(*dlg.request())

    def download(self, exchange: str, symbol: str, timeframe: str, since_ms: int, until_ms: int) -> asyncio.Task:
        key = f"{exchange}:{symbol}:{timeframe}:{utc_text(since_ms)}..{utc_text(until_ms)}"

        async def work():
            candles = await self.controller.download_candles(exchange, symbol, timeframe, since_ms, until_ms,
                                                             self._progress("download"))
            self.loaded[key] = candles
            if self.data.findText(key) < 0:
                self.data.addItem(key)
            self.data.setCurrentText(key)
            self.status.setText(f"downloaded {len(candles):,} bars of {symbol} {timeframe}{self._gaps(candles)}")

        return self._busy(work(), "downloading")

    @staticmethod
    def _gaps(candles) -> str:
        if not candles.gaps:
            return "; no gaps"
        return f"; {len(candles.gaps)} gap(s), {candles.missing_bars:,} missing bars (kept, not filled)"

    async def _candles(self):
        source = self.data.currentText().strip()
        if not source:
            raise DataError("data: choose 'sample', a candle file or a download")
        key = _source_key(source)
        if key not in self.loaded:
            self.loaded[key] = await self.controller.load_candles(source)
        return self.loaded[key]

    # -- running --------------------------------------------------------------------------------
    def _progress(self, what: str):
        """A ``progress(done, total)`` for the bar under the controls."""
        def progress(done: int, total: int) -> None:
            if self._task is None:
                return  # a report that arrived after the work ended
            self.controls.show_progress(done, total, f"{what} %v / %m bars")

        return progress

    def _busy(self, coro, what: str) -> asyncio.Task:
        self.controls.start(what)  # busy until a stage reports its progress
        started = time.perf_counter()

        async def guarded():
            try:
                await coro
            except asyncio.CancelledError:
                self.status.setText(f"{what}: cancelled after {time.perf_counter() - started:.1f} s")
            except Exception as exc:
                self.status.setText(error_html(exc))
            finally:
                self.controls.finish()
                self._task = None

        self._task = self.controller.spawn(guarded())
        return self._task

    def replay(self, strategy: str, cfg, candles, funding, label: str) -> asyncio.Task | None:
        """Run ``cfg`` on ``candles`` (already loaded, named ``label`` in the data list) and replay
        it: how the Optimizer tab opens its winner here."""
        self.loaded[label] = candles
        if self.data.findText(label) < 0:
            self.data.addItem(label)
        self.data.setCurrentText(label)
        self.editor.strategy.setCurrentText(strategy)
        self.editor.set_values(cfg.to_dict())
        self.funding.setText("(from the optimizer)" if funding is not None else "")
        return self.start_run(funding=funding)

    def start_run(self, *, funding=None) -> asyncio.Task | None:
        """Run the backtest as set; the result is added to the runs and replayed from its first bar.
        ``funding``: rates already loaded (else from the funding file, if any)."""
        try:
            cfg = self.editor.config()
        except ParamError:
            return None
        strategy = self.editor.strategy.currentText()
        funding_path = "" if funding is not None else self.funding.text().strip()
        given_funding = funding

        async def work():
            candles = await self._candles()
            funding = given_funding
            if funding_path:
                if not spec(strategy).funded:
                    raise ParamError("funding", f"{strategy} pays no funding: clear the funding file")
                funding = await self.controller.load_funding(funding_path)
            name = f"#{self.runs_made + 1} {strategy}{self._changes(strategy, cfg)}"
            t = time.perf_counter()
            run = await self.controller.backtest(candles, strategy, cfg, funding, name, self._progress("run"))
            run.source = self.data.currentText().strip()  # where "create system" takes its candles from
            self.add_run(run)
            m = run.run_metrics()
            self.status.setText(f"{name}: {run.n_bars:,} bars in {time.perf_counter() - t:.2f} s "
                                f"(backtest {run.run_seconds:.2f} s); return {format_metric('return', m['return'])}, "
                                f"{m['fills']:,} fills{self._gaps(candles)}")

        return self._busy(work(), "running")

    def start_stress(self) -> asyncio.Task | None:
        """The stress test of the settings as set (spot grids) on the data; its figures in a window."""
        try:
            cfg = self.editor.config()
        except ParamError:
            return None
        strategy = self.editor.strategy.currentText()

        async def work():
            candles = await self._candles()
            t = time.perf_counter()
            day = max(1, min(len(candles) // 4, 86_400_000 // candles.timeframe_ms))  # (bars a block keeps)
            rows = await self.controller.stress(candles, strategy, cfg, paths=STRESS_PATHS, block=day)
            title = (f"{strategy} on {self.data.currentText().strip()}, {STRESS_PATHS} paths a scenario in blocks of a "
                     f"day ({time.perf_counter() - t:.1f} s)")
            # (the HTML report of a run of these settings on these data shows it too)
            self.last_stress = {"config": cfg.to_dict(), "source": self.data.currentText().strip(), "title": title,
                                "rows": rows}
            self.stress_dialog = StressDialog(rows, title, self)
            self.stress_dialog.show()
            self.status.setText(f"stress test: {title}")

        return self._busy(work(), "stress test")

    @staticmethod
    def _changes(strategy: str, cfg) -> str:
        base = CONFIGS[strategy]().to_dict()
        diff = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in dataclasses.asdict(cfg).items() if base.get(k) != v and k != "tiers"]
        return (": " + " ".join(diff[:4]) + (" …" if len(diff) > 4 else "")) if diff else ""

    def cancel(self) -> None:
        """Stop the download or the run: a download at once, a run after its current chunk of bars."""
        if self._task is not None:
            self._task.cancel()

    def add_run(self, run: Replay) -> None:
        previous = self.run
        self.runs.append(run)
        self.runs_made += 1
        for combo in (self.run_select, self.compare_select):
            combo.blockSignals(True)
        self.run_select.addItem(run.name)
        if self.compare_select.count() == 0:
            self.compare_select.addItem("(none)")
        self.compare_select.addItem(run.name)
        while len(self.runs) > KEEP_RUNS:  # the oldest go (a run of a year of 1m bars holds ~80 MB)
            i = next(i for i, r in enumerate(self.runs) if r is not run and r is not previous)
            del self.runs[i]
            self.run_select.removeItem(i)
            self.compare_select.removeItem(i + 1)
        self.run_select.setCurrentIndex(len(self.runs) - 1)
        # the run before stays beside it for comparison, when it ran on the same data
        if previous is not None and not self.same_data(previous, run):
            previous = None
        self.compare_select.setCurrentIndex(self.runs.index(previous) + 1 if previous is not None else 0)
        for combo in (self.run_select, self.compare_select):
            combo.blockSignals(False)
        self.compare = previous
        self.show_run(run)

    def _run_selected(self, index: int) -> None:
        if 0 <= index < len(self.runs):
            self.show_run(self.runs[index])

    def _compare_selected(self, index: int) -> None:
        self.compare = self.runs[index - 1] if 0 < index <= len(self.runs) else None
        if self.run is not None:
            self.chart.set_runs(self.run, self.compare)
            self.chart.show_bar(self.bar)
            self._fill_full_metrics()

    def show_run(self, run: Replay) -> None:
        self.set_playing(False)
        self.run = run
        self.trades_model.set_run(run)
        self.trips.set_run(run)
        self._fit_trade_columns()
        self.trades.scrollToTop()
        self.scrubber.blockSignals(True)
        self.scrubber.setRange(0, run.n_bars - 1)
        self.scrubber.setPageStep(max(1, run.n_bars // 100))
        self.scrubber.set_marks(run.trades["bar"])
        self.scrubber.blockSignals(False)
        c = run.candles
        self.date.setDateTimeRange(QDateTime.fromMSecsSinceEpoch(int(c.time[0]), UTC),
                                   QDateTime.fromMSecsSinceEpoch(int(c.time[-1]), UTC))
        self._enable_replay(True)
        self.chart.set_runs(run, self.compare)
        self._fill_full_metrics()
        self.seek(run.start_bar)

    def _fit_trade_columns(self) -> None:
        m, fm = self.trades_model, self.trades.fontMetrics()
        rows = m.widest_rows()
        head = self.trades.horizontalHeader()
        for c, name in enumerate(m.COLUMNS):
            texts = [name, *(m._row(i)[c] for i in rows)]
            head.resizeSection(c, max(fm.horizontalAdvance(x) for x in texts) + 16)

    @staticmethod
    def same_data(a: Replay, b: Replay) -> bool:
        """Whether two runs ran on the same bars (their comparison then means something)."""
        ca, cb = a.candles, b.candles
        return len(ca) == len(cb) and ca.time[0] == cb.time[0] and ca.time[-1] == cb.time[-1] \
            and ca.timeframe_ms == cb.timeframe_ms and a.source == b.source

    def _fill_full_metrics(self) -> None:
        full = self.run.run_metrics()
        other = self.compare.run_metrics() if self.compare is not None else {}
        label = "compare"
        if self.compare is not None:
            label = self.compare.name.split(" ")[0]
            if not self.same_data(self.run, self.compare):
                label += " (other data)"
        self.metrics.horizontalHeaderItem(2).setText(label)
        self.metrics.horizontalHeaderItem(2).setToolTip(
            f"{self.compare.name} on {self.compare.source or self.compare.candles.source}" if self.compare else "")
        for r, k in enumerate((*BAR_METRICS, *RUN_METRICS)):
            self.metrics.item(r, 1).setText(format_metric(k, full[k]) if k in full else "")
            self.metrics.item(r, 2).setText(format_metric(k, other[k]) if k in other else "")
        rows = self.run.fill_models
        self.fill_models.setVisible(bool(rows))
        self.fill_models.setText("Return under each fill model: " + ", ".join(
            f"{r['model']} {r['return']:+.2%} ({r['fills']:,} fills)" for r in rows))

    # -- replay -------------------------------------------------------------------------------
    @property
    def bar(self) -> int:
        return self.chart.bar

    def seek(self, bar: int) -> None:
        """Show the run as it stood at the close of ``bar``: chart, scrubber, metrics, trades."""
        r = self.run
        if r is None:
            return
        bar = r.clamp(bar)
        self.chart.show_bar(bar)
        self.scrubber.blockSignals(True)
        self.scrubber.setValue(bar)
        self.scrubber.blockSignals(False)
        if not self.date.hasFocus():
            self.date.blockSignals(True)
            self.date.setDateTime(QDateTime.fromMSecsSinceEpoch(int(r.candles.time[bar]), UTC))
            self.date.blockSignals(False)
        self._show_position()
        m = r.metrics_at(bar)
        for row, k in enumerate(BAR_METRICS):
            self.metrics.item(row, 0).setText(format_metric(k, m[k]))
        done = m["fills"]
        self.trades_model.set_done(done)
        self.trips.model.set_bar(bar)
        a, b = r.trades_on(bar)
        sel = self.trades.selectionModel()
        if b > a:  # this bar's fills selected
            rows = QItemSelection(self.trades_model.index(a, 0),
                                  self.trades_model.index(b - 1, len(TradesModel.COLUMNS) - 1))
            sel.select(rows, QItemSelectionModel.ClearAndSelect)
            self.trades.scrollTo(self.trades_model.index(a, 0), QAbstractItemView.PositionAtCenter)
        else:
            sel.clearSelection()
            if done:
                self.trades.scrollTo(self.trades_model.index(done - 1, 0), QAbstractItemView.PositionAtCenter)

    def _show_position(self) -> None:
        r = self.run
        if r is not None:
            at = utc_text(int(r.candles.time[self.bar]))
            self.bar_label.setText(f"bar {self.bar:,} of {r.n_bars - 1:,}  ·  {at} UTC")

    def step(self, n: int) -> None:
        self.set_playing(False)
        self.seek(self.bar + n)

    def jump_trade(self, direction: int) -> None:
        if self.run is None:
            return
        target = self.run.next_trade_bar(self.bar) if direction > 0 else self.run.prev_trade_bar(self.bar)
        if target is not None:
            self.set_playing(False)
            self.seek(target)

    def _scrubbed(self, value: int) -> None:
        self.seek(value)

    def _trade_clicked(self, index) -> None:
        if self.run is not None:
            self.set_playing(False)
            self.seek(int(self.run.trades[index.row()]["bar"]))

    def set_playing(self, on: bool) -> None:
        if self.play_button.isChecked() != on:
            self.play_button.blockSignals(True)
            self.play_button.setChecked(on)
            self.play_button.blockSignals(False)
        self.play_button.setText("❚❚" if on else "▶")
        if on and self.run is not None:
            if self.bar >= self.run.n_bars - 1:
                self.seek(self.run.start_bar)
            self._last_frame = time.perf_counter()
            self._carry = 0.0
            self.timer.start()
        else:
            self.timer.stop()

    def _frame(self) -> None:
        """One playback frame: advance by the bars the speed gives for the time since the last
        frame (so a slow frame skips bars instead of queueing them)."""
        now = time.perf_counter()
        self._carry += (now - self._last_frame) * self.transport.bars_per_second
        self._last_frame = now
        n = int(self._carry)
        if n <= 0:
            return
        self._carry -= n
        last = self.run.n_bars - 1
        self.seek(min(self.bar + n, last))
        self.frames += 1
        if self.bar >= last:
            self.set_playing(False)

    # -- exports and handing over ---------------------------------------------------------------
    def _save_path(self, title: str, name: str, filt: str) -> str:
        path, _ = QFileDialog.getSaveFileName(self, title, name, filt)
        return path

    def _slug(self) -> str:
        return self.run.name.split(":")[0].replace("#", "run").replace(" ", "-") if self.run else "run"

    def export_png(self, path: str | None = None) -> Path | None:
        path = path or self._save_path("Chart as PNG", f"{self._slug()}.png", "PNG (*.png)")
        if path and self.run is not None:
            self.chart.grab().save(str(path))
            return Path(path)
        return None

    def export_csv(self, path: str | None = None) -> Path | None:
        path = path or self._save_path("Trades as CSV", f"{self._slug()}-trades.csv", "CSV (*.csv)")
        return self.run.trades_csv(path) if path and self.run is not None else None

    def export_json(self, path: str | None = None) -> Path | None:
        path = path or self._save_path("Result as JSON", f"{self._slug()}.json", "JSON (*.json)")
        return self.run.save_json(path) if path and self.run is not None else None

    def export_html(self, path: str | None = None) -> Path | None:
        path = path or self._save_path("Report", f"{self._slug()}.html", "HTML (*.html)")
        if not path or self.run is None:
            return None
        st = self.last_stress
        same = st is not None and st["source"] == getattr(self.run, "source", None) and st["config"] == self.run.config
        return self.run.save_html(path, self.compare, (st["title"], st["rows"]) if same else None)

    def system_from_run(self) -> SystemConfig:
        """A paper, dry-run system with this run's settings (spot grids: what the runtime trades)."""
        r = self.run
        market = spec(r.strategy).market
        if market != "spot":
            raise ParamError("strategy", f"a system from a run is a spot grid for now; {r.strategy} "
                             + ("trades the perpetual market: add it with Add System" if market else
                                "is backtest-only for now"))
        params = {k: v for k, v in r.config.items() if k != "capital"}
        unsupported = [k for k in ("stop_loss", "take_profit") if params.get(k)]
        if unsupported:
            raise ParamError(unsupported[0], "the trading runtime does not place grid stops yet: set it to 0")
        names = {s.name for s in self.controller.systems}
        base = f"bt-{r.name.split(' ')[0].lstrip('#')}"
        candidates = [base] + [f"{base}-{i}" for i in range(2, 1000)]
        name = next(n for n in candidates if n not in names)
        source = r.source or "sample"
        return SystemConfig(name=name, strategy=r.strategy, params=params, capital=float(r.capital), mode="paper",
                            dry_run=True, data=source if Path(source).exists() or source == "sample" else "",
                            timeframe=_timeframe(r.candles.timeframe_ms))

    def create_system(self) -> None:
        if self.run is None:
            return
        try:
            cfg = self.system_from_run()
        except ParamError as exc:
            QMessageBox.warning(self, "Create system", str(exc))
            return
        dlg = SystemDialog(self, cfg, existing={s.name for s in self.controller.systems},
                           reference_price=float(self.run.candles.close[-1]), title="Create system from backtest",
                           symbols=self.controller.symbols, exchanges=self.controller.exchanges())
        if dlg.exec():
            self.controller.add_system(dlg.result_config)
            self.status.setText(f"system {dlg.result_config.name} added (paper, dry-run): see the Market tab")


def error_html(exc: Exception) -> str:
    """An error for a status line, in red: ours name the file, row or setting as they are;
    others (a download's, say) with their type."""
    text = str(exc) if isinstance(exc, DataError | ParamError | OSError | ValueError) \
        else f"{type(exc).__name__}: {exc}"
    return f"<span style='color:#c62828'>{html.escape(text)}</span>"


def _timeframe(ms: int) -> str:
    for name, v in TIMEFRAMES_MS.items():
        if v == ms:
            return name
    return "1h"

