"""The spot-grid backtest kernel (numba).

Fill model: GRID_SEMANTICS.md. The grid is a window of ``ns`` slots over a price lattice:
slot k buys at P(j0 + k) and, once it holds, sells at P(j0 + k + 1); after the sell it buys
again. Orders are decided at the close of a bar and can fill from the next bar on, so no
round trip completes inside one bar and nothing can look ahead.

The kernel is event-driven: it keeps the highest resting buy, the lowest resting sell and
the prices that trigger a stop, a trailing shift or a recenter as a "quiet band". A bar whose
low and high stay inside the band cannot change anything, so it costs two comparisons and
the mark-to-market; other bars scan only the levels they crossed.

Intra-bar order (used for stops and for the order of trades in one bar): a bar that closes at
or above its open is taken as open -> low -> high -> close, otherwise open -> high -> low ->
close. Buy orders lock their cost plus fee when placed (an order the account cannot pay for
is refused and counted), so a fill never makes a balance negative.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from engine.kernels.grid import ATR, GEOMETRIC, OPEN_END, floor_lot_nb, lattice_price_nb
from engine.kernels.jit import hot_njit
from engine.kernels.matching import down_first_nb, limit_fill_nb, market_fill_nb, reached_nb, stop_fill_nb
from engine.kernels.perp import liquidation_price_nb

RANGE, LOWER_ONLY = 0, 1
MODE_NAMES = ("range", "lower-only")
TRAIL_NONE, TRAIL_UP, TRAIL_DOWN, TRAIL_BOTH = 0, 1, 2, 3
TRAIL_NAMES = ("none", "up", "down", "both")
STOP_SELL_ALL, STOP_KEEP_COIN = 0, 1

# Trade roles.
GRID_BUY, GRID_SELL, REBUY, REBALANCE_SELL, STOP_LOSS, TAKE_PROFIT, HEDGE_OPEN_SHORT, HEDGE_CLOSE_SHORT, \
    HEDGE_LIQUIDATION, BAG_REDUCE = range(10)
ROLE_NAMES = ("GRID_BUY", "GRID_SELL", "REBUY", "REBALANCE_SELL", "STOP_LOSS", "TAKE_PROFIT", "HEDGE_OPEN_SHORT",
              "HEDGE_CLOSE_SHORT", "HEDGE_LIQUIDATION", "BAG_REDUCE")

TRADE_DTYPE = np.dtype([
    ("bar", np.int64), ("time", np.int64), ("side", np.int8), ("price", np.float64),
    ("qty", np.float64), ("fee", np.float64), ("level", np.int64), ("role", np.int8),
    ("pnl", np.float64), ("cash", np.float64), ("position", np.float64),
])
# One row per order placed. It rests during bars placed+1 .. end; status 0 open at the end of
# the data (end = number of bars), 1 filled on bar ``end``, 2 cancelled at the close of ``end``.
ORDER_DTYPE = np.dtype([
    ("price", np.float64), ("qty", np.float64), ("side", np.int8), ("level", np.int64),
    ("role", np.int8), ("placed", np.int64), ("end", np.int64), ("status", np.int8),
])
ORDER_OPEN, ORDER_FILLED, ORDER_CANCELLED = 0, 1, 2

# Counters returned by the kernel.
C_FILLS, C_BUYS, C_SELLS, C_REFUSED_MIN, C_REFUSED_BALANCE, C_RECENTERS, C_TRAIL_UP, \
    C_TRAIL_DOWN, C_STOP, C_STOP_BAR, C_DEFERRED, C_ACTIVE_BARS, C_ORDERS, C_HEDGE_OPENS, C_HEDGE_SCALES, \
    C_HEDGE_CLOSES, C_HEDGE_LIQUIDATIONS, C_HEDGE_CUT, C_BAG_REDUCTIONS, C_ROUND_TRIPS = range(20)
N_COUNTERS = 20
COUNTER_NAMES = (
    "fills", "buys", "sells", "refused_min_notional", "refused_balance", "recenters",
    "trail_up", "trail_down", "stop", "stop_bar", "dead_zone_deferrals", "active_bars",
    "orders_placed", "hedge_opens", "hedge_scales", "hedge_closes", "hedge_liquidations", "hedge_cut_short",
    "bag_reductions", "round_trips",  # (a slot's buy sold one level up: a completed grid)
)

# Money totals returned by the kernel.
M_REALIZED, M_GRID_PROFIT, M_FEES, M_DUST_QTY, M_DUST_COST, M_TURNOVER, M_HEDGE_PNL, M_HEDGE_FUNDING, \
    M_OFFSET_BY_HEDGE, M_BANKED = range(10)
N_MONEY = 10

# The perpetual short hedge H[.]: quantity, average entry, isolated margin, liquidation price,
# price of the last add, target share of the inventory, the order decided at the last close
# (> 0 sell to open or add, < 0 buy to close).
_HQ, _HE, _HM, _HLIQ, _HLAST, _HFRAC, _HPEND = range(7)
N_HEDGE = 7

# Slot columns: floats S[k, .] and ints SI[k, .].
_BUY, _SELL, _QTY, _COST = 0, 1, 2, 3
_STATE, _ORDER, _FLAG = 0, 1, 2
_OFF, _FLAT, _HOLD, _DISABLED = 0, 1, 2, 3
_FLAG_NONE, _FLAG_REBUY, _FLAG_RETRY, _FLAG_DEFER = 0, 1, 2, 3

# Scalar state F[.] (floats) and I[.] (ints).
_CASH, _LOCKED, _POS, _COSTT, _BASE, _STEP, _TOPP, _QUOTE, _BASEQ, _MKTQ, _RESERVED = range(11)
N_F = 11
_J0, _NS, _KB, _KS, _TOPJ, _KIND, _NTR, _NOR, _STOPPED, _WAIT, _NBUYS, _GENBUYS = range(12)


class SpotGridParams(NamedTuple):
    """Numbers only, so numba takes it as is. Prices in quote currency, fees as fractions."""

    mode: int = RANGE
    spacing: int = 0  # engine.kernels.grid ARITHMETIC, GEOMETRIC or ATR
    lower: float = 0.0
    upper: float = 0.0
    levels: int = 20
    capital: float = 10_000.0
    fee: float = 0.001  # maker: resting limit orders
    taker_fee: float = 0.001  # market and stop orders
    slippage: float = 0.0  # adverse, fraction of price, on market and stop orders
    lot: float = 1e-8
    tick: float = 0.0
    min_notional: float = 0.0
    qty_mode: int = 0  # EQUAL_QUOTE or EQUAL_BASE
    atr_k: float = 1.0
    atr_floor: float = 0.005
    trailing: int = TRAIL_NONE
    recenter: float = 0.0  # spacings beyond the window that trigger a recenter; 0 = off
    consumed: float = 0.0  # lower-only: recenter when this fraction of the buys has filled
    dead_zone: float = 0.0  # no order within this fraction of the price
    stop_loss: float = 0.0  # price; 0 = off
    take_profit: float = 0.0  # price; 0 = off
    stop_action: int = STOP_SELL_ALL
    fill_through: int = 0  # 1: the price must trade through a level by one tick
    start_bar: int = 0  # first bar whose close places the grid (indicator warm-up)
    # Reserve and profit banking: a share of the capital the grid never spends, and a share of
    # each winning round trip moved into it, up to a cap (both fractions of the capital).
    reserve_ratio: float = 0.0
    bank_frac: float = 0.0
    bank_cap: float = 0.0
    # Short hedge on the perpetual (hedge_ratio 0 = none): opened at the next open when a close
    # falls below the grid's lowest level, sized hedge_ratio x the spot inventory; scaled by
    # hedge_step for each further spacing down, up to hedge_max; closed at hedge_tp profit (of
    # its notional) or when the close rises above EMA + hedge_reversal_k x ATR.
    hedge_ratio: float = 0.0
    hedge_step: float = 0.25
    hedge_max: float = 1.0
    hedge_leverage: float = 2.0
    hedge_fee: float = 0.0002  # the perpetual's taker fee
    hedge_tp: float = 0.03
    hedge_reversal_k: float = 1.0


@njit(cache=True, nogil=True, inline="always")
def _price(F, I, j, tick):
    return lattice_price_nb(I[_KIND], F[_BASE], F[_STEP], j, I[_TOPJ], F[_TOPP], tick)


@hot_njit
def _slot_qty(p, F, price):
    if p.qty_mode == 0:
        return floor_lot_nb(F[_QUOTE] / price, p.lot)
    return F[_BASEQ]


@hot_njit
def _record_trade(trades, I, bar, t, side, price, qty, fee, level, role, pnl, F):
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
    r["level"] = level
    r["role"] = role
    r["pnl"] = pnl
    r["cash"] = F[_CASH]
    r["position"] = F[_POS]
    I[_NTR] = n + 1
    return True


@hot_njit
def _cancel_order(orders, oid, bar):
    if oid >= 0:
        orders[oid]["end"] = bar
        orders[oid]["status"] = ORDER_CANCELLED


@njit(cache=True, nogil=True, inline="always")
def _hold_back(k, flag, counter, SI, I, counters):
    """Slot k's order waits (dead zone: _FLAG_DEFER, balance: _FLAG_RETRY): counted once when it
    starts waiting for that reason; I[_WAIT] counts the slots waiting for any reason."""
    current = SI[k, _FLAG]
    if current != flag:
        counters[counter] += 1
        if current != _FLAG_RETRY and current != _FLAG_DEFER:
            I[_WAIT] += 1
        SI[k, _FLAG] = flag


@hot_njit
def _place_slot_order(k, bar, close, p, S, SI, F, I, orders, counters):
    """Decide the order slot k wants (buy when flat, sell when holding) and place it.
    Returns 1 placed, 0 not placed (deferred, refused or nothing to do), -1 order log full."""
    st = SI[k, _STATE]
    if st == _FLAT:
        side = 1
        price = S[k, _BUY]
    elif st == _HOLD:
        side = -1
        price = S[k, _SELL]
    else:
        return 0
    qty = S[k, _QTY]
    if p.dead_zone > 0.0 and abs(price - close) < p.dead_zone * close:
        _hold_back(k, _FLAG_DEFER, C_DEFERRED, SI, I, counters)
        return 0
    if side == 1:
        if qty <= 0.0 or price * qty < p.min_notional:
            SI[k, _STATE] = _DISABLED
            counters[C_REFUSED_MIN] += 1
            if SI[k, _FLAG] == _FLAG_RETRY or SI[k, _FLAG] == _FLAG_DEFER:
                I[_WAIT] -= 1
            SI[k, _FLAG] = _FLAG_NONE
            return 0
        need = price * qty * (1.0 + p.fee)
        if F[_CASH] - F[_LOCKED] - F[_RESERVED] < need * (1.0 - 1e-12):
            _hold_back(k, _FLAG_RETRY, C_REFUSED_BALANCE, SI, I, counters)
            return 0
        F[_LOCKED] += need
    oid = I[_NOR]
    if oid >= len(orders):
        return -1
    o = orders[oid]
    o["price"] = price
    o["qty"] = qty
    o["side"] = side
    o["level"] = I[_J0] + k
    if side == 1:
        o["role"] = REBUY if SI[k, _FLAG] == _FLAG_REBUY else GRID_BUY
        I[_NBUYS] += 1
    else:
        o["role"] = GRID_SELL
    o["placed"] = bar
    o["end"] = OPEN_END
    o["status"] = ORDER_OPEN
    I[_NOR] = oid + 1
    counters[C_ORDERS] += 1
    if SI[k, _FLAG] == _FLAG_RETRY or SI[k, _FLAG] == _FLAG_DEFER:
        I[_WAIT] -= 1
    SI[k, _FLAG] = _FLAG_NONE
    SI[k, _ORDER] = oid
    return 1


@hot_njit
def _find_kb(SI, start):
    k = start
    while k >= 0 and not (SI[k, _STATE] == _FLAT and SI[k, _ORDER] >= 0):
        k -= 1
    return k


@hot_njit
def _find_ks(SI, start, ns):
    k = start if start > 0 else 0
    while k < ns and not (SI[k, _STATE] == _HOLD and SI[k, _ORDER] >= 0):
        k += 1
    return k


@hot_njit
def _fill_buy(k, bar, t, fill_price, p, S, SI, F, I, orders, trades, counters, money):
    q = S[k, _QTY]
    oid = SI[k, _ORDER]
    role = orders[oid]["role"]
    orders[oid]["end"] = bar
    orders[oid]["status"] = ORDER_FILLED
    F[_LOCKED] -= S[k, _BUY] * q * (1.0 + p.fee)
    value = fill_price * q
    fee = value * p.fee
    F[_CASH] -= value + fee
    F[_POS] += q
    S[k, _COST] = value + fee
    F[_COSTT] += value + fee
    money[M_FEES] += fee
    money[M_TURNOVER] += value
    SI[k, _STATE] = _HOLD
    SI[k, _ORDER] = -1
    SI[k, _FLAG] = _FLAG_NONE
    I[_NBUYS] -= 1
    counters[C_FILLS] += 1
    counters[C_BUYS] += 1
    return _record_trade(trades, I, bar, t, 1, fill_price, q, fee, I[_J0] + k, role, 0.0, F)


@hot_njit
def _fill_sell(k, bar, t, fill_price, p, S, SI, F, I, orders, trades, counters, money):
    q = S[k, _QTY]
    oid = SI[k, _ORDER]
    orders[oid]["end"] = bar
    orders[oid]["status"] = ORDER_FILLED
    value = fill_price * q
    fee = value * p.fee
    pnl = value - fee - S[k, _COST]
    F[_CASH] += value - fee
    F[_POS] -= q
    F[_COSTT] -= S[k, _COST]
    S[k, _COST] = 0.0
    money[M_FEES] += fee
    money[M_TURNOVER] += value
    money[M_REALIZED] += pnl
    money[M_GRID_PROFIT] += pnl
    if pnl > 0.0 and p.bank_frac > 0.0:
        bank = min(p.bank_frac * pnl, p.bank_cap * p.capital - money[M_BANKED])
        if bank > 0.0:
            money[M_BANKED] += bank
            F[_RESERVED] += bank
    SI[k, _STATE] = _FLAT
    SI[k, _ORDER] = -1
    counters[C_FILLS] += 1
    counters[C_SELLS] += 1
    counters[C_ROUND_TRIPS] += 1
    return _record_trade(trades, I, bar, t, -1, fill_price, q, fee, I[_J0] + k, GRID_SELL, pnl, F)


@hot_njit
def _sell_everything(bar, t, price, role, p, S, SI, F, I, orders, trades, counters, money):
    """Stop: cancel every order and sell the whole position (slots and dust) as one taker fill."""
    ns = I[_NS]
    for k in range(ns):
        _cancel_order(orders, SI[k, _ORDER], bar)
        SI[k, _ORDER] = -1
        SI[k, _STATE] = _OFF
        S[k, _COST] = 0.0
    F[_LOCKED] = 0.0
    q = F[_POS]
    ok = True
    if q > 0.0:
        value = price * q
        fee = value * p.taker_fee
        pnl = value - fee - F[_COSTT]
        F[_CASH] += value - fee
        F[_POS] = 0.0
        F[_COSTT] = 0.0
        money[M_DUST_QTY] = 0.0
        money[M_DUST_COST] = 0.0
        money[M_FEES] += fee
        money[M_TURNOVER] += value
        money[M_REALIZED] += pnl
        counters[C_FILLS] += 1
        counters[C_SELLS] += 1
        ok = _record_trade(trades, I, bar, t, -1, price, q, fee, -1, role, pnl, F)
    F[_MKTQ] = 0.0
    return ok


@hot_njit
def _stop_grid(bar, t, price, reason, p, S, SI, F, I, orders, trades, counters, money):
    I[_STOPPED] = 1
    counters[C_STOP] = reason
    counters[C_STOP_BAR] = bar
    if p.stop_action == STOP_SELL_ALL:
        role = STOP_LOSS if reason == 1 else TAKE_PROFIT
        return _sell_everything(bar, t, price, role, p, S, SI, F, I, orders, trades, counters, money)
    for k in range(I[_NS]):
        _cancel_order(orders, SI[k, _ORDER], bar)
        SI[k, _ORDER] = -1
    F[_LOCKED] = 0.0
    F[_MKTQ] = 0.0
    return True


@hot_njit
def _regenerate(bar, close, atr_now, reason, new_j0, p, S, SI, F, I, orders, counters, money):
    """(Re)build the grid at the close of ``bar``: cancel every order, pool the inventory,
    lay out the window, give the pooled inventory to the slots above the price (lowest first),
    mark what is left as dust to sell at market, and place every slot's order.

    reason 0: first grid; 1: recenter on the current price (new lattice); 2: trailing shift
    to ``new_j0`` on the same lattice. Returns False when the order log is full.
    """
    ns_old = I[_NS]
    pool_q = money[M_DUST_QTY]
    pool_c = money[M_DUST_COST]
    for k in range(ns_old):
        _cancel_order(orders, SI[k, _ORDER], bar)
        if SI[k, _STATE] == _HOLD:
            pool_q += S[k, _QTY]
            pool_c += S[k, _COST]
        SI[k, _ORDER] = -1
        SI[k, _STATE] = _OFF
        SI[k, _FLAG] = _FLAG_NONE
        S[k, _COST] = 0.0
    F[_LOCKED] = 0.0
    I[_WAIT] = 0
    I[_NBUYS] = 0
    n = p.levels
    if reason == 0 or reason == 1:
        kind = GEOMETRIC if p.spacing == GEOMETRIC else 0
        I[_KIND] = kind
        if p.spacing == ATR:
            d = max(p.atr_k * atr_now, p.atr_floor * close)
            F[_STEP] = d
        if p.mode == RANGE:
            if reason == 0 and p.spacing != ATR:
                F[_BASE] = p.lower
                F[_TOPP] = p.upper
                I[_TOPJ] = n - 1
                F[_STEP] = (p.upper / p.lower) ** (1.0 / (n - 1)) if kind == GEOMETRIC \
                    else (p.upper - p.lower) / (n - 1)
            else:
                half = (n - 1) // 2
                F[_BASE] = close / F[_STEP] ** half if kind == GEOMETRIC else close - half * F[_STEP]
                I[_TOPJ] = -(1 << 62)
            I[_J0] = 0
            I[_NS] = n - 1
        else:
            # Lower-only: n buy levels below the anchor, P(n) = anchor.
            anchor = p.upper if (reason == 0 and p.upper > 0.0) else close
            if reason == 0 and p.spacing != ATR:
                lower = p.lower
                F[_STEP] = (anchor / lower) ** (1.0 / n) if kind == GEOMETRIC \
                    else (anchor - lower) / n
            F[_BASE] = anchor / F[_STEP] ** n if kind == GEOMETRIC else anchor - n * F[_STEP]
            F[_TOPP] = anchor
            I[_TOPJ] = n
            I[_NS] = n
            # Shift the window up by as many slots above the anchor as the pool covers.
            h = 0
            rem = pool_q
            while h < n:
                q = _slot_qty(p, F, _price(F, I, n + h, p.tick))
                if q <= 0.0 or rem < q * (1.0 - 1e-9):
                    break
                rem -= q
                h += 1
            I[_J0] = h
        if reason == 1:
            counters[C_RECENTERS] += 1
    else:
        I[_J0] = new_j0
    ns = I[_NS]
    j0 = I[_J0]
    for k in range(ns):
        S[k, _BUY] = _price(F, I, j0 + k, p.tick)
        S[k, _SELL] = _price(F, I, j0 + k + 1, p.tick)
        S[k, _QTY] = _slot_qty(p, F, S[k, _BUY])
        SI[k, _STATE] = _FLAT if S[k, _BUY] > 0.0 else _DISABLED
    # Slots above the price hold inventory: from the pool where it covers them (at the pool's
    # average cost), otherwise they buy it again (a buy above the price fills at the next open).
    avg = pool_c / pool_q if pool_q > 0.0 else 0.0
    hold_from = ns
    if p.mode == LOWER_ONLY:
        hold_from = n if reason != 2 else ns
    for k in range(ns):
        above = S[k, _BUY] > close if p.mode == RANGE or reason == 2 else k + j0 >= hold_from
        if not above or SI[k, _STATE] == _DISABLED:
            continue
        q = S[k, _QTY]
        if q > 0.0 and pool_q >= q * (1.0 - 1e-9):
            take = min(q, pool_q)
            SI[k, _STATE] = _HOLD
            S[k, _COST] = avg * take
            pool_q -= take
            pool_c -= avg * take
        elif reason != 0:
            SI[k, _FLAG] = _FLAG_REBUY
    # What no slot took stays as dust; sell it at the next open when an exchange would take it.
    if pool_q < 1e-12:
        pool_q = 0.0
        pool_c = 0.0
    money[M_DUST_QTY] = pool_q
    money[M_DUST_COST] = pool_c
    sellable = floor_lot_nb(pool_q, p.lot)
    F[_MKTQ] = sellable if (sellable > 0.0 and sellable * close >= p.min_notional) else 0.0
    for k in range(ns):
        if _place_slot_order(k, bar, close, p, S, SI, F, I, orders, counters) < 0:
            return False
    I[_KB] = _find_kb(SI, ns - 1)
    I[_KS] = _find_ks(SI, 0, ns)
    I[_GENBUYS] = I[_NBUYS]
    return True


@njit(cache=True, nogil=True, inline="always")
def _quiet_band(p, S, SI, F, I, H):
    """(qlo, qhi): a bar with low > qlo and high < qhi fills nothing and triggers nothing."""
    inf = np.inf
    if p.hedge_ratio > 0.0 and (H[_HQ] > 0.0 or H[_HPEND] != 0.0):
        return inf, -inf  # an open hedge: funding, targets and its liquidation, every bar
    if I[_STOPPED] != 0:
        return -inf, inf
    if F[_MKTQ] > 0.0:
        return inf, -inf
    ns = I[_NS]
    if I[_WAIT] > 0:
        # An order held back by the dead zone waits for the price to move: every close counts.
        # One refused for want of cash can only go once a fill or a cancel frees cash, and those
        # happen on active bars: it does not keep the quiet bars busy.
        for k in range(ns):
            if SI[k, _FLAG] == _FLAG_DEFER:
                return inf, -inf
    kb = I[_KB]
    ks = I[_KS]
    # touch: a buy at P fills when low <= P, so the bar is quiet while low > P;
    # through: it fills when low < P - tick, quiet while low >= P - tick.
    qlo = -inf
    if kb >= 0:
        qlo = np.nextafter(S[kb, _BUY] - p.tick, -inf) if p.fill_through else S[kb, _BUY]
    qhi = inf
    if ks < ns:
        qhi = np.nextafter(S[ks, _SELL] + p.tick, inf) if p.fill_through else S[ks, _SELL]
    if p.stop_loss > 0.0:
        qlo = max(qlo, p.stop_loss)
    if p.take_profit > 0.0:
        qhi = min(qhi, p.take_profit)
    bottom = _price(F, I, I[_J0], p.tick)
    top = _price(F, I, I[_J0] + ns, p.tick)
    if p.trailing == TRAIL_UP or p.trailing == TRAIL_BOTH:
        qhi = min(qhi, np.nextafter(top, inf))
    if p.mode == RANGE and (p.trailing == TRAIL_DOWN or p.trailing == TRAIL_BOTH):
        qlo = max(qlo, np.nextafter(bottom, -inf))
    if p.hedge_ratio > 0.0 and F[_POS] > 0.0:
        qlo = max(qlo, np.nextafter(bottom, -inf))  # a close below the lowest level opens the hedge
    if p.recenter > 0.0:
        qhi = min(qhi, np.nextafter(top + p.recenter * (top - _price(F, I, I[_J0] + ns - 1, p.tick)), inf))
        if p.mode == RANGE:
            d = _price(F, I, I[_J0] + 1, p.tick) - bottom
            qlo = max(qlo, np.nextafter(bottom - p.recenter * d, -inf))
    return qlo, qhi


@njit(cache=True, nogil=True, inline="always")
def _decide_regeneration(close, p, S, SI, F, I):
    """At the close: 0 keep the grid, 1 recenter, 2 trail (new j0 in the second value)."""
    ns = I[_NS]
    j0 = I[_J0]
    tick = p.tick
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
    consumed = p.mode == LOWER_ONLY and p.consumed > 0.0 and I[_GENBUYS] > 0 \
        and I[_NBUYS] < (1.0 - p.consumed) * I[_GENBUYS]
    if consumed and F[_CASH] - F[_LOCKED] >= F[_QUOTE]:
        return 1, j0
    return 0, j0


@njit(cache=True, nogil=True, inline="always")
def _decide_at_close(i, c, atr_now, touched, nt, p, S, SI, F, I, orders, counters, money):
    """decide, at the close of bar i: trail or recenter the grid, or else place the follow-ups of
    the slots in ``touched[:nt]`` (those that filled) and retry the orders that had to wait
    (dead zone, balance). The backtest loop and the live runtime both call it. False when the
    order log is full (a bug: callers make room first)."""
    ns = I[_NS]
    what, j_new = _decide_regeneration(c, p, S, SI, F, I)
    if what != 0:
        if what == 2:
            counters[C_TRAIL_UP if j_new > I[_J0] else C_TRAIL_DOWN] += 1
        return _regenerate(i, c, atr_now, what, j_new, p, S, SI, F, I, orders, counters, money)
    kb = I[_KB]
    ks = I[_KS]
    n_wait = ns if I[_WAIT] > 0 else 0
    for m in range(nt + n_wait):
        k = touched[m] if m < nt else m - nt
        if m >= nt and (SI[k, _ORDER] >= 0 or not (SI[k, _FLAG] == _FLAG_RETRY or SI[k, _FLAG] == _FLAG_DEFER)):
            continue
        r = _place_slot_order(k, i, c, p, S, SI, F, I, orders, counters)
        if r < 0:
            return False
        if r > 0:
            if SI[k, _STATE] == _FLAT:
                kb = max(kb, k)
            else:
                ks = min(ks, k)
    I[_KB] = _find_kb(SI, min(kb, ns - 1))
    I[_KS] = _find_ks(SI, ks, ns)
    return True


@hot_njit
def _sell_dust(bar, t, fill_price, p, F, I, trades, counters, money):
    """The market sell of leftover inventory (F[_MKTQ]) decided at the last close, filled."""
    q = F[_MKTQ]
    value = fill_price * q
    fee = value * p.taker_fee
    dq = money[M_DUST_QTY]
    cost = money[M_DUST_COST] * (q / dq) if dq > 0.0 else 0.0
    pnl = value - fee - cost
    F[_CASH] += value - fee
    F[_POS] -= q
    F[_COSTT] -= cost
    money[M_DUST_QTY] = dq - q
    money[M_DUST_COST] -= cost
    money[M_FEES] += fee
    money[M_TURNOVER] += value
    money[M_REALIZED] += pnl
    counters[C_FILLS] += 1
    counters[C_SELLS] += 1
    F[_MKTQ] = 0.0
    return _record_trade(trades, I, bar, t, -1, fill_price, q, fee, -1, REBALANCE_SELL, pnl, F)


# ---- the strategy as the live runtime drives it (ARCHITECTURE.md: decide / on_fill) ------------
# The backtest loop above runs the same functions; here the fills come from an exchange.


@hot_njit
def start_nb(bar, close, atr_now, p, S, SI, F, I, orders, counters, money):
    """decide, for the first time: lay the grid at the close of ``bar``."""
    return _regenerate(bar, close, atr_now, 0, 0, p, S, SI, F, I, orders, counters, money)


@hot_njit
def on_fill_nb(oid, bar, t, fill_price, p, S, SI, F, I, orders, trades, counters, money, touched, nt):
    """on_fill: order ``oid`` (its row in the order log) filled in full at ``fill_price``.
    Returns the new count of slots touched since the last decide, or -1 when the order is not
    a resting order of this grid (already filled, cancelled, or unknown)."""
    if oid < 0 or oid >= I[_NOR] or orders[oid]["status"] != ORDER_OPEN:
        return -1
    k = orders[oid]["level"] - I[_J0]
    if k < 0 or k >= I[_NS] or SI[k, _ORDER] != oid:
        return -1
    if orders[oid]["side"] == 1:
        ok = _fill_buy(k, bar, t, fill_price, p, S, SI, F, I, orders, trades, counters, money)
    else:
        ok = _fill_sell(k, bar, t, fill_price, p, S, SI, F, I, orders, trades, counters, money)
    if not ok:
        return -1
    touched[nt] = k
    return nt + 1


@hot_njit
def on_market_fill_nb(bar, t, fill_price, p, F, I, trades, counters, money):
    """on_fill of the market sell of leftover inventory (``market_qty``)."""
    if F[_MKTQ] <= 0.0:
        return False
    return _sell_dust(bar, t, fill_price, p, F, I, trades, counters, money)


@hot_njit
def decide_nb(bar, close, atr_now, touched, nt, p, S, SI, F, I, orders, counters, money):
    """decide at the close of ``bar`` after the fills given to ``on_fill_nb``: the orders it
    wants resting are then the open rows of the order log (and ``market_qty`` to sell)."""
    if I[_STOPPED] != 0:
        return True
    return _decide_at_close(bar, close, atr_now, touched, nt, p, S, SI, F, I, orders, counters, money)


def market_qty(F) -> float:
    """Leftover inventory decided to be sold at market (0 when none)."""
    return float(F[_MKTQ])


def order_capacity_needed(p: SpotGridParams) -> int:
    """Free rows the order log needs before a decide (a new grid, or one order per slot)."""
    return 2 * (p.levels + 1) + 4


@hot_njit
def _hedge_at_open(i, t, o, p, S, SI, F, I, H, funding, tiers, orders, trades, counters, money, touched, nt):
    """At the open of bar i: funding on the short, then the hedge order decided at the last
    close (a market order: taker fee, adverse slippage). Closing in profit spends the profit
    on the worst spot lots (highest buys first) while it covers the loss each one realizes.
    Returns (ok, number of touched slots)."""
    ok = True
    if H[_HQ] > 0.0 and funding[i] != 0.0:
        got = funding[i] * H[_HQ] * o  # a short receives positive funding
        H[_HM] += got
        money[M_HEDGE_FUNDING] += got
        H[_HLIQ] = liquidation_price_nb(tiers, -1, H[_HQ], H[_HE], H[_HM])
    pend = H[_HPEND]
    H[_HPEND] = 0.0
    if pend > 0.0:
        fill = market_fill_nb(False, o, p.slippage)  # the hedge's short opens with a market sell
        # as much of the wanted size as the free cash (the reserve included) can margin
        afford = floor_lot_nb((F[_CASH] - F[_LOCKED]) / (fill * (1.0 / p.hedge_leverage + p.hedge_fee)), p.lot)
        if afford < pend:
            counters[C_HEDGE_CUT] += 1
            if afford <= 0.0 or afford * fill < p.min_notional:
                return ok, nt
            pend = afford
        value = fill * pend
        fee = value * p.hedge_fee
        margin = value / p.hedge_leverage
        counters[C_HEDGE_SCALES if H[_HQ] > 0.0 else C_HEDGE_OPENS] += 1
        F[_CASH] -= margin + fee
        H[_HE] = (H[_HE] * H[_HQ] + fill * pend) / (H[_HQ] + pend)
        H[_HQ] += pend
        H[_HM] += margin
        H[_HLIQ] = liquidation_price_nb(tiers, -1, H[_HQ], H[_HE], H[_HM])
        money[M_FEES] += fee
        money[M_HEDGE_PNL] -= fee
        ok = _record_trade(trades, I, i, t, -1, fill, pend, fee, -1, HEDGE_OPEN_SHORT, -fee, F)
    elif pend < 0.0 and H[_HQ] > 0.0:
        q = H[_HQ]
        fill = market_fill_nb(True, o, p.slippage)
        fee = fill * q * p.hedge_fee
        gain = (H[_HE] - fill) * q - fee
        F[_CASH] += H[_HM] + gain
        money[M_FEES] += fee
        money[M_HEDGE_PNL] += gain
        counters[C_HEDGE_CLOSES] += 1
        H[_HQ] = 0.0
        H[_HE] = 0.0
        H[_HM] = 0.0
        H[_HLIQ] = np.inf
        ok = _record_trade(trades, I, i, t, 1, fill, q, fee, -1, HEDGE_CLOSE_SHORT, gain, F) and ok
        # the hedge's net profit so far that no lot has used yet pays for selling the bag down
        avail = money[M_HEDGE_PNL] - money[M_OFFSET_BY_HEDGE]
        sp = market_fill_nb(False, o, p.slippage)
        for k in range(I[_NS] - 1, -1, -1):
            if SI[k, _STATE] != _HOLD:
                continue
            qk = S[k, _QTY]
            value = sp * qk
            fee_k = value * p.taker_fee
            loss = S[k, _COST] - (value - fee_k)
            if loss <= 0.0:
                continue  # not under water: the grid sells it at its level
            if loss > avail:
                break
            _cancel_order(orders, SI[k, _ORDER], i)
            SI[k, _ORDER] = -1
            SI[k, _STATE] = _FLAT
            F[_CASH] += value - fee_k
            F[_POS] -= qk
            F[_COSTT] -= S[k, _COST]
            S[k, _COST] = 0.0
            avail -= loss
            money[M_OFFSET_BY_HEDGE] += loss
            money[M_REALIZED] -= loss
            money[M_FEES] += fee_k
            money[M_TURNOVER] += value
            counters[C_BAG_REDUCTIONS] += 1
            counters[C_FILLS] += 1
            counters[C_SELLS] += 1
            ok = _record_trade(trades, I, i, t, -1, sp, qk, fee_k, I[_J0] + k, BAG_REDUCE, -loss, F) and ok
            touched[nt] = k
            nt += 1
    return ok, nt


@hot_njit
def _hedge_liquidation(i, t, hi, p, F, I, H, trades, counters, money):
    """A bar whose high reaches the short's liquidation price loses its isolated margin."""
    if H[_HQ] > 0.0 and hi >= H[_HLIQ]:
        lost = H[_HM]
        q = H[_HQ]
        money[M_HEDGE_PNL] -= lost
        money[M_REALIZED] -= lost
        counters[C_HEDGE_LIQUIDATIONS] += 1
        H[_HQ] = 0.0
        H[_HE] = 0.0
        H[_HM] = 0.0
        H[_HPEND] = 0.0
        price = H[_HLIQ]
        H[_HLIQ] = np.inf
        return _record_trade(trades, I, i, t, 1, price, q, 0.0, -1, HEDGE_LIQUIDATION, -lost, F)
    return True


@hot_njit
def _hedge_decide(c, atr_now, ema_now, p, F, I, H):
    """At the close: open the hedge below the grid's lowest level, scale it a step for each
    further spacing down, close it at its profit target or on a reversal."""
    inv = F[_POS]
    reversal = not np.isnan(ema_now) and not np.isnan(atr_now) and c > ema_now + p.hedge_reversal_k * atr_now
    if H[_HQ] == 0.0:
        bottom = _price(F, I, I[_J0], p.tick)
        # not while the reversal that would close it holds: it would only churn
        if I[_STOPPED] == 0 and inv > 0.0 and c < bottom and not reversal:
            q = floor_lot_nb(p.hedge_ratio * inv, p.lot)
            if q > 0.0 and q * c >= p.min_notional:
                H[_HPEND] = q
                H[_HLAST] = c
                H[_HFRAC] = p.hedge_ratio
        return
    notional = H[_HE] * H[_HQ]
    if (H[_HE] - c) * H[_HQ] >= p.hedge_tp * notional or reversal or I[_STOPPED] != 0:
        H[_HPEND] = -H[_HQ]
        return
    spacing = _price(F, I, I[_J0] + 1, p.tick) - _price(F, I, I[_J0], p.tick)
    if c < H[_HLAST] - spacing and H[_HFRAC] < p.hedge_max:
        frac = min(p.hedge_max, H[_HFRAC] + p.hedge_step)
        add = floor_lot_nb(frac * inv - H[_HQ], p.lot)
        H[_HFRAC] = frac
        H[_HLAST] = c
        if add > 0.0 and add * c >= p.min_notional:
            H[_HPEND] = add


@njit(cache=True, nogil=True)
def new_state(p, first_price):
    """Fresh grid state (S, SI, F, I): the arrays the kernel and the strategy functions share.
    Keeping them outside the kernel lets a run pause and go on (when its logs fill up) and lets
    the live runtime drive the same decisions."""
    ns_cap = p.levels + 1
    S = np.zeros((ns_cap, 4))
    SI = np.zeros((ns_cap, 3), dtype=np.int64)
    SI[:, _ORDER] = -1
    F = np.zeros(N_F)
    I = np.zeros(12, dtype=np.int64)
    H = np.zeros(N_HEDGE)
    H[_HLIQ] = np.inf
    F[_CASH] = p.capital
    F[_RESERVED] = p.capital * p.reserve_ratio
    F[_QUOTE] = p.capital * (1.0 - p.reserve_ratio) / p.levels
    if p.qty_mode == 1:
        mid = (p.lower + p.upper) / 2.0 if p.upper > 0.0 else first_price
        raw = p.capital * (1.0 - p.reserve_ratio) / p.levels / mid
        F[_BASEQ] = np.floor(raw / p.lot) * p.lot if p.lot > 0.0 else raw
    return S, SI, F, I, H


def record_counts(I) -> tuple[int, int]:
    """(trades, orders) written so far."""
    return int(I[_NTR]), int(I[_NOR])


@njit(cache=True, nogil=True)
def spot_grid_nb(time, open_, high, low, close, atr, ema, funding, tiers, p, S_io, SI_io, F_io, I_io, H_io, trades,
                 orders, equity, cash_out, position_out, cost_out, counters, money, first):
    """Run the spot grid from bar ``first`` (0 for a new run, with state from ``new_state``),
    filling ``trades`` and ``orders`` (TRADE_DTYPE and ORDER_DTYPE record arrays), the per-bar
    ``equity``, ``cash_out``, ``position_out`` and ``cost_out`` (cost basis of the position, buy
    fees included), ``counters`` and ``money``.

    Returns the bar to go on from: ``len(close)`` when done; an earlier bar when the trade or
    order log has no room for the worst case of one more bar (the caller grows the logs and
    calls again from there); -1 if a log overflowed anyway (a bug). ``ema``, ``funding`` (rate
    settled at each bar's open) and ``tiers`` serve the optional perpetual short hedge; ``H`` is
    its state (see ``new_state``).

    The state (S, SI, F, I) is worked on in arrays of constant shape allocated here and written
    back on return: LLVM then knows their strides and that they cannot alias the logs, which
    makes the 200-level grid 1.5x faster than working on the caller's arrays."""
    ns_cap = p.levels + 1
    S = np.zeros((ns_cap, 4))
    SI = np.zeros((ns_cap, 3), dtype=np.int64)
    F = np.zeros(N_F)
    I = np.zeros(12, dtype=np.int64)
    H = np.zeros(N_HEDGE)
    S[:] = S_io
    SI[:] = SI_io
    F[:] = F_io
    I[:] = I_io
    H[:] = H_io
    nxt = _run(time, open_, high, low, close, atr, ema, funding, tiers, p, S, SI, F, I, H, trades, orders, equity,
               cash_out, position_out, cost_out, counters, money, first, np.empty(ns_cap, dtype=np.int64))
    S_io[:] = S
    SI_io[:] = SI
    F_io[:] = F
    I_io[:] = I
    H_io[:] = H
    return nxt


@hot_njit
def _run(time, open_, high, low, close, atr, ema, funding, tiers, p, S, SI, F, I, H, trades, orders, equity,
         cash_out, position_out, cost_out, counters, money, first, touched):
    n = len(close)
    ns_cap = p.levels + 1
    need_trades = 2 * ns_cap + 8  # each slot fills once a bar (and may be sold down), market orders, stops
    need_orders = 2 * ns_cap + 4  # a new grid, or follow-ups and retries, one per slot
    start = p.start_bar
    if first <= start:
        for i in range(min(start, n)):
            equity[i] = p.capital
            cash_out[i] = p.capital
            position_out[i] = 0.0
            cost_out[i] = 0.0
        if start >= n:
            return n
        if len(orders) < need_orders or len(trades) < need_trades:
            return 0
        if not _regenerate(start, close[start], atr[start], 0, 0, p, S, SI, F, I, orders, counters, money):
            return -1
        equity[start] = F[_CASH] + F[_POS] * close[start]
        cash_out[start] = F[_CASH]
        position_out[start] = F[_POS]
        cost_out[start] = F[_COSTT]
        first = start + 1
    qlo, qhi = _quiet_band(p, S, SI, F, I, H)
    tick_t = p.tick if p.fill_through else 0.0
    budget = 0  # active bars that surely fit in the logs; counted down, then recounted
    for i in range(first, n):
        lo = low[i]
        hi = high[i]
        if lo > qlo and hi < qhi:
            c = close[i]
            cash_out[i] = F[_CASH]
            position_out[i] = F[_POS]
            cost_out[i] = F[_COSTT]
            equity[i] = F[_CASH] + F[_POS] * c
            continue
        budget -= 1
        if budget < 0:  # recount the room left from what the bars really used
            budget = min((len(trades) - I[_NTR]) // need_trades, (len(orders) - I[_NOR]) // need_orders) - 1
            if budget < 0:
                return i
        counters[C_ACTIVE_BARS] += 1
        op = open_[i]
        c = close[i]
        t = time[i]
        ok = True
        nt = 0
        ns = I[_NS]
        if p.hedge_ratio > 0.0:
            ok, nt = _hedge_at_open(i, t, op, p, S, SI, F, I, H, funding, tiers, orders, trades, counters, money,
                                    touched, nt)
        if I[_STOPPED] == 0:
            # A market sell of leftover inventory decided at the last close fills at this open.
            if F[_MKTQ] > 0.0:
                ok = _sell_dust(i, t, market_fill_nb(False, op, p.slippage), p, F, I, trades, counters, money)
            # a bar that opens beyond a trigger stops the grid at the open
            reason = 1 if (p.stop_loss > 0.0 and op <= p.stop_loss) else (
                2 if (p.take_profit > 0.0 and op >= p.take_profit) else 0)
            if reason:
                ok = _stop_grid(i, t, market_fill_nb(False, op, p.slippage), reason, p, S, SI, F, I, orders, trades,
                                counters, money) and ok
        down_first = down_first_nb(op, c)
        for leg in range(2):
            if I[_STOPPED] != 0:
                break
            if (leg == 0) == down_first:
                # Down leg: buys from the highest, then the stop-loss when the low reaches it.
                floor_p = lo
                hit_stop = p.stop_loss > 0.0 and lo <= p.stop_loss
                if hit_stop:
                    floor_p = p.stop_loss
                k = I[_KB]
                while k >= 0:
                    bp = S[k, _BUY]
                    if bp < floor_p or not reached_nb(True, bp, lo, tick_t):
                        break
                    if SI[k, _STATE] == _FLAT and SI[k, _ORDER] >= 0:
                        ok = _fill_buy(k, i, t, limit_fill_nb(True, op, bp), p, S, SI, F, I, orders, trades,
                                       counters, money) and ok
                        touched[nt] = k
                        nt += 1
                    k -= 1
                if hit_stop:
                    ok = _stop_grid(i, t, stop_fill_nb(True, op, p.stop_loss, p.slippage), 1, p, S, SI, F, I, orders,
                                    trades, counters, money) and ok
            else:
                ceil_p = hi
                hit_tp = p.take_profit > 0.0 and hi >= p.take_profit
                if hit_tp:
                    ceil_p = p.take_profit
                k = I[_KS]
                while k < ns:
                    sp = S[k, _SELL]
                    if sp > ceil_p or not reached_nb(False, sp, hi, tick_t):
                        break
                    if SI[k, _STATE] == _HOLD and SI[k, _ORDER] >= 0:
                        ok = _fill_sell(k, i, t, limit_fill_nb(False, op, sp), p, S, SI, F, I, orders, trades,
                                        counters, money) and ok
                        touched[nt] = k
                        nt += 1
                    k += 1
                if hit_tp:
                    ok = _stop_grid(i, t, market_fill_nb(False, p.take_profit, p.slippage), 2, p, S, SI, F, I, orders,
                                    trades, counters, money) and ok
        if p.hedge_ratio > 0.0:
            ok = _hedge_liquidation(i, t, hi, p, F, I, H, trades, counters, money) and ok
        if not ok:
            return -1
        # The decision at the close of bar i: its orders rest from bar i + 1.
        if I[_STOPPED] == 0 and not _decide_at_close(i, c, atr[i], touched, nt, p, S, SI, F, I, orders, counters,
                                                     money):
            return -1
        if p.hedge_ratio > 0.0:
            _hedge_decide(c, atr[i], ema[i], p, F, I, H)
        qlo, qhi = _quiet_band(p, S, SI, F, I, H)
        cash_out[i] = F[_CASH]
        position_out[i] = F[_POS]
        cost_out[i] = F[_COSTT]
        equity[i] = F[_CASH] + F[_POS] * c + H[_HM] + (H[_HE] - c) * H[_HQ]
    return n
