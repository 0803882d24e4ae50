"""The replay's numbers at any bar against a pure-Python reading of the backtest's logs, the
merged candles and curves against the data they merge, and the exports."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import FUNDING, shared_file
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.data import load_candles, load_funding
from engine.kernels import adaptive_grid as perp_kernel
from engine.kernels import spot_grid as spot_kernel
from engine.replay import Replay, format_metric, html_report
from engine.sample import SAMPLE_PATH
from engine.strategies.adaptive_grid import AdaptiveGridConfig, run_adaptive_grid
from engine.strategies.hedged_grid import HedgedGridConfig
from engine.strategies.spot_grid import SpotGridConfig, run_spot_grid


@pytest.fixture(scope="module")
def sample():
    return load_candles(SAMPLE_PATH)


@pytest.fixture(scope="module")
def spot_run(sample):
    return Replay.from_result(sample, run_spot_grid(sample, SpotGridConfig(levels=30, spacing="geometric",
                                                                          trailing="both")), "geo")


@pytest.fixture(scope="module")
def perp_run(btc1h):
    c = btc1h.slice(len(btc1h) - 6000, len(btc1h))
    r = run_adaptive_grid(c, AdaptiveGridConfig(leverage=3.0), load_funding(shared_file(FUNDING)))
    return Replay.from_result(c, r, "perp")


def _oracle(run: Replay, bar: int) -> dict:
    """What the run stood at by the close of ``bar``, read row by row from the logs."""
    grid_labels = {spot_kernel.GRID_SELL} if run.strategy != "adaptive-grid" else {perp_kernel.SELL_CLOSE_LONG,
                                                                                   perp_kernel.BUY_CLOSE_SHORT}
    fills = fees = grid = realized = 0.0
    for t in run.result.trades:
        if t["bar"] > bar:
            break
        fills += 1
        fees += t["fee"]
        realized += t["pnl"]
        grid += t["pnl"] if int(t[("label" if run.strategy == "adaptive-grid" else "role")]) in grid_labels else 0.0
    peak, worst = -np.inf, 0.0
    for e in run.result.equity[:bar + 1]:
        peak = max(peak, e)
        worst = min(worst, e / peak - 1)
    return {"fills": fills, "fees": fees, "grid_profit": grid, "realized": realized, "max_drawdown": -worst,
            "equity": run.result.equity[bar]}


@pytest.mark.parametrize("which", ["spot", "hedged", "perp"])
def test_metrics_at_any_bar_match_the_logs(which, spot_run, perp_run, sample):
    run = {"spot": spot_run, "perp": perp_run}.get(which)
    if which == "hedged":
        run = Replay.from_result(sample, run_spot_grid(sample, HedgedGridConfig()), "hedged")
    rng = np.random.default_rng(3)
    bars = [run.start_bar, run.n_bars - 1, *rng.integers(run.start_bar, run.n_bars, 25)]
    bars += [int(b) for b in run.trades["bar"][rng.integers(0, len(run.trades), 10)]]
    for bar in bars:
        m, o = run.metrics_at(int(bar)), _oracle(run, int(bar))
        assert m["fills"] == o["fills"]
        for k in ("fees", "grid_profit", "max_drawdown", "equity"):
            assert m[k] == pytest.approx(o[k], rel=1e-9, abs=1e-6), (which, bar, k)
        if which == "spot":
            r = run.result
            assert m["floating_pnl"] == pytest.approx(r.position[bar] * run.candles.close[bar] - r.cost[bar])
        if which == "perp":  # the split adds back up to the equity
            assert m["equity"] == pytest.approx(run.capital + o["realized"] + m["funding"] + m["floating_pnl"])
    # the last bar is the whole run, as the backtest reported it
    full, res = run.run_metrics(), run.result
    assert full["equity"] == pytest.approx(res.metrics["final_equity"])
    assert full["grid_profit"] == pytest.approx(res.money["grid_profit"])
    assert full["max_drawdown"] == pytest.approx(res.metrics["max_drawdown"])
    assert full["floating_pnl"] == pytest.approx(res.metrics["floating_pnl"], abs=1e-6)
    if which == "perp":
        assert full["funding"] == pytest.approx(res.money["funding"], rel=1e-9)
        assert res.money["funding"] != 0  # real funding rates were paid on this run
    if which == "hedged":
        assert full["funding"] == pytest.approx(res.money["hedge_funding"])


def test_orders_resting_at_a_bar_hold_the_fills_of_that_bar(spot_run):
    """Every grid fill on a bar is one of the orders the replay shows resting on it (same side
    and level, filled there, at its price or better when the bar opened beyond it); no order
    shown was placed at or after the bar's open."""
    run, c = spot_run, spot_run.candles
    fills = run.result.trades
    for t in fills[fills["role"] <= spot_kernel.GRID_SELL][::7]:
        bar = int(t["bar"])
        rest = run.orders_at(bar)
        assert (rest["placed"] < bar).all() and (rest["end"] >= bar).all()
        same = rest[(rest["side"] == t["side"]) & (rest["level"] == t["level"]) & (rest["end"] == bar)
                    & (rest["status"] == spot_kernel.ORDER_FILLED)]
        assert len(same) == 1, (bar, t)
        limit = same["price"][0]
        expected = min(c.open[bar], limit) if t["side"] > 0 else max(c.open[bar], limit)
        assert t["price"] == pytest.approx(expected)


def test_trade_navigation(spot_run):
    run = spot_run
    bars = np.unique(run.trades["bar"])
    b = int(bars[10])
    assert run.next_trade_bar(b) == bars[11] and run.prev_trade_bar(b) == bars[9]
    assert run.next_trade_bar(int(bars[-1])) is None and run.prev_trade_bar(int(bars[0])) is None
    a, z = run.trades_on(b)
    assert z > a and (run.trades["bar"][a:z] == b).all()
    assert run.bar_at(int(run.candles.time[b]) + 1) == b
    assert run.bar_at(0) == 0


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 35_039), st.integers(1, 35_040), st.integers(20, 3000))
def test_merged_candles_and_curves_keep_the_extremes(spot_run, i0, n, max_bars):
    run = spot_run
    i1 = min(run.n_bars, i0 + n)
    c = run.candles
    x, o, h, lo, cl, width = run.candles_in(i0, i1, max_bars)
    assert width >= run.timeframe_s
    assert len(x) <= max(max_bars * 4 + 2, 2)  # a level merges 4x the one below it
    assert h.max() == c.high[i0:i1].max() and lo.min() == c.low[i0:i1].min()
    assert o[0] == c.open[i0] and cl[-1] == c.close[i1 - 1]
    assert x[0] == run.x[i0] and (np.diff(x) > 0).all()
    for name in ("equity", "avg_entry"):
        xs, ys = run.series_in(name, i0, i1, max_points=max(4, max_bars))
        y = run.series(name)[i0:i1]
        if np.isfinite(y).any():
            assert np.nanmax(ys) == np.nanmax(y) and np.nanmin(ys) == np.nanmin(y)
        assert xs[0] == run.x[i0] and xs[-1] <= run.x[i1 - 1]


def test_exports(spot_run, perp_run, tmp_path):
    run = spot_run
    csv = pd.read_csv(run.trades_csv(tmp_path / "t.csv"))
    assert len(csv) == len(run.trades) and csv["price"].iloc[-1] == pytest.approx(run.trades["price"][-1])
    data = json.loads(run.save_json(tmp_path / "r.json").read_text())
    assert len(data["trades"]) == len(run.trades) and len(data["bars"]["equity"]) == run.n_bars
    assert data["metrics"]["final_equity"] == pytest.approx(run.result.metrics["final_equity"])
    page = run.save_html(tmp_path / "r.html", compare=perp_run).read_text()
    assert "<svg" in page and page.count("<polyline") == 2 and "geo" in page and "perp" in page
    assert f"{run.run_metrics()['fills']:,}" in page
    assert "<script" not in html_report(Replay.from_result(run.candles, run.result, "<script>x</script>"))


@pytest.mark.parametrize("strategy", ["spot-grid", "adaptive-grid"])
def test_a_run_in_chunks_reports_progress_equals_the_whole_run_and_stops_when_cancelled(btc5m, monkeypatch, strategy):
    import engine.strategies.spec as bt
    from engine.strategies.registry import CONFIGS, run_backtest

    c = btc5m.slice(0, 20_000)
    cfg = CONFIGS[strategy]()
    whole = run_backtest(strategy, c, cfg)
    monkeypatch.setattr(bt, "CHUNK_BARS", 3000)
    seen = []
    chunked = run_backtest(strategy, c, cfg, progress=lambda done, n: seen.append((done, n)))
    assert seen == [(k, 20_000) for k in (3000, 6000, 9000, 12_000, 15_000, 18_000, 20_000)]
    assert np.array_equal(chunked.trades, whole.trades) and np.array_equal(chunked.equity, whole.equity)
    if strategy == "spot-grid":
        assert np.array_equal(chunked.orders, whole.orders)

    def stop(done, n):
        if done >= 6000:
            raise bt.Cancelled

    with pytest.raises(bt.Cancelled):
        run_backtest(strategy, c, cfg, progress=stop)


def test_a_figure_of_nothing_shows_no_sign_of_a_loss():
    assert format_metric("max_drawdown", -0.0) == "0.00%" and format_metric("funding", -0.0) == "0.00"
    assert format_metric("return", -0.0) == "+0.00%" and format_metric("return", -0.001) == "-0.10%"
