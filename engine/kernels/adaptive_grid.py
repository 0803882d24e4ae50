"""Adaptive long/short grid for USDT-margined perpetuals in hedge mode (numba).

Two grids around an Avellaneda-Stoikov reservation price: buys below open longs, sells above
open shorts; every opening fill is a lot with its own take-profit one spacing away. Which
grids run follows the regime; a z-score circuit breaker halts opening orders; lots are pruned
one at a time by a priority list; each side has a two-stage ATR stop; a VaR gate blocks new
exposure; isolated margin per side with tiered maintenance margin and liquidation; funding at
every settlement.

Timing (GRID_SEMANTICS.md): every decision uses data up to the close of bar i and acts from
bar i + 1. Within a bar, events at fixed prices (limit orders, stop triggers set at the last
close) happen in price order along the path open -> low -> high -> close when the bar closes
at or above its open, else open -> high -> low -> close; a side's liquidation is checked at the
end of each leg with the position it then has. Funding and market orders (prunes) happen at
the open.

Units of the Avellaneda-Stoikov terms: sigma is the standard deviation of per-bar log returns,
q the net inventory in order units (net quantity / one order's quantity), T in bars; the
reservation price is ``close * (1 - q * gamma * sigma^2 * T)`` and the spread, a fraction of
the price, ``gamma * sigma^2 * T + (2 / gamma) * ln(1 + gamma / kappa)``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from engine.kernels.grid import OPEN_END, floor_lot_nb, round_tick_nb
from engine.kernels.indicators import BREAKOUT_DOWN, BREAKOUT_UP, DOWNTREND, NOISE, UPTREND
from engine.kernels.jit import hot_njit
from engine.kernels.matching import down_first_nb, limit_fill_nb, market_fill_nb, reached_nb, stop_fill_nb
from engine.kernels.perp import liquidation_price_nb

LONG, SHORT = 0, 1  # side index; sign +1 / -1

# Trade labels.
(BUY_OPEN_LONG, SELL_CLOSE_LONG, SELL_OPEN_SHORT, BUY_CLOSE_SHORT, STOP_LONG, STOP_SHORT,
 PRUNE_DEVIANCE, PRUNE_OLDEST, PRUNE_GAP, PRUNE_FUNDING, PRUNE_OFFSET, CIRCUIT_BREAKER_HALT,
 LIQUIDATION) = range(13)
LABELS = ("BUY_OPEN_LONG", "SELL_CLOSE_LONG", "SELL_OPEN_SHORT", "BUY_CLOSE_SHORT", "STOP_LONG",
          "STOP_SHORT", "PRUNE_DEVIANCE", "PRUNE_OLDEST", "PRUNE_GAP", "PRUNE_FUNDING", "PRUNE_OFFSET",
          "CIRCUIT_BREAKER_HALT", "LIQUIDATION")

TRADE_DTYPE = np.dtype([
    ("bar", np.int64), ("time", np.int64), ("side", np.int8), ("price", np.float64), ("qty", np.float64),
    ("fee", np.float64), ("label", np.int8), ("pnl", np.float64), ("long_qty", np.float64),
    ("short_qty", np.float64),
])

# Counters.
(C_LONGS_OPENED, C_LONGS_CLOSED, C_SHORTS_OPENED, C_SHORTS_CLOSED, C_STOPS_LONG, C_STOPS_SHORT,
 C_PRUNE_DEVIANCE, C_PRUNE_OLDEST, C_PRUNE_GAP, C_PRUNE_FUNDING, C_PRUNE_OFFSET, C_HALTS, C_TRAIL,
 C_VAR_BLOCKS, C_LIQUIDATIONS, C_REGENERATIONS, C_FUNDING_EVENTS, C_LOTS_FULL, C_REFUSED_MIN,
 C_ACTIVE_BARS, C_REFUSED_BALANCE, C_RISK_WAITS, C_ROUND_TRIPS) = range(23)
N_COUNTERS = 23
COUNTER_NAMES = ("longs_opened", "longs_closed", "shorts_opened", "shorts_closed", "stops_long",
                 "stops_short", "prune_deviance", "prune_oldest", "prune_gap", "prune_funding",
                 "prune_offset", "circuit_breaker_halts", "trailing_shifts", "var_blocks",
                 "liquidations", "regenerations", "funding_events", "lots_full", "refused_min_notional",
                 "active_bars", "refused_balance", "risk_waits",
                 "round_trips")  # (a lot closed whole by its take-profit: a completed grid)

# Money totals.
M_REALIZED, M_GRID_PROFIT, M_FUNDING, M_FEES, M_LIQUIDATED, M_OFFSET_USED = range(6)
N_MONEY = 6

# Lot fields L[side, m, .] and grid fields G[side, j, .].
_LQ, _LE, _LT, _LF, _LTP, _LJ, _LG, _LA, _LTQ = range(9)  # _LTQ: what its take-profit order holds
N_L = 9
_GP, _GQ, _GA = range(3)
# Scalars F[.] and I[.].
(_CASH, _MARGIN_L, _MARGIN_S, _QTY_L, _QTY_S, _COST_L, _COST_S, _CENTER, _SPACING, _TRIG1_L, _TRIG2_L,
 _TRIG1_S, _TRIG2_S, _LIQ_L, _LIQ_S, _ORDER_QTY, _MINT_L, _MINT_S, _WORST_L, _WORST_S, _FUND_L,
 _FUND_S, _SQ1_L, _SQ1_S, _SQ2_L, _SQ2_S, _XD, _XE_L, _XE_S, _XD_S) = range(30)
N_F = 30  # _MINT: oldest open time, _WORST: highest long / lowest short entry, _FUND: funding paid,
# _SQ1 / _SQ2: what each stop stage's order holds (set at each close, with the triggers);
# the exchange's books of the wallet: _XE its average entry of each side, _XD (long) and _XD_S
# (short) what its wallet holds beyond _CASH from each side's closes (it realizes a close against
# the average entry, the books against the lot; the two agree again when the side is closed out,
# and a liquidation, which loses the margin in both, books the side's difference: _xd)
# Grid levels' G[., ., _GA]: 0 not wanted, 1 resting (its margin held), 2 armed at this close,
# 3 wanted but not placed (no free margin for it, or no room for its lot)
REST, ARMED, UNPLACED = 1.0, 2.0, 3.0
(_STAGE_L, _STAGE_S, _HALTED, _GEN, _GEN_REGIME, _VAR_BLOCK, _PRUNE_SIDE, _PRUNE_LOT, _PRUNE_LABEL,
 _NTR, _STARTED, _NLOT_L, _NLOT_S) = range(13)
N_I = 13  # lots of a side are kept packed in L[side, :I[_NLOT_L + side]]


class AdaptiveGridParams(NamedTuple):
    capital: float = 10_000.0
    leverage: float = 1.0
    levels: int = 10  # per side
    order_frac: float = 0.03  # margin of one order, as a fraction of the capital
    atr_k: float = 1.0
    atr_floor: float = 0.005
    gamma: float = 1.0
    kappa: float = 1000.0
    horizon: float = 96.0  # T, in bars
    z_halt: float = -3.0
    z_resume: float = -1.0
    stop_m: float = 3.5
    prune_sigma: float = 3.0
    prune_age_ms: float = 24 * 3600 * 1000.0
    prune_gap: float = 3.0  # spacings
    prune_funding: float = 0.5  # of the grid profit
    prune_offset: int = 1
    offset_min_spacings: float = 2.0  # profit offset only closes lots this far underwater
    spread_const: float = 2.0 * np.log(1.001)  # (2 / gamma) ln(1 + gamma / kappa), set with gamma and kappa
    er_threshold: float = 0.5
    trail_reserve: float = 0.1  # capital kept out of the grid for trailing up
    var_z: float = 1.65
    var_max_dd: float = 0.25
    maker_fee: float = -0.00005
    taker_fee: float = 0.0002
    slippage: float = 0.0005
    no_short: int = 0
    lot: float = 0.001
    tick: float = 0.1
    min_notional: float = 5.0
    max_lots: int = 40  # per side
    start_bar: int = 0
    # the runtime's risk gate, for the openings: the most the system may hold and have resting
    # to add to it (quote, notional), as the gate measures it (``engine.risk``: exposure rules)
    max_exposure: float = np.inf


ORDER_DTYPE = np.dtype([("side", np.int8), ("kind", np.int8), ("price", np.float64), ("qty", np.float64),
                        ("ref", np.int64), ("book", np.int8)])
OPEN_ORDER, TAKE_PROFIT_ORDER, STOP_ORDER, MARKET_ORDER = 0, 1, 2, 3

# The replay's order log (kept only when asked for): every grid opening and take-profit with the
# close it was placed at and the bar it last rested in (filled or cancelled; OPEN_END while it
# still rests). A lot's take-profit is known by the lot's open time and entry.
ORDER_LOG_DTYPE = np.dtype([("placed", np.int64), ("end", np.int64), ("side", np.int8), ("kind", np.int8),
                            ("book", np.int8), ("price", np.float64), ("qty", np.float64),
                            ("lot_time", np.float64), ("entry", np.float64)])
# Per-bar marks at each close (kept with the order log): average entry, liquidation price and
# the next stop trigger of each side; NaN while the side is flat.
MARK_NAMES = ("avg_long", "avg_short", "liq_long", "liq_short", "stop_long", "stop_short")
N_MARKS = len(MARK_NAMES)


def spread_const(gamma: float, kappa: float) -> float:
    """The Avellaneda-Stoikov spread's constant part, (2 / gamma) ln(1 + gamma / kappa)."""
    return float((2.0 / gamma) * np.log1p(gamma / kappa))


def new_order_log(p: AdaptiveGridParams, n_bars: int, capacity: int = 4096):
    """(log, refs, marks) for ``adaptive_grid_log_nb``: the order log, the open rows it is
    matched against (row count, one per grid level, the take-profits, scratch), per-bar marks."""
    refs = np.full(2 + 2 * p.levels + 4 * p.max_lots, -1, dtype=np.int64)
    refs[0] = 0
    refs[1 + 2 * p.levels] = 0
    return np.empty(capacity, dtype=ORDER_LOG_DTYPE), refs, np.full((n_bars, N_MARKS), np.nan)


def order_log_room(p: AdaptiveGridParams) -> int:
    """Rows the order log must have free before a bar: every level and take-profit replaced."""
    return 2 * p.levels + 2 * p.max_lots


def trade_log_room(p: AdaptiveGridParams) -> int:
    """Rows the trade log must have free before a bar: its worst case."""
    return 3 * p.max_lots + 2 * p.levels + 8


def new_state(p: AdaptiveGridParams):
    L = np.zeros((2, p.max_lots, N_L))
    G = np.zeros((2, p.levels, 3))
    F = np.zeros(N_F)
    I = np.zeros(N_I, dtype=np.int64)
    F[_CASH] = p.capital
    F[_LIQ_L] = 0.0
    F[_LIQ_S] = np.inf
    F[_TRIG1_L] = F[_TRIG2_L] = -np.inf
    F[_TRIG1_S] = F[_TRIG2_S] = np.inf
    I[_PRUNE_LOT] = -1
    I[_GEN_REGIME] = -1
    return L, G, F, I


@njit(cache=True, nogil=True, inline="always")
def _record(trades, I, bar, t, side, price, qty, fee, label, pnl, F):
    n = I[_NTR]
    if n >= len(trades):
        return False
    r = trades[n]
    r["bar"] = bar
    r["time"] = t
    r["side"] = side
    r["price"] = price
    r["qty"] = qty
    r["fee"] = fee
    r["label"] = label
    r["pnl"] = pnl
    r["long_qty"] = F[_QTY_L]
    r["short_qty"] = F[_QTY_S]
    I[_NTR] = n + 1
    return True


@njit(cache=True, nogil=True)
def next_stop_nb(F, I, s):
    """The price of side ``s``'s next stop (its stage's trigger), NaN when the side holds nothing:
    the replay's mark and the runtime's books."""
    if F[_QTY_L + s] <= 0.0:
        return np.nan
    return F[(_TRIG1_L if s == LONG else _TRIG1_S) + I[_STAGE_L + s]]


@njit(cache=True, nogil=True, inline="always")
def _refresh_side(s, p, L, F, I, tiers):
    """Aggregates of one side from its lots: quantity, cost, and the liquidation price, the
    exchange's: from its average entry (``_XE``, which a close leaves where it was, while the
    lots' cost moves with the lot closed) and the side's isolated margin."""
    q = 0.0
    cost = 0.0
    oldest = np.inf
    worst = -np.inf if s == LONG else np.inf
    fund = 0.0
    for m in range(I[_NLOT_L + s]):
        q += L[s, m, _LQ]
        cost += L[s, m, _LQ] * L[s, m, _LE]
        oldest = min(oldest, L[s, m, _LT])
        worst = max(worst, L[s, m, _LE]) if s == LONG else min(worst, L[s, m, _LE])
        fund += L[s, m, _LF]
    F[_MINT_L + s] = oldest
    F[_WORST_L + s] = worst
    F[_FUND_L + s] = fund
    if q < 1e-12:
        q = 0.0
        cost = 0.0
        # (a side gone flat keeps its stop order to the close, as the exchange does: it fires on
        # a lot opened later in the bar; the close clears it, or a liquidation, which cancels it)
    if s == LONG:
        F[_QTY_L] = q
        F[_COST_L] = cost
        F[_LIQ_L] = liquidation_price_nb(tiers, 1, q, F[_XE_L], F[_MARGIN_L]) if q > 0.0 else 0.0
    else:
        F[_QTY_S] = q
        F[_COST_S] = cost
        F[_LIQ_S] = liquidation_price_nb(tiers, -1, q, F[_XE_S], F[_MARGIN_S]) if q > 0.0 else np.inf


@njit(cache=True, nogil=True, inline="always")
def _clear_stops(s, F):
    """Side s has no stop order (it is flat at a close, or was liquidated)."""
    if s == LONG:
        F[_TRIG1_L] = -np.inf
        F[_TRIG2_L] = -np.inf
    else:
        F[_TRIG1_S] = np.inf
        F[_TRIG2_S] = np.inf


@njit(cache=True, nogil=True, inline="always")
def _xd(s):
    """Where the exchange's wallet keeps side s's realized PnL beyond the books' (F index)."""
    return _XD if s == LONG else _XD_S

@njit(cache=True, nogil=True, inline="always")
def _open_lot(s, j, bar, t, price, qty, fee_rate, label, p, L, G, F, I, trades, counters, money, tiers):
    """on_fill of an opening order: margin moves from the wallet to the side's isolated margin."""
    m = I[_NLOT_L + s]
    if m >= L.shape[1]:
        counters[C_LOTS_FULL] += 1
        return True
    value = price * qty
    fee = value * fee_rate
    margin = value / p.leverage
    if F[_CASH] + F[_XD] + F[_XD_S] < margin + max(fee, 0.0):
        counters[C_REFUSED_BALANCE] += 1
        return True
    held = F[_QTY_L + s]
    F[_XE_L + s] = (held * F[_XE_L + s] + qty * price) / (held + qty)
    F[_CASH] -= margin + fee
    if s == LONG:
        F[_MARGIN_L] += margin
        counters[C_LONGS_OPENED] += 1
    else:
        F[_MARGIN_S] += margin
        counters[C_SHORTS_OPENED] += 1
    money[M_FEES] += fee
    sign = 1.0 if s == LONG else -1.0
    L[s, m, _LQ] = qty
    L[s, m, _LE] = price
    L[s, m, _LT] = t
    L[s, m, _LF] = 0.0
    L[s, m, _LTP] = round_tick_nb(price + sign * F[_SPACING], p.tick)
    L[s, m, _LJ] = j
    L[s, m, _LG] = I[_GEN]
    L[s, m, _LA] = 1.0
    L[s, m, _LTQ] = qty
    I[_NLOT_L + s] = m + 1
    _refresh_side(s, p, L, F, I, tiers)
    return _record(trades, I, bar, t, 1 if s == LONG else -1, price, qty, fee, label, 0.0, F)


@njit(cache=True, nogil=True, inline="always")
def _close_lot(s, m, qty, bar, t, price, fee_rate, label, p, L, G, F, I, trades, counters, money, tiers):
    """on_fill of a closing order: ``qty`` of lot m (at most all of it) closed at ``price``; its
    margin share and PnL go back to the wallet. A take-profit re-arms the grid level the lot
    came from."""
    sign = 1.0 if s == LONG else -1.0
    frac = min(qty / L[s, m, _LQ], 1.0) if L[s, m, _LQ] > 0.0 else 1.0
    if frac >= 1.0:
        qty = L[s, m, _LQ]
    entry = L[s, m, _LE]
    value = price * qty
    fee = value * fee_rate
    pnl = sign * (price - entry) * qty
    side_margin = F[_MARGIN_L] if s == LONG else F[_MARGIN_S]
    side_qty = F[_QTY_L] if s == LONG else F[_QTY_S]
    margin = side_margin * (qty / side_qty) if side_qty > 0.0 else 0.0
    F[_CASH] += margin + pnl - fee
    F[_xd(s)] += sign * (entry - F[_XE_L + s]) * qty  # (the exchange's PnL less the books')
    if s == LONG:
        F[_MARGIN_L] -= margin
        counters[C_LONGS_CLOSED] += 1
    else:
        F[_MARGIN_S] -= margin
        counters[C_SHORTS_CLOSED] += 1
    money[M_REALIZED] += pnl - fee
    money[M_FEES] += fee
    if label == SELL_CLOSE_LONG or label == BUY_CLOSE_SHORT:
        money[M_GRID_PROFIT] += pnl - fee
        j = int(L[s, m, _LJ])
        if L[s, m, _LG] == I[_GEN] and j >= 0:
            G[s, j, _GA] = ARMED  # armed again: its order rests from this bar's close
    remaining = L[s, m, _LQ] - qty
    if (label == SELL_CLOSE_LONG or label == BUY_CLOSE_SHORT) and (remaining <= 1e-12 or frac >= 1.0):
        counters[C_ROUND_TRIPS] += 1
    if remaining <= 1e-12 or frac >= 1.0:
        last = I[_NLOT_L + s] - 1  # keep the lots packed: the last one takes this place
        if m != last:
            for k in range(N_L):
                L[s, m, k] = L[s, last, k]
        L[s, last, _LA] = 0.0
        L[s, last, _LQ] = 0.0
        I[_NLOT_L + s] = last
    else:
        L[s, m, _LQ] = remaining
        L[s, m, _LF] *= 1.0 - frac
    _refresh_side(s, p, L, F, I, tiers)
    if (F[_QTY_L] if s == LONG else F[_QTY_S]) == 0.0:
        # flat: whatever margin rounding left goes back to the wallet, the stops re-arm
        if s == LONG:
            F[_CASH] += F[_MARGIN_L]
            F[_MARGIN_L] = 0.0
            I[_STAGE_L] = 0
        else:
            F[_CASH] += F[_MARGIN_S]
            F[_MARGIN_S] = 0.0
            I[_STAGE_S] = 0
        F[_XE_L + s] = 0.0
    return _record(trades, I, bar, t, -1 if s == LONG else 1, price, qty, fee, label, pnl - fee, F)


@njit(cache=True, nogil=True)
def on_open_fill_nb(s, j, bar, t, price, qty, fee_rate, p, L, G, F, I, trades, counters, money, tiers):
    """on_fill for the opening order of grid level j on side s (LONG / SHORT)."""
    G[s, j, _GA] = 0.0
    return _open_lot(s, j, bar, t, price, qty, fee_rate, BUY_OPEN_LONG if s == LONG else SELL_OPEN_SHORT, p, L, G,
                     F, I, trades, counters, money, tiers)


@njit(cache=True, nogil=True, inline="always")
def _prune_fill(s, m, label, bar, t, fill, p, L, G, F, I, trades, counters, money, tiers):
    """Lot m of side s closed by a prune's market order at ``fill`` (taker), counted by its label."""
    if label == PRUNE_OFFSET:
        sign = 1.0 if s == LONG else -1.0
        money[M_OFFSET_USED] += max(0.0, sign * (L[s, m, _LE] - fill) * L[s, m, _LQ])
    counters[C_PRUNE_DEVIANCE + label - PRUNE_DEVIANCE] += 1
    return _close_lot(s, m, L[s, m, _LQ], bar, t, fill, p.taker_fee, label, p, L, G, F, I, trades, counters, money,
                      tiers)


@njit(cache=True, nogil=True)
def on_prune_fill_nb(s, m, label, bar, t, fill, p, L, G, F, I, trades, counters, money, tiers):
    """on_fill for the prune's market order (``_prune_fill``); the prune is then done."""
    I[_PRUNE_LOT] = -1
    return _prune_fill(s, m, label, bar, t, fill, p, L, G, F, I, trades, counters, money, tiers)


@njit(cache=True, nogil=True, inline="always")
def _pay_funding(o, rate, count, p, L, F, I, counters, money, tiers):
    """Funding at a bar's open ``o`` (``count`` settlements, summed ``rate``), on the position
    held into it, from each side's isolated margin."""
    counters[C_FUNDING_EVENTS] += count
    for s in range(2):
        q = F[_QTY_L] if s == LONG else F[_QTY_S]
        if q == 0.0 or rate == 0.0:
            continue
        _book_funding(s, rate * q * o * (1.0 if s == LONG else -1.0), p, L, F, I, money, tiers)


@njit(cache=True, nogil=True)
def _book_funding(s, pay, p, L, F, I, money, tiers):
    """Side ``s`` paid ``pay`` of funding (< 0: received): from its isolated margin while it
    holds a position (spread over its lots), from the cash once it is flat."""
    q = F[_QTY_L] if s == LONG else F[_QTY_S]
    money[M_FUNDING] -= pay
    if q == 0.0:
        F[_CASH] -= pay
        return
    if s == LONG:
        F[_MARGIN_L] -= pay
    else:
        F[_MARGIN_S] -= pay
    for m in range(I[_NLOT_L + s]):
        L[s, m, _LF] += pay * L[s, m, _LQ] / q
    _refresh_side(s, p, L, F, I, tiers)


@njit(cache=True, nogil=True)
def book_funding_nb(s, pay, p, L, F, I, money, tiers):
    """The runtime's correction of a settlement to what the exchange charged (``_book_funding``)."""
    _book_funding(s, pay, p, L, F, I, money, tiers)


@njit(cache=True, nogil=True)
def pay_funding_nb(o, rate, count, p, L, F, I, counters, money, tiers):
    """The runtime's funding at a bar's open: what the backtest does (``_pay_funding``)."""
    _pay_funding(o, rate, count, p, L, F, I, counters, money, tiers)


@njit(cache=True, nogil=True)
def desired_orders_nb(p, L, G, F, I, out):
    """The orders the state wants resting after a decision, written to ``out`` (ORDER_DTYPE):
    the active grid openings, each lot's take-profit, each side's next stop stage, and the
    prune (a market order). ``book`` is the side (0 long, 1 short); ``ref`` the grid level or
    the lot. Returns how many. The live runtime diffs them against the exchange's orders."""
    n = 0
    for s in range(2):
        for j in range(p.levels):
            if G[s, j, _GA] == REST and n < len(out):
                out[n]["side"], out[n]["kind"], out[n]["price"] = (1 if s == LONG else -1), OPEN_ORDER, G[s, j, _GP]
                out[n]["qty"], out[n]["ref"], out[n]["book"] = G[s, j, _GQ], j, s
                n += 1
        for m in range(I[_NLOT_L + s]):
            if n < len(out):
                out[n]["side"], out[n]["kind"] = (-1 if s == LONG else 1), TAKE_PROFIT_ORDER
                out[n]["price"] = L[s, m, _LTP]
                out[n]["qty"], out[n]["ref"], out[n]["book"] = L[s, m, _LTQ], m, s
                n += 1
        # both stop stages rest (both can trigger in one bar): stage 1 for half of every lot,
        # stage 2 for what stage 1 leaves; only stage 2, for all, once stage 1 has fired
        for st in range(1, 3):
            qty = F[(_SQ1_L if st == 1 else _SQ2_L) + s]
            if qty > 1e-12 and n < len(out):
                trig = F[(_TRIG1_L if st == 1 else _TRIG2_L) + 2 * s]
                out[n]["side"], out[n]["kind"], out[n]["price"] = (-1 if s == LONG else 1), STOP_ORDER, trig
                out[n]["qty"], out[n]["ref"], out[n]["book"] = qty, st, s
                n += 1
    if I[_PRUNE_LOT] >= 0 and n < len(out):
        s = I[_PRUNE_SIDE]
        m = I[_PRUNE_LOT]
        out[n]["side"], out[n]["kind"], out[n]["price"] = (-1 if s == LONG else 1), MARKET_ORDER, 0.0
        out[n]["qty"], out[n]["ref"], out[n]["book"] = L[s, m, _LQ], m, s
        n += 1
    return n


@hot_njit
def _liquidate(s, bar, t, p, L, G, F, I, trades, counters, money, tiers):
    """The side's isolated margin is lost; the position is gone. What the exchange realized on
    the side's earlier closes beyond the books (``_xd``: against its average entry) stays in its
    wallet: the books take it now, so they hold what the exchange holds."""
    price = F[_LIQ_L] if s == LONG else F[_LIQ_S]
    qty = F[_QTY_L] if s == LONG else F[_QTY_S]
    lost = F[_MARGIN_L] if s == LONG else F[_MARGIN_S]
    beyond = F[_xd(s)]
    F[_CASH] += beyond
    F[_xd(s)] = 0.0
    for m in range(I[_NLOT_L + s]):
        L[s, m, _LA] = 0.0
        L[s, m, _LQ] = 0.0
    I[_NLOT_L + s] = 0
    if s == LONG:
        F[_MARGIN_L] = 0.0
        I[_STAGE_L] = 0
    else:
        F[_MARGIN_S] = 0.0
        I[_STAGE_S] = 0
    F[_XE_L + s] = 0.0
    money[M_REALIZED] += beyond - lost
    money[M_LIQUIDATED] += lost
    counters[C_LIQUIDATIONS] += 1
    _refresh_side(s, p, L, F, I, tiers)
    _clear_stops(s, F)  # (the exchange cancels a liquidated position's orders)
    return _record(trades, I, bar, t, -1 if s == LONG else 1, price, qty, 0.0, LIQUIDATION, beyond - lost, F)



@njit(cache=True, nogil=True, inline="always")
def _stop_lot_qty(s, m, stage, n_held, p, L):
    """What stop ``stage`` (1 or 2) plans to close of lot m when the side holds ``n_held`` lots:
    half of it (to the lot size) at stage 1, all of it at stage 2 or when it is the only lot or
    too small to halve."""
    q = L[s, m, _LQ]
    if stage == 2 or n_held <= 1:
        return q
    half = floor_lot_nb(0.5 * q, p.lot)
    return half if half > 0.0 else q


@njit(cache=True, nogil=True, inline="always")
def _close_rest(s, rest, bar, t, price, fee_rate, label, p, L, G, F, I, trades, counters, money, tiers):
    """Close ``rest`` more of side s from its newest lots: an order sized at the last close
    reduces the position by all it holds (as the exchange does), though a lot it was meant for
    is smaller or gone since."""
    ok = True
    while rest > 1e-12 and I[_NLOT_L + s] > 0:
        k = I[_NLOT_L + s] - 1
        q = min(rest, L[s, k, _LQ])
        rest -= q
        ok = _close_lot(s, k, q, bar, t, price, fee_rate, label, p, L, G, F, I, trades, counters, money,
                        tiers) and ok
    return ok


@njit(cache=True, nogil=True, inline="always")
def _take_profit(s, m, bar, t, price, p, L, G, F, I, trades, counters, money, tiers):
    """Lot m's take-profit filled: it closes what the order holds (the lot as it was at the last
    close), the lot first."""
    label = SELL_CLOSE_LONG if s == LONG else BUY_CLOSE_SHORT
    q_order = min(L[s, m, _LTQ], F[_QTY_L + s])
    q = min(q_order, L[s, m, _LQ])
    ok = _close_lot(s, m, q, bar, t, price, p.maker_fee, label, p, L, G, F, I, trades, counters, money, tiers)
    return _close_rest(s, q_order - q, bar, t, price, p.maker_fee, label, p, L, G, F, I, trades, counters, money,
                       tiers) and ok


@njit(cache=True, nogil=True)
def on_take_profit_fill_nb(s, m, bar, t, price, p, L, G, F, I, trades, counters, money, tiers):
    """on_fill for lot m's take-profit order (``_take_profit``)."""
    return _take_profit(s, m, bar, t, price, p, L, G, F, I, trades, counters, money, tiers)


@hot_njit
def on_stop_fill_nb(s, stage, bar, t, price, p, L, G, F, I, trades, counters, money, tiers):
    """on_fill for side s's stop order of ``stage`` (1 or 2), filled at ``price`` (taker).
    The order, sized at the last close, reduces the position by all it holds: stage 1 half of
    every lot held then (all of a single lot), stage 2 the rest. The lots held at that close
    give their planned share first, the newest lots whatever a lot closed since leaves over.
    After the last stage, lots opened in the stop's own bar are left with no stop until this
    bar's close lays theirs."""
    n_lots = I[_NLOT_L + s]
    n_held = 0
    for m in range(n_lots):
        if L[s, m, _LT] != t:
            n_held += 1
    label = STOP_LONG if s == LONG else STOP_SHORT
    rest = min(F[(_SQ1_L if stage == 1 else _SQ2_L) + s], F[_QTY_L + s])
    ok = True
    for m in range(n_lots - 1, -1, -1):  # backwards: a closed lot's place is taken by one already done
        if L[s, m, _LT] != t and rest > 1e-12:
            q = min(_stop_lot_qty(s, m, stage, n_held, p, L), rest)
            rest -= q
            ok = _close_lot(s, m, q, bar, t, price, p.taker_fee, label, p, L, G, F, I, trades, counters, money,
                            tiers) and ok
    ok = _close_rest(s, rest, bar, t, price, p.taker_fee, label, p, L, G, F, I, trades, counters, money, tiers) and ok
    full = stage == 2 or F[_SQ2_L + s] <= 0.0
    counters[C_STOPS_LONG + s] += 1
    I[_STAGE_L + s] = 0 if full or F[_QTY_L + s] == 0.0 else 1
    if full:  # what is left was opened in this bar: its stops come with this close
        F[_TRIG1_L + 2 * s] = F[_TRIG2_L + 2 * s] = -np.inf if s == LONG else np.inf
        F[_SQ1_L + s] = F[_SQ2_L + s] = 0.0
    else:
        F[_SQ1_L + s] = 0.0
    return ok


@njit(cache=True, nogil=True)
def on_stray_fill_nb(s, opening, label, qty, bar, t, price, fee_rate, p, L, G, F, I, trades, counters, money,
                     tiers):
    """on_fill for an order the state no longer has (the grid moved on, or the lot it was for
    is gone: it filled while being cancelled): the books follow the exchange. An opening fill
    opens a lot of ``qty`` on side s that belongs to no grid level; a closing one (``label``)
    closes ``qty`` of the side, its newest lots first."""
    if opening:
        return _open_lot(s, -1, bar, t, price, qty, fee_rate, BUY_OPEN_LONG if s == LONG else SELL_OPEN_SHORT, p, L,
                         G, F, I, trades, counters, money, tiers)
    if label == STOP_LONG or label == STOP_SHORT:
        counters[C_STOPS_LONG + s] += 1
    elif label >= PRUNE_DEVIANCE and label <= PRUNE_OFFSET:
        counters[C_PRUNE_DEVIANCE + label - PRUNE_DEVIANCE] += 1
    return _close_rest(s, min(qty, F[_QTY_L + s]), bar, t, price, fee_rate, label, p, L, G, F, I, trades, counters,
                       money, tiers)


@njit(cache=True, nogil=True, inline="always")
def _regenerate(close, atr_now, sigma, regime, p, G, F, I, counters):
    """Lay out both grids around the reservation price; the regime, the halt and the VaR gate
    decide which side gets opening orders."""
    spacing = max(p.atr_k * atr_now, p.atr_floor * close)
    F[_SPACING] = spacing
    order_qty = floor_lot_nb(p.order_frac * p.capital * p.leverage / close, p.lot)
    F[_ORDER_QTY] = order_qty
    q_units = (F[_QTY_L] - F[_QTY_S]) / order_qty if order_qty > 0.0 else 0.0
    s2t = sigma * sigma * p.horizon
    r = close * (1.0 - q_units * p.gamma * s2t)
    half = 0.5 * (p.gamma * s2t + p.spread_const)
    F[_CENTER] = r
    I[_GEN] += 1
    I[_GEN_REGIME] = regime
    counters[C_REGENERATIONS] += 1
    allow_long = (regime == NOISE or regime == UPTREND or regime == BREAKOUT_UP) and I[_HALTED] == 0 \
        and I[_VAR_BLOCK] == 0
    allow_short = (regime == NOISE or regime == DOWNTREND or regime == BREAKOUT_DOWN) and I[_HALTED] == 0 \
        and I[_VAR_BLOCK] == 0 and p.no_short == 0
    # the grid's margin budget leaves the trailing reserve aside
    budget = p.capital * (1.0 - p.trail_reserve)
    per_order = p.order_frac * p.capital
    n_fit = int(budget / per_order / 2.0) if per_order > 0.0 else 0
    for j in range(p.levels):  # a side that may not open gets no levels (nothing rests there)
        G[LONG, j, _GA] = 0.0
        G[SHORT, j, _GA] = 0.0
        if allow_long and j < n_fit:
            buy = round_tick_nb(r * (1.0 - half) - j * spacing, p.tick)
            G[LONG, j, _GP] = buy
            G[LONG, j, _GQ] = order_qty
            if order_qty > 0.0 and buy > 0.0 and order_qty * buy >= p.min_notional:
                G[LONG, j, _GA] = ARMED
            else:
                counters[C_REFUSED_MIN] += 1
        if allow_short and j < n_fit:
            sell = round_tick_nb(r * (1.0 + half) + j * spacing, p.tick)
            G[SHORT, j, _GP] = sell
            G[SHORT, j, _GQ] = order_qty
            if order_qty > 0.0 and order_qty * sell >= p.min_notional:
                G[SHORT, j, _GA] = ARMED
            else:
                counters[C_REFUSED_MIN] += 1


@njit(cache=True, nogil=True, inline="always")
def _choose_prune(close, kama, std_price, t, p, L, F, I, money):
    """The one lot to prune at the next open, by priority: deviance, oldest, gap, funding,
    profit offset. Sets I[_PRUNE_SIDE], I[_PRUNE_LOT], I[_PRUNE_LABEL]; lot -1 for none."""
    I[_PRUNE_LOT] = -1
    if F[_QTY_L] == 0.0 and F[_QTY_S] == 0.0:
        return
    spacing = F[_SPACING]
    # O(1) screen from the sides' summaries; the lots are only scanned when a prune may apply
    far = max(F[_WORST_L] - close, close - F[_WORST_S])
    deviant = std_price > 0.0 and not np.isnan(kama) and (
        (F[_QTY_L] > 0.0 and close < kama - p.prune_sigma * std_price)
        or (F[_QTY_S] > 0.0 and close > kama + p.prune_sigma * std_price))
    possible = deviant or t - min(F[_MINT_L], F[_MINT_S]) > p.prune_age_ms or far > p.prune_gap * spacing \
        or (money[M_GRID_PROFIT] > 0.0 and F[_FUND_L] + F[_FUND_S] > p.prune_funding * money[M_GRID_PROFIT]) \
        or (p.prune_offset and far >= p.offset_min_spacings * spacing
            and money[M_GRID_PROFIT] > money[M_OFFSET_USED])
    if not possible:
        return
    # 1. deviance: the price is beyond prune_sigma standard deviations from KAMA
    if std_price > 0.0 and not np.isnan(kama):
        for s in range(2):
            beyond = close < kama - p.prune_sigma * std_price if s == LONG else close > kama + p.prune_sigma * std_price
            if not beyond:
                continue
            best = -1
            for m in range(I[_NLOT_L + s]):
                if best < 0 or (L[s, m, _LE] > L[s, best, _LE] if s == LONG else L[s, m, _LE] < L[s, best, _LE]):
                    best = m
            if best >= 0:
                I[_PRUNE_SIDE] = s
                I[_PRUNE_LOT] = best
                I[_PRUNE_LABEL] = PRUNE_DEVIANCE
                return
    # 2. oldest, 3. gap, 4. funding, 5. profit offset: one pass collects the candidates
    old_s, old_m, old_t = -1, -1, np.inf
    gap_s, gap_m, gap_d = -1, -1, 0.0
    fund_s, fund_m, fund_v, fund_total = -1, -1, 0.0, 0.0
    off_s, off_m, off_loss = -1, -1, 0.0
    for s in range(2):
        sign = 1.0 if s == LONG else -1.0
        for m in range(I[_NLOT_L + s]):
            if t - L[s, m, _LT] > p.prune_age_ms and L[s, m, _LT] < old_t:
                old_s, old_m, old_t = s, m, L[s, m, _LT]
            d = sign * (L[s, m, _LE] - close)
            if d > p.prune_gap * spacing and d > gap_d:
                gap_s, gap_m, gap_d = s, m, d
            fund_total += L[s, m, _LF]
            if L[s, m, _LF] > fund_v:
                fund_s, fund_m, fund_v = s, m, L[s, m, _LF]
            loss = sign * (L[s, m, _LE] - close) * L[s, m, _LQ]
            if loss > off_loss and d >= p.offset_min_spacings * spacing:
                off_s, off_m, off_loss = s, m, loss
    if old_m >= 0:
        I[_PRUNE_SIDE], I[_PRUNE_LOT], I[_PRUNE_LABEL] = old_s, old_m, PRUNE_OLDEST
    elif gap_m >= 0:
        I[_PRUNE_SIDE], I[_PRUNE_LOT], I[_PRUNE_LABEL] = gap_s, gap_m, PRUNE_GAP
    elif fund_m >= 0 and money[M_GRID_PROFIT] > 0.0 and fund_total > p.prune_funding * money[M_GRID_PROFIT]:
        I[_PRUNE_SIDE], I[_PRUNE_LOT], I[_PRUNE_LABEL] = fund_s, fund_m, PRUNE_FUNDING
    elif p.prune_offset and off_m >= 0 and money[M_GRID_PROFIT] - money[M_OFFSET_USED] >= off_loss:
        I[_PRUNE_SIDE], I[_PRUNE_LOT], I[_PRUNE_LABEL] = off_s, off_m, PRUNE_OFFSET


@njit(cache=True, nogil=True, inline="always")
def _at_close(close, paused, p, L, G, F, I, counters):
    """After a change, the orders placed at this close: the levels armed (or waiting) rest from
    now where they fit (``_place_openings``), each lot's take-profit holds its quantity, each
    side's stop stages their shares. Returns how many openings wait."""
    waiting = _place_openings(close, paused, p, G, F, I, counters)
    for s in range(2):
        n = I[_NLOT_L + s]
        staged = I[_STAGE_L + s] == 0
        first = 0.0  # stage 1's order: the lots' planned shares (none once it has fired)
        for m in range(n):
            L[s, m, _LTQ] = L[s, m, _LQ]
            if staged:
                first += _stop_lot_qty(s, m, 1, n, p, L)
        q = F[_QTY_L + s]
        F[_SQ1_L + s] = first if q > 0.0 else 0.0
        F[_SQ2_L + s] = q - first if q > 0.0 else 0.0
    return waiting


@njit(cache=True, nogil=True, inline="always")
def _place_openings(close, paused, p, G, F, I, counters):
    """The exchange's rule for an opening order, Binance's: it rests only with its initial
    margin (and fee) held from the wallet's free balance, the wallet as the exchange keeps it
    (closes realized against the average entry). And the risk gate's (``engine.risk``): no new
    opening while it pauses the system's openings (``paused``: its volatility breaker, or any
    pause of the runtime), none that would take what the system holds at the close and has
    resting to add to it past ``p.max_exposure``. Levels armed at this close (or waiting) are placed in the order the
    runtime sends them (long levels nearest first, then short), each while the free margin
    covers it, the gate lets it through and its side has room for one more lot (a lot the
    strategy would refuse is never an order); the rest wait, and are counted. Returns how many
    wait."""
    rate = 1.0 / p.leverage + max(p.maker_fee, 0.0)
    free = F[_CASH] + F[_XD] + F[_XD_S]
    exposure = (F[_QTY_L] + F[_QTY_S]) * close
    for s in range(2):
        for j in range(p.levels):
            if G[s, j, _GA] == REST:
                free -= G[s, j, _GP] * G[s, j, _GQ] * rate
                exposure += G[s, j, _GP] * G[s, j, _GQ]
    waiting = 0
    for s in range(2):
        room = p.max_lots - I[_NLOT_L + s]
        for j in range(p.levels):
            room -= 1 if G[s, j, _GA] == REST else 0
        for j in range(p.levels):
            if G[s, j, _GA] < ARMED:
                continue
            value = G[s, j, _GP] * G[s, j, _GQ]
            need = value * rate
            gate = not paused and exposure + value <= p.max_exposure
            if room > 0 and gate and free >= need * (1.0 - 1e-12):
                G[s, j, _GA] = REST
                free -= need
                exposure += value
                room -= 1
            else:
                if G[s, j, _GA] == ARMED:  # (counted once, while it waits)
                    counters[C_LOTS_FULL if room <= 0 else C_RISK_WAITS if not gate else C_REFUSED_BALANCE] += 1
                G[s, j, _GA] = UNPLACED
                waiting += 1
    return waiting


@njit(cache=True, nogil=True, inline="always")
def _bests(p, L, G, I):
    """The nearest order prices: (the highest of the long buys and the short take-profits, the
    lowest of the short sells and the long take-profits)."""
    lo = -np.inf
    hi = np.inf
    for j in range(p.levels):  # levels run away from the price: the first resting one is nearest
        if G[LONG, j, _GA] == REST:
            lo = G[LONG, j, _GP]
            break
    for j in range(p.levels):
        if G[SHORT, j, _GA] == REST:
            hi = G[SHORT, j, _GP]
            break
    for m in range(I[_NLOT_S]):
        lo = max(lo, L[SHORT, m, _LTP])
    for m in range(I[_NLOT_L]):
        hi = min(hi, L[LONG, m, _LTP])
    return lo, hi


@njit(cache=True, nogil=True, inline="always")
def _leg(s, i, t, o, extreme, p, L, G, F, I, trades, counters, money, tiers):
    """One leg of a bar: s = LONG is the fall from the open to ``extreme`` (the low): long
    buys, short take-profits, long stops and the long side's liquidation, in falling price
    order (the liquidation first at a price it shares: the exchange liquidates as the mark
    reaches it); s = SHORT is the rise to the high, mirrored. The liquidation price moves with
    every fill of the side, so it is looked at again before each event. A liquidated side's
    orders are cancelled (Binance cancels a liquidated position's open orders): its grid opens
    nothing more in this leg. Lots opened during this bar cannot take profit in it."""
    other = 1 - s
    sign = 1.0 if s == LONG else -1.0  # prices fall (long leg) or rise (short leg)
    ok = True
    done_j = -1  # grid levels are in order: j = 0 is nearest the price
    while True:
        # the next event is the one nearest the open along the leg
        best = -np.inf
        kind = -1
        idx = -1
        for j in range(done_j + 1, p.levels):
            if G[s, j, _GA] == REST:  # (ARMED: armed again in this bar, not resting yet)
                px = G[s, j, _GP]
                if reached_nb(s == LONG, px, extreme, 0.0) and sign * px > best:
                    best, kind, idx = sign * px, 0, j
                break
        for m in range(I[_NLOT_L + other]):
            if L[other, m, _LT] != t:
                px = L[other, m, _LTP]
                if reached_nb(s == LONG, px, extreme, 0.0) and sign * px > best:
                    best, kind, idx = sign * px, 1, m
        stage = I[_STAGE_L] if s == LONG else I[_STAGE_S]
        qty_side = F[_QTY_L] if s == LONG else F[_QTY_S]
        if qty_side > 0.0:
            trig = (F[_TRIG1_L] if stage == 0 else F[_TRIG2_L]) if s == LONG else \
                (F[_TRIG1_S] if stage == 0 else F[_TRIG2_S])
            if reached_nb(s == LONG, trig, extreme, 0.0) and sign * trig > best:
                best, kind, idx = sign * trig, 2, stage + 1
            liq = F[_LIQ_L] if s == LONG else F[_LIQ_S]
            if reached_nb(s == LONG, liq, extreme, 0.0) and sign * liq >= best:
                best, kind = sign * liq, 3
        if kind < 0:
            break
        px = sign * best
        if kind == 3:
            ok = _liquidate(s, i, t, p, L, G, F, I, trades, counters, money, tiers) and ok
            done_j = p.levels
        elif kind == 0:
            fill = limit_fill_nb(s == LONG, o, px)
            G[s, idx, _GA] = 0.0
            done_j = idx
            ok = _open_lot(s, idx, i, t, fill, G[s, idx, _GQ], p.maker_fee,
                           BUY_OPEN_LONG if s == LONG else SELL_OPEN_SHORT, p, L, G, F, I, trades, counters,
                           money, tiers) and ok
        elif kind == 1:
            fill = limit_fill_nb(s == LONG, o, px)
            ok = _take_profit(other, idx, i, t, fill, p, L, G, F, I, trades, counters, money, tiers) and ok
        else:
            fill = stop_fill_nb(s == LONG, o, px, p.slippage)
            ok = on_stop_fill_nb(s, idx, i, t, fill, p, L, G, F, I, trades, counters, money, tiers) and ok
    return ok


@njit(cache=True, nogil=True, inline="always")
def _new_order_row(olog, oref, bar, side, kind, book, price, qty, lot_time, entry):
    row = oref[0]
    o = olog[row]
    o["placed"] = bar
    o["end"] = OPEN_END
    o["side"] = side
    o["kind"] = kind
    o["book"] = book
    o["price"] = price
    o["qty"] = qty
    o["lot_time"] = lot_time
    o["entry"] = entry
    oref[0] = row + 1
    return row


@hot_njit
def _log_orders(i, p, L, G, I, olog, oref):
    """At the close of bar ``i``, after a change: end the logged orders that no longer rest (filled
    or cancelled: they rested during bar i at most) and log the new ones as placed at bar i."""
    lv = p.levels
    nm = p.max_lots
    n_tp = 1 + 2 * lv  # refs: [0] rows used, [1 + s*lv + j] level rows, [n_tp] open take-profits,
    tp0 = n_tp + 1     # [tp0 ...] their rows, [seen ...] which lots matched one
    seen = tp0 + 2 * nm
    for s in range(2):
        for j in range(lv):
            k = 1 + s * lv + j
            row = oref[k]
            active = G[s, j, _GA] == REST
            if row >= 0:
                if active and olog[row]["price"] == G[s, j, _GP] and olog[row]["qty"] == G[s, j, _GQ]:
                    continue
                olog[row]["end"] = i
                oref[k] = -1
            if active:
                oref[k] = _new_order_row(olog, oref, i, 1 if s == LONG else -1, OPEN_ORDER, s, G[s, j, _GP],
                                         G[s, j, _GQ], -1.0, 0.0)
    for s in range(2):
        for m in range(nm):
            oref[seen + s * nm + m] = 0
    keep = 0
    for r in range(oref[n_tp]):
        row = oref[tp0 + r]
        s = olog[row]["book"]
        found = False
        for m in range(I[_NLOT_L + s]):
            if oref[seen + s * nm + m] == 0 and L[s, m, _LT] == olog[row]["lot_time"] \
                    and L[s, m, _LE] == olog[row]["entry"] and L[s, m, _LTP] == olog[row]["price"] \
                    and L[s, m, _LTQ] == olog[row]["qty"]:
                oref[seen + s * nm + m] = 1
                found = True
                break
        if found:
            oref[tp0 + keep] = row
            keep += 1
        else:
            olog[row]["end"] = i
    for s in range(2):
        for m in range(I[_NLOT_L + s]):
            if oref[seen + s * nm + m] == 0:
                oref[tp0 + keep] = _new_order_row(olog, oref, i, -1 if s == LONG else 1, TAKE_PROFIT_ORDER, s,
                                                  L[s, m, _LTP], L[s, m, _LTQ], L[s, m, _LT], L[s, m, _LE])
                keep += 1
    oref[n_tp] = keep


@njit(cache=True, nogil=True)
def adaptive_grid_log_nb(time, open_, high, low, close, atr, kama, er, std_price, sigma, zscore, regime,
                         funding, funding_count, tiers, paused, p, L_io, G_io, F_io, I_io, trades, equity, long_qty,
                         short_qty, counters, money, first, olog, oref, marks):
    """``_run`` keeping the order log and per-bar marks for the replay (``new_order_log``; empty
    arrays: none kept); returns early, like a full trade log, when the order log has less than
    ``order_log_room`` rows free. The state is worked on in arrays of constant shape allocated
    here and written back on return, so LLVM can keep it apart from the logs (and in registers)."""
    L = np.zeros((2, p.max_lots, N_L))
    G = np.zeros((2, p.levels, 3))
    F = np.zeros(N_F)
    I = np.zeros(N_I, dtype=np.int64)
    L[:] = L_io
    G[:] = G_io
    F[:] = F_io
    I[:] = I_io
    nxt = _run(time, open_, high, low, close, atr, kama, er, std_price, sigma, zscore, regime, funding,
               funding_count, tiers, paused, p, L, G, F, I, trades, equity, long_qty, short_qty, counters, money, first,
               olog, oref, marks)
    L_io[:] = L
    G_io[:] = G
    F_io[:] = F
    I_io[:] = I
    return nxt


@njit(cache=True, nogil=True)
def adaptive_grid_nb(time, open_, high, low, close, atr, kama, er, std_price, sigma, zscore, regime,
                     funding, funding_count, tiers, paused, p, L_io, G_io, F_io, I_io, trades, equity, long_qty,
                     short_qty, counters, money, first):
    """See ``_run``: the run without the replay's order log and marks."""
    return adaptive_grid_log_nb(time, open_, high, low, close, atr, kama, er, std_price, sigma, zscore, regime,
                                funding, funding_count, tiers, paused, p, L_io, G_io, F_io, I_io, trades, equity,
                                long_qty,
                                short_qty, counters, money, first, np.empty(0, dtype=ORDER_LOG_DTYPE),
                                np.empty(0, dtype=np.int64), np.empty((0, N_MARKS)))


@njit(cache=True, nogil=True)
def decide_nb(bar, t, close, atr, kama, er, std_price, sigma, zscore, regime, paused, p, L, G, F, I, trades,
              counters, money):
    """The runtime's ``decide`` at the close of ``bar`` (time ``t``): the backtest's decisions at
    a close (``_run`` without the bar's events), on the state as the exchange's fills left it;
    ``paused``: the risk gate pauses the system's openings now. ``p.start_bar`` must be 0.
    Trades it records (a circuit-breaker halt) carry ``bar``."""
    one = np.empty(1)
    gate = np.zeros(1, dtype=np.bool_)
    gate[0] = paused
    n0 = I[_NTR]
    nxt = _run(np.array([t]), one, one, one, np.array([close]), np.array([atr]), np.array([kama]), np.array([er]),
               np.array([std_price]), np.array([sigma]), np.array([zscore]), np.array([regime]), np.empty(0),
               np.empty(0, dtype=np.int64), np.zeros((1, 3)), gate, p, L, G, F, I, trades, np.empty(1), np.empty(1),
               np.empty(1), counters, money, 0, np.empty(0, dtype=ORDER_LOG_DTYPE), np.empty(0, dtype=np.int64),
               np.empty((0, N_MARKS)))
    for k in range(n0, I[_NTR]):
        trades[k]["bar"] = bar
    return nxt == 1


@hot_njit
def _run(time, open_, high, low, close, atr, kama, er, std_price, sigma, zscore, regime,
         funding, funding_count, tiers, paused, p, L, G, F, I, trades, equity, long_qty, short_qty,
         counters, money, first, olog, oref, marks):
    """Run the adaptive grid from bar ``first`` (0 for a new run, state from ``new_state``).
    Indicator arrays are aligned with the bars; ``funding[i]`` is the rate settled at the open
    of bar i (``funding_count[i]`` settlements). Returns the bar to go on from: ``len(close)``
    when done, earlier when ``trades`` has no room for one more bar, -1 on overflow (a bug).
    Empty ``funding`` arrays: the decisions at each close only, no funding and no fills (the
    runtime's ``decide_nb``, whose fills come from the exchange). ``paused[i]`` (bool; empty:
    never): the risk gate pauses new openings at the close of bar i (``engine.risk``)."""
    n = len(close)
    need = 3 * p.max_lots + 2 * p.levels + 8
    rec = len(oref) > 0  # keeping the replay's order log and marks
    events = len(funding_count) == n
    room = 2 * p.levels + 2 * p.max_lots
    near_lo, near_hi = -np.inf, np.inf
    gated = len(paused) == n
    waiting = 0  # openings wanted but not placed: looked at again at every close
    for s in range(2):
        for j in range(p.levels):
            waiting += 1 if G[s, j, _GA] == UNPLACED else 0
    start = p.start_bar
    if first <= start:
        for i in range(min(start, n)):
            equity[i] = p.capital
            long_qty[i] = 0.0
            short_qty[i] = 0.0
        if start >= n:
            return n
        first = start
    else:
        near_lo, near_hi = _bests(p, L, G, I)
    budget = 0  # bars that surely fit in the trade log; counted down, then recounted
    for i in range(first, n):
        budget -= 1
        if budget < 0:
            budget = (len(trades) - I[_NTR]) // need - 1
            if budget < 0:
                return i
        if rec and len(olog) - oref[0] < room:
            return i
        n_records = I[_NTR]
        t = time[i]
        o = open_[i]
        c = close[i]
        ok = True
        if events and I[_STARTED] == 1:
            if funding_count[i] > 0:
                _pay_funding(o, funding[i], funding_count[i], p, L, F, I, counters, money, tiers)
            # a prune decided at the last close: a market close at this open
            if I[_PRUNE_LOT] >= 0:
                s = I[_PRUNE_SIDE]
                m = I[_PRUNE_LOT]
                label = I[_PRUNE_LABEL]
                if m < I[_NLOT_L + s]:
                    fill = market_fill_nb(s == SHORT, o, p.slippage)  # a long closes with a sell
                    ok = _prune_fill(s, m, label, i, t, fill, p, L, G, F, I, trades, counters, money, tiers) and ok
                I[_PRUNE_LOT] = -1
            # the bar: both legs in path order, skipped when nothing is within reach
            lo_band = max(near_lo, F[_LIQ_L])
            hi_band = min(near_hi, F[_LIQ_S])
            if F[_QTY_L] > 0.0:
                lo_band = max(lo_band, F[_TRIG1_L] if I[_STAGE_L] == 0 else F[_TRIG2_L])
            if F[_QTY_S] > 0.0:
                hi_band = min(hi_band, F[_TRIG1_S] if I[_STAGE_S] == 0 else F[_TRIG2_S])
            if not (low[i] > lo_band and high[i] < hi_band):
                counters[C_ACTIVE_BARS] += 1
                first_leg = LONG if down_first_nb(o, c) else SHORT  # open -> low -> high, or open -> high -> low
                for leg in range(2):
                    s = first_leg if leg == 0 else 1 - first_leg
                    ok = _leg(s, i, t, o, low[i] if s == LONG else high[i], p, L, G, F, I, trades, counters, money,
                              tiers) and ok
        if not ok:
            return -1
        # ---- decide at the close of bar i ----
        # (written out here rather than called: as a function, even inlined, it costs this loop 25%)
        upnl = c * F[_QTY_L] - F[_COST_L] + F[_COST_S] - c * F[_QTY_S]
        eq = F[_CASH] + F[_MARGIN_L] + F[_MARGIN_S] + upnl
        regen = I[_STARTED] == 0
        z = zscore[i]
        if I[_HALTED] == 0 and z < p.z_halt:
            I[_HALTED] = 1
            counters[C_HALTS] += 1
            for s in range(2):
                for j in range(p.levels):
                    G[s, j, _GA] = 0.0
            ok = _record(trades, I, i, t, 0, c, 0.0, 0.0, CIRCUIT_BREAKER_HALT, 0.0, F)
        elif I[_HALTED] == 1 and z > p.z_resume:
            I[_HALTED] = 0
            regen = True
        block = 1 if p.var_z * sigma[i] * (F[_QTY_L] + F[_QTY_S]) * c > p.var_max_dd * eq else 0
        if block != I[_VAR_BLOCK]:
            I[_VAR_BLOCK] = block
            regen = True
        if block:
            counters[C_VAR_BLOCKS] += 1
        reg = regime[i]
        base = c
        if not regen:
            if reg != I[_GEN_REGIME]:
                regen = True
            elif (reg == UPTREND or reg == BREAKOUT_UP) and er[i] > p.er_threshold:
                top = F[_CENTER] + (p.levels - 0.5) * F[_SPACING]
                if c > top:  # trailing up: the anchor moves up by half the gap
                    base = F[_CENTER] + 0.5 * (c - F[_CENTER])
                    counters[C_TRAIL] += 1
                    regen = True
            else:
                order_qty = F[_ORDER_QTY]
                q_units = (F[_QTY_L] - F[_QTY_S]) / order_qty if order_qty > 0.0 else 0.0
                r = c * (1.0 - q_units * p.gamma * sigma[i] * sigma[i] * p.horizon)
                if abs(r - F[_CENTER]) > F[_SPACING]:
                    regen = True
        if regen:
            _regenerate(base, atr[i], sigma[i], reg, p, G, F, I, counters)
            I[_STARTED] = 1
        changed = regen or I[_NTR] != n_records or not events  # (the runtime's fills came from outside)
        # stop triggers for the next bar, from the entries and ATR now
        stop_d = p.stop_m * atr[i]
        if F[_QTY_L] > 0.0:
            ep = F[_COST_L] / F[_QTY_L]
            F[_TRIG1_L] = round_tick_nb(ep - stop_d, p.tick)
            F[_TRIG2_L] = round_tick_nb(ep - 1.5 * stop_d, p.tick)
        else:  # flat at the close: no stop rests (a stale trigger must not fire on a later lot)
            _clear_stops(LONG, F)
        if F[_QTY_S] > 0.0:
            ep = F[_COST_S] / F[_QTY_S]
            F[_TRIG1_S] = round_tick_nb(ep + stop_d, p.tick)
            F[_TRIG2_S] = round_tick_nb(ep + 1.5 * stop_d, p.tick)
        else:
            _clear_stops(SHORT, F)
        if F[_QTY_L] > 0.0 or F[_QTY_S] > 0.0:
            _choose_prune(c, kama[i], std_price[i], t, p, L, F, I, money)
        if changed or waiting > 0:
            waiting = _at_close(c, gated and paused[i], p, L, G, F, I, counters)
            near_lo, near_hi = _bests(p, L, G, I)
            if rec:
                _log_orders(i, p, L, G, I, olog, oref)
        if not ok:
            return -1
        equity[i] = F[_CASH] + F[_MARGIN_L] + F[_MARGIN_S] + upnl
        long_qty[i] = F[_QTY_L]
        short_qty[i] = F[_QTY_S]
        if rec:
            for s in range(2):
                q = F[_QTY_L + s]
                held = q > 0.0
                marks[i, s] = F[_COST_L + s] / q if held else np.nan
                marks[i, 2 + s] = F[_LIQ_L + s] if held and 0.0 < F[_LIQ_L + s] < np.inf else np.nan
                marks[i, 4 + s] = next_stop_nb(F, I, s)
    return n
