"""Suggest (engine/optimize/suggest.py): settings from a walk-forward search on the last days of
the history, shown with what they did on the part no trial read; too little history refused
with the reason."""

import pytest

from engine.optimize.suggest import recent, suggest_settings
from engine.strategies.errors import ParamError
from engine.strategies.registry import config_from, run_backtest


@pytest.mark.parametrize("days", [7, 30, 180])
def test_the_figures_shown_are_a_plain_backtest_of_the_suggestion_on_the_unseen_days(sample_candles, days):
    s = suggest_settings("spot-grid", sample_candles, days, {"levels": 20, "fee": 0.001})
    window = recent(sample_candles, days)
    assert s.bars == len(window) and window.time[-1] == sample_candles.time[-1]
    assert (window.time[-1] + window.timeframe_ms - window.time[0]) == days * 86_400_000
    cfg = config_from("spot-grid", s.params)  # the form takes it as it is
    assert cfg.lower == cfg.upper == 0 and cfg.fee == 0.001 and set(s.searched) >= {"levels", "range_pct"}
    tail = window.slice(len(window) - round(len(window) * 0.3), len(window))
    r = run_backtest("spot-grid", tail, cfg)
    days_tail = len(tail) * tail.timeframe_ms / 86_400_000
    assert s.tail_days == pytest.approx(days_tail)
    assert s.total_return == pytest.approx(r.metrics["total_return"], abs=1e-9)
    assert s.max_drawdown == pytest.approx(r.metrics["max_drawdown"], abs=1e-9)
    assert s.fills_per_day == pytest.approx(r.metrics["fills"] / days_tail)
    assert f"{s.total_return:+.2%}" in s.text() and "no trial saw" in s.text()
    again = suggest_settings("spot-grid", sample_candles, days, {"levels": 20, "fee": 0.001})
    assert again.params == s.params  # seeded: the same history gives the same suggestion


def test_a_perpetual_grid_is_suggested_from_real_btc(btc5m):
    s = suggest_settings("adaptive-grid", btc5m.slice(0, 20_000), 30, {"leverage": 2.0}, trials=24)
    assert config_from("adaptive-grid", s.params).leverage == 2.0 and s.bars == 30 * 288


def test_a_futures_grid_is_suggested_around_the_price_with_its_funding(btc5m):
    """Its range is searched around the price at start (the form's lower and upper set aside);
    the figures are a plain backtest of the suggestion, with the funding, on the unseen days."""
    from conftest import FUNDING, shared_file

    from engine.data import load_funding

    funding = load_funding(shared_file(FUNDING))
    base = {"direction": "long", "lower": 1.0, "upper": 2.0, "leverage": 3.0}
    s = suggest_settings("futures-grid", btc5m, 30, base, funding=funding, trials=24)
    cfg = config_from("futures-grid", s.params)
    assert (cfg.lower, cfg.upper, cfg.direction, cfg.leverage) == (0.0, 0.0, "long", 3.0)
    window = recent(btc5m, 30)
    tail = window.slice(len(window) - round(len(window) * 0.3), len(window))
    r = run_backtest("futures-grid", tail, cfg, funding)
    assert s.total_return == pytest.approx(r.metrics["total_return"], abs=1e-9) and r.metrics["fills"] > 0


def test_too_little_history_is_refused_with_the_reason(sample_candles, btc1h):
    with pytest.raises(ParamError, match=r"3\.0 days of history, 7 needed"):
        suggest_settings("spot-grid", sample_candles.slice(0, 3 * 96), 7, {})
    with pytest.raises(ParamError, match="168 bars of 60 minutes: too few"):
        suggest_settings("spot-grid", btc1h, 7, {})
    with pytest.raises(ParamError, match="no candles"):
        recent(sample_candles.slice(0, 0), 7)
    with pytest.raises(ParamError, match="looks back 7, 30, 180 days"):
        recent(sample_candles, 10)
