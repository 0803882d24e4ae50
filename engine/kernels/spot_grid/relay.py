"""The spot grid's decisions at a close: laying the grid (``_regenerate``: the lattice, the
window of slots, their orders), when to lay it again (recenter, trailing, lower-only
consumed), the quiet band of the loop, and ``start_nb``/``decide_nb`` for the runtime."""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.kernels.grid import ATR, GEOMETRIC, floor_lot_nb
from engine.kernels.jit import hot_njit
from engine.kernels.matching import FILL_THROUGH
from engine.kernels.spot_grid.fills import _cancel_order, _find_kb, _find_ks, _place_slot_order, _price, _slot_qty
from engine.kernels.spot_grid.layout import *  # (the state's names, the records, the settings)


@hot_njit
def _regenerate(bar, close, atr_now, reason, new_j0, p, S, SI, F, I, orders, counters, money):
    """(Re)build the grid at the close of ``bar``: cancel every order, pool the inventory,
    lay out the window, give the pooled inventory to the slots above the price (lowest first),
    mark what is left as dust to sell at market, and place every slot's order.

    reason 0: first grid; 1: recenter on the current price (new lattice); 2: trailing shift
    to ``new_j0`` on the same lattice. Returns False when the order log is full.
    """
    ns_old = I[I_SLOTS]
    pool_q = money[M_DUST_QTY]
    pool_c = money[M_DUST_COST]
    for k in range(ns_old):
        _cancel_order(orders, SI[k, SI_ORDER], bar)
        if SI[k, SI_STATE] == SLOT_HOLD:
            pool_q += S[k, S_QTY]
            pool_c += S[k, S_COST]
        SI[k, SI_ORDER] = -1
        SI[k, SI_STATE] = SLOT_OFF
        SI[k, SI_FLAG] = FLAG_NONE
        S[k, S_COST] = 0.0
    F[F_LOCKED] = 0.0
    I[I_WAITING] = 0
    I[I_BUYS] = 0
    n = p.levels
    if reason == 0 or reason == 1:
        kind = GEOMETRIC if p.spacing == GEOMETRIC else 0
        I[I_SPACING] = kind
        if p.spacing == ATR:
            d = max(p.atr_k * atr_now, p.atr_floor * close)
            F[F_LATTICE_STEP] = d
        if p.mode == INFINITY:
            # Geometric from the lowest price up, without end: a window of n - 1 slots with the
            # price in its middle; the slots above the window hold their coins as the reserve.
            I[I_SPACING] = GEOMETRIC
            F[F_LATTICE_BASE] = p.lower
            F[F_LATTICE_STEP] = 1.0 + p.step
            I[I_TOP_LEVEL] = -(1 << 62)
            I[I_SLOTS] = n - 1
            I[I_FIRST_LEVEL] = max(0, _level_at(close, p, F, I) - (n - 1) // 2)
        elif p.mode == RANGE:
            if reason == 0 and p.spacing != ATR:
                F[F_LATTICE_BASE] = p.lower
                F[F_TOP_PRICE] = p.upper
                I[I_TOP_LEVEL] = n - 1
                F[F_LATTICE_STEP] = (p.upper / p.lower) ** (1.0 / (n - 1)) if kind == GEOMETRIC \
                    else (p.upper - p.lower) / (n - 1)
            else:
                half = (n - 1) // 2
                step = F[F_LATTICE_STEP]
                F[F_LATTICE_BASE] = close / step ** half if kind == GEOMETRIC else close - half * step
                I[I_TOP_LEVEL] = -(1 << 62)
            I[I_FIRST_LEVEL] = 0
            I[I_SLOTS] = n - 1
        else:
            # Lower-only: n buy levels below the anchor, P(n) = anchor.
            anchor = p.upper if (reason == 0 and p.upper > 0.0) else close
            if reason == 0 and p.spacing != ATR:
                lower = p.lower
                F[F_LATTICE_STEP] = (anchor / lower) ** (1.0 / n) if kind == GEOMETRIC \
                    else (anchor - lower) / n
            F[F_LATTICE_BASE] = anchor / F[F_LATTICE_STEP] ** n if kind == GEOMETRIC else anchor - n * F[F_LATTICE_STEP]
            F[F_TOP_PRICE] = anchor
            I[I_TOP_LEVEL] = n
            I[I_SLOTS] = n
            # Shift the window up by as many slots above the anchor as the pool covers.
            h = 0
            rem = pool_q
            while h < n:
                q = _slot_qty(p, F, _price(F, I, n + h, p.tick))
                if q <= 0.0 or rem < q * (1.0 - 1e-9):
                    break
                rem -= q
                h += 1
            I[I_FIRST_LEVEL] = h
        if reason == 1:
            counters[C_RECENTERS] += 1
    else:
        I[I_FIRST_LEVEL] = new_j0
    ns = I[I_SLOTS]
    j0 = I[I_FIRST_LEVEL]
    for k in range(ns):
        S[k, S_BUY] = _price(F, I, j0 + k, p.tick)
        S[k, S_SELL] = _price(F, I, j0 + k + 1, p.tick)
        S[k, S_QTY] = _slot_qty(p, F, S[k, S_BUY])
        SI[k, SI_STATE] = SLOT_FLAT if S[k, S_BUY] > 0.0 else SLOT_DISABLED
    # Slots above the price hold inventory: from the pool where it covers them (at the pool's
    # average cost), otherwise they buy it again (a buy above the price fills at the next open).
    avg = pool_c / pool_q if pool_q > 0.0 else 0.0
    hold_from = ns
    if p.mode == LOWER_ONLY:
        hold_from = n if reason != 2 else ns
    for k in range(ns):
        above = S[k, S_BUY] > close if p.mode != LOWER_ONLY or reason == 2 else k + j0 >= hold_from
        if not above or SI[k, SI_STATE] == SLOT_DISABLED:
            continue
        q = S[k, S_QTY]
        if q > 0.0 and pool_q >= q * (1.0 - 1e-9):
            take = min(q, pool_q)
            SI[k, SI_STATE] = SLOT_HOLD
            S[k, S_COST] = avg * take
            pool_q -= take
            pool_c -= avg * take
        elif reason != 0:
            SI[k, SI_FLAG] = FLAG_REBUY
    # What no slot took stays as dust; sell it at the next open when an exchange would take it.
    if pool_q < 1e-12:
        pool_q = 0.0
        pool_c = 0.0
    money[M_DUST_QTY] = pool_q
    money[M_DUST_COST] = pool_c
    sellable = floor_lot_nb(pool_q, p.lot)
    F[F_MARKET_SELL] = sellable if (sellable > 0.0 and sellable * close >= p.min_notional) else 0.0
    if p.mode == INFINITY:  # its leftover inventory is the reserve: never sold; bought at the start
        reserve = floor_lot_nb(_reserve_qty(I[I_FIRST_LEVEL] + ns, p, F, I), p.lot)
        F[F_MARKET_SELL] = -reserve if reason == 0 and reserve * close >= p.min_notional else 0.0
    for k in range(ns):
        if _place_slot_order(k, bar, close, p, S, SI, F, I, orders, counters) < 0:
            return False
    I[I_TOP_BUY] = _find_kb(SI, ns - 1)
    I[I_LOW_SELL] = _find_ks(SI, 0, ns)
    I[I_BUYS_LAID] = I[I_BUYS]
    return True


@njit(cache=True, nogil=True, inline="always")
def _level_at(price, p, F, I):
    """The lattice level at or below ``price`` (0 below the lowest)."""
    j = below_levels_nb(F[F_LATTICE_BASE], F[F_LATTICE_STEP], price)
    while _price(F, I, j + 1, p.tick) <= price:
        j += 1
    while j > 0 and _price(F, I, j, p.tick) > price:
        j -= 1
    return j


@njit(cache=True, nogil=True, inline="always")
def _reserve_qty(j, p, F, I):
    """Infinity: the coins of every slot from level ``j`` up, each ``Q / L``: V / L(j)."""
    return F[F_SLOT_QUOTE] * (1.0 + p.step) / p.step / _price(F, I, j, p.tick)


@njit(cache=True, nogil=True, inline="always")
def _shift_edges(p, I):
    """Infinity: the window moves once the price is within this many levels of its edge."""
    return max(1, I[I_SLOTS] // 4)


@hot_njit
def _shift_window(bar, close, j_new, p, S, SI, F, I, orders, counters, money):
    """Infinity: move the window to start at level ``j_new``, every slot kept as it is. A slot
    leaving the top gives its coins to the reserve (its sell cancelled), one leaving the bottom
    its buy back (cancelled); a slot coming in at the top takes its coins from the reserve and
    sells one level up, one coming in at the bottom buys. A bar that ran beyond the window's
    orders left levels unfilled that the grid holds otherwise: coming in below the close at the
    top, they buy there (their coins, left in the reserve, are sold at the next open); coming
    in above it at the bottom, they buy at the next open. False when the order log is full."""
    ns = I[I_SLOTS]
    d = j_new - I[I_FIRST_LEVEL]
    gone_lo, gone_hi = (0, d) if d > 0 else (ns + d, ns)
    for k in range(gone_lo, gone_hi):
        oid = SI[k, SI_ORDER]
        if oid >= 0 and SI[k, SI_STATE] == SLOT_FLAT:
            F[F_LOCKED] -= S[k, S_BUY] * S[k, S_QTY] * (1.0 + p.fee)
            I[I_BUYS] -= 1
        _cancel_order(orders, oid, bar)
        if SI[k, SI_STATE] == SLOT_HOLD:
            money[M_DUST_QTY] += S[k, S_QTY]
            money[M_DUST_COST] += S[k, S_COST]
        if SI[k, SI_FLAG] == FLAG_RETRY or SI[k, SI_FLAG] == FLAG_DEFER:
            I[I_WAITING] -= 1
    order = range(ns - d) if d > 0 else range(ns - 1, -d - 1, -1)  # (rows move towards where they go)
    for k in order:
        for c in range(4):
            S[k, c] = S[k + d, c]
        for c in range(3):
            SI[k, c] = SI[k + d, c]
    I[I_FIRST_LEVEL] = j_new
    new_lo, new_hi = (ns - d, ns) if d > 0 else (0, -d)
    for k in range(new_lo, new_hi):
        S[k, S_BUY] = _price(F, I, j_new + k, p.tick)
        S[k, S_SELL] = _price(F, I, j_new + k + 1, p.tick)
        S[k, S_QTY] = _slot_qty(p, F, S[k, S_BUY])
        S[k, S_COST] = 0.0
        SI[k, SI_ORDER] = -1
        SI[k, SI_FLAG] = FLAG_NONE
        SI[k, SI_STATE] = SLOT_FLAT if S[k, S_BUY] > 0.0 else SLOT_DISABLED
        q = S[k, S_QTY]
        dq = money[M_DUST_QTY]
        if S[k, S_BUY] > close and SI[k, SI_STATE] == SLOT_FLAT:
            if d > 0 and q > 0.0 and dq >= q * (1.0 - 1e-9):
                take = min(q, dq)
                cost = money[M_DUST_COST] * take / dq
                SI[k, SI_STATE] = SLOT_HOLD
                S[k, S_COST] = cost
                money[M_DUST_QTY] = dq - take
                money[M_DUST_COST] -= cost
            else:
                SI[k, SI_FLAG] = FLAG_REBUY  # (a level the fall ran past, or one the reserve is short of)
        if _place_slot_order(k, bar, close, p, S, SI, F, I, orders, counters) < 0:
            return False
    if d > 0:  # what the reserve holds beyond the levels above the window: levels the rise ran past
        excess = floor_lot_nb(money[M_DUST_QTY] - _reserve_qty(j_new + ns, p, F, I), p.lot)
        big = excess > 1e-9 * money[M_DUST_QTY] and excess * close >= p.min_notional  # (not a rounding's crumb)
        F[F_MARKET_SELL] = excess if big else 0.0
    counters[C_TRAIL_UP if d > 0 else C_TRAIL_DOWN] += 1
    I[I_TOP_BUY] = _find_kb(SI, ns - 1)
    I[I_LOW_SELL] = _find_ks(SI, 0, ns)
    return True


@njit(cache=True, nogil=True, inline="always")
def _quiet_band(p, S, SI, F, I, H):
    """(qlo, qhi): a bar with low > qlo and high < qhi fills nothing and triggers nothing."""
    inf = np.inf
    if p.hedge_ratio > 0.0 and (H[H_QTY] > 0.0 or H[H_PENDING] != 0.0):
        return inf, -inf  # an open hedge: funding, targets and its liquidation, every bar
    if I[I_STOPPED] != 0:
        return -inf, inf
    if F[F_MARKET_SELL] != 0.0:
        return inf, -inf
    ns = I[I_SLOTS]
    if I[I_WAITING] > 0:
        # An order held back by the dead zone waits for the price to move: every close counts.
        # One refused for want of cash can only go once a fill or a cancel frees cash, and those
        # happen on active bars: it does not keep the quiet bars busy.
        for k in range(ns):
            if SI[k, SI_FLAG] == FLAG_DEFER:
                return inf, -inf
    kb = I[I_TOP_BUY]
    ks = I[I_LOW_SELL]
    # touch: a buy at P fills when low <= P, so the bar is quiet while low > P;
    # through: it fills when low < P - tick, quiet while low >= P - tick; queue: it may fill
    # only when low < P, so the touch band is quiet for it too.
    qlo = -inf
    if kb >= 0:
        qlo = np.nextafter(S[kb, S_BUY] - p.tick, -inf) if p.fill_model == FILL_THROUGH else S[kb, S_BUY]
    qhi = inf
    if ks < ns:
        qhi = np.nextafter(S[ks, S_SELL] + p.tick, inf) if p.fill_model == FILL_THROUGH else S[ks, S_SELL]
    if p.stop_loss > 0.0:
        qlo = max(qlo, p.stop_loss)
    if p.take_profit > 0.0:
        qhi = min(qhi, p.take_profit)
    bottom = _price(F, I, I[I_FIRST_LEVEL], p.tick)
    top = _price(F, I, I[I_FIRST_LEVEL] + ns, p.tick)
    if p.trailing == TRAIL_UP or p.trailing == TRAIL_BOTH:
        qhi = min(qhi, np.nextafter(top, inf))
    if p.mode == RANGE and (p.trailing == TRAIL_DOWN or p.trailing == TRAIL_BOTH):
        qlo = max(qlo, np.nextafter(bottom, -inf))
    if p.mode == INFINITY:  # (a close this near an edge moves the window)
        q = _shift_edges(p, I)
        qhi = min(qhi, _price(F, I, I[I_FIRST_LEVEL] + ns - q, p.tick))
        if I[I_FIRST_LEVEL] > 0:
            qlo = max(qlo, np.nextafter(_price(F, I, I[I_FIRST_LEVEL] + q, p.tick), -inf))
    if p.hedge_ratio > 0.0 and F[F_POSITION] > 0.0:
        qlo = max(qlo, np.nextafter(bottom, -inf))  # a close below the lowest level opens the hedge
    if p.recenter > 0.0:
        qhi = min(qhi, np.nextafter(top + p.recenter * (top - _price(F, I, I[I_FIRST_LEVEL] + ns - 1, p.tick)), inf))
        if p.mode == RANGE:
            d = _price(F, I, I[I_FIRST_LEVEL] + 1, p.tick) - bottom
            qlo = max(qlo, np.nextafter(bottom - p.recenter * d, -inf))
    return qlo, qhi


@njit(cache=True, nogil=True, inline="always")
def _decide_regeneration(close, p, S, SI, F, I):
    """At the close: 0 keep the grid, 1 recenter, 2 trail, 3 move an infinity grid's window
    (new j0 in the second value)."""
    ns = I[I_SLOTS]
    j0 = I[I_FIRST_LEVEL]
    tick = p.tick
    if p.mode == INFINITY:
        j = _level_at(close, p, F, I)
        q = _shift_edges(p, I)
        if j >= j0 + ns - q or (j < j0 + q and j0 > 0):
            j_new = max(0, j - ns // 2)
            if j_new != j0:
                return 3, j_new
        return 0, j0
    top = _price(F, I, j0 + ns, tick)
    bottom = _price(F, I, j0, tick)
    if (p.trailing == TRAIL_UP or p.trailing == TRAIL_BOTH) and close > top:
        j = j0
        if p.mode == RANGE:
            while _price(F, I, j + ns - 1, tick) <= close:
                j += 1
        else:
            while _price(F, I, j + ns, tick) < close:
                j += 1
        return 2, j
    if p.mode == RANGE and (p.trailing == TRAIL_DOWN or p.trailing == TRAIL_BOTH) and close < bottom:
        j = j0
        while close < _price(F, I, j, tick) and _price(F, I, j - 1, tick) > 0.0:
            j -= 1
        if j != j0:
            return 2, j
    if p.recenter > 0.0:
        d_top = top - _price(F, I, j0 + ns - 1, tick)
        if close > top + p.recenter * d_top:
            return 1, j0
        if p.mode == RANGE:
            d_bot = _price(F, I, j0 + 1, tick) - bottom
            if close < bottom - p.recenter * d_bot:
                return 1, j0
    consumed = p.mode == LOWER_ONLY and p.consumed > 0.0 and I[I_BUYS_LAID] > 0 \
        and I[I_BUYS] < (1.0 - p.consumed) * I[I_BUYS_LAID]
    if consumed and F[F_CASH] - F[F_LOCKED] >= F[F_SLOT_QUOTE]:
        return 1, j0
    return 0, j0


@njit(cache=True, nogil=True, inline="always")
def _decide_at_close(i, c, atr_now, touched, nt, p, S, SI, F, I, orders, counters, money):
    """decide, at the close of bar i: trail or recenter the grid, or else place the follow-ups of
    the slots in ``touched[:nt]`` (those that filled) and retry the orders that had to wait
    (dead zone, balance). The backtest loop and the live runtime both call it. False when the
    order log is full (a bug: callers make room first)."""
    ns = I[I_SLOTS]
    what, j_new = _decide_regeneration(c, p, S, SI, F, I)
    if what != 0 and what != 3:
        if what == 2:
            counters[C_TRAIL_UP if j_new > I[I_FIRST_LEVEL] else C_TRAIL_DOWN] += 1
        return _regenerate(i, c, atr_now, what, j_new, p, S, SI, F, I, orders, counters, money)
    kb = I[I_TOP_BUY]
    ks = I[I_LOW_SELL]
    n_wait = ns if I[I_WAITING] > 0 else 0
    for m in range(nt + n_wait):
        k = touched[m] if m < nt else m - nt
        if m >= nt and (SI[k, SI_ORDER] >= 0 or not (SI[k, SI_FLAG] == FLAG_RETRY or SI[k, SI_FLAG] == FLAG_DEFER)):
            continue
        r = _place_slot_order(k, i, c, p, S, SI, F, I, orders, counters)
        if r < 0:
            return False
        if r > 0:
            if SI[k, SI_STATE] == SLOT_FLAT:
                kb = max(kb, k)
            else:
                ks = min(ks, k)
    I[I_TOP_BUY] = _find_kb(SI, min(kb, ns - 1))
    I[I_LOW_SELL] = _find_ks(SI, ks, ns)
    if what == 3:  # (the follow-ups first: they move with their slots)
        return _shift_window(i, c, j_new, p, S, SI, F, I, orders, counters, money)
    return True


@hot_njit
def start_nb(bar, close, atr_now, p, S, SI, F, I, orders, counters, money):
    """decide, for the first time: lay the grid at the close of ``bar``."""
    return _regenerate(bar, close, atr_now, 0, 0, p, S, SI, F, I, orders, counters, money)


@hot_njit
def decide_nb(bar, close, atr_now, touched, nt, p, S, SI, F, I, orders, counters, money):
    """decide at the close of ``bar`` after the fills given to ``on_fill_nb``: the orders it
    wants resting are then the open rows of the order log (and ``market_qty`` to sell)."""
    if I[I_STOPPED] != 0:
        return True
    return _decide_at_close(bar, close, atr_now, touched, nt, p, S, SI, F, I, orders, counters, money)
