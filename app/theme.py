"""Light and dark themes: a Fusion palette, a style sheet from resources/themes, and the
charts' (pyqtgraph's) background and axes, switched at run time."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from app.controller import ROOT

THEMES_DIR = ROOT / "resources" / "themes"
# Palette roles and the charts' colors per theme.
THEMES = {
    "dark": {"window": "#131722", "base": "#1e222d", "alt": "#232733", "text": "#d1d4dc", "button": "#2a2e39",
             "highlight": "#2962ff", "link": "#5b9cf6", "muted": "#787b86", "chart_bg": "#131722",
             "chart_fg": "#b2b5be"},
    "light": {"window": "#f3f4f7", "base": "#ffffff", "alt": "#f7f8fa", "text": "#131722", "button": "#e9ebf0",
              "highlight": "#2962ff", "link": "#1e53e5", "muted": "#787b86", "chart_bg": "#ffffff",
              "chart_fg": "#434651"},
}
DEFAULT_THEME = "dark"


def palette(name: str) -> QPalette:
    t = THEMES[name]
    p = QPalette()
    roles = {QPalette.Window: "window", QPalette.WindowText: "text", QPalette.Base: "base",
             QPalette.AlternateBase: "alt", QPalette.Text: "text", QPalette.Button: "button",
             QPalette.ButtonText: "text", QPalette.ToolTipBase: "base", QPalette.ToolTipText: "text",
             QPalette.Highlight: "highlight", QPalette.Link: "link", QPalette.PlaceholderText: "muted",
             QPalette.BrightText: "highlight"}
    for role, key in roles.items():
        p.setColor(role, QColor(t[key]))
    p.setColor(QPalette.HighlightedText, QColor("#ffffff"))
    for role in (QPalette.WindowText, QPalette.Text, QPalette.ButtonText):
        p.setColor(QPalette.Disabled, role, QColor(t["muted"]))
    return p


def legend_colors(legend: pg.LegendItem) -> None:
    """A legend in the charts' colours of the theme applied: its box nearly opaque over the
    chart, its text the axes' colour (a dark box with grey text was unreadable on white)."""
    t = THEMES[QApplication.instance().property("griddeskTheme") or DEFAULT_THEME]
    bg = pg.mkColor(t["chart_bg"])
    bg.setAlpha(225)
    legend.setBrush(pg.mkBrush(bg))
    legend.setPen(pg.mkPen(t["muted"]))
    legend.setLabelTextColor(t["chart_fg"])
    for _, label in legend.items:  # (the labels drawn so far)
        label.setText(label.text, color=t["chart_fg"])


def apply_theme(name: str, app: QApplication | None = None) -> str:
    """Apply theme ``name`` (an unknown name falls back to the default) to the application and
    every chart in it; later charts take it from pyqtgraph's options. Returns the name applied."""
    name = name if name in THEMES else DEFAULT_THEME
    app = app or QApplication.instance()
    t = THEMES[name]
    app.setStyle("Fusion")
    app.setPalette(palette(name))
    app.setStyleSheet((THEMES_DIR / f"{name}.qss").read_text())
    pg.setConfigOptions(background=t["chart_bg"], foreground=t["chart_fg"])
    app.setProperty("griddeskTheme", name)
    for w in app.allWidgets():
        if isinstance(w, pg.GraphicsView):
            w.setBackground(t["chart_bg"])
            for item in w.scene().items():
                if isinstance(item, pg.AxisItem):
                    item.setPen(t["chart_fg"])
                    item.setTextPen(t["chart_fg"])
                elif isinstance(item, pg.LegendItem):  # the chart's own colours: readable on either
                    legend_colors(item)
    return name
