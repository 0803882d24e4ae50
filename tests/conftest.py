"""Shared fixtures. Qt runs offscreen in every test (set before any Qt import)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
pytest_plugins = ["hang_report"]  # (tests/hang_report.py: where a test hung or its worker died)
SHARED_DATA = Path(os.environ.get("GRIDDESK_SHARED_DATA", ROOT.parent / "shared" / "data"))

BTC_5M = "BTCUSDT-5m-binance-2020-2021.csv"
ETH_5M = "ETHUSDT-5m-binance-2020-2021.csv"
BTC_1H = "BTCUSDT-1h-binance-2017-2022.csv"
FUNDING = "BTCUSDT-funding-8h-binance-2020-2023.csv"


def shared_file(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.fail(f"real market data missing: {path} (set GRIDDESK_SHARED_DATA to the shared/data folder)")
    return path


_cache: dict = {}


def real_candles(name: str):
    """Candles from ../shared/data, loaded once per test session (tests must not mutate them)."""
    from engine.data import load_candles

    if name not in _cache:
        _cache[name] = load_candles(shared_file(name))
    return _cache[name]


@pytest.fixture(scope="session")
def btc5m():
    return real_candles(BTC_5M)


@pytest.fixture(scope="session")
def eth5m():
    return real_candles(ETH_5M)


@pytest.fixture(scope="session")
def btc1h():
    return real_candles(BTC_1H)


@pytest.fixture(scope="session")
def sample_candles():
    """The bundled sample (resources/sample): 2024, 15-minute bars."""
    from engine.data import load_candles
    from engine.sample import SAMPLE_PATH

    return load_candles(SAMPLE_PATH)


@pytest.fixture(autouse=True)
def _collect_qt_garbage_on_the_gui_thread(request):
    """In a Qt test, garbage is collected on the GUI thread only, as the app does (app/gui.py):
    left to the automatic collector, a worker thread (a backtest compiling its kernel) can
    delete a widget caught in a reference cycle, and Qt crashes. Collected again after it."""
    import gc

    qt = "qtbot" in request.fixturenames or "qapp" in request.fixturenames
    collector = None
    if qt:
        from app.gui import gui_thread_gc

        request.getfixturevalue("qapp")
        collector = gui_thread_gc()
    yield
    if collector is not None:
        collector.timer.stop()
        gc.enable()
        gc.collect()


def shown(qtbot, widget, width: int = 1500, height: int = 900):
    """``widget`` shown (offscreen) at ``width`` x ``height``, closed after the test."""
    qtbot.addWidget(widget)
    widget.resize(width, height)
    widget.show()
    return widget


@pytest.fixture
def loop(qapp):
    """A qasync event loop on the test's QApplication (Qt and asyncio on one loop, as in the app)."""
    import asyncio

    import qasync

    lp = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(lp)
    yield lp
    lp.close()
    asyncio.set_event_loop(None)


@pytest.fixture
def file_keyring(tmp_path, monkeypatch):
    """The OS keyring replaced by a file one (tests/file_keyring.py) for the test; its file."""
    import keyring
    from file_keyring import FileKeyring

    path = tmp_path / "keyring.json"
    monkeypatch.setenv("GRIDDESK_TEST_KEYRING", str(path))
    old = keyring.get_keyring()
    keyring.set_keyring(FileKeyring())
    yield path
    keyring.set_keyring(old)
