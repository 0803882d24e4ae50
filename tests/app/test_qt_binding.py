"""The Qt binding keeps Python's reference counts right. PySide6 6.12.0 dropped a reference to
None on every call of a method that returns nothing, so a running app died with "none_dealloc"
after a few thousand calls; pyproject.toml excludes it, and this catches a release like it."""

import sys

from PySide6.QtWidgets import QLabel, QSlider


def test_void_methods_keep_none_alive(qtbot):
    slider, label = QSlider(), QLabel()
    qtbot.addWidget(slider)
    qtbot.addWidget(label)
    before = sys.getrefcount(None)
    for i in range(200):
        slider.setValue(i % 50)
        slider.setRange(0, 100)
        label.setText("x")
    # a healthy binding leaves None's count where it was (give or take a few frames' worth)
    assert sys.getrefcount(None) >= before - 20, "the Qt binding leaks references to None: see pyproject.toml"
