"""The bot's summary (engine/summary.py) worked by hand; the paper runtime's summary against the
backtest's is in test_runtime_paper and test_runtime_perp."""

import pytest

from engine.summary import DAY_MS, bot_summary, qty_text, running_text


def test_a_summary_worked_by_hand():
    books = {"equity": 1_100.0, "grid_profit": 130.0, "floating": -25.0, "funding": -5.0, "fees": 12.5,
             "fills": 240, "round_trips": 100}
    s = bot_summary(1_000.0, books, start_ms=5 * DAY_MS, now_ms=15 * DAY_MS)
    assert s["investment"] == 1_000.0 and s["total_pnl"] == pytest.approx(100.0) and s["roi"] == pytest.approx(0.1)
    assert s["running_ms"] == 10 * DAY_MS
    assert s["apr"] == pytest.approx(0.1 / 10 * 365)  # simple, as Pionex: ROI / days x 365
    assert s["round_trips_per_day"] == pytest.approx(10.0) and s["fills_per_day"] == pytest.approx(24.0)
    assert (s["grid_profit"], s["floating"], s["funding"], s["fees"]) == (130.0, -25.0, -5.0, 12.5)


def test_short_runs_give_no_annualized_return_nor_rates():
    books = {"equity": 1_010.0, "fills": 3, "round_trips": 1}
    half_hour = bot_summary(1_000.0, books, 0, DAY_MS // 48)
    assert half_hour["apr"] is None and half_hour["fills_per_day"] is None and half_hour["round_trips_per_day"] is None
    six_hours = bot_summary(1_000.0, books, 0, DAY_MS // 4)
    assert six_hours["apr"] is None and six_hours["fills_per_day"] == pytest.approx(12.0)
    assert bot_summary(1_000.0, books, 0, DAY_MS)["apr"] == pytest.approx(0.01 * 365)


def test_running_time_in_words():
    assert running_text(0) == "0m" and running_text(12 * 60_000) == "12m"
    assert running_text(3 * 3_600_000 + 20 * 60_000) == "3h 20m" and running_text(6 * DAY_MS + 4 * 3_600_000) == "6d 4h"


def test_quantities_read_to_one_width_down_a_column():
    assert [qty_text(q) for q in (0.0054703, 0.00503373, 1.5, 12.25, 1234.5)] == [
        "0.00547030", "0.00503373", "1.50000000", "12.2500", "1,234.5000"]
