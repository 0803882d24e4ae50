"""Add / edit a system: exchange, symbol, market (spot: the spot grids; perpetual: the adaptive
long/short grid, the long grid, the futures grid), the strategy's main settings with a live
preview of the net profit per grid after fees and the capital per level (a perpetual's
estimated liquidation prices); refused field by field. Presets, a settings file and
"All settings…" (the Backtest tab's editor, every setting of the strategy) set the rest."""

from __future__ import annotations

import dataclasses
import difflib

from PySide6.QtCore import QStringListModel, Qt, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QCompleter,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.controller import RUNTIME_STRATEGIES, ConfigError, SystemConfig
from engine.data import TIMEFRAMES_MS
from engine.optimize.suggest import PERIODS as SUGGEST_PERIODS
from engine.strategies import adaptive_grid, futures_grid, infinity_grid
from engine.strategies.adaptive_grid import AdaptiveGridConfig
from engine.strategies.errors import ParamError
from engine.strategies.registry import CHOICES, CONFIGS, PRESETS, read_settings, spec
from engine.strategies.settings_text import help_text, label
from engine.strategies.spot_grid import SpotGridConfig, build_params, check_grid, planned_grid
from widgets.params_editor import ParamsEditor
from widgets.tasks import when_done


def _spin(lo, hi, decimals, value, step=None, name=""):
    w = QDoubleSpinBox(objectName=name)
    w.setRange(lo, hi)
    w.setDecimals(decimals)
    w.setValue(value)
    if step:
        w.setSingleStep(step)
    return w


FEE_FIELDS = ("fee", "maker_fee")  # shown in percent
ASSUMED_PRICE = 42_000.0  # a preview's price until the symbol's is known (said so on the preview)
FEE_PERCENT = 100.0  # the form shows fees in percent; the settings keep fractions


class SystemDialog(QDialog):
    def __init__(self, parent=None, cfg: SystemConfig | None = None, *, existing: set[str] = frozenset(),
                 reference_price: float | None = None, exchanges=("binance",), title: str | None = None, symbols=None,
                 prices=None, suggest=None):
        super().__init__(parent)
        self.setObjectName("systemDialog")
        self.setWindowTitle(title or ("Edit system" if cfg else "Add system"))
        self.existing = set(existing)
        # the price a preview and a range "from the price" are worked out at: given (a backtest's
        # last close), else the symbol's (``prices``: the controller's lookup, asked as it changes)
        self.prices_source = prices
        self.reference_price = reference_price or ASSUMED_PRICE
        self.price_from = "the backtest's last close" if reference_price else \
            f"assumed: the price of {cfg.symbol if cfg else 'the symbol'} is not known yet"
        self._price_asked: tuple | None = None
        self.result_config: SystemConfig | None = None
        self.was_live = cfg is not None and cfg.mode == "live" and not cfg.dry_run
        cfg = cfg or SystemConfig(name="", params={"levels": 20, "spacing": "geometric", "trailing": "both"},
                                  data="sample")
        # settings this form does not show are kept as they were, per strategy
        self.base = {name: {} for name in RUNTIME_STRATEGIES}
        self.base[cfg.strategy] = dict(cfg.params)
        own = CONFIGS[cfg.strategy].from_dict(cfg.params)  # (the form's rows: its market's)
        p = own if isinstance(own, SpotGridConfig) else SpotGridConfig()
        a = own if isinstance(own, AdaptiveGridConfig) else AdaptiveGridConfig()
        f = QFormLayout()
        self.name = QLineEdit(cfg.name, objectName="systemName")
        self.exchange = QComboBox(objectName="systemExchange")
        self.exchange.setEditable(True)
        self.exchange.addItems(list(exchanges))
        self.exchange.setCurrentText(cfg.exchange)
        self.symbol = QLineEdit(cfg.symbol, objectName="systemSymbol")
        # the exchange's markets, when it answers (``symbols``: the controller's lookup)
        self.symbols_source = symbols
        self.known: set[str] | None = None  # None: not known, any symbol is accepted
        self._asked: tuple[str, str] | None = None
        self.symbol_model = QStringListModel(self)
        completer = QCompleter(self.symbol_model, self)
        completer.setCaseSensitivity(Qt.CaseInsensitive)
        completer.setFilterMode(Qt.MatchContains)
        self.symbol.setCompleter(completer)
        self.symbol_note = QLabel(objectName="symbolNote")
        self.symbol_note.setWordWrap(True)
        self._lookup_timer = QTimer(self, singleShot=True, interval=400)
        self._lookup_timer.timeout.connect(self.look_up_symbols)
        self.market = QComboBox(objectName="systemMarket")
        self.market.addItems(sorted(set(RUNTIME_STRATEGIES.values()), key=("spot", "perpetual").index))
        self.timeframe = QComboBox(objectName="systemTimeframe")
        self.timeframe.addItems(list(TIMEFRAMES_MS))
        self.timeframe.setCurrentText(cfg.timeframe)
        self.strategy = QComboBox(objectName="systemStrategy")
        self.preset = QComboBox(objectName="systemPreset")
        self.preset.activated.connect(self._preset_chosen)
        self.grid_mode = QComboBox(objectName="gridMode")
        self.grid_mode.addItems(["range", "lower-only"])
        self.grid_mode.setCurrentText(p.mode)
        self.spacing = QComboBox(objectName="gridSpacing")
        self.spacing.addItems(["arithmetic", "geometric", "atr"])
        self.spacing.setCurrentText(p.spacing)
        self.lower = _spin(0, 1e9, 2, p.lower, 100, "gridLower")
        self.upper = _spin(0, 1e9, 2, p.upper, 100, "gridUpper")
        self.levels = QSpinBox(objectName="gridLevels")
        self.levels.setRange(2, 5000)
        self.levels.setValue(int(p.levels))
        self.range_pct = _spin(0.001, 0.99, 4, p.range_pct, 0.01, "gridRangePct")
        self.step = _spin(0.001, 0.5, 4, float(getattr(own, "step", 0.01)), 0.001, "gridStep")  # (infinity grid)
        self.trailing = QComboBox(objectName="gridTrailing")
        self.trailing.addItems(["none", "up", "down", "both"])
        self.trailing.setCurrentText(p.trailing)
        self.fee = _spin(0, 9.9, 3, p.fee * FEE_PERCENT, 0.01, "gridFee")
        self.fee.setSuffix(" %")
        self.fee.setToolTip("the exchange's maker fee, in percent (Binance spot: 0.1 %)")
        # the perpetual grid's
        self.leverage = QSpinBox(objectName="perpLeverage")
        self.leverage.setRange(1, 125)
        self.leverage.setValue(max(1, round(a.leverage)))
        self.leverage.setToolTip("isolated margin, hedge mode; a whole number (the exchange's setting)")
        self.order_frac = _spin(0.001, 0.5, 3, a.order_frac, 0.005, "perpOrderFrac")
        self.atr_k = _spin(0, 20, 2, a.atr_k, 0.1, "perpAtrK")
        self.stop_m = _spin(0.1, 50, 2, a.stop_m, 0.5, "perpStopM")
        self.maker_fee = _spin(-0.1, 0.5, 4, a.maker_fee * FEE_PERCENT, 0.001, "perpMakerFee")
        self.maker_fee.setSuffix(" %")
        self.maker_fee.setToolTip("the exchange's maker fee on the perpetual, in percent; below 0 a rebate "
                                  "(Binance USDT-M, VIP 0: 0.02 %)")
        self.no_short = QCheckBox(label("no_short") + " (no short grid)", objectName="perpNoShort")
        self.no_short.setChecked(a.no_short)
        # the futures grid's
        fg = own if cfg.strategy == futures_grid.NAME else futures_grid.FuturesGridConfig()
        self.direction = QComboBox(objectName="futuresDirection")
        self.direction.addItems(list(CHOICES["direction"]))
        self.direction.setCurrentText(fg.direction)
        self.stop_top = _spin(0, 1e12, 2, fg.stop_top, 100, "futuresStopTop")
        self.stop_top.setSpecialValueText("none")
        self.stop_bottom = _spin(0, 1e12, 2, fg.stop_bottom, 100, "futuresStopBottom")
        self.stop_bottom.setSpecialValueText("none")
        self.stop_loss_pct = _spin(0, 1, 3, fg.stop_loss_pct, 0.01, "futuresStopLoss")
        self.stop_loss_pct.setSpecialValueText("none")
        self.take_profit_pct = _spin(0, 100, 3, fg.take_profit_pct, 0.01, "futuresTakeProfit")
        self.take_profit_pct.setSpecialValueText("none")
        self.capital = _spin(0, 1e12, 2, cfg.capital, 100, "systemCapital")  # (0 is refused by name, not clamped)
        self.trigger = _spin(0, 1e12, 2, float(cfg.params.get("trigger_price", 0.0)), 100, "systemTrigger")
        self.trigger.setSpecialValueText("none: lay the grid at once")
        self.mode = QComboBox(objectName="systemMode")
        self.mode.addItems(["paper", "live"])
        self.mode.setCurrentText(cfg.mode)
        self.dry_run = QCheckBox("Dry-run (orders decided and logged, not sent)", objectName="systemDryRun")
        self.dry_run.setChecked(cfg.dry_run)
        self.data = QComboBox(objectName="systemData")
        self.data.setEditable(True)
        self.data.addItems(["sample", ""])
        self.data.setCurrentText(cfg.data)
        self.data.setToolTip("paper on recorded candles: 'sample' or a file; empty: the exchange's live candles")
        # Suggest: settings from a walk-forward search on the symbol's recent history (``suggest``:
        # the controller's, asked with the form's market, candles and settings)
        self.suggest_source = suggest
        self.suggest_days = QComboBox(objectName="suggestDays")
        self.suggest_days.addItems([f"last {d} days" for d in SUGGEST_PERIODS])
        self.suggest_days.setCurrentIndex(1)
        self.suggest_button = QPushButton("Suggest", objectName="suggestButton")
        self.suggest_button.setToolTip("search the strategy's settings on the symbol's last days (the paper "
                                       "candles, else the exchange's) and fill the form with the best, with how "
                                       "they did on the part of those days no trial saw")
        self.suggest_button.clicked.connect(self.suggest)
        self.suggest_button.setEnabled(suggest is not None)
        self.suggest_note = QLabel(objectName="suggestNote", wordWrap=True)
        self.suggestion = None  # the last one taken into the form
        suggest_row = QWidget()
        sl = QHBoxLayout(suggest_row)
        sl.setContentsMargins(0, 0, 0, 0)
        sl.addWidget(self.suggest_days)
        sl.addWidget(self.suggest_button)
        sl.addStretch(1)
        self.preview = QLabel(objectName="gridPreview")
        self.preview.setWordWrap(True)
        self.preview.setMinimumHeight(self.preview.fontMetrics().lineSpacing() * 6)  # room for the longest preview
        self.error = QLabel(objectName="systemError")
        self.error.setStyleSheet("color: #c62828")
        self.error.setWordWrap(True)
        self.fields = {
            "name": self.name, "exchange": self.exchange, "symbol": self.symbol, "market": self.market,
            "timeframe": self.timeframe, "strategy": self.strategy, "mode": self.grid_mode, "spacing": self.spacing,
            "lower": self.lower, "upper": self.upper, "levels": self.levels, "range_pct": self.range_pct,
            "trailing": self.trailing, "fee": self.fee, "capital": self.capital, "system_mode": self.mode,
            "dry_run": self.dry_run, "data": self.data, "leverage": self.leverage, "order_frac": self.order_frac,
            "atr_k": self.atr_k, "stop_m": self.stop_m, "no_short": self.no_short, "maker_fee": self.maker_fee,
            "trigger_price": self.trigger, "step": self.step, "direction": self.direction, "stop_top": self.stop_top,
            "stop_bottom": self.stop_bottom, "stop_loss_pct": self.stop_loss_pct,
            "take_profit_pct": self.take_profit_pct,
        }
        # the strategies' settings this form shows, each strategy those of them it has
        self.setting_rows = {name: self.fields[name] for name in (
            "mode", "direction", "spacing", "lower", "upper", "range_pct", "step", "trailing", "fee", "leverage",
            "order_frac", "atr_k", "stop_m", "maker_fee", "no_short", "stop_top", "stop_bottom", "stop_loss_pct",
            "take_profit_pct")}
        self.form = f
        # the strategy's settings in the words of the Backtest tab's editor (settings_text), fees in percent
        for name, w in self.fields.items():
            if help_text(name) and not w.toolTip():
                w.setToolTip(help_text(name))
        for text, w in (("Name", self.name), ("Exchange", self.exchange), ("Symbol", self.symbol),
                        ("", self.symbol_note),
                        ("Market", self.market), ("Timeframe", self.timeframe), ("Strategy", self.strategy),
                        ("Preset", self.preset), ("Suggest from the", suggest_row), ("", self.suggest_note),
                        (label("mode"), self.grid_mode), (label("direction"), self.direction),
                        (label("spacing"), self.spacing),
                        (label("lower"), self.lower), (label("upper"), self.upper), (label("levels"), self.levels),
                        (label("range_pct"), self.range_pct), (label("step"), self.step),
                        (label("trailing"), self.trailing),
                        ("Fee (%)", self.fee), (label("leverage"), self.leverage),
                        (label("order_frac"), self.order_frac),
                        (label("atr_k") + ", 0.5% floor", self.atr_k), (label("stop_m"), self.stop_m),
                        ("Maker fee (%)", self.maker_fee),
                        ("", self.no_short), (label("stop_top"), self.stop_top),
                        (label("stop_bottom"), self.stop_bottom), (label("stop_loss_pct"), self.stop_loss_pct),
                        (label("take_profit_pct"), self.take_profit_pct), (label("capital"), self.capital),
                        (label("trigger_price"), self.trigger), ("Mode", self.mode),
                        ("", self.dry_run), ("Candles (paper)", self.data), ("Preview", self.preview)):
            f.addRow(text, w)
        self.market.setCurrentText(cfg.market)
        self._show_market(cfg.market, cfg.strategy)
        self._show_values(own)
        self.market.currentTextChanged.connect(self._market_changed)
        self.strategy.currentTextChanged.connect(self._strategy_changed)
        self.exchange.currentTextChanged.connect(lambda _: self._lookup_timer.start())  # typed: once it rests
        self.market.currentTextChanged.connect(lambda _: self.look_up_symbols())
        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        self.buttons.button(QDialogButtonBox.Ok).setObjectName("systemOk")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        importer = QPushButton("Import settings…", objectName="systemImport")
        importer.setToolTip("a settings file: exported by the Backtest tab's editor or written by the optimizer")
        importer.clicked.connect(self._import)
        self.buttons.addButton(importer, QDialogButtonBox.ResetRole)
        every = QPushButton("All settings…", objectName="systemAllSettings")
        every.setToolTip("every setting of the strategy, in the Backtest tab's editor")
        every.clicked.connect(self.edit_all)
        self.buttons.addButton(every, QDialogButtonBox.ResetRole)
        lay = QVBoxLayout(self)
        lay.addLayout(f)
        lay.addWidget(self.error)
        lay.addWidget(self.buttons)
        for w in self.fields.values():
            for sig in ("valueChanged", "currentTextChanged", "textChanged", "toggled"):
                if hasattr(w, sig):
                    getattr(w, sig).connect(self.update_preview)
                    break
        self._price_timer = QTimer(self, singleShot=True, interval=400)
        self._price_timer.timeout.connect(self.look_up_price)
        for w in (self.exchange, self.symbol, self.market, self.data):
            (w.currentTextChanged if hasattr(w, "currentTextChanged") else w.textChanged).connect(
                lambda _: self._price_timer.start())
        self.update_preview()
        self.look_up_symbols()
        self.look_up_price()

    @property
    def perpetual(self) -> bool:
        return self.market.currentText() == "perpetual"

    def _show_market(self, market: str, strategy: str = "") -> None:
        """The strategies of ``market`` (``strategy`` chosen, else the first) and its rows (the
        other market's rows hidden)."""
        strategies = [s for s, m in RUNTIME_STRATEGIES.items() if m == market]
        self.strategy.blockSignals(True)
        self.strategy.clear()
        self.strategy.addItems(strategies)
        self.strategy.setCurrentText(strategy if strategy in strategies else strategies[0])
        self.strategy.blockSignals(False)
        self._show_strategy()

    def _show_strategy(self) -> None:
        """The chosen strategy's presets and rows: a setting it holds fixed is not offered."""
        s = spec(self.strategy.currentText())
        self._shown = s.name
        self.preset.clear()
        self.preset.addItems(["(as set)", *s.presets])
        own = self._own_fields()
        for name, w in self.setting_rows.items():
            self.form.setRowVisible(w, name in own)
        two_sided = "no_short" in own  # (the adaptive grid's levels are a side's; the long grid has one side)
        self.form.labelForField(self.levels).setText("Levels a side" if two_sided else "Levels")
        endless = s.name == infinity_grid.NAME  # (its lower bound is its lowest price; it has no upper one)
        self.form.labelForField(self.lower).setText("Lowest price (0: from the price)" if endless else label("lower"))
        self.form.labelForField(self.range_pct).setText(
            "Lowest, below the price (fraction)" if endless else label("range_pct"))

    def _own_fields(self) -> set[str]:
        """The settings the chosen strategy takes from this form: its own, but those it holds fixed."""
        s = spec(self.strategy.currentText())
        return {f.name for f in dataclasses.fields(s.config)} - set(s.fixed)

    def _field_of(self, widget) -> str:
        return next(name for name, w in self.fields.items() if w is widget)

    def _strategy_changed(self, strategy: str) -> None:
        """Another strategy of the same market: its presets and rows, the form's values kept,
        but those it fixes (at their default) and those still at the last strategy's default
        (at its own: a fee the user never set is the new strategy's)."""
        before = CONFIGS[self._shown]() if self._shown in CONFIGS else None
        self._show_strategy()
        defaults = CONFIGS[strategy]()
        for name in spec(strategy).fixed:  # (hidden: at the value the strategy holds it to)
            if isinstance(self.fields.get(name), QCheckBox):
                self.fields[name].setChecked(getattr(defaults, name))
        if before is not None:
            shown = self.params()
            for name in self._own_fields() & set(self.setting_rows):
                if hasattr(before, name) and shown.get(name) == getattr(before, name):
                    self._show_value(name, getattr(defaults, name))
        self.update_preview()

    def _market_changed(self, market: str) -> None:
        """Another market: its strategy with its defaults, the symbol as that market writes it."""
        self._show_market(market)
        cfg = CONFIGS[self.strategy.currentText()]()
        self.levels.setValue(int(cfg.levels))
        sym = self.symbol.text().strip()
        if market == "perpetual" and sym.count("/") == 1 and ":" not in sym:
            self.symbol.setText(f"{sym}:{sym.split('/')[1]}")  # BTC/USDT -> BTC/USDT:USDT
        elif market == "spot" and ":" in sym:
            self.symbol.setText(sym.split(":")[0])
        self.update_preview()

    def look_up_symbols(self) -> None:
        """Ask the exchange for its markets of the chosen kind: a completer and a check when it
        answers; free text, said so, when it cannot be reached."""
        key = (self.exchange.currentText().strip(), self.market.currentText())
        if self.symbols_source is None or key == self._asked:
            return
        self._asked, self.known = key, None
        self.symbol_model.setStringList([])
        if when_done(self, self.symbols_source(*key), lambda found: self._found(key, found),
                     lambda exc: self._not_found(key, exc)):
            self.symbol_note.setText(f"asking {key[0]} for its {key[1]} markets…")

    def _found(self, key: tuple[str, str], found: list[str]) -> None:
        if key != self._asked:
            return  # the user has chosen another exchange or market meanwhile
        self.known = set(found)
        self.symbol_model.setStringList(found)
        self.symbol_note.setText(f"{len(found):,} {key[1]} markets on {key[0]}: type to search")
        self.update_preview()

    def _not_found(self, key: tuple[str, str], exc: Exception) -> None:
        if key == self._asked:
            reason = str(exc).split("\n")[0][:160]
            self.symbol_note.setText(f"{key[0]}'s markets could not be read ({reason}): any symbol is accepted")

    def suggest(self) -> bool:
        """Ask for settings from the symbol's recent history; the form takes them when they come
        (the note says how they did where no trial looked), or the note says why there are none."""
        if self.suggest_source is None:
            return False
        days = SUGGEST_PERIODS[self.suggest_days.currentIndex()]
        try:
            params = self.params()
            CONFIGS[self.strategy.currentText()].from_dict(params)
        except (ParamError, ValueError) as exc:
            self._suggest_note(self._say(exc)[1], error=True)
            return False
        key = (self.exchange.currentText().strip(), self.market.currentText(), self.symbol.text().strip(),
               self.timeframe.currentText(), self.data.currentText().strip(), self.strategy.currentText(), days)
        self.suggest_button.setEnabled(False)
        self._suggest_note(f"searching {key[5]}'s settings on the last {days} days of {key[2]} "
                          f"{key[3]} ({'the candles of ' + key[4] if key[4] else key[0]})…")

        def found(s) -> None:
            self.suggest_button.setEnabled(True)
            try:
                self.set_params(s.params)
            except ParamError as exc:
                failed(exc)
                return
            self.suggestion = s
            self._suggest_note(s.text())

        def failed(exc: Exception) -> None:
            self.suggest_button.setEnabled(True)
            detail = exc.detail if isinstance(exc, ParamError) else str(exc).split("\n")[0]
            self._suggest_note(f"No suggestion: {detail}", error=True)

        return when_done(self, self.suggest_source(*key, params), found, failed)

    def _suggest_note(self, text: str, error: bool = False) -> None:
        """The note under Suggest, in red for a refusal, the dialog grown to show it whole."""
        self.suggest_note.setStyleSheet("color: #c62828" if error else "")
        self.suggest_note.setText(text)
        self.suggest_note.setMinimumHeight(self.suggest_note.heightForWidth(max(self.suggest_note.width(), 300)))
        self.adjustSize()

    def look_up_price(self) -> None:
        """The symbol's last price (the candles a paper system trades, else the exchange's),
        for the preview and a range laid from the price."""
        key = (self.exchange.currentText().strip(), self.market.currentText(), self.symbol.text().strip(),
               self.data.currentText().strip())
        if self.prices_source is None or key == self._price_asked or not key[2]:
            return
        self._price_asked = key
        when_done(self, self.prices_source(*key), lambda found: self._price_found(key, found),
                  lambda exc: self._price_not_found(key, exc))

    def _price_found(self, key: tuple, found: tuple[float, str]) -> None:
        if key == self._price_asked:
            self.reference_price, self.price_from = found
            self.update_preview()

    def _price_not_found(self, key: tuple, exc: Exception) -> None:
        if key == self._price_asked:
            reason = str(exc).split("\n")[0][:120]
            self.price_from = f"assumed: the price of {key[2]} could not be read ({reason})"
            self.update_preview()

    def _say(self, exc: Exception) -> tuple[str | None, str]:
        """(the field at fault, the error in the form's words: its label, not a setting's or a
        command-line flag's name)."""
        if isinstance(exc, ParamError):
            field, detail = exc.name, exc.detail
        else:
            text = str(exc).removeprefix("system: ")
            field, _, detail = text.partition(": ")
            field = field.removeprefix("params.")
            if not detail:
                return None, text
        w = self.fields.get(field)
        shown = self.form.labelForField(w).text() if w is not None and self.form.labelForField(w) else ""
        return (field if w is not None else None), f"{shown or field}: {detail}"

    def import_settings(self, path) -> None:
        """The strategy's settings from a settings file (the optimizer's best, an editor export);
        refused whole, by the setting's name, when one is wrong."""
        self.set_params(read_settings(path, self.strategy.currentText())[1])

    def _price_at_start(self) -> tuple[float, bool]:
        """(the price the grid is laid at: its trigger price, else the symbol's; whether it is known)."""
        trigger = self.trigger.value()
        return trigger or self.reference_price, bool(trigger) or not self.price_from.startswith("assumed")

    def _check(self, params: dict):
        """The strategy's settings, validated (ParamError names the one that is wrong)."""
        cfg = CONFIGS[self.strategy.currentText()].from_dict(params)
        if isinstance(cfg, futures_grid.FuturesGridConfig):  # its range and stops against the price, once known
            price, known = self._price_at_start()
            futures_grid.check(cfg, price if known else None)
            return cfg
        if self.perpetual:
            adaptive_grid.build_params(cfg, 0)
            return cfg
        check_grid(build_params(cfg, self.reference_price), self.reference_price)
        return cfg

    def set_params(self, params: dict) -> None:
        """Take the strategy's settings ``params`` (the capital too, when given); refused whole,
        by the setting's name, before anything changes."""
        p = self._check({**self.params(), **params})
        self.base[self.strategy.currentText()].update({k: v for k, v in params.items() if k != "capital"})
        if "capital" in params:
            self.capital.setValue(p.capital)
        self.trigger.setValue(p.trigger_price)
        self._show_values(p)

    def _show_values(self, p) -> None:
        """The form's rows at the settings ``p`` has."""
        self.levels.setValue(int(p.levels))
        for name in self.setting_rows:
            if hasattr(p, name):
                self._show_value(name, getattr(p, name))

    def _show_value(self, name: str, v) -> None:
        """One setting's row at ``v`` (a fee in percent)."""
        w = self.setting_rows[name]
        if isinstance(w, QCheckBox):
            w.setChecked(bool(v))
        elif isinstance(w, QComboBox):
            w.setCurrentText(str(v))
        elif isinstance(w, QSpinBox):
            w.setValue(max(1, round(v)))
        else:
            w.setValue(float(v) * (FEE_PERCENT if name in FEE_FIELDS else 1.0))

    def _preset_chosen(self, index: int) -> None:
        if index > 0:
            strategy = self.strategy.currentText()
            self.set_params({**CONFIGS[strategy]().to_dict(), **PRESETS[strategy][self.preset.currentText()],
                             "capital": self.capital.value()})
            self.preset.setCurrentIndex(index)  # the changes it made do not count as the user's

    def edit_all(self) -> bool:
        """Every setting of the grid in the Backtest tab's editor; taken back on OK."""
        dlg = QDialog(self, objectName="systemSettingsDialog", windowTitle="All settings")
        editor = ParamsEditor(dlg, strategies=(self.strategy.currentText(),))
        editor.set_values({**self.params(), "capital": self.capital.value()})
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        lay = QVBoxLayout(dlg)
        lay.addWidget(editor, 1)
        lay.addWidget(buttons)
        dlg.resize(420, 640)
        self.settings_dialog = dlg  # for a test to drive

        def take() -> None:
            try:
                self.set_params(editor.config().to_dict())
            except ParamError as exc:
                editor.show_error(exc)
                return
            dlg.accept()

        buttons.accepted.connect(take)
        buttons.rejected.connect(dlg.reject)
        return bool(dlg.exec())

    def _import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import settings", "", "JSON (*.json)")
        if path:
            try:
                self.import_settings(path)
            except ParamError as exc:
                self.error.setText(str(exc))

    def params(self) -> dict:
        """The strategy's settings as the form has them (those of its rows, over what it keeps)."""
        base = {**self.base[self.strategy.currentText()], "trigger_price": self.trigger.value(),
                "levels": self.levels.value()}
        out = {}
        for name in self._own_fields() & set(self.setting_rows):
            w = self.setting_rows[name]
            if isinstance(w, QCheckBox):
                out[name] = w.isChecked()
            elif isinstance(w, QComboBox):
                out[name] = w.currentText()
            elif isinstance(w, QSpinBox):
                out[name] = float(w.value())  # (the leverage)
            else:
                out[name] = w.value() / (FEE_PERCENT if name in FEE_FIELDS else 1.0)
        return {**base, **out}

    def build(self) -> SystemConfig:
        """The system as entered; raises ConfigError / ParamError naming the field."""
        name = self.name.text().strip()
        if not name:
            raise ConfigError("name: is required")
        if name in self.existing:
            raise ConfigError(f"name: a system called {name!r} exists already")
        cfg = SystemConfig(name=name, exchange=self.exchange.currentText().strip(), symbol=self.symbol.text().strip(),
                           market=self.market.currentText(), timeframe=self.timeframe.currentText(),
                           strategy=self.strategy.currentText(), params=self.params(), capital=self.capital.value(),
                           mode=self.mode.currentText(), dry_run=self.dry_run.isChecked(),
                           data=self.data.currentText().strip())
        cfg.validate("system")
        if self.known is not None and cfg.symbol not in self.known:
            near = difflib.get_close_matches(cfg.symbol.upper(), self.known, n=1)
            hint = f": did you mean {near[0]}?" if near else ""
            raise ConfigError(f"symbol: {cfg.exchange} has no {cfg.market} market {cfg.symbol!r}{hint}")
        self._check(dict(cfg.params, capital=cfg.capital))
        return cfg

    def _mark(self, field: str | None) -> None:
        for name, w in self.fields.items():
            w.setStyleSheet("border: 1px solid #c62828" if name == field else "")

    def update_preview(self, *_) -> bool:
        self.preset.setCurrentIndex(0)  # a setting changed: the form no longer is the preset
        try:
            cfg = self.build()
        except (ConfigError, ParamError) as exc:
            field, text = self._say(exc)
            self._mark(field)
            self.error.setText(text)
            self.preview.setText("")  # (a preview of other settings would mislead)
            self.buttons.button(QDialogButtonBox.Ok).setEnabled(False)
            return False
        self._mark(None)
        self.error.setText("")
        self.buttons.button(QDialogButtonBox.Ok).setEnabled(True)
        # the grid is laid at the price at start: the trigger price when it has one
        trigger = float(cfg.params.get("trigger_price") or 0.0)
        price = trigger or self.reference_price
        at = (f"when the price reaches {trigger:,.2f} (now {self.reference_price:,.2f}, {self.price_from}): "
              if trigger else f"at {price:,.2f} ({self.price_from}): ")
        if cfg.strategy == futures_grid.NAME:
            self.preview.setText(at + self._futures_preview(
                futures_grid.FuturesGridConfig.from_dict(dict(cfg.params, capital=cfg.capital)), cfg.symbol, price))
            return True
        if self.perpetual:
            a = CONFIGS[cfg.strategy].from_dict(dict(cfg.params, capital=cfg.capital))
            order = a.order_frac * a.capital
            sides = "long only" if a.no_short else "long and short"
            try:
                lots, liq_long, liq_short = adaptive_grid.estimated_liquidation(a, cfg.symbol, price)
                liq = (f"; liquidation near {liq_long:,.2f} ({liq_long / price - 1:+.1%}) with {lots} lots long"
                       + ("" if a.no_short else f", {liq_short:,.2f} ({liq_short / price - 1:+.1%}) short"))
            except ValueError as exc:
                liq = f"; liquidation not estimated: {str(exc).removeprefix('tiers: ')}"
            self.preview.setText(
                f"{at}{sides}; {order:,.2f} an order "
                f"({a.levels} {'levels' if a.no_short else 'a side'}), margin {order / a.leverage:,.2f} at "
                f"{a.leverage:g}x; spacing {a.atr_k:g} × ATR, at least {a.atr_floor:.2%}: net profit per grid "
                f"after fees at least {a.atr_floor - 2 * a.maker_fee:.3%}{liq}")
            return True
        p = build_params(CONFIGS[cfg.strategy].from_dict(dict(cfg.params, capital=cfg.capital)), price)
        per_level = cfg.capital / p.levels
        planned = planned_grid(p, price)
        if planned is None:
            self.preview.setText(f"{at}ATR-spaced levels, laid from the price at start; {per_level:,.2f} per level")
            return True
        lv, lo, hi = planned
        per = f"{lo:.3%}" if abs(hi - lo) < 1e-9 else f"{lo:.3%} to {hi:.3%}"
        if cfg.strategy == infinity_grid.NAME:
            q, kept = infinity_grid.sizes(p, price)
            self.preview.setText(f"{at}net profit per grid after fees {per}; {q:,.2f} a level; keeps {kept:,.2f} "
                                 f"in the coin; buys down to {p.lower:,.2f}, no upper bound; orders from "
                                 f"{lv[0]:,.2f} to {lv[-1]:,.2f} around the price")
            return True
        self.preview.setText(f"{at}net profit per grid after fees {per}; {per_level:,.2f} per level; "
                             f"{lv[0]:,.2f} to {lv[-1]:,.2f}")
        return True

    @staticmethod
    def _futures_preview(f, symbol: str, price: float) -> str:
        """A futures grid laid at ``price``: its lines, sides, what a slot holds and makes, and
        where each side holding every slot is liquidated."""
        plan = futures_grid.planned(f, price)
        lines, lo, hi = plan.lines, *plan.profit
        slot = plan.slot_value
        per = f"{lo:.3%}" if f"{lo:.3%}" == f"{hi:.3%}" else f"{lo:.3%} to {hi:.3%}"
        sides = f"{int(plan.long.sum())} long slots, {int((~plan.long).sum())} short"
        start = (f"opens {int(plan.market.sum())} slots at market at start" if plan.market.any() else
                 "no position at start")
        try:
            liq_long, liq_short = futures_grid.estimated_liquidation(f, symbol, price)
            liq = "; estimated liquidation " + ", ".join(
                f"{name} {x:,.2f} ({x / price - 1:+.1%})" for name, x in (("long", liq_long), ("short", liq_short))
                if x is not None) if liq_long or liq_short else "; no liquidation price"
        except ValueError as exc:
            liq = f"; liquidation not estimated: {str(exc).removeprefix('tiers: ')}"
        return (f"{f.direction}: {len(lines)} lines {lines[0]:,.2f} to {lines[-1]:,.2f}, {sides}; {start}; "
                f"{slot:,.2f} a slot, margin {slot / f.leverage:,.2f} at {f.leverage:g}x; net profit per grid after "
                f"fees {per}{liq}")

    def confirm_live(self, cfg: SystemConfig) -> bool:
        """Going live (live mode, dry-run off) needs the symbol typed to confirm."""
        if cfg.mode != "live" or cfg.dry_run or self.was_live:
            return True
        text, ok = QInputDialog.getText(self, "Trade live", f"{cfg.name} will send real orders to {cfg.exchange}.\n"
                                        f"Type the symbol ({cfg.symbol}) to confirm:")
        if ok and text.strip().upper() == cfg.symbol.upper():
            return True
        QMessageBox.warning(self, "Trade live", "Not confirmed: the system stays in dry-run.")
        self.dry_run.setChecked(True)
        return False

    def accept(self) -> None:
        if self.update_preview():
            cfg = self.build()
            if not self.confirm_live(cfg):
                return
            self.result_config = cfg
            super().accept()
