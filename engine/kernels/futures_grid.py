"""The futures grid (Binance's, Bybit's, OKX's "futures grid"): a fixed range of price lines on
a USDT-margined perpetual in hedge mode, isolated margin, long, short or neutral (numba).

Slot k lies between lines ``lines[k] < lines[k + 1]``. A long slot buys at its lower line and,
holding, sells at its upper line (its take-profit); a short slot sells at its upper line and
buys back at its lower one. A long grid's slots are all long, a short grid's all short; a
neutral grid's slots below the line nearest the price are long and those above it short, so
it starts with no position. The line nearest the price at the start holds no order; a long
grid buys the slots above it at market at the next open (the starting position a grid bot
needs), a short grid sells the slots below it. Each slot is worth the same quote at the price
it opens at: ``capital x leverage x 0.99 / slots`` (1% is kept for fees and funding).

Every opening is a lot of the adaptive grid's books (engine/kernels/adaptive_grid/lots.py):
its margin moves to its side's isolated margin, funding is paid from it at each settlement,
the side's liquidation price follows its average entry and margin with the tiered
maintenance margin, and it is liquidated where a leg of the bar reaches that price, before any
fill further along the leg (GRID_SEMANTICS.md: open -> low -> high -> close when the bar closes
at or above its open, else open -> high -> low -> close). The grid ends (no more orders,
what it holds closed at market at the next open) when a bar reaches its stop top or stop
bottom, when its total PnL at a close reaches the stop-loss or take-profit, or when a side is
liquidated.

State: the adaptive grid's arrays (``L`` lots, ``G`` levels, ``F``, ``I``) with ``G[s, j, G_TP]``
the take-profit line of a lot opened at level j, and two more scalars in ``I``: why it ended
(``I_ENDED``: an END_ code, 0 running) and whether it has a market close to make at the next
open (``I_CLOSE``). ``G[LONG]`` holds the long slots from the highest buy down, ``G[SHORT]`` the
short slots from the lowest sell up: the first resting level of a side is the nearest.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from engine.kernels.adaptive_grid.layout import (
    ARMED,
    BUY_OPEN_LONG,
    C_ACTIVE_BARS,
    C_LIQUIDATIONS,
    C_REFUSED_MIN,
    C_RISK_WAITS,
    F_CASH,
    F_COST_L,
    F_COST_S,
    F_LIQ_L,
    F_LIQ_S,
    F_MARGIN_L,
    F_MARGIN_S,
    F_QTY_L,
    F_QTY_S,
    F_TRIG1_L,
    F_TRIG1_S,
    F_TRIG2_L,
    F_TRIG2_S,
    G_PRICE,
    G_QTY,
    G_STATE,
    I_NLOT_L,
    I_NTR,
    I_STARTED,
    L_QTY,
    L_TIME,
    L_TP_PRICE,
    L_TP_QTY,
    LONG,
    MARKET_ORDER,
    N_F,
    N_I,
    N_L,
    N_MARKS,
    OPEN_ORDER,
    ORDER_LOG_DTYPE,
    REST,
    SELL_OPEN_SHORT,
    SHORT,
    STOP_LONG,
    STOP_SHORT,
    TAKE_PROFIT_ORDER,
)
from engine.kernels.adaptive_grid.loop import _log_orders
from engine.kernels.adaptive_grid.lots import _close_rest, _open_lot, _pay_funding, _take_profit, liquidate_nb
from engine.kernels.adaptive_grid.relay import _place_openings
from engine.kernels.grid import floor_lot_nb
from engine.kernels.matching import (
    FILL_QUEUE,
    FILL_THROUGH,
    down_first_nb,
    limit_fill_nb,
    market_fill_nb,
    queue_fill_nb,
    reached_nb,
)

NEUTRAL = 0  # direction: LONG_GRID +1, SHORT_GRID -1
LONG_GRID, SHORT_GRID = 1, -1
DIRECTIONS = {"neutral": NEUTRAL, "long": LONG_GRID, "short": SHORT_GRID}
G_TP = 3  # G[s, j, G_TP]: the take-profit line of a lot opened at level j
N_G = 4
MARKET = -1.0  # G_STATE of a slot bought (long) or sold (short) at market at the next open
MARKET_WAIT = -2.0  # ... that the risk gate holds back at this close (looked at again at the next)
I_ENDED = N_I  # why the grid ended (END_*), 0 while it runs
I_CLOSE = N_I + 1  # 1: what it holds is closed at market at the next open
I_ENDED_AT = N_I + 2  # the bar at whose close it ended
N_I_FG = N_I + 3
END_STOP_TOP, END_STOP_BOTTOM, END_STOP_LOSS, END_TAKE_PROFIT, END_LIQUIDATION = 1, 2, 3, 4, 5
END_NAMES = ("", "STOP_TOP", "STOP_BOTTOM", "STOP_LOSS", "TAKE_PROFIT", "LIQUIDATION")
MARKET_CLOSE = 4  # desired orders' kind beyond the adaptive grid's (OPEN, TAKE_PROFIT, STOP, MARKET)
BUDGET = 0.99  # of the capital x leverage the slots take: the rest is kept for fees and funding


class FuturesGridParams(NamedTuple):
    capital: float = 10_000.0
    leverage: float = 1.0
    levels: int = 9  # slots (lines - 1)
    max_lots: int = 17  # per side: a lot per slot, and room for fills booked apart from the levels
    lot: float = 0.001
    tick: float = 0.1
    min_notional: float = 5.0
    maker_fee: float = 0.0002
    taker_fee: float = 0.0005
    slippage: float = 0.0005
    start_bar: int = 0
    max_exposure: float = np.inf  # the runtime's risk gate: what the system may hold and have resting
    fill_model: int = 0  # engine.kernels.matching FILL_TOUCH, FILL_THROUGH (by a tick) or FILL_QUEUE
    queue_depth: float = 0.001
    fill_seed: int = 0
    direction: int = NEUTRAL
    stop_top: float = 0.0  # a bar reaching it ends the grid (0: none)
    stop_bottom: float = 0.0
    stop_loss: float = 0.0  # the total PnL at a close at or below -this x capital ends the grid (0: none)
    take_profit: float = 0.0  # ... at or above this x capital (0: none)


def new_state(p: FuturesGridParams):
    L = np.zeros((2, p.max_lots, N_L))
    G = np.zeros((2, p.levels, N_G))
    F = np.zeros(N_F)
    I = np.zeros(N_I_FG, dtype=np.int64)
    F[F_CASH] = p.capital
    F[F_LIQ_L] = 0.0
    F[F_LIQ_S] = np.inf
    F[F_TRIG1_L] = F[F_TRIG2_L] = -np.inf  # (no stops: the adaptive grid's books read these)
    F[F_TRIG1_S] = F[F_TRIG2_S] = np.inf
    return L, G, F, I


def trade_log_room(p: FuturesGridParams) -> int:
    """Rows the trade log must have free before a bar: every slot fills and closes, a
    liquidation and a market close of each side."""
    return 2 * p.levels + 4 * p.max_lots + 8


def slot_sides(lines: np.ndarray, price: float, direction: int) -> tuple[np.ndarray, np.ndarray]:
    """(long, market) of a grid laid at ``price``: which slots are long, which open at market at
    the next open (the line nearest the price holds no order; ``lay_nb`` lays what this says)."""
    m = int(np.argmin(np.abs(lines - price)))
    k = np.arange(len(lines) - 1)
    long = np.ones(len(k), bool) if direction == LONG_GRID else np.zeros(len(k), bool) \
        if direction == SHORT_GRID else k < m
    market = (long & (k >= m)) | (~long & (k < m))
    return long, market


@njit(cache=True, nogil=True)
def lay_nb(price, lines, long, market, slot_value, p, G, I, counters):
    """Lay the grid at the close of its first bar, at ``price``: the slots between ``lines``,
    long or short and at market or resting as ``slot_sides`` says, each worth ``slot_value``."""
    nl = 0  # long slots, from the top down; short slots, from the bottom up
    for k in range(len(lines) - 2, -1, -1):
        if long[k]:
            _slot(LONG, nl, lines[k], lines[k + 1], price if market[k] else lines[k], market[k], slot_value, p, G,
                  counters)
            nl += 1
    ns = 0
    for k in range(len(lines) - 1):
        if not long[k]:
            _slot(SHORT, ns, lines[k + 1], lines[k], price if market[k] else lines[k + 1], market[k], slot_value, p,
                  G, counters)
            ns += 1
    I[I_STARTED] = 1


@njit(cache=True, nogil=True, inline="always")
def _slot(s, j, opening, tp, at, at_market, per_slot, p, G, counters):
    qty = floor_lot_nb(per_slot / at, p.lot)
    G[s, j, G_PRICE] = opening
    G[s, j, G_TP] = tp
    G[s, j, G_QTY] = qty
    if qty > 0.0 and qty * at >= p.min_notional:
        G[s, j, G_STATE] = MARKET if at_market else ARMED
    else:
        G[s, j, G_STATE] = 0.0
        counters[C_REFUSED_MIN] += 1


@njit(cache=True, nogil=True, inline="always")
def _open_at_level(s, j, bar, t, price, fee_rate, p, L, G, F, I, trades, counters, money, tiers):
    """A lot opened by level j of side s at ``price``; its take-profit is the slot's other line."""
    n = I[I_NLOT_L + s]
    G[s, j, G_STATE] = 0.0
    ok = _open_lot(s, j, bar, t, price, G[s, j, G_QTY], fee_rate, BUY_OPEN_LONG if s == LONG else SELL_OPEN_SHORT,
                   p, L, G, F, I, trades, counters, money, tiers)
    if I[I_NLOT_L + s] > n:
        L[s, n, L_TP_PRICE] = G[s, j, G_TP]
    return ok


@njit(cache=True, nogil=True)
def market_open_fill_nb(s, bar, t, price, p, L, G, F, I, trades, counters, money, tiers):
    """The starting position's market order of side s filled at ``price`` (taker): a lot for
    each slot it was for."""
    ok = True
    for j in range(p.levels):
        if G[s, j, G_STATE] == MARKET:
            ok = _open_at_level(s, j, bar, t, price, p.taker_fee, p, L, G, F, I, trades, counters, money, tiers) and ok
    return ok


@njit(cache=True, nogil=True)
def open_fill_nb(s, j, bar, t, price, p, L, G, F, I, trades, counters, money, tiers):
    """Level j of side s filled at ``price`` (maker)."""
    return _open_at_level(s, j, bar, t, price, p.maker_fee, p, L, G, F, I, trades, counters, money, tiers)


@njit(cache=True, nogil=True)
def market_close_fill_nb(s, bar, t, price, qty, p, L, G, F, I, trades, counters, money, tiers):
    """The ended grid's market close of side s filled ``qty`` at ``price`` (taker)."""
    ok = _close_rest(s, min(qty, F[F_QTY_L + s]), bar, t, price, p.taker_fee, STOP_LONG if s == LONG else STOP_SHORT,
                     p, L, G, F, I, trades, counters, money, tiers)
    if F[F_QTY_L] <= 0.0 and F[F_QTY_S] <= 0.0:
        I[I_CLOSE] = 0
    return ok


@njit(cache=True, nogil=True)
def end_nb(reason, bar, p, G, F, I):
    """The grid ends at the close of ``bar``: no order rests any more; what it holds is closed
    at the next open."""
    if I[I_ENDED] != 0:
        return
    I[I_ENDED] = reason
    I[I_ENDED_AT] = bar
    for s in range(2):
        for j in range(p.levels):
            G[s, j, G_STATE] = 0.0
    I[I_CLOSE] = 1 if F[F_QTY_L] > 0.0 or F[F_QTY_S] > 0.0 else 0


@njit(cache=True, nogil=True, inline="always")
def _leg(s, i, t, o, extreme, p, L, G, F, I, trades, counters, money, tiers):
    """One leg of a bar (the adaptive grid's, without stops): s = LONG is the fall from the open
    to the low (long openings, short take-profits, the long side's liquidation, in falling price
    order, the liquidation first at a price it shares); s = SHORT the rise, mirrored. The
    liquidation price moves with every fill of the side, so it is looked at before each one.
    Lots opened in this bar take no profit in it."""
    other = 1 - s
    sign = 1.0 if s == LONG else -1.0
    tick_t = p.tick if p.fill_model == FILL_THROUGH else 0.0
    queue = p.fill_model == FILL_QUEUE
    ok = True
    done_j = -1
    while True:
        best = -np.inf
        kind = -1
        idx = -1
        for j in range(done_j + 1, p.levels):
            if G[s, j, G_STATE] == REST:
                px = G[s, j, G_PRICE]
                if reached_nb(s == LONG, px, extreme, tick_t) and sign * px > best:
                    if queue and not queue_fill_nb(p.fill_seed, t, px, sign * (px - extreme), p.queue_depth):
                        continue
                    best, kind, idx = sign * px, 0, j
                break
        for m in range(I[I_NLOT_L + other]):
            if L[other, m, L_TIME] != t:
                px = L[other, m, L_TP_PRICE]
                if reached_nb(s == LONG, px, extreme, tick_t) and sign * px > best and (
                        not queue or queue_fill_nb(p.fill_seed, t, px, sign * (px - extreme), p.queue_depth)):
                    best, kind, idx = sign * px, 1, m
        if F[F_QTY_L + s] > 0.0:
            liq = F[F_LIQ_L] if s == LONG else F[F_LIQ_S]
            if reached_nb(s == LONG, liq, extreme, 0.0) and sign * liq >= best:
                best, kind = sign * liq, 3
        if kind < 0:
            break
        px = sign * best
        if kind == 3:
            ok = liquidate_nb(s, i, t, p, L, G, F, I, trades, counters, money, tiers) and ok
            for j in range(p.levels):  # (the exchange cancels a liquidated position's orders)
                G[s, j, G_STATE] = 0.0
            done_j = p.levels
        elif kind == 0:
            done_j = idx
            ok = _open_at_level(s, idx, i, t, limit_fill_nb(s == LONG, o, px), p.maker_fee, p, L, G, F, I, trades,
                                counters, money, tiers) and ok
        else:
            ok = _take_profit(other, idx, i, t, limit_fill_nb(s == LONG, o, px), p, L, G, F, I, trades, counters,
                              money, tiers) and ok
    return ok


@njit(cache=True, nogil=True, inline="always")
def _market_openings(close, paused, p, G, F, counters):
    """The starting position's market order of each side, judged at the close as the runtime's
    risk gate judges it before the resting openings: sent (MARKET) when the gate does not pause
    openings and what the system holds and has resting, with it, stays within ``max_exposure``,
    else held back (MARKET_WAIT, counted once). Returns the value sent."""
    exposure = (F[F_QTY_L] + F[F_QTY_S]) * close
    for s in range(2):
        for j in range(p.levels):
            if G[s, j, G_STATE] == REST:
                exposure += G[s, j, G_PRICE] * G[s, j, G_QTY]
    sent = 0.0
    for s in range(2):
        value = 0.0
        first = False
        for j in range(p.levels):
            if G[s, j, G_STATE] == MARKET or G[s, j, G_STATE] == MARKET_WAIT:
                value += G[s, j, G_QTY] * close
                first = first or G[s, j, G_STATE] == MARKET
        if value <= 0.0:
            continue
        go = not paused and exposure + sent + value <= p.max_exposure
        if not go and first:
            counters[C_RISK_WAITS] += 1
        for j in range(p.levels):
            if G[s, j, G_STATE] == MARKET or G[s, j, G_STATE] == MARKET_WAIT:
                G[s, j, G_STATE] = MARKET if go else MARKET_WAIT
        sent += value if go else 0.0
    return sent


@njit(cache=True, nogil=True)
def close_nb(i, high, low, close, paused, p, L, G, F, I, counters):
    """The decisions at the close of bar ``i`` after its first (the grid laid): the grid ends
    when the bar reached its stop top or bottom, when a side was liquidated, or when its total
    PnL reached the stop-loss or take-profit; else the levels re-armed rest where the free
    margin and the risk gate let them (``paused``: the gate pauses openings), each lot's
    take-profit holds the lot."""
    if I[I_ENDED] == 0:
        eq = F[F_CASH] + F[F_MARGIN_L] + F[F_MARGIN_S] + close * (F[F_QTY_L] - F[F_QTY_S]) - F[F_COST_L] + F[F_COST_S]
        pnl = eq - p.capital
        if p.stop_top > 0.0 and high >= p.stop_top:
            end_nb(END_STOP_TOP, i, p, G, F, I)
        elif p.stop_bottom > 0.0 and low <= p.stop_bottom:
            end_nb(END_STOP_BOTTOM, i, p, G, F, I)
        elif counters[C_LIQUIDATIONS] > 0:
            end_nb(END_LIQUIDATION, i, p, G, F, I)
        elif p.stop_loss > 0.0 and pnl <= -p.stop_loss * p.capital:
            end_nb(END_STOP_LOSS, i, p, G, F, I)
        elif p.take_profit > 0.0 and pnl >= p.take_profit * p.capital:
            end_nb(END_TAKE_PROFIT, i, p, G, F, I)
    if I[I_ENDED] == 0:
        _place_openings(close, paused, p, G, F, I, counters, _market_openings(close, paused, p, G, F, counters))
    for s in range(2):
        for m in range(I[I_NLOT_L + s]):
            L[s, m, L_TP_QTY] = L[s, m, L_QTY]


@njit(cache=True, nogil=True)
def futures_grid_nb(time, open_, high, low, close, funding, funding_count, tiers, paused, lines, long, market,
                    slot_value, p, L, G, F, I, trades, equity, long_qty, short_qty, counters, money, first, olog, oref,
                    marks):
    """Run the futures grid from bar ``first`` (0 for a new run, state from ``new_state``); the
    grid is laid at the close of ``p.start_bar`` as ``lay_nb`` lays it. ``funding[i]``: the rate settled
    at the open of bar i (``funding_count[i]`` settlements); ``paused[i]`` (empty: never): the
    risk gate pauses openings at the close of bar i; ``olog``, ``oref``, ``marks`` (empty: none
    kept): the replay's order log (the adaptive grid's ``new_order_log``) and marks. Returns the
    bar to go on from: ``len(close)`` when done, earlier when a log has no room for one more
    bar, -1 on overflow (a bug)."""
    n = len(close)
    need = 2 * p.levels + 4 * p.max_lots + 8  # (trade_log_room)
    rec = len(oref) > 0
    gated = len(paused) == n
    start = p.start_bar
    if first <= start:
        for i in range(min(start, n)):
            equity[i] = p.capital
            long_qty[i] = 0.0
            short_qty[i] = 0.0
        if start >= n:
            return n
        first = start
    for i in range(first, n):
        if len(trades) - I[I_NTR] < need or (rec and len(olog) - oref[0] < 2 * p.levels + 2 * p.max_lots):
            return i
        t = time[i]
        o = open_[i]
        ok = True
        if I[I_STARTED] == 1:
            if funding_count[i] > 0:
                _pay_funding(o, funding[i], funding_count[i], p, L, F, I, counters, money, tiers)
            if I[I_CLOSE] == 1:
                for s in range(2):
                    if F[F_QTY_L + s] > 0.0:
                        ok = market_close_fill_nb(s, i, t, market_fill_nb(s == SHORT, o, p.slippage), F[F_QTY_L + s],
                                                  p, L, G, F, I, trades, counters, money, tiers) and ok
                I[I_CLOSE] = 0
            for s in range(2):
                for j in range(p.levels):
                    if G[s, j, G_STATE] == MARKET:
                        ok = market_open_fill_nb(s, i, t, market_fill_nb(s == LONG, o, p.slippage), p, L, G, F, I,
                                                 trades, counters, money, tiers) and ok
                        break
            if I[I_ENDED] == 0 or F[F_QTY_L] > 0.0 or F[F_QTY_S] > 0.0:
                n0 = I[I_NTR]
                first_leg = LONG if down_first_nb(o, close[i]) else SHORT
                for leg in range(2):
                    s = first_leg if leg == 0 else 1 - first_leg
                    ok = _leg(s, i, t, o, low[i] if s == LONG else high[i], p, L, G, F, I, trades, counters, money,
                              tiers) and ok
                if I[I_NTR] != n0:
                    counters[C_ACTIVE_BARS] += 1
            close_nb(i, high[i], low[i], close[i], gated and paused[i], p, L, G, F, I, counters)
        else:
            lay_nb(close[i], lines, long, market, slot_value, p, G, I, counters)
            close_nb(i, close[i], close[i], close[i], gated and paused[i], p, L, G, F, I, counters)
        if not ok:
            return -1
        c = close[i]
        equity[i] = F[F_CASH] + F[F_MARGIN_L] + F[F_MARGIN_S] + c * (F[F_QTY_L] - F[F_QTY_S]) - F[F_COST_L] \
            + F[F_COST_S]
        long_qty[i] = F[F_QTY_L]
        short_qty[i] = F[F_QTY_S]
        if rec:
            _log_orders(i, p, L, G, I, olog, oref)
            for s in range(2):
                q = F[F_QTY_L + s]
                held = q > 0.0
                marks[i, s] = F[F_COST_L + s] / q if held else np.nan
                marks[i, 2 + s] = F[F_LIQ_L + s] if held and 0.0 < F[F_LIQ_L + s] < np.inf else np.nan
    return n


@njit(cache=True, nogil=True)
def desired_orders_nb(p, L, G, F, I, out):
    """The orders the state wants now (ORDER_DTYPE): each side's market opening of its
    starting position, the resting openings, each lot's take-profit; once ended, only the
    market close of each side still held. ``book`` is the side; ``ref`` the level, the lot, or
    -1 for a market order. Returns how many."""
    n = 0
    for s in range(2):
        sign = 1 if s == LONG else -1
        if I[I_ENDED] != 0:
            if I[I_CLOSE] == 1 and F[F_QTY_L + s] > 0.0:
                out[n]["side"], out[n]["kind"], out[n]["price"] = -sign, MARKET_CLOSE, 0.0
                out[n]["qty"], out[n]["ref"], out[n]["book"] = F[F_QTY_L + s], -1, s
                n += 1
            continue
        at_market = 0.0
        for j in range(p.levels):
            if G[s, j, G_STATE] == MARKET:
                at_market += G[s, j, G_QTY]
        if at_market > 0.0:
            out[n]["side"], out[n]["kind"], out[n]["price"] = sign, MARKET_ORDER, 0.0
            out[n]["qty"], out[n]["ref"], out[n]["book"] = at_market, -1, s
            n += 1
        for j in range(p.levels):
            if G[s, j, G_STATE] == REST:
                out[n]["side"], out[n]["kind"], out[n]["price"] = sign, OPEN_ORDER, G[s, j, G_PRICE]
                out[n]["qty"], out[n]["ref"], out[n]["book"] = G[s, j, G_QTY], j, s
                n += 1
        for m in range(I[I_NLOT_L + s]):
            out[n]["side"], out[n]["kind"], out[n]["price"] = -sign, TAKE_PROFIT_ORDER, L[s, m, L_TP_PRICE]
            out[n]["qty"], out[n]["ref"], out[n]["book"] = L[s, m, L_TP_QTY], m, s
            n += 1
    return n


def no_replay_log():
    """The empty order log, refs and marks of a run that keeps none."""
    return np.empty(0, dtype=ORDER_LOG_DTYPE), np.empty(0, dtype=np.int64), np.empty((0, N_MARKS))
