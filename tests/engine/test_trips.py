"""Round trips (engine/trips.py): each close with the fill that opened it, against the grid's
own arithmetic (a static grid: each sell one level above its buy) and the kernels' money."""

from __future__ import annotations

import numpy as np
import pytest

from engine.kernels import adaptive_grid as perp_kernel
from engine.kernels import spot_grid as spot_kernel
from engine.strategies.adaptive_grid import AdaptiveGridConfig, run_adaptive_grid
from engine.strategies.spot_grid import SpotGridConfig, run_spot_grid
from engine.trips import _PERP_OPEN, _SPOT_CLOSE, _SPOT_OPEN, round_trips


def test_a_static_grid_sells_each_buy_one_level_up(btc5m):
    cfg = SpotGridConfig(mode="range", spacing="arithmetic", levels=40, range_pct=0.3, trailing="none",
                         recenter=0.0, fee=0.001)
    r = run_spot_grid(btc5m.slice(0, 20_000), cfg)
    t, trips = r.trades, round_trips(r.trades, perpetual=False)
    sells = np.flatnonzero(t["role"] == spot_kernel.GRID_SELL)
    assert len(trips) == len(sells) > 60 and (trips["open_row"] >= 0).all()
    buy, sell = t[trips["open_row"]], t[trips["close_row"]]
    assert (buy["role"] == spot_kernel.GRID_BUY).all() and (buy["level"] == sell["level"]).all()
    assert (buy["bar"] < sell["bar"]).all() and np.array_equal(buy["qty"], sell["qty"])
    step = float(np.diff(r.levels).min())  # bought at or below a level, sold at or above the next
    assert (sell["price"] - buy["price"] >= step * (1 - 1e-9)).all()
    # each trip's profit is what its prices and both fees make, and they add up to the realized
    gross = (sell["price"] - buy["price"]) * sell["qty"] - buy["fee"] - sell["fee"]
    np.testing.assert_allclose(trips["pnl"], gross, rtol=1e-9, atol=1e-9)
    assert trips["pnl"].sum() == pytest.approx(r.money["realized"], rel=1e-9)
    assert np.allclose(trips["fees"], buy["fee"] + sell["fee"])
    assert np.array_equal(trips["close_row"], np.sort(trips["close_row"]))  # in the order they closed


def test_the_perpetual_grids_lots_are_paired_with_their_openings(btc5m):
    r = run_adaptive_grid(btc5m.slice(0, 20_000), AdaptiveGridConfig(leverage=3.0, prune_age_hours=6.0))
    t, trips = r.trades, round_trips(r.trades, perpetual=True)
    closes = ~np.isin(t["label"], [perp_kernel.BUY_OPEN_LONG, perp_kernel.SELL_OPEN_SHORT,
                                   perp_kernel.CIRCUIT_BREAKER_HALT])
    assert len(trips) == closes.sum() > 100
    known = trips[trips["open_row"] >= 0]
    assert len(known) == len(trips) - np.count_nonzero(t["label"] == perp_kernel.LIQUIDATION)
    op = t[known["open_row"]]
    want = np.where(known["side"] > 0, perp_kernel.BUY_OPEN_LONG, perp_kernel.SELL_OPEN_SHORT)
    assert np.array_equal(op["label"], want) and (op["bar"] <= known["close_bar"]).all()
    assert np.array_equal(known["open_price"], op["price"])  # the entry the close's record holds
    # a lot closed in parts is named by each part, never by more than it held
    for row in np.unique(known["open_row"]):
        assert known["qty"][known["open_row"] == row].sum() <= t["qty"][row] * (1 + 1e-9)
    # each trip made its prices less both fees; with the opening fees back they are the realized
    gross = known["side"] * (known["close_price"] - known["open_price"]) * known["qty"] - known["fees"]
    np.testing.assert_allclose(known["pnl"], gross, rtol=1e-9, atol=1e-7)
    opening = known["fees"] - t["fee"][known["close_row"]]
    assert trips["pnl"].sum() + opening.sum() == pytest.approx(r.money["realized"], rel=1e-9)


def test_a_lot_closed_in_two_parts_worked_by_hand():
    t = np.zeros(3, dtype=perp_kernel.TRADE_DTYPE)
    # open 2 long at 100 (fee 0.04); close 1 at 110 (fee 0.022), then 1 at 95 (fee 0.019)
    t[0] = (1, 1000, 1, 100.0, 2.0, 0.04, perp_kernel.BUY_OPEN_LONG, 0.0, 2.0, 0.0)
    t[1] = (5, 5000, -1, 110.0, 1.0, 0.022, perp_kernel.SELL_CLOSE_LONG, 10.0 - 0.022, 1.0, 0.0)
    t[2] = (9, 9000, -1, 95.0, 1.0, 0.019, perp_kernel.STOP_LONG, -5.0 - 0.019, 0.0, 0.0)
    trips = round_trips(t, perpetual=True)
    assert list(trips["open_row"]) == [0, 0] and list(trips["close_row"]) == [1, 2]
    assert list(trips["open_price"]) == [100.0, 100.0] and list(trips["side"]) == [1, 1]
    assert trips["pnl"] == pytest.approx([10.0 - 0.022 - 0.02, -5.0 - 0.019 - 0.02])
    assert trips["ret"] == pytest.approx([(10.0 - 0.042) / 100.0, (-5.0 - 0.039) / 100.0])
    assert list(trips["close_time"] - trips["open_time"]) == [4000, 8000]


# -- the pure-Python reference -------------------------------------------------------------------

def _key(x: float) -> float:
    return float(f"{x:.9g}")  # (the same cost worked out from the buy and from the sell)


def reference_pairs(trades: np.ndarray, perpetual: bool) -> list[tuple[int, int, int]]:
    """The (side, opening row, closing row) of each close, by a plain loop over the fills (the
    rule of engine/trips.py as it was first written, before its kernel)."""
    t = trades
    label = t["label"] if perpetual else t["role"]
    opens, closes = (_PERP_OPEN, None) if perpetual else (_SPOT_OPEN, _SPOT_CLOSE)
    price, qty, fee, pnl = t["price"], t["qty"], t["fee"], t["pnl"]
    # (side, cost or entry) -> [open row, qty not yet closed], oldest first
    waiting: dict[tuple[int, float], list[list]] = {}
    rows = []
    for k in range(len(t)):
        lab, q = int(label[k]), float(qty[k])
        if q <= 0.0:  # (a decision, not a fill: the circuit breaker's halt)
            continue
        if lab in opens:
            side = opens[lab]
            at = float(price[k]) if perpetual or side < 0 else float(price[k]) * q + float(fee[k])
            waiting.setdefault((side, _key(at)), []).append([k, q])
            continue
        if perpetual:
            side = -int(t["side"][k])  # a long closes with a sell
            entry = float(price[k]) - side * (float(pnl[k]) + float(fee[k])) / q
            at = entry
        else:
            side = closes[lab]
            if side > 0:  # what the slot's buy cost, fee included
                at = float(price[k]) * q - float(fee[k]) - float(pnl[k])
                entry = at / q
            else:
                entry = at = float("nan")
        found = waiting.get((side, _key(at))) if lab != perp_kernel.LIQUIDATION or not perpetual else None
        o = -1
        if found:  # lots of one entry: the one of this very size, else the one with the most left
            # (a stop closes a share of each lot: lots of one entry go down together)
            tol = 1e-9 * max(q, 1e-12)
            j = next((j for j, (_, rest) in enumerate(found) if abs(rest - q) <= tol),
                     max(range(len(found)), key=lambda j: (found[j][1], -j)))
            o = found[j][0]
            found[j][1] -= q  # (a lot closed in parts: each part names it)
            if found[j][1] <= tol:
                found.pop(j)
        rows.append((side, o, k))
    return rows


@pytest.mark.parametrize("strategy", ["static", "trailing", "lower-only", "hedged", "perpetual", "perpetual-prune"])
def test_the_kernel_pairs_every_close_as_the_plain_loop_does(btc5m, strategy):
    """The kernel's pairing (engine/kernels/trips.py) against the plain loop, fill by fill, on
    real bars: grids that sell each buy, trail, lay lower-only slots, hedge, and perpetual lots
    closed whole, in parts, by stops and by pruning."""
    from engine.strategies.registry import SPECS

    bars = btc5m.slice(0, 30_000)
    name, params = {"static": ("spot-grid", dict(trailing="none", recenter=0.0, levels=30, range_pct=0.1)),
                    "trailing": ("spot-grid", dict(trailing="both", levels=30, range_pct=0.1)),
                    "lower-only": ("spot-grid", dict(mode="lower-only", levels=30, range_pct=0.1)),
                    "hedged": ("hedged-grid", {}),
                    "perpetual": ("adaptive-grid", dict(leverage=3.0)),
                    "perpetual-prune": ("adaptive-grid", dict(leverage=3.0, prune_age_hours=6.0))}[strategy]
    spec = SPECS[name]
    t, perpetual = spec.backtest(bars, spec.config(**params)).trades, spec.perpetual
    trips = round_trips(t, perpetual)
    want = reference_pairs(t, perpetual)
    assert len(want) > 50
    got = list(zip(trips["side"].tolist(), trips["open_row"].tolist(), trips["close_row"].tolist(), strict=True))
    assert got == want
