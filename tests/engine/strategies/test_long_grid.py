"""The long perpetual grid (engine/strategies/long_grid.py): the adaptive grid's long side
alone, on real BTC and real funding; a short refused by name wherever settings come in."""

import numpy as np
import pytest
from conftest import FUNDING, shared_file

from engine.data import load_funding
from engine.kernels import adaptive_grid as perp_kernel
from engine.runtime.config import ConfigError, SystemConfig
from engine.strategies.errors import ParamError
from engine.strategies.registry import config_from, run_backtest

SHORT_LABELS = {"SELL_OPEN_SHORT", "BUY_CLOSE_SHORT", "STOP_SHORT"}


def labels(result) -> set[str]:
    return {perp_kernel.LABELS[x] for x in result.trades["label"]}


def test_it_trades_as_the_adaptive_grid_long_side_alone(btc5m):
    candles = btc5m.slice(0, 30_000)  # 104 days of 2020, down 8% then up 25%: both sides would trade
    funding = load_funding(shared_file(FUNDING))
    settings = {"leverage": 2.0, "levels": 8, "order_frac": 0.04}
    long_only = run_backtest("long-grid", candles, config_from("long-grid", settings), funding)
    both = run_backtest("adaptive-grid", candles, config_from("adaptive-grid", settings), funding)
    same = run_backtest("adaptive-grid", candles, config_from("adaptive-grid", {**settings, "no_short": True}),
                        funding)
    assert SHORT_LABELS & labels(both), "the two-sided grid opened no short: a weaker test"
    assert not SHORT_LABELS & labels(long_only)
    assert {"BUY_OPEN_LONG", "SELL_CLOSE_LONG"} <= labels(long_only) and len(long_only.trades) > 100
    assert long_only.strategy == "long-grid" and long_only.config["no_short"] is True
    # the same kernel, told so: trade for trade, to the cent and the bar
    for field in ("bar", "label", "price", "qty", "fee", "pnl"):
        np.testing.assert_array_equal(long_only.trades[field], same.trades[field])
    np.testing.assert_array_equal(long_only.equity, same.equity)
    assert long_only.money["funding"] != 0.0


def test_a_short_is_refused_by_name_wherever_settings_come_in():
    with pytest.raises(ParamError, match="never opens a short") as err:
        config_from("long-grid", {"no_short": False})
    assert err.value.name == "no_short"
    with pytest.raises(ParamError, match="unknown long-grid setting"):
        config_from("long-grid", {"spacing": "geometric"})  # a spot grid's setting
    with pytest.raises(ConfigError, match="no_short"):
        SystemConfig(name="l", symbol="BTC/USDT:USDT", market="perpetual", strategy="long-grid",
                     params={"no_short": False}).validate()
    with pytest.raises(ConfigError, match="long-grid trades the perpetual market, not spot"):
        SystemConfig(name="l", symbol="BTC/USDT", market="spot", strategy="long-grid").validate()
