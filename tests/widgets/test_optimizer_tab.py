"""The Optimizer tab driven like a user, on the real candles in ../shared/data: define the
ranges, run in the background, see the trials, the best-score chart and the scatter agree with
the study, stop, save the best, and replay the winner in the Backtest tab."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("PySide6")

from conftest import BTC_5M, ETH_5M, shared_file, shown
from PySide6.QtCore import Qt

from app.controller import Controller
from app.main_window import MainWindow
from engine.strategies.registry import read_settings
from widgets.roles import TOOLTIP


@pytest.fixture
def window(tmp_path, qtbot):
    w = shown(qtbot, MainWindow(Controller(tmp_path, keys=lambda ex: None)))
    tab = w.optimizer
    w.tabs.setCurrentWidget(tab)
    tab.data_list.clear()
    tab.data_list.addItems([str(shared_file(BTC_5M)), str(shared_file(ETH_5M))])
    tab.storage.setText(f"sqlite:///{tmp_path / 'studies.db'}")
    tab.windows.setValue(2)
    tab.seed.setValue(4)
    return w


def test_search_runs_in_the_background_and_shows_the_study(loop, window, tmp_path):
    tab = window.optimizer
    tab.set_range("levels", "10..40")
    tab.set_range("trailing", None)
    tab.trials.setValue(12)
    tab.run_button.click()
    assert not tab.run_button.isEnabled() and tab.cancel_button.isEnabled()
    loop.run_until_complete(tab._task)
    assert tab.run_button.isEnabled(), tab.status.text()
    study = tab.search.study
    trials = study.trials
    done = [t for t in trials if t.state.name == "COMPLETE"]
    assert len([t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]) == 12
    assert tab.progress.value() == 12 and "12/12 trials" in tab.progress.format()
    # the table is the study; the chart's dots are its complete trials; the line is the best so far
    assert tab.model.rowCount() == len(trials)
    assert {"in_sample", "oos", "levels", "range_pct", "spacing"} <= set(tab.model.frame.columns)
    assert "trailing" not in tab.model.frame.columns
    # the settings by their labels, as the editor names them; the stored name in the tooltip
    headers = {tab.model.headerData(i, Qt.Horizontal): tab.model.headerData(i, Qt.Horizontal, TOOLTIP)
               for i in range(tab.model.columnCount())}
    assert headers["Range around the price (fraction)"] == "range_pct" and headers["in sample"] == "in_sample"
    x, y = tab.trial_dots.getData()
    assert list(x) == [t.number for t in done] and list(y) == [t.value for t in done]
    _, best = tab.best_line.getData()
    assert best[-1] == study.best_value == max(y)
    assert len(tab.scatter_dots.data) == len(done)
    tab.x_param.setCurrentText("range_pct")
    tab.y_param.setCurrentText("spacing")
    xs = tab.scatter_dots.data["x"]
    assert np.allclose(sorted(xs), sorted(t.params["range_pct"] for t in done))
    assert "spacing (arithmetic, geometric)" in tab.scatter.getPlotItem().getAxis("left").labelText
    b = study.best_trial
    assert f"trial {b.number}" in tab.best_label.text() and "out-of-sample" in tab.best_label.text()
    assert "held-out tail" in tab.best_label.text()
    # the best settings, saved, are what the backtest reads
    path = tab.save_best(str(tmp_path / "best.json"))
    assert read_settings(path)[0] == "spot-grid"
    params = read_settings(path)[1]
    assert {k: params[k] for k in b.params} == b.params
    assert json.loads(path.read_text())["optimized"]["holdout"] == pytest.approx(tab.best_hold["score"])
    # "Replay best": the Backtest tab runs the winner from the first test part to the end
    tab.replay_button.click()
    assert window.tabs.currentWidget() is window.backtest
    loop.run_until_complete(window.backtest._task)
    run = window.backtest.run
    ds = tab.search.setup.data[0]
    assert run is not None and run.n_bars == len(ds.candles) - ds.split.windows[0].test[0]
    assert run.result.config["levels"] == b.params["levels"]
    assert "out-of-sample" in window.backtest.data.currentText()


def test_a_bad_range_is_refused_by_name(loop, window):
    tab = window.optimizer
    tab.set_range("levels", "60..10")
    assert tab.start() is None
    assert "--levels" in tab.status.text()


def test_stop_keeps_finished_trials(loop, window):
    import asyncio

    tab = window.optimizer
    tab.trials.setValue(10_000)
    tab.run_button.click()
    task = tab._task

    async def stop_after_some_trials():
        while tab.progress.value() < 4:
            assert not task.done(), tab.status.text()
            await asyncio.sleep(0.05)
        tab.cancel_button.click()
        await task

    loop.run_until_complete(asyncio.wait_for(stop_after_some_trials(), 120))
    states = [t.state.name for t in tab.search.study.trials]
    assert "RUNNING" not in states and states.count("COMPLETE") >= 1
    assert "stopped" in tab.status.text()
    assert tab.run_button.isEnabled() and tab.replay_button.isEnabled()


def test_without_a_storage_the_study_is_kept_in_the_apps_data_folder(loop, window, tmp_path):
    # (griddesk gui --data-dir D wrote its studies to the default folder)
    tab = window.optimizer
    tab.storage.clear()
    tab.trials.setValue(2)
    tab.run_button.click()
    loop.run_until_complete(tab._task)
    assert tab.search.storage_url == f"sqlite:///{tmp_path / 'optuna.db'}", tab.status.text()
    assert str(tmp_path / "optuna.db") in tab.status.text()
    assert len(tab.search.study.trials) == 2
