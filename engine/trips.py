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
from engine.kernels.trips import pair_closes_nb

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


def _groups(side: np.ndarray, at: np.ndarray) -> np.ndarray:
    """A number per (side, cost or entry to 9 significant digits: the same cost worked out
    from the buy and from the sell), -1 where ``at`` is not a number."""
    ok = np.isfinite(at) & (side != 0)
    x = np.where(ok, at, 1.0)
    e = np.floor(np.log10(np.where(x != 0.0, np.abs(x), 1.0))).astype(np.int64)
    m = np.rint(x / 10.0 ** (e - 8)).astype(np.int64)
    over = np.abs(m) >= 1_000_000_000  # (9.9999999996 is 10.0000000)
    e, m = np.where(over, e + 1, e), np.where(over, np.rint(m / 10.0).astype(np.int64), m)
    # one whole number each (a sort of numbers lets the GIL go; one of rows held it): the side,
    # the exponent (|e| < 512) and the 9 digits (|m| < 2**30) side by side
    keys = ((side > 0).astype(np.int64) << 41) | ((np.clip(e, -511, 511) + 512) << 31) | (m + (1 << 30))
    group = np.full(len(at), -1, np.int64)
    if ok.any():
        group[ok] = np.unique(keys[ok], return_inverse=True)[1]
    return group


def round_trips(trades: np.ndarray, perpetual: bool) -> np.ndarray:
    """The round trips of a kernel's trade log (``result.trades``: spot or perpetual), in the
    order they closed."""
    t = trades
    label = (t["label"] if perpetual else t["role"]).astype(np.int64)
    price, qty, fee, pnl = t["price"], t["qty"], t["fee"], t["pnl"]
    opening = np.zeros(max(len(perp_kernel.LABELS), len(spot_kernel.ROLE_NAMES)), np.int64)
    for lab, sd in (_PERP_OPEN if perpetual else _SPOT_OPEN).items():
        opening[lab] = sd
    is_open = opening[label] != 0
    safe_q = np.where(qty > 0.0, qty, 1.0)
    if perpetual:
        side = np.where(is_open, opening[label], -t["side"].astype(np.int64))  # a long closes with a sell
        entry = price - side * (pnl + fee) / safe_q
        at = np.where(is_open, price, np.where(label == perp_kernel.LIQUIDATION, np.nan, entry))
    else:
        closing = np.zeros(len(opening), np.int64)
        for lab, sd in _SPOT_CLOSE.items():
            closing[lab] = sd
        side = np.where(is_open, opening[label], closing[label])
        cost = price * qty - fee - pnl  # what the slot's buy cost, fee included
        entry = np.where(side > 0, cost / safe_q, np.nan)
        at = np.where(is_open, np.where(side > 0, price * qty + fee, price), np.where(side > 0, cost, np.nan))
    pair = pair_closes_nb(_groups(side, at), is_open, qty)
    c = np.flatnonzero(pair != -2)
    side, o, entry, q = side[c], pair[c], entry[c], qty[c]
    trips = np.zeros(len(c), dtype=TRIP_DTYPE)
    if not len(c):
        return trips
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
