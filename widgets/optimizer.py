"""The Optimizer tab: define a walk-forward search, run it in the background, watch the
scores come in, and replay the winner on the data its trials never trained on."""

from __future__ import annotations

import asyncio
import dataclasses
import html
import json
import math
import threading
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.strategies import settings_text
from engine.strategies.errors import ParamError
from engine.strategies.registry import CHOICES, CONFIGS, SPACES, STRATEGIES
from engine.strategies.space import Choice, parse_range
from widgets.backtest import error_html
from widgets.roles import DISPLAY, TOOLTIP
from widgets.run_controls import RunControls

SEARCH, NAME, RANGE, DEFAULT = range(4)
NOT_SEARCHABLE = {"tiers", "capital", "lower", "upper"}  # a file, the money at stake, prices of one market


class FrameModel(QAbstractTableModel):
    """A pandas DataFrame as a read-only table."""

    def __init__(self):
        super().__init__()
        self.frame = None

    def set_frame(self, frame) -> None:
        self.beginResetModel()
        self.frame = frame
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if self.frame is None else len(self.frame)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return 0 if self.frame is None else len(self.frame.columns)

    def headerData(self, section, orientation, role=DISPLAY):
        """A setting's column by its label (as the editor names it), the stored name in its tooltip."""
        if self.frame is None or orientation != Qt.Horizontal:
            return None
        name = str(self.frame.columns[section])
        if role == DISPLAY:
            return settings_text.label(name)
        if role == TOOLTIP:
            return name
        return None

    def data(self, index, role=DISPLAY):
        if role != DISPLAY or self.frame is None:
            return None
        v = self.frame.iat[index.row(), index.column()]
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return ""
        return f"{v:.4g}" if isinstance(v, float) else str(v)


class OptimizerTab(QWidget):
    replayRequested = Signal(str, object, object, object, str)  # strategy, config, candles, funding, label

    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.setObjectName("optimizerTab")
        self.controller = controller
        self.search = None
        self.stop = threading.Event()
        self._task: asyncio.Task | None = None
        self._done: list = []  # the complete trials shown

        self.strategy = QComboBox(objectName="optimizeStrategy")
        self.strategy.addItems(STRATEGIES)
        self.strategy.currentTextChanged.connect(self._fill_ranges)
        self.data_list = QListWidget(objectName="optimizeData")
        self.data_list.addItem("sample")
        self.data_list.setMaximumHeight(80)
        add = QPushButton("Add file…", objectName="optimizeAddData")
        add.clicked.connect(self._add_data)
        remove = QPushButton("Remove", objectName="optimizeRemoveData")
        remove.clicked.connect(lambda: [self.data_list.takeItem(self.data_list.row(i))
                                        for i in self.data_list.selectedItems()])
        self.resample = QComboBox(objectName="optimizeResample")
        self.resample.addItems(["as is", "15m", "1h", "4h"])
        self.funding = QLineEdit(objectName="optimizeFunding", placeholderText="funding-rate file (perpetuals)")
        self.trials = QSpinBox(objectName="optimizeTrials", minimum=1, maximum=100_000, value=100)
        self.windows = QSpinBox(objectName="optimizeWindows", minimum=1, maximum=20, value=3)
        self.seed = QSpinBox(objectName="optimizeSeed", minimum=-1, maximum=2**31 - 1, value=-1,
                             specialValueText="random")
        self.storage = QLineEdit(objectName="optimizeStorage", placeholderText="SQLite in the app's data folder")
        self.study = QLineEdit(objectName="optimizeStudy", placeholderText="from the strategy and settings")
        self.ranges = QTableWidget(0, 4, objectName="optimizeRanges")
        self.ranges.setHorizontalHeaderLabels(["Search", "Setting", "Range", "Default"])
        self.ranges.setWordWrap(False)  # (a range on one line: "arithmetic|geometric" broke at the bar)
        self.ranges.horizontalHeader().setSectionResizeMode(RANGE, QHeaderView.Stretch)
        self.ranges.verticalHeader().hide()
        self.controls = RunControls("optimize", "Run search", "Stop",
                                    cancel_tip="stop after the current part of the data; finished trials are kept")
        self.run_button, self.cancel_button = self.controls.run_button, self.controls.cancel_button
        self.progress, self.status = self.controls.progress, self.controls.status
        self.status.setTextFormat(Qt.RichText)
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.stop.set)

        form = QFormLayout()
        form.addRow("Strategy", self.strategy)
        data_row = QHBoxLayout()
        data_row.addWidget(self.data_list, 1)
        buttons = QVBoxLayout()
        buttons.addWidget(add)
        buttons.addWidget(remove)
        data_row.addLayout(buttons)
        form.addRow("Data sets", data_row)
        form.addRow("Bars", self.resample)
        form.addRow("Funding", self.funding)
        form.addRow("Trials", self.trials)
        form.addRow("Walk-forward windows", self.windows)
        form.addRow("Seed", self.seed)
        form.addRow("Storage", self.storage)
        form.addRow("Study", self.study)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.addLayout(form)
        ll.addWidget(self.ranges, 1)
        ll.addWidget(self.controls)

        # results: best score over trials, score over two settings, the trials, the winner
        self.history = pg.PlotWidget(objectName="optimizeHistory")
        self.history.setLabel("bottom", "trial")
        self.history.setLabel("left", "in-sample score")
        self.history.addLegend(offset=(-5, -5))  # bottom right: the scores climb to the top
        self.trial_dots = pg.ScatterPlotItem(size=6, brush=pg.mkBrush(120, 144, 156, 160), pen=None, name="trial")
        self.oos_dots = pg.ScatterPlotItem(size=5, symbol="x", brush=pg.mkBrush(239, 108, 0), pen=pg.mkPen(239, 108, 0),
                                           name="out-of-sample")
        self.best_line = pg.PlotCurveItem(pen=pg.mkPen(21, 101, 192, width=2), stepMode="right", name="best so far")
        for item in (self.trial_dots, self.oos_dots, self.best_line):
            self.history.addItem(item)
        self.scatter = pg.PlotWidget(objectName="optimizeScatter")
        self.scatter_dots = pg.ScatterPlotItem(size=9, pen=pg.mkPen(60, 60, 60, 120))
        self.scatter.addItem(self.scatter_dots)
        self.x_param = QComboBox(objectName="optimizeX")
        self.y_param = QComboBox(objectName="optimizeY")
        for combo in (self.x_param, self.y_param):
            combo.currentTextChanged.connect(self._draw_scatter)
        axes = QHBoxLayout()
        axes.addWidget(QLabel("Score over"))
        axes.addWidget(self.x_param)
        axes.addWidget(QLabel("and"))
        axes.addWidget(self.y_param)
        axes.addStretch(1)
        self.model = FrameModel()
        self.table = QTableView(objectName="optimizeTrials")
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSortingEnabled(False)
        self.best_label = QLabel(objectName="optimizeBest", wordWrap=True)
        self.best_label.setTextFormat(Qt.RichText)
        self.save_button = QPushButton("Save best…", objectName="optimizeSaveBest", enabled=False)
        self.save_button.clicked.connect(lambda: self.save_best())
        self.replay_button = QPushButton("Replay best", objectName="optimizeReplayBest", enabled=False)
        self.replay_button.setToolTip("open the winner in the Backtest tab on the data after its first training part")
        self.replay_button.clicked.connect(self.replay_best)
        right = QWidget()
        rl = QVBoxLayout(right)
        charts = QSplitter(Qt.Horizontal)
        charts.addWidget(self.history)
        box = QWidget()
        bl = QVBoxLayout(box)
        bl.setContentsMargins(0, 0, 0, 0)
        bl.addLayout(axes)
        bl.addWidget(self.scatter)
        charts.addWidget(box)
        rl.addWidget(charts, 3)
        rl.addWidget(self.table, 2)
        rl.addWidget(self.best_label)
        bottom = QHBoxLayout()
        bottom.addWidget(self.save_button)
        bottom.addWidget(self.replay_button)
        bottom.addStretch(1)
        rl.addLayout(bottom)
        self.splitter = QSplitter(Qt.Horizontal, objectName="optimizeSplitter")
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(1, 3)
        QVBoxLayout(self).addWidget(self.splitter)
        self._fill_ranges(self.strategy.currentText())

    # -- the search as defined ------------------------------------------------------------------
    def _fill_ranges(self, strategy: str) -> None:
        space = SPACES[strategy]
        defaults = CONFIGS[strategy]()
        self.ranges.setRowCount(0)
        for f in dataclasses.fields(defaults):
            default = getattr(defaults, f.name)
            if f.name in NOT_SEARCHABLE or default is None:
                continue
            if f.name in space:
                text = space[f.name].describe()
            elif f.name in CHOICES:
                text = Choice(CHOICES[f.name]).describe()
            elif isinstance(default, bool):
                text = "true|false"
            elif isinstance(default, int):
                text = f"{max(1, default // 2)}..{max(2, default * 2)}"
            elif default > 0:
                text = f"{default / 2:g}..{default * 2:g}"
            else:
                continue  # zero means "off": no range to guess
            r = self.ranges.rowCount()
            self.ranges.insertRow(r)
            check = QCheckBox(objectName=f"search_{f.name}")
            check.setChecked(f.name in space)
            self.ranges.setCellWidget(r, SEARCH, check)
            name = QTableWidgetItem(settings_text.label(f.name))  # (the name the study and files use: data)
            name.setData(Qt.UserRole, f.name)
            name.setToolTip(f"{f.name}: {settings_text.help_text(f.name)}")
            name.setFlags(name.flags() & ~Qt.ItemIsEditable)
            self.ranges.setItem(r, NAME, name)
            self.ranges.setItem(r, RANGE, QTableWidgetItem(text.replace(" (log)", ":log")))
            shown = QTableWidgetItem(str(default))
            shown.setFlags(shown.flags() & ~Qt.ItemIsEditable)
            self.ranges.setItem(r, DEFAULT, shown)
        self.ranges.resizeColumnsToContents()

    def set_range(self, name: str, text: str | None) -> None:
        """Search ``name`` over ``text`` (None: do not search it)."""
        for r in range(self.ranges.rowCount()):
            if self.ranges.item(r, NAME).data(Qt.UserRole) == name:
                self.ranges.cellWidget(r, SEARCH).setChecked(text is not None)
                if text is not None:
                    self.ranges.item(r, RANGE).setText(text)
                return
        raise KeyError(name)

    def space(self) -> dict:
        """The checked rows as ranges; a bad one is marked and refused by its name."""
        space, defaults = {}, SPACES[self.strategy.currentText()]
        for r in range(self.ranges.rowCount()):
            name = self.ranges.item(r, NAME).data(Qt.UserRole)
            self.ranges.item(r, RANGE).setBackground(Qt.transparent)
            if not self.ranges.cellWidget(r, SEARCH).isChecked():
                continue
            try:
                space[name] = parse_range(name, self.ranges.item(r, RANGE).text(), defaults.get(name))
            except ParamError:
                self.ranges.item(r, RANGE).setBackground(Qt.red)
                raise
        if not space:
            raise ParamError("search", "check at least one setting to search")
        return space

    def _add_data(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Candle files", "", "Candles (*.csv *.json *.parquet *.pq)")
        self.data_list.addItems(paths)

    # -- running ------------------------------------------------------------------------------
    def start(self) -> asyncio.Task | None:
        try:
            space = self.space()
        except ParamError as exc:
            self._error(exc)
            return None
        sources = [self.data_list.item(i).text() for i in range(self.data_list.count())]
        resample = "" if self.resample.currentText() == "as is" else self.resample.currentText()
        options = dict(space=space, windows=self.windows.value(), resample=resample,
                       funding_path=self.funding.text().strip(), storage=self.storage.text().strip() or None,
                       study=self.study.text().strip() or None,
                       seed=self.seed.value() if self.seed.value() >= 0 else None)
        strategy = self.strategy.currentText()
        target = self.trials.value()
        self.stop.clear()

        async def work():
            self.search = search = await self.controller.open_search(strategy, sources, **options)
            self.status.setText(f"study <b>{html.escape(search.study_name)}</b> in {html.escape(search.storage_url)}")
            self.controls.show_progress(0, target, "")
            here = asyncio.get_running_loop()

            def snapshot():  # read in the search's thread: the storage may be a remote database
                trials = search.study.get_trials(deepcopy=False)
                return trials, search.table(trials)

            def progress(p):
                here.call_soon_threadsafe(self._progress, p, *snapshot())

            def finish():
                trials, frame = snapshot()
                if math.isnan(search.best_value()):  # no complete trial
                    return trials, frame, None
                return trials, frame, (search.best_trial(), search.holdout(), search.importances())

            await self.controller.in_pool(lambda: search.run(target, stop=self.stop, progress=progress))
            trials, frame, best = await self.controller.in_pool(finish)
            self._show_trials(trials, frame)
            if best is not None:
                self._show_best(*best)

        self.controls.start()
        self._task = self.controller.spawn(self._guarded(work()))
        return self._task

    async def _guarded(self, coro) -> None:
        try:
            await coro
            if self.stop.is_set():
                self.status.setText(self.status.text() + " — stopped; finished trials are kept")
        except Exception as exc:
            self._error(exc)
        finally:
            self.controls.finish(clear=False)  # (the trials it made stay in sight)
            self._task = None

    def _error(self, exc: Exception) -> None:
        self.status.setText(error_html(exc))

    def _progress(self, p, trials, frame) -> None:
        eta = "--" if p.eta_s == float("inf") else f"{p.eta_s:.0f} s"
        self.controls.show_progress(p.done, p.target, f"{p.done}/{p.target} trials, best {p.best:.4g}, ETA {eta}")
        self._show_trials(trials, frame)

    def _show_trials(self, trials, frame) -> None:
        done = [t for t in trials if t.state.name == "COMPLETE"]
        if done:
            x = np.array([t.number for t in done], dtype=float)
            y = np.array([t.value for t in done])
            self.trial_dots.setData(x, y)
            oos = [(t.number, t.user_attrs.get("oos")) for t in done if t.user_attrs.get("oos") is not None]
            self.oos_dots.setData([a for a, _ in oos], [b for _, b in oos])
            best = np.maximum.accumulate(y)
            self.best_line.setData(x, best)
        self.model.set_frame(frame)
        if self.search is not None:
            names = list(self.search.setup.space)
            if [self.x_param.itemText(i) for i in range(self.x_param.count())] != names:
                for combo, pick in ((self.x_param, 0), (self.y_param, min(1, len(names) - 1))):
                    combo.blockSignals(True)
                    combo.clear()
                    combo.addItems(names)
                    combo.setCurrentIndex(pick)
                    combo.blockSignals(False)
        self._done = done
        self._draw_scatter()

    def _draw_scatter(self, *_) -> None:
        done = self._done
        xn, yn = self.x_param.currentText(), self.y_param.currentText()
        if not done or not xn or not yn:
            self.scatter_dots.setData([], [])
            return
        x, xl = _axis([t.params.get(xn) for t in done])
        y, yl = _axis([t.params.get(yn) for t in done])
        v = np.array([t.value for t in done])
        lo, hi = float(v.min()), float(v.max())
        shade = (v - lo) / (hi - lo) if hi > lo else np.full(len(v), 0.5)
        cmap = pg.colormap.get("viridis")
        self.scatter_dots.setData(x, y, brush=[pg.mkBrush(cmap.map(s, mode="qcolor")) for s in shade],
                                  data=[t.number for t in done])
        for side, name, words in (("bottom", xn, xl), ("left", yn, yl)):
            self.scatter.setLabel(side, name + (f" ({', '.join(words)})" if words else ""))
            self.scatter.getAxis(side).setTicks([list(enumerate(words))] if words else None)
            axis = "x" if side == "bottom" else "y"
            if words:  # room for the words at both ends
                self.scatter.getViewBox().setRange(**{f"{axis}Range": (-0.5, len(words) - 0.5)}, padding=0)
            else:
                self.scatter.getViewBox().enableAutoRange(axis=axis)
        self.scatter.setTitle(f"in-sample score: dark {lo:.3g} … light {hi:.3g}", size="9pt")

    def _show_best(self, t, hold, imp) -> None:
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items())
        oos = t.user_attrs.get("oos")
        self.best_label.setText(
            f"<b>Best: trial {t.number}</b> — {html.escape(params)}<br>"
            f"in-sample {t.value:.4f} · out-of-sample {'n/a' if oos is None else f'{oos:.4f}'} · "
            f"held-out tail {hold['score']:.4f}"
            + ("<br>importance: " + ", ".join(f"{k} {v:.2f}" for k, v in imp.items()) if imp else ""))
        self.best_hold = hold
        self.save_button.setEnabled(True)
        self.replay_button.setEnabled(True)

    # -- the winner ---------------------------------------------------------------------------
    def save_best(self, path: str | None = None) -> Path | None:
        if self.search is None:
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save best settings", f"best-{self.search.study_name}.json",
                                                  "JSON (*.json)")
            if not path:
                return None
        best = self.search.best_json()
        best["optimized"]["holdout"] = self.best_hold["score"]
        Path(path).write_text(json.dumps(best, indent=2))
        return Path(path)

    def replay_best(self) -> None:
        """The winner on the first data set from its first test part to the end (every bar no
        trial trained on: the test parts and the held-out tail), in the Backtest tab."""
        s = self.search
        ds = s.setup.data[0]
        start = ds.split.windows[0].test[0]
        candles = ds.candles.slice(start, len(ds.candles))
        label = f"{ds.name} out-of-sample {ds.period(start, len(ds.candles))} (study {s.study_name})"
        self.replayRequested.emit(s.setup.strategy, s.best_config(), candles, ds.funding, label)


def _axis(values: list) -> tuple[np.ndarray, list[str]]:
    """Numbers as they are; words (choices) as their index, with the words for the label."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=float), []
    words = sorted({str(v) for v in values})
    return np.array([words.index(str(v)) for v in values], dtype=float), words
