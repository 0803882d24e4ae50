"""The Backtest tab driven like a user: run on the sample, play, pause, step, seek by scrubber,
by trade and by keyboard, and check that what the chart and the panels show at the bar is the
backtest's own state there; compare two runs; export; a replay on real BTC candles."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
from conftest import BTC_1H, FUNDING, ROOT, shared_file, shown
from PySide6.QtCore import Qt

from app.controller import Controller
from engine.kernels import adaptive_grid as perp_kernel
from engine.replay import BAR_METRICS, MARKER_KINDS, format_metric
from widgets.backtest import BacktestTab
from widgets.transport import SPEEDS


@pytest.fixture
def tab(tmp_path, qtbot):
    return shown(qtbot, BacktestTab(Controller(tmp_path, keys=lambda ex: None)))


def run_now(loop, tab) -> None:
    tab.run_button.click()
    loop.run_until_complete(tab._task)
    assert tab.run is not None, tab.status.text()


def assert_shows_bar(tab) -> None:
    """The chart and the panels at the current bar equal the backtest result at that bar."""
    r, ch, bar = tab.run, tab.chart, tab.bar
    assert tab.scrubber.value() == bar
    orders = r.orders_at(bar)
    for side, item in ((1, ch.buy_orders), (-1, ch.sell_orders)):
        _, ys = item.getData()
        want = np.sort(orders["price"][orders["side"] == side]) if orders is not None else np.zeros(0)
        assert np.array_equal(np.sort(np.asarray(ys)[::2]) if ys is not None else np.zeros(0), want)
    i0, i1 = ch.visible_bars()
    assert i1 == bar + 1  # nothing after the current bar is drawn
    shown = sum(len(ch.markers[k].x) for k in MARKER_KINDS)
    fills = r.trades[(r.trades["bar"] >= i0) & (r.trades["bar"] <= bar)]
    assert shown == len(fills)
    m = r.metrics_at(bar)
    for row, k in enumerate(BAR_METRICS):
        assert tab.metrics.item(row, 0).text() == format_metric(k, m[k])
    held = r.result.position if r.long_qty is None else r.result.long_qty - r.result.short_qty
    assert m["equity"] == r.result.equity[bar] and m["position"] == held[bar]
    assert tab.trades_model.done == int(np.count_nonzero(r.trades["bar"] <= bar))
    selected = sorted({i.row() for i in tab.trades.selectionModel().selectedRows()})
    assert selected == list(np.flatnonzero(r.trades["bar"] == bar))
    _, eq = ch.equity_curve.getData()
    assert eq[-1] == r.result.equity[bar]


def test_run_play_step_seek(loop, tab, tmp_path, qtbot):
    tab.editor.apply_preset("Geometric, trailing both ways")
    run_now(loop, tab)
    r = tab.run
    assert r.n_bars == 35_040 and "35,040 bars" in tab.status.text()
    assert tab.bar == r.start_bar
    assert_shows_bar(tab)

    # play a few hundred bars, then pause
    tab.speed.setValue(SPEEDS.index(500))
    tab.play_button.click()
    qtbot.waitUntil(lambda: tab.bar >= 300, timeout=10_000)
    tab.play_button.click()
    assert not tab.timer.isActive() and tab.frames > 3
    stopped = tab.bar
    qtbot.wait(100)
    assert tab.bar == stopped
    assert_shows_bar(tab)

    tab.forward_button.click()
    assert tab.bar == stopped + 1
    tab.back_button.click()
    tab.back_button.click()
    assert tab.bar == stopped - 1
    assert_shows_bar(tab)

    # keyboard: Right steps, Space plays and pauses, End and Home
    tab.chart.setFocus()
    qtbot.keyClick(tab.chart, Qt.Key_Right)
    assert tab.bar == stopped
    qtbot.keyClick(tab.chart, Qt.Key_End)
    assert tab.bar == r.n_bars - 1
    assert_shows_bar(tab)
    qtbot.keyClick(tab.chart, Qt.Key_Home)
    assert tab.bar == 0
    qtbot.keyClick(tab.chart, Qt.Key_Space)
    assert tab.timer.isActive()
    qtbot.keyClick(tab.chart, Qt.Key_Space)
    assert not tab.timer.isActive()

    # the scrubber
    tab.scrubber.setValue(20_000)
    assert tab.bar == 20_000
    assert_shows_bar(tab)

    # a trade, by double-click in the table, and the next / previous trade
    row = len(r.trades) // 2
    index = tab.trades_model.index(row, 0)
    tab.trades.scrollTo(index)
    rect = tab.trades.visualRect(index)
    qtbot.mouseClick(tab.trades.viewport(), Qt.LeftButton, pos=rect.center())
    qtbot.mouseDClick(tab.trades.viewport(), Qt.LeftButton, pos=rect.center())
    assert tab.bar == r.trades["bar"][row]
    assert_shows_bar(tab)
    here = tab.bar
    tab.next_trade.click()
    assert tab.bar == r.next_trade_bar(here) and tab.bar > here
    tab.prev_trade.click()
    assert tab.bar == here

    # a date
    tab.date.setDateTime(tab.date.dateTime().addDays(-3))
    qtbot.mouseClick(tab.transport.go, Qt.LeftButton)
    assert tab.bar == r.bar_at(tab.date.dateTime().toMSecsSinceEpoch())

    # panning away stops following; "Follow" comes back to the current bar
    vb = tab.chart.price.getViewBox()
    vb.translateBy(x=-3600 * 24 * 10)
    vb.sigRangeChangedManually.emit(vb.state["mouseEnabled"])
    assert not tab.chart.follow
    tab.follow_button.click()
    assert tab.chart.follow
    assert_shows_bar(tab)

    shots = ROOT / "build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    assert tab.grab().save(str(shots / "backtest-tab.png"))

    # exports
    png = tab.export_png(str(tmp_path / "chart.png"))
    assert png.stat().st_size > 10_000
    with open(tab.export_csv(str(tmp_path / "t.csv"))) as fh:
        assert sum(1 for _ in csv.reader(fh)) == len(r.trades) + 1
    data = json.loads(tab.export_json(str(tmp_path / "r.json")).read_text())
    assert data["metrics"]["final_equity"] == pytest.approx(r.result.metrics["final_equity"])
    page = tab.export_html(str(tmp_path / "r.html")).read_text()
    assert "<svg" in page
    # the same grid under each fill model: in the tab and in the report
    from engine.strategies.registry import under_each_fill_model

    rows = under_each_fill_model("spot-grid", r.candles, tab.editor.config())
    assert [x["model"] for x in rows] == ["touch", "through by 0.01", "queue, sure at 0.10% beyond"]
    assert rows[0]["return"] == pytest.approx(r.result.metrics["total_return"])
    assert not tab.fill_models.isHidden() and f"queue, sure at 0.10% beyond {rows[2]['return']:+.2%}" in \
        tab.fill_models.text()
    assert "Under each fill model" in page and f"<td>{rows[2]['fills']:,}</td>" in page

    # a second run with other settings keeps the first beside it
    tab.editor.widgets["levels"].setValue(12)
    run_now(loop, tab)
    assert len(tab.runs) == 2 and tab.run is tab.runs[1] and tab.compare is tab.runs[0]
    assert tab.metrics.item(0, 2).text() == format_metric("equity", tab.runs[0].run_metrics()["equity"])
    _, other = tab.chart.compare_curve.getData()
    assert other is not None and len(other) > 0

    # and becomes a paper system
    cfg = tab.system_from_run()
    assert cfg.mode == "paper" and cfg.dry_run and cfg.params["levels"] == 12
    assert cfg.params["spacing"] == "geometric" and "capital" not in cfg.params
    tab.controller.add_system(cfg)
    saved = json.loads((Path(tab.controller.config_path)).read_text())
    assert any(s["name"] == cfg.name and s["params"]["levels"] == 12 for s in saved["systems"])
    loop.run_until_complete(tab.controller.shutdown())


def test_bad_settings_and_data_are_refused_by_name(loop, tab, tmp_path):
    tab.editor.widgets["fee"].setText("abc")
    assert tab.start_run() is None
    assert tab.editor.error.text().startswith("Fee (fraction): ") and "not a number" in tab.editor.error.text()
    assert "c62828" in tab.editor.widgets["fee"].styleSheet()
    tab.editor.widgets["fee"].setText("0.001")
    bad = tmp_path / "bad.csv"
    bad.write_text("time,open,high,low,close,volume\n2024-01-01,1,2,0.5,1.5,10\n2024-01-01 00:15,1,x,0.5,1.5,10\n")
    tab.data.setCurrentText(str(bad))
    run_now_task = tab.start_run()
    loop.run_until_complete(run_now_task)
    assert tab.run is None and "bad.csv" in tab.status.text()
    tab.data.setCurrentText("sample")
    tab.funding.setText(str(shared_file(FUNDING)))
    loop.run_until_complete(tab.start_run())
    assert tab.run is None and "--funding" in tab.status.text()
    loop.run_until_complete(tab.controller.shutdown())


def test_replay_of_the_perpetual_grid_on_real_btc(loop, tab):
    tab.data.setCurrentText(str(shared_file(BTC_1H)))
    tab.funding.setText(str(shared_file(FUNDING)))
    tab.editor.strategy.setCurrentText("adaptive-grid")
    tab.editor.apply_preset("3x leverage")
    run_now(loop, tab)
    r = tab.run
    assert r.strategy == "adaptive-grid" and r.n_bars > 40_000
    stops = r.trades[np.isin(r.trades["marker"], [MARKER_KINDS.index("stop"), MARKER_KINDS.index("prune")])]
    assert len(stops)
    tab.seek(int(stops["bar"][len(stops) // 2]))
    assert_shows_bar(tab)
    bar = tab.bar
    _, longs = tab.chart.long_curve.getData()
    _, shorts = tab.chart.short_curve.getData()
    assert longs[-1] == r.result.long_qty[bar] and shorts[-1] == -r.result.short_qty[bar]
    assert tab.metrics.item(BAR_METRICS.index("funding"), 0).text() == format_metric("funding", r.funding_cum[bar])
    # each side's entry, liquidation price and stop at the bar, from the run's own marks
    assert len(r.orders_at(bar)) and r.long_qty[bar] + r.short_qty[bar] > 0
    marks = dict(zip(perp_kernel.MARK_NAMES, r.result.marks[bar], strict=True))
    for line, mark in (("avg_entry", "avg_long"), ("avg_short", "avg_short"), ("liq_long", "liq_long"),
                       ("liq_short", "liq_short"), ("stop_long", "stop_long"), ("stop_short", "stop_short")):
        _, ys = tab.chart.lines[line].getData()
        assert np.array_equal(ys[-1:], [marks[mark]], equal_nan=True), line
    assert np.isfinite(marks["liq_long"]) or np.isfinite(marks["liq_short"])  # 3x: a liquidation price shows
    # indicator overlays, with the run's own periods, and the regime band
    tab.set_overlays(["ema", "kama", "atr_bands", "regime"])
    for line in ("ema", "kama", "atr_upper", "atr_lower"):
        _, ys = tab.chart.lines[line].getData()
        assert ys[-1] == r.series(line)[bar], line
    assert r.indicators()["kama"] == "KAMA 10"
    assert tab.chart.regime_band.boundingRect().width() > 0
    tab.set_overlays([])
    assert tab.chart.lines["ema"].getData()[1] is None or len(tab.chart.lines["ema"].getData()[1]) == 0
    assert {"short average entry", "liquidation (short)", "stop (short)"} <= legend_labels(tab)
    # the long grid on the same data: no short side to draw, nor to name in the legend
    tab.editor.strategy.setCurrentText("long-grid")
    tab.editor.apply_preset("2x leverage")
    run_now(loop, tab)
    assert tab.run.strategy == "long-grid" and not tab.run.has_values("avg_short")
    labels = legend_labels(tab)
    assert "average entry" in labels and not any("short" in x for x in labels), labels
    loop.run_until_complete(tab.controller.shutdown())


def test_replay_of_the_futures_grid_shows_its_lines_positions_and_end(loop, tab, tmp_path):
    """A neutral futures grid on real BTC: at a bar, its resting orders, both positions and each
    side's entry and liquidation price from the run; the end is a marker on the chart."""
    tab.data.setCurrentText(str(shared_file(BTC_1H)))
    tab.funding.setText(str(shared_file(FUNDING)))
    tab.editor.strategy.setCurrentText("futures-grid")
    tab.editor.apply_preset("Neutral, 2x, +-10%")
    run_now(loop, tab)
    r = tab.run
    assert r.strategy == "futures-grid" and r.result.metrics["ended"] == "LIQUIDATION"
    held = np.flatnonzero((r.result.long_qty > 0) & (r.result.short_qty > 0))
    assert len(held), "no bar holds both sides: a weaker test"
    tab.seek(int(held[len(held) // 2]))
    assert_shows_bar(tab)
    bar = tab.bar
    marks = dict(zip(perp_kernel.MARK_NAMES, r.result.marks[bar], strict=True))
    for line, mark in (("avg_entry", "avg_long"), ("avg_short", "avg_short"), ("liq_long", "liq_long"),
                       ("liq_short", "liq_short")):
        _, ys = tab.chart.lines[line].getData()
        assert np.array_equal(ys[-1:], [marks[mark]], equal_nan=True), line
    assert np.isnan(marks["stop_long"]) and np.isnan(marks["stop_short"])  # it has no stops of its own
    tab.seek(int(r.result.metrics["ended_bar"]) + 1)
    assert_shows_bar(tab)
    assert r.orders_at(tab.bar) is not None and len(r.orders_at(tab.bar)) == 0  # ended: nothing rests
    tab.grab().save(str(tmp_path / "futures-replay.png"))
    loop.run_until_complete(tab.controller.shutdown())


def legend_labels(tab) -> set[str]:
    return {label.text for _, label in tab.chart.legend.items}


def test_a_run_reports_progress_and_cancel_stops_it(loop, tab, monkeypatch, qtbot):
    """The bar shows the run's bars as they are done; Cancel (pressed at the third report, so
    that however fast the machine the run is still going) stops it at its next chunk."""
    import engine.strategies.spec as bt

    monkeypatch.setattr(bt, "CHUNK_BARS", 500)
    seen = []
    cancel_at = [3]

    def on_value(v, f=tab.progress.setValue):
        seen.append((v, tab.progress.maximum(), tab.progress.format()))
        f(v)
        if len(seen) == cancel_at[0]:
            tab.cancel_button.click()

    monkeypatch.setattr(tab.progress, "setValue", on_value)
    tab.run_button.click()
    loop.run_until_complete(asyncio.wait_for(asyncio.shield(tab._task), 60))
    assert [s[:2] for s in seen[:3]] == [(500, 35_040), (1000, 35_040), (1500, 35_040)]
    assert seen[1][2] == "run %v / %m bars"  # (set after the first value)
    assert tab._task is None and tab.run is None and "cancelled" in tab.status.text()
    assert seen[-1][0] == 0  # back to rest, and no report after it (a fast run may have ended meanwhile)
    cancel_at[0] = -1
    tab.run_button.click()  # a run after a cancelled one goes through
    loop.run_until_complete(tab._task)
    assert tab.run is not None and seen[-2][0] == 35_040
    loop.run_until_complete(tab.controller.shutdown())


def test_the_window_never_grows_and_the_panels_fit_what_is_in_view(loop, tmp_path, qtbot):
    """Issue 21's defects: at 1,280 x 800 hovering the chart (a long readout) or loading a run
    never widens the window; before a run the chart says what goes there; the readout of one
    run is cleared by the next; a wheel cannot take the price below zero; after a zoom the
    equity panel fits what is in view, the compared run's curve included; the timeline marks
    the bars that traded."""
    from PySide6.QtCore import QPointF

    from app.main_window import MainWindow

    window = MainWindow(Controller(tmp_path, keys=lambda ex: None))  # (no systems: nothing trades)
    qtbot.addWidget(window)
    window.resize(1280, 800)
    window.show()
    window.tabs.setCurrentWidget(window.backtest)
    qtbot.waitExposed(window)
    tab = window.backtest
    assert window.minimumSizeHint().width() <= 1280 and window.width() == 1280
    assert tab.chart.placeholder.isVisible() and not tab.chart.legend.isVisible()

    run_now(loop, tab)
    tab.editor.apply_preset("Geometric, trailing both ways")
    run_now(loop, tab)  # a second run, compared with the first
    assert not tab.chart.placeholder.isVisible() and tab.compare is tab.runs[0]
    (_, _), (y_lo, y_hi) = tab.chart.price.getViewBox().viewRange()
    scene = tab.chart.price.getViewBox().mapViewToScene(QPointF(float(tab.run.x[tab.bar]), (y_lo + y_hi) / 2))
    tab.chart._mouse(scene)
    assert "bar" in tab.readout.text()
    tab.chart.hovered.emit("x" * 2_000)  # a readout far wider than the screen
    qtbot.wait(50)
    assert window.width() == 1280 and tab.readout.width() < 1280
    tab.start_run()
    loop.run_until_complete(tab._task)
    assert tab.readout.text() == ""  # the last run's readout is gone

    vb = tab.chart.price.getViewBox()
    for _ in range(30):
        vb.scaleBy((1.0, 1.5))  # zoom out the price as a wheel does
    assert vb.viewRange()[1][0] >= 0.0

    tab.seek(tab.run.n_bars - 1)
    tab.chart.follow = False
    x = tab.run.x
    tab.chart.price.setXRange(float(x[1_000]), float(x[1_200]), padding=0)
    qtbot.waitUntil(lambda: tab.chart.visible_bars()[0] >= 900, timeout=2_000)
    qtbot.wait(50)
    i0, i1 = tab.chart.visible_bars()
    y0, y1 = tab.chart.equity_plot.getViewBox().viewRange()[1]
    _, compared = tab.chart.compare_curve.getData()
    for ys in (tab.run.equity[i0:i1], compared):
        assert y0 <= float(np.min(ys)) and float(np.max(ys)) <= y1

    marks = tab.scrubber.mark_positions()
    traded = np.unique(tab.run.trades["bar"])
    assert 0 < len(marks) <= min(len(traded), tab.scrubber.width())


def test_the_oldest_runs_go_and_the_numbers_go_on(loop, tab, monkeypatch):
    """The tab keeps the last few runs (a year of 1m bars holds ~80 MB a run): the oldest go,
    never the one shown or the one it is compared with, and a new run's number goes on."""
    import widgets.backtest as module

    monkeypatch.setattr(module, "KEEP_RUNS", 3)
    tab.editor.widgets["levels"].setValue(8)
    for levels in range(9, 14):
        run_now(loop, tab)
        tab.editor.widgets["levels"].setValue(levels)
    names = [r.name.split()[0] for r in tab.runs]
    assert names == ["#3", "#4", "#5"] and tab.run is tab.runs[2] and tab.compare is tab.runs[1]
    assert [tab.run_select.itemText(i).split()[0] for i in range(tab.run_select.count())] == names
    assert [tab.compare_select.itemText(i).split()[0] for i in range(tab.compare_select.count())] == ["(none)", *names]
    assert tab.run_select.currentIndex() == 2 and tab.compare_select.currentIndex() == 2
    tab.run_select.setCurrentIndex(0)
    assert tab.run is tab.runs[0]


def test_a_file_is_read_once_and_again_when_it_changed(loop, tab, tmp_path, monkeypatch):
    """A second run on the same file does not parse it again; a file changed on disk since (new
    bars appended) is read again. (Kept by its name alone, an edited file ran on its old bars.)"""
    import os

    from engine.data import load_candles
    from engine.sample import SAMPLE_PATH

    sample = load_candles(SAMPLE_PATH)
    path = tmp_path / "bars.csv"
    sample.slice(0, 5_000).to_frame().to_csv(path, index=False)
    reads = []
    real = tab.controller.load_candles

    async def counted(source):
        reads.append(source)
        return await real(source)

    monkeypatch.setattr(tab.controller, "load_candles", counted)
    tab.data.setCurrentText(str(path))
    run_now(loop, tab)
    run_now(loop, tab)
    assert len(reads) == 1 and tab.run.n_bars == 5_000
    sample.slice(0, 6_000).to_frame().to_csv(path, index=False)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000_000))
    run_now(loop, tab)
    assert len(reads) == 2 and tab.run.n_bars == 6_000


def test_runs_on_other_data_are_not_compared_unasked_and_say_so_when_asked(loop, tab, tmp_path):
    """Compare pairs a new run with the one before only on the same bars; chosen by hand, a run
    on other data is labelled so. The trades table's columns hold the widest text of the run
    (the last fill's bar number too)."""
    from engine.data import load_candles
    from engine.sample import SAMPLE_PATH

    run_now(loop, tab)
    first = tab.run
    part = tmp_path / "part.csv"
    load_candles(SAMPLE_PATH).slice(0, 20_000).to_frame().to_csv(part, index=False)
    tab.data.setCurrentText(str(part))
    run_now(loop, tab)
    assert tab.compare is None and tab.compare_select.currentIndex() == 0
    tab.compare_select.setCurrentIndex(1)
    assert tab.compare is first and tab.metrics.horizontalHeaderItem(2).text() == "#1 (other data)"
    tab.data.setCurrentText("sample")
    run_now(loop, tab)
    assert tab.compare is None  # (the run before it ran on part.csv)

    fm = tab.trades.fontMetrics()
    last = tab.trades_model.rowCount() - 1
    for col in range(tab.trades_model.columnCount()):
        text = tab.trades_model.data(tab.trades_model.index(last, col))
        assert tab.trades.columnWidth(col) >= fm.horizontalAdvance(text), (col, text)


def test_round_trips_pair_each_close_sort_filter_and_seek(loop, tab, qtbot):
    """FreqUI's trade list: each close with its opening and profit, sortable by value,
    filtered by outcome and text, summed as shown; a double-click seeks to the close."""
    from widgets.trips import SORT

    tab.editor.apply_preset("Geometric, trailing both ways")
    run_now(loop, tab)
    r, view = tab.run, tab.trips
    tab.trade_tabs.setCurrentWidget(view)
    trips = r.trips
    assert view.proxy.rowCount() == len(trips) > 100
    assert view.total.text().startswith(f"{len(trips):,} round trips") and f"{trips['pnl'].sum():+,.2f}" in \
        view.total.text()
    view.table.sortByColumn(9, Qt.DescendingOrder)  # profit, as numbers
    profits = [view.proxy.index(i, 9).data(SORT) for i in range(view.proxy.rowCount())]
    assert profits == sorted(profits, reverse=True) and profits[0] == trips["pnl"].max()
    view.outcome.setCurrentText("losses")
    shown = [view.proxy.index(i, 9).data(SORT) for i in range(view.proxy.rowCount())]
    assert len(shown) == np.count_nonzero(trips["pnl"] < 0) and all(p < 0 for p in shown)
    view.outcome.setCurrentText("all")
    view.text.setText("short")  # a spot grid holds no short
    assert view.proxy.rowCount() == 0 and view.total.text() == "none shown"
    view.text.setText("grid_sell")
    assert view.proxy.rowCount() == np.count_nonzero(trips["label"] == 1)
    view.text.clear()
    # the most profitable trip whose opening is known: its opening and prices as the run has them
    at = next(i for i in range(view.proxy.rowCount())
              if trips[view.proxy.mapToSource(view.proxy.index(i, 0)).row()]["open_row"] >= 0)
    top = view.proxy.mapToSource(view.proxy.index(at, 0)).row()
    t = trips[top]
    cells = [view.model.data(view.model.index(top, c)) for c in range(11)]
    assert cells[1] == "long" and cells[5] == f"{t['open_price']:,.2f}" and cells[6] == f"{t['close_price']:,.2f}"
    assert t["open_row"] >= 0 and r.trades["bar"][t["open_row"]] == t["open_bar"] < t["close_bar"]
    view.table.doubleClicked.emit(view.proxy.index(at, 0))
    assert tab.bar == t["close_bar"]
    later = int(np.flatnonzero(trips["close_bar"] > tab.bar)[0])
    assert view.model.data(view.model.index(later, 0), Qt.ForegroundRole) is not None  # greyed: still to come


def test_the_stress_test_of_the_settings_as_set_opens_its_figures(loop, tab, tmp_path):
    from engine.strategies.registry import config_from
    from engine.stress import stress

    tab.editor.apply_preset("Geometric, trailing both ways")
    tab.stress_button.click()
    loop.run_until_complete(tab._task)
    dlg = tab.stress_dialog
    table = dlg.table
    assert [table.item(r, 0).text() for r in range(table.rowCount())] == ["bootstrap", "crash", "trend", "range"]
    # the figures are the engine's for the same settings, data, paths and seed
    candles = loop.run_until_complete(tab._candles())
    want = stress(candles, config_from("spot-grid", tab.editor.config().to_dict()), paths=200, block=96)
    for r, result in enumerate(want):
        s = result.summary()
        assert table.item(r, 2).text() == f"{s['return_p50']:+.2%}"
        assert table.item(r, 6).text() == f"{s['left_range']:.1%}"
    assert "200 paths a scenario in blocks of a day" in dlg.heading.text()
    assert dlg.grab().save(str(tmp_path / "stress.png"))
    # the report of a run of the same settings on the same data carries it; of other settings, not
    run_now(loop, tab)
    page = tab.export_html(str(tmp_path / "report.html")).read_text()
    assert "<h2>Stress test</h2>" in page and f"<td>{table.item(1, 2).text()}</td>" in page
    tab.editor.apply_preset("Tight and dense")
    run_now(loop, tab)
    assert "Stress test" not in tab.export_html(str(tmp_path / "other.html")).read_text()
    # a strategy it does not run is said in the status line, in one line
    tab.editor.strategy.setCurrentText("adaptive-grid")
    tab.stress_button.click()
    loop.run_until_complete(tab._task)
    assert "the stress test runs spot grids (spot-grid, infinity-grid), not adaptive-grid" in tab.status.text()


def test_an_infinity_grid_replays_its_window_and_reserve(loop, tab, tmp_path):
    """The infinity grid from the Backtest tab, on the sample: the chart at a bar shows the
    window's resting orders (the backtest's own), the reserve's buy is a fill of bar 1, and the
    fill-model line is there (a spot kernel grid)."""
    tab.editor.strategy.setCurrentText("infinity-grid")
    tab.editor.apply_preset("Tight (0.5% a level)")
    assert "mode" not in tab.editor.widgets and "step" in tab.editor.widgets  # (held fixed: not offered)
    run_now(loop, tab)
    r = tab.run
    assert r.strategy == "infinity-grid" and "RESERVE_BUY" in set(r.result.trades_frame()["role"])
    tab.seek(r.n_bars // 2)
    assert_shows_bar(tab)
    assert not tab.fill_models.isHidden() and "queue" in tab.fill_models.text()
    assert tab.grab().save(str(tmp_path / "infinity.png"))
    cfg = tab.system_from_run().validate()  # (it was made a spot-grid system, which refuses an infinity mode)
    assert cfg.strategy == "infinity-grid" and cfg.params["step"] == 0.005



def test_a_seek_paints_the_chart_once_and_the_legend_hides_a_kind_of_fill(loop, tab, qtbot):
    """A seek is one paint of the chart (pyqtgraph set the views' new transforms inside the
    paint, which asked for a second: every seek was painted twice); a click on a kind of fill in
    the legend hides its markers, and a second shows them; a dashed line is dashed while each
    point is a bar and solid once zoomed out to bins of bars."""
    from PySide6.QtCore import QEvent, QObject

    run_now(loop, tab)
    r, chart = tab.run, tab.chart

    class Paints(QObject):
        count = 0

        def eventFilter(self, obj, event):
            if event.type() == QEvent.Paint:
                Paints.count += 1
            return False

    paints = Paints()
    chart.viewport().installEventFilter(paints)
    for bar in (5_000, 12_345, 20_000, 34_000):
        qtbot.wait(20)  # (whatever was pending before is painted)
        Paints.count = 0
        tab.seek(bar)
        for _ in range(3):
            qtbot.wait(10)
        assert Paints.count == 1, f"bar {bar}: the chart was painted {Paints.count} times"
    chart.viewport().removeEventFilter(paints)

    buys = chart.markers["buy_open"]
    tab.seek(int(r.trades["bar"][r.trades["marker"] == MARKER_KINDS.index("buy_open")][-1]))
    assert len(buys.x) > 0 and buys.isVisible()
    sample = next(s for s, label in chart.legend.items if label.text == "buy open")
    where = chart.mapFromScene(sample.sceneBoundingRect().center())
    qtbot.mouseClick(chart.viewport(), Qt.LeftButton, pos=where)
    assert not buys.isVisible() and chart.markers["sell_close"].isVisible()
    qtbot.mouseClick(chart.viewport(), Qt.LeftButton, pos=where)
    assert buys.isVisible()

    line = chart.lines["avg_entry"]
    assert line.opts["pen"].style() == Qt.DashLine  # following: 240 bars, a point each
    chart.follow = False
    chart.price.setXRange(float(r.x[0]), float(r.x[-1]), padding=0)
    tab.seek(r.n_bars - 1)
    assert len(line.xData) < r.n_bars and line.opts["pen"].style() == Qt.SolidLine
    chart.follow_bar()
    assert line.opts["pen"].style() == Qt.DashLine
