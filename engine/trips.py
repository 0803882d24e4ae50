"""A run's closing fills as round trips, as FreqUI lists a bot's trades: each close with the
fill that opened what it closed, how long that was held, and what it made after both fills'
fees. One row per closing fill (a stop that closes several lots of a perpetual is one per lot,
as the kernel records it).

What a close made and what it closed are in its own record, so nothing here is worked out again:
- its entry: the cost the kernel booked, from the record (spot: value less fee and PnL, the
  buy's value and fee; a perpetual: price less (PnL + fee) / qty for a long, the other way for a
  short);
- its opening fill: the oldest open buy (spot) or opening (perpetual, same side) of that very
  cost or entry not yet closed; a close of what no single fill opened names none (a spot grid's
  rebalance, stop-loss or take-profit of the whole position; a slot laid again with coins the
  grid held, its cost a share of theirs; a liquidation);
- its profit: the kernel's PnL of the fill (spot: net of the buy's and the sell's fees, as the
  slot's cost holds the buy's fee; a perpetual: net of the closing fee, and here of the opening
  fill's fee share too, where the opening is known)."""

from __future__ import annotations

import numpy as np

from engine.kernels import adaptive_grid as perp_kernel
from engine.kernels import spot_grid as spot_kernel

TRIP_DTYPE = np.dtype([
    ("side", np.int8),  # +1 long, -1 short
    ("open_row", np.int64), ("close_row", np.int64),  # rows of the trade log; open -1: several or unknown
    ("open_bar", np.int64), ("close_bar", np.int64), ("open_time", np.int64), ("close_time", np.int64),
    ("open_price", np.float64), ("close_price", np.float64), ("qty", np.float64), ("fees", np.float64),
    ("pnl", np.float64), ("ret", np.float64),  # pnl / (entry x qty)
    ("label", np.int16),  # the closing fill's label (the strategy's names)
])
_SPOT_OPEN = {spot_kernel.GRID_BUY: 1, spot_kernel.REBUY: 1, spot_kernel.HEDGE_OPEN_SHORT: -1}
_SPOT_CLOSE = {spot_kernel.GRID_SELL: 1, spot_kernel.BAG_REDUCE: 1, spot_kernel.REBALANCE_SELL: 1,
               spot_kernel.STOP_LOSS: 1, spot_kernel.TAKE_PROFIT: 1, spot_kernel.HEDGE_CLOSE_SHORT: -1,
               spot_kernel.HEDGE_LIQUIDATION: -1}
_PERP_OPEN = {perp_kernel.BUY_OPEN_LONG: 1, perp_kernel.SELL_OPEN_SHORT: -1}


def _key(x: float) -> float:
    return float(f"{x:.9g}")  # (the same cost worked out from the buy and from the sell)


def round_trips(trades: np.ndarray, perpetual: bool) -> np.ndarray:
    """The round trips of a kernel's trade log (``result.trades``: spot or perpetual), in the
    order they closed."""
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
        rows.append((side, o, k, entry, q))
    trips = np.zeros(len(rows), dtype=TRIP_DTYPE)
    if not rows:
        return trips
    side, o, c, entry, q = (np.array(x) for x in zip(*rows, strict=True))
    known = o >= 0
    o0 = np.maximum(o, 0)
    trips["side"], trips["open_row"], trips["close_row"], trips["qty"] = side, o, c, q
    trips["open_bar"] = np.where(known, t["bar"][o0], -1)
    trips["open_time"] = np.where(known, t["time"][o0], -1)
    trips["open_price"] = np.where(known, price[o0], entry)
    trips["close_bar"], trips["close_time"], trips["close_price"] = t["bar"][c], t["time"][c], price[c]
    opening_fee = np.where(known, fee[o0] * q / np.where(known, qty[o0], 1.0), 0.0)
    if perpetual:  # its PnL is net of the closing fee only
        trips["fees"] = fee[c] + opening_fee
        trips["pnl"] = pnl[c] - opening_fee
    else:  # its PnL is net of both (the slot's cost holds the buy's fee)
        trips["fees"] = fee[c] + opening_fee
        trips["pnl"] = pnl[c]
    trips["ret"] = trips["pnl"] / (np.abs(trips["open_price"]) * q)
    trips["label"] = label[c]
    return trips
