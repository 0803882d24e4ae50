"""A trigger price: every strategy's grid waits for the first candle (after its warm-up) whose
range reaches the price, from above or below, and is laid at its close. Checked against a
search of the bars in plain Python, and for the spot grid against the same grid backtested on
the candles from that bar on (what a user who started it by hand then would have got)."""

import numpy as np
import pytest
from conftest import FUNDING, shared_file

from engine.data import load_funding
from engine.strategies.errors import ParamError
from engine.strategies.registry import config_from, run_backtest
from engine.strategies.spot_grid.backtest import sweep_spot_grid


def oracle(candles, start, price):
    return next(b for b in range(start, len(candles)) if candles.low[b] <= price <= candles.high[b])


@pytest.mark.parametrize("price", [25_000.0, 18_500.0], ids=["above-the-start", "below-the-start"])
def test_a_spot_grid_waits_for_its_price_and_then_is_the_grid_started_there(btc5m, price):
    candles = btc5m.slice(0, 20_000)
    settings = {"levels": 20, "spacing": "geometric", "trailing": "both", "fee": 0.001}
    first = oracle(candles, 0, price)
    assert first > 100 and (candles.close[0] < price) == (price == 25_000.0)
    got = run_backtest("spot-grid", candles, config_from("spot-grid", dict(settings, trigger_price=price)))
    assert got.params.start_bar == first
    by_hand = run_backtest("spot-grid", candles.slice(first, len(candles)), config_from("spot-grid", settings))
    assert len(got.trades) == len(by_hand.trades) > 20
    np.testing.assert_array_equal(got.trades["time"], by_hand.trades["time"])
    np.testing.assert_allclose(got.trades["price"], by_hand.trades["price"], rtol=1e-12)
    assert got.metrics["final_equity"] == pytest.approx(by_hand.metrics["final_equity"], rel=1e-12)
    assert np.all(got.equity[:first + 1] == got.equity[0])  # nothing moves before the grid is laid
    # the sweep (the optimizer's) lays it at the same bar
    swept = sweep_spot_grid(candles, [config_from("spot-grid", dict(settings, trigger_price=price))])
    assert swept["final_equity"][0] == pytest.approx(got.metrics["final_equity"], rel=1e-12)


def test_the_perpetual_grids_wait_for_it_too_after_their_warm_up(btc5m):
    candles = btc5m.slice(0, 20_000)
    funding = load_funding(shared_file(FUNDING))
    plain = run_backtest("adaptive-grid", candles, config_from("adaptive-grid", {"leverage": 2.0}), funding)
    price = float(candles.high[plain.start_bar:plain.start_bar + 3000].max()) * 1.001
    first = oracle(candles, plain.start_bar, price)
    for name in ("adaptive-grid", "long-grid"):
        got = run_backtest(name, candles, config_from(name, {"leverage": 2.0, "trigger_price": price}), funding)
        assert got.start_bar == first > plain.start_bar + 3000
        assert len(got.trades) > 0 and got.trades["bar"].min() > first


def test_a_price_never_reached_or_below_zero_is_refused_by_name(btc5m):
    candles = btc5m.slice(0, 5_000)
    with pytest.raises(ParamError, match=r"--trigger-price: the price never reaches 1,000,000 in the data after the "
                                         r"warm-up \(from bar 0 it spans"):
        run_backtest("spot-grid", candles, config_from("spot-grid", {"trigger_price": 1e6}))
    with pytest.raises(ParamError, match="--trigger-price: must be >= 0"):
        run_backtest("spot-grid", candles, config_from("spot-grid", {"trigger_price": -5.0}))
