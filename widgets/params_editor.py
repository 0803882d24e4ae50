"""A strategy's settings as a form built from its settings class: every field with its
default, presets, import and export as JSON; a bad value is named with the reason."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from engine.strategies.errors import ParamError
from engine.strategies.registry import CHOICES, CONFIGS, PRESETS, STRATEGIES, config_from, read_settings, spec
from engine.strategies.settings_text import help_text, label

_HIDDEN = {"tiers"}  # a file path with its own default; set through an imported JSON


def _field_widget(f: dataclasses.Field, value):
    if f.name in CHOICES:
        w = QComboBox()
        w.addItems(list(CHOICES[f.name]))
        w.setCurrentText(str(value))
        return w
    if isinstance(f.default, bool):
        w = QCheckBox()
        w.setChecked(bool(value))
        return w
    if isinstance(f.default, int):
        w = QSpinBox()
        w.setRange(0, 1_000_000)
        w.setValue(int(value))
        return w
    return QLineEdit("" if value is None else f"{value:g}" if isinstance(value, float) else str(value))


def _read(f: dataclasses.Field, w):
    if isinstance(w, QComboBox):
        return w.currentText()
    if isinstance(w, QCheckBox):
        return w.isChecked()
    if isinstance(w, QSpinBox):
        return w.value()
    text = w.text().strip()
    if isinstance(f.default, str):
        return text
    if text == "" and f.default is None:
        return None  # "from the strategy's own rule"
    try:
        return float(text.replace(",", ""))
    except ValueError:
        raise ParamError(f.name, f"{text!r} is not a number") from None


class ParamsEditor(QWidget):
    """Strategy, preset and settings. ``config()`` gives the settings object or raises
    ParamError naming the field; the field at fault is outlined in red."""

    def __init__(self, parent=None, strategies=STRATEGIES):
        super().__init__(parent)
        self.setObjectName("paramsEditor")
        self.strategy = QComboBox(objectName="backtestStrategy")
        self.strategy.addItems(list(strategies))
        self.preset = QComboBox(objectName="backtestPreset")
        self.error = QLabel(objectName="paramsError", wordWrap=True)
        self.error.setStyleSheet("color: #c62828")
        self.form_host = QWidget()
        self.form = QFormLayout(self.form_host)
        # a label too long for the panel puts its field under it (the fields were cut to "rang")
        self.form.setRowWrapPolicy(QFormLayout.WrapLongRows)
        scroll = QScrollArea(widgetResizable=True)
        scroll.setWidget(self.form_host)
        imp = QPushButton("Import…", objectName="paramsImport")
        exp = QPushButton("Export…", objectName="paramsExport")
        imp.clicked.connect(self._import)
        exp.clicked.connect(self._export)
        top = QFormLayout()
        top.addRow("Strategy", self.strategy)
        top.addRow("Preset", self.preset)
        io = QHBoxLayout()
        io.addWidget(imp)
        io.addWidget(exp)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(scroll, 1)
        lay.addWidget(self.error)
        lay.addLayout(io)
        self.widgets: dict[str, QWidget] = {}
        self.strategy.currentTextChanged.connect(self._strategy_changed)
        self.preset.activated.connect(lambda _: self.apply_preset(self.preset.currentText()))
        self._strategy_changed(self.strategy.currentText())

    def _fields(self):
        """The settings the form shows: not those the strategy holds fixed."""
        strategy = self.strategy.currentText()
        hidden = _HIDDEN | set(spec(strategy).fixed)
        return [f for f in dataclasses.fields(CONFIGS[strategy]) if f.name not in hidden]

    def _strategy_changed(self, strategy: str) -> None:
        self.preset.blockSignals(True)
        self.preset.clear()
        self.preset.addItems(list(PRESETS.get(strategy, {})))
        self.preset.blockSignals(False)
        self.set_values(CONFIGS[strategy]().to_dict())

    def set_values(self, values: dict) -> None:
        """Lay the form out again with ``values`` (the rest from the defaults)."""
        defaults = CONFIGS[self.strategy.currentText()]().to_dict()
        while self.form.rowCount():
            self.form.removeRow(0)
        self.widgets = {}
        for f in self._fields():
            w = _field_widget(f, values.get(f.name, defaults[f.name]))
            w.setObjectName(f"param_{f.name}")
            if not isinstance(w, QCheckBox):  # room for a value: a narrow panel wraps the label above
                w.setMinimumWidth(w.fontMetrics().horizontalAdvance("0.000125") + 24)
            self.widgets[f.name] = w
            w.setToolTip(f"{help_text(f.name)} ({f.name})".lstrip())
            self.form.addRow(label(f.name), w)
        self._hidden = {k: v for k, v in values.items() if k in _HIDDEN}

    def apply_preset(self, name: str) -> None:
        self.preset.setCurrentText(name)
        self.set_values({**CONFIGS[self.strategy.currentText()]().to_dict(),
                         **PRESETS[self.strategy.currentText()].get(name, {})})

    def values(self) -> dict:
        fields = {f.name: f for f in self._fields()}
        return {**{name: _read(fields[name], w) for name, w in self.widgets.items()}, **self._hidden}

    def config(self):
        try:
            cfg = config_from(self.strategy.currentText(), self.values())
        except ParamError as exc:
            self.show_error(exc)
            raise
        except (TypeError, ValueError) as exc:
            err = ParamError("settings", str(exc))
            self.show_error(err)
            raise err from None
        self.show_error(None)
        return cfg

    def show_error(self, exc: ParamError | None) -> None:
        name = getattr(exc, "name", None)
        for field, w in self.widgets.items():
            w.setStyleSheet("border: 1px solid #c62828" if field == name else "")
        # in the form's words (a setting's label), not a command-line flag's
        self.error.setText("" if exc is None else f"{label(name)}: {exc.detail}" if name in self.widgets else str(exc))

    # -- JSON ---------------------------------------------------------------------------------
    def load_json(self, path: str | Path) -> None:
        """Settings from a JSON file: ``{"strategy": ..., "params": {...}}`` or a bare object of
        settings; unknown names are refused by name, nothing is half-applied."""
        named, params = read_settings(path)
        strategy = named or self.strategy.currentText()  # a bare object: settings of the strategy shown
        config_from(strategy, params)  # refuse before changing anything
        self.strategy.setCurrentText(strategy)
        self.set_values(params)

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        cfg = self.config()
        path.write_text(json.dumps({"strategy": self.strategy.currentText(), "params": cfg.to_dict()}, indent=2))
        return path

    def _import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import settings", "", "JSON (*.json)")
        if path:
            try:
                self.load_json(path)
            except ParamError as exc:
                self.show_error(exc)

    def _export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export settings", "settings.json", "JSON (*.json)")
        if path:
            with contextlib.suppress(ParamError):  # shown by config()
                self.save_json(path)
