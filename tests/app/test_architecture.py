"""Layering rules that hold the design together: the import contracts in pyproject.toml
(make lint runs lint-imports), and here what only running the code shows."""

import subprocess
import sys

from conftest import ROOT

CHECK = r"""
import importlib, pkgutil, sys
import engine
names = ["engine"] + [m.name for m in pkgutil.walk_packages(engine.__path__, "engine.")]
for name in names:
    importlib.import_module(name)
QT = ("PySide6", "shiboken6", "pyqtgraph", "qasync", "PyQt5", "PyQt6")
qt = sorted(m for m in sys.modules if m.split(".")[0] in QT)
print(len(names), "modules;", "Qt loaded:", qt)
sys.exit(1 if qt else 0)
"""


def test_importing_the_engine_loads_no_qt():
    out = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "modules" in out.stdout

