"""The stress test: block-bootstrap paths made as documented (checked bar by bar against the
history they are drawn from), regime drifts exact, and each path's figures equal to a backtest
of that path and to plain-Python counts over it."""

import math

import numpy as np
import pytest

from engine.strategies.errors import ParamError
from engine.strategies.registry import config_from
from engine.strategies.spot_grid.backtest import run_spot_grid
from engine.stress import bar_moves, resample, run_path, stress

SETTINGS = {"levels": 30, "spacing": "geometric", "range_pct": 0.1, "fee": 0.001}


def test_a_path_is_the_historys_bars_in_blocks_chained_from_its_first_close(btc5m):
    hist = btc5m.slice(0, 3_000)
    moves = bar_moves(hist)
    path = resample(hist, moves, 50, np.random.default_rng(3))
    assert len(path) == len(hist) and path.close[0] == hist.close[0]
    got = np.log(path.close[1:] / path.close[:-1])
    # each bar's close move is one of the history's, and they come in runs of 50 consecutive ones
    rows = []
    m = len(moves) - 49  # (a block's possible first rows)
    for i in range(0, len(got), 50):
        near = np.abs(moves[:m, 3] - got[i]) + np.abs(moves[1:m + 1, 3] - got[min(i + 1, len(got) - 1)])
        start = int(np.argmin(near))  # (the block's first row: its first two moves match)
        rows.extend(range(start, start + 50))
    rows = np.array(rows[: len(got)])
    np.testing.assert_allclose(got, moves[rows, 3], atol=1e-9)
    np.testing.assert_allclose(np.log(path.open[1:] / path.close[:-1]), moves[rows, 0], atol=1e-9)
    assert np.all(path.high >= np.maximum(path.open, path.close)) and np.all(path.low <= np.minimum(path.open,
                                                                                                    path.close))
    np.testing.assert_allclose(np.log(path.high[1:] / path.close[:-1]),
                               np.maximum(moves[rows, 1], np.maximum(moves[rows, 0], moves[rows, 3])), atol=1e-9)


@pytest.mark.parametrize("drift,ratio", [(np.log(0.5), 0.5), (np.log(2.0), 2.0), (0.0, 1.0)])
def test_a_regime_drift_ends_the_path_where_it_says(btc5m, drift, ratio):
    hist = btc5m.slice(0, 3_000)
    path = resample(hist, bar_moves(hist), 100, np.random.default_rng(9), drift)
    assert path.close[-1] / path.close[0] == pytest.approx(ratio, rel=1e-9)


def test_each_paths_figures_are_its_backtests_and_plain_counts(btc5m):
    hist = btc5m.slice(0, 4_000)
    cfg = config_from("spot-grid", SETTINGS)
    path = resample(hist, bar_moves(hist), 200, np.random.default_rng(5))
    ret, dd, left, idle, under = run_path(path, cfg)
    bt = run_spot_grid(path, cfg)
    assert ret == pytest.approx(bt.metrics["total_return"]) and dd == pytest.approx(bt.metrics["max_drawdown"])
    lo, hi = bt.levels[0], bt.levels[-1]
    assert left == any(path.low[i] < lo or path.high[i] > hi for i in range(len(path)))
    assert idle == pytest.approx(sum(not lo <= c <= hi for c in path.close) / len(path))
    assert under == pytest.approx(sum(e < 10_000.0 for e in bt.equity) / len(path))


@pytest.mark.parametrize("strategy,settings", [
    ("infinity-grid", {"step": 0.005, "levels": 12}),  # (the range: from its lowest price up, no top)
    ("spot-grid", {"spacing": "atr", "levels": 12}),  # (the range: its first orders, laid from the ATR)
])
def test_an_infinity_and_an_atr_grid_are_stressed_over_the_range_they_first_laid(btc5m, strategy, settings):
    hist = btc5m.slice(0, 4_000)
    cfg = config_from(strategy, settings)
    path = resample(hist, bar_moves(hist), 200, np.random.default_rng(5), math.log(0.5))  # (a crash: below the lowest)
    ret, _, left, idle, _ = run_path(path, cfg)
    bt = run_spot_grid(path, cfg)
    start = bt.params.start_bar
    if strategy == "infinity-grid":
        lo, hi = bt.params.lower, math.inf
    else:
        first = bt.orders[bt.orders["placed"] == start]["price"]
        lo, hi = first.min(), first.max()
    assert ret == pytest.approx(bt.metrics["total_return"])
    assert left == any(path.low[i] < lo or path.high[i] > hi for i in range(start, len(path))) and left
    assert idle == pytest.approx(sum(not lo <= c <= hi for c in path.close[start:]) / (len(path) - start)) and idle > 0
    assert stress(hist, cfg, paths=4, block=200, scenarios=("crash",))[0].summary()["paths"] == 4


def test_the_same_seed_gives_the_same_paths_and_the_summary_orders_them(btc5m):
    hist = btc5m.slice(0, 4_000)
    cfg = config_from("spot-grid", SETTINGS)
    a = stress(hist, cfg, paths=12, block=100, seed=4, scenarios=("bootstrap", "crash"))
    b = stress(hist, cfg, paths=12, block=100, seed=4, scenarios=("bootstrap", "crash"), workers=1)
    c = stress(hist, cfg, paths=12, block=100, seed=5, scenarios=("bootstrap",))
    np.testing.assert_array_equal(a[0].total_return, b[0].total_return)
    assert not np.array_equal(a[0].total_return, c[0].total_return)
    s = a[1].summary()
    assert s["scenario"] == "crash" and s["paths"] == 12
    assert s["return_p5"] <= s["return_p50"] <= s["return_p95"] and s["drawdown_p50"] <= s["drawdown_p95"]
    assert s["return_p50"] < a[0].summary()["return_p50"]  # (a crash costs a long grid)


def test_what_it_cannot_run_is_refused_by_name(btc5m):
    hist = btc5m.slice(0, 2_000)
    with pytest.raises(ParamError, match="--strategy: the stress test runs spot grids"):
        stress(hist, config_from("hedged-grid", {}), paths=2)
    with pytest.raises(ParamError, match="--block: must be 1 to 500 bars"):
        stress(hist, config_from("spot-grid", SETTINGS), paths=2, block=600)
    with pytest.raises(ParamError, match="--scenario: 'boom' is not one of"):
        stress(hist, config_from("spot-grid", SETTINGS), paths=2, scenarios=("boom",))
