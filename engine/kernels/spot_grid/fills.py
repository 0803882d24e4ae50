"""What a fill does to the spot grid's state: buys and sells of a slot, their records, the orders
a slot places and holds back, selling everything at a stop, selling the dust. ``on_fill_nb``
and ``on_market_fill_nb`` are the runtime's way in."""

from __future__ import annotations

from numba import njit

from engine.kernels.grid import OPEN_END, floor_lot_nb, lattice_price_nb
from engine.kernels.jit import hot_njit
from engine.kernels.spot_grid.layout import *  # (the state's names, the records, the settings)


@njit(cache=True, nogil=True, inline="always")
def _price(F, I, j, tick):
    return lattice_price_nb(I[I_SPACING], F[F_LATTICE_BASE], F[F_LATTICE_STEP], j, I[I_TOP_LEVEL], F[F_TOP_PRICE], tick)


@hot_njit
def _slot_qty(p, F, price):
    if p.qty_mode == 0:
        return floor_lot_nb(F[F_SLOT_QUOTE] / price, p.lot)
    return F[F_SLOT_BASE_QTY]


@hot_njit
def _record_trade(trades, I, bar, t, side, price, qty, fee, level, role, pnl, F):
    n = I[I_TRADES]
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
    r["cash"] = F[F_CASH]
    r["position"] = F[F_POSITION]
    r["cost"] = F[F_COST]
    I[I_TRADES] = n + 1
    return True


@hot_njit
def _cancel_order(orders, oid, bar):
    if oid >= 0:
        orders[oid]["end"] = bar
        orders[oid]["status"] = ORDER_CANCELLED


@njit(cache=True, nogil=True, inline="always")
def _hold_back(k, flag, counter, SI, I, counters):
    """Slot k's order waits (dead zone: FLAG_DEFER, balance: FLAG_RETRY): counted once when it
    starts waiting for that reason; I[I_WAITING] counts the slots waiting for any reason."""
    current = SI[k, SI_FLAG]
    if current != flag:
        counters[counter] += 1
        if current != FLAG_RETRY and current != FLAG_DEFER:
            I[I_WAITING] += 1
        SI[k, SI_FLAG] = flag


@hot_njit
def _place_slot_order(k, bar, close, p, S, SI, F, I, orders, counters):
    """Decide the order slot k wants (buy when flat, sell when holding) and place it.
    Returns 1 placed, 0 not placed (deferred, refused or nothing to do), -1 order log full."""
    st = SI[k, SI_STATE]
    if st == SLOT_FLAT:
        side = 1
        price = S[k, S_BUY]
    elif st == SLOT_HOLD:
        side = -1
        price = S[k, S_SELL]
    else:
        return 0
    qty = S[k, S_QTY]
    if p.dead_zone > 0.0 and abs(price - close) < p.dead_zone * close:
        _hold_back(k, FLAG_DEFER, C_DEFERRED, SI, I, counters)
        return 0
    if side == 1:
        if qty <= 0.0 or price * qty < p.min_notional:
            SI[k, SI_STATE] = SLOT_DISABLED
            counters[C_REFUSED_MIN] += 1
            if SI[k, SI_FLAG] == FLAG_RETRY or SI[k, SI_FLAG] == FLAG_DEFER:
                I[I_WAITING] -= 1
            SI[k, SI_FLAG] = FLAG_NONE
            return 0
        need = price * qty * (1.0 + p.fee)
        if F[F_CASH] - F[F_LOCKED] - F[F_RESERVED] < need * (1.0 - 1e-12):
            _hold_back(k, FLAG_RETRY, C_REFUSED_BALANCE, SI, I, counters)
            return 0
        F[F_LOCKED] += need
    oid = I[I_ORDERS]
    if oid >= len(orders):
        return -1
    o = orders[oid]
    o["price"] = price
    o["qty"] = qty
    o["side"] = side
    o["level"] = I[I_FIRST_LEVEL] + k
    if side == 1:
        o["role"] = REBUY if SI[k, SI_FLAG] == FLAG_REBUY else GRID_BUY
        I[I_BUYS] += 1
    else:
        o["role"] = GRID_SELL
    o["placed"] = bar
    o["end"] = OPEN_END
    o["status"] = ORDER_OPEN
    I[I_ORDERS] = oid + 1
    counters[C_ORDERS] += 1
    if SI[k, SI_FLAG] == FLAG_RETRY or SI[k, SI_FLAG] == FLAG_DEFER:
        I[I_WAITING] -= 1
    SI[k, SI_FLAG] = FLAG_NONE
    SI[k, SI_ORDER] = oid
    return 1


@hot_njit
def _find_kb(SI, start):
    k = start
    while k >= 0 and not (SI[k, SI_STATE] == SLOT_FLAT and SI[k, SI_ORDER] >= 0):
        k -= 1
    return k


@hot_njit
def _find_ks(SI, start, ns):
    k = start if start > 0 else 0
    while k < ns and not (SI[k, SI_STATE] == SLOT_HOLD and SI[k, SI_ORDER] >= 0):
        k += 1
    return k


@hot_njit
def _fill_buy(k, bar, t, fill_price, p, S, SI, F, I, orders, trades, counters, money):
    q = S[k, S_QTY]
    oid = SI[k, SI_ORDER]
    role = orders[oid]["role"]
    orders[oid]["end"] = bar
    orders[oid]["status"] = ORDER_FILLED
    F[F_LOCKED] -= S[k, S_BUY] * q * (1.0 + p.fee)
    value = fill_price * q
    fee = value * p.fee
    F[F_CASH] -= value + fee
    F[F_POSITION] += q
    S[k, S_COST] = value + fee
    F[F_COST] += value + fee
    money[M_FEES] += fee
    money[M_TURNOVER] += value
    SI[k, SI_STATE] = SLOT_HOLD
    SI[k, SI_ORDER] = -1
    SI[k, SI_FLAG] = FLAG_NONE
    I[I_BUYS] -= 1
    counters[C_FILLS] += 1
    counters[C_BUYS] += 1
    return _record_trade(trades, I, bar, t, 1, fill_price, q, fee, I[I_FIRST_LEVEL] + k, role, 0.0, F)


@hot_njit
def _fill_sell(k, bar, t, fill_price, p, S, SI, F, I, orders, trades, counters, money):
    q = S[k, S_QTY]
    oid = SI[k, SI_ORDER]
    orders[oid]["end"] = bar
    orders[oid]["status"] = ORDER_FILLED
    value = fill_price * q
    fee = value * p.fee
    pnl = value - fee - S[k, S_COST]
    F[F_CASH] += value - fee
    F[F_POSITION] -= q
    F[F_COST] -= S[k, S_COST]
    S[k, S_COST] = 0.0
    money[M_FEES] += fee
    money[M_TURNOVER] += value
    money[M_REALIZED] += pnl
    money[M_GRID_PROFIT] += pnl
    if pnl > 0.0 and p.bank_frac > 0.0:
        bank = min(p.bank_frac * pnl, p.bank_cap * p.capital - money[M_BANKED])
        if bank > 0.0:
            money[M_BANKED] += bank
            F[F_RESERVED] += bank
    SI[k, SI_STATE] = SLOT_FLAT
    SI[k, SI_ORDER] = -1
    counters[C_FILLS] += 1
    counters[C_SELLS] += 1
    counters[C_ROUND_TRIPS] += 1
    return _record_trade(trades, I, bar, t, -1, fill_price, q, fee, I[I_FIRST_LEVEL] + k, GRID_SELL, pnl, F)


@hot_njit
def _sell_everything(bar, t, price, role, p, S, SI, F, I, orders, trades, counters, money):
    """Stop: cancel every order and sell the whole position (slots and dust) as one taker fill."""
    ns = I[I_SLOTS]
    for k in range(ns):
        _cancel_order(orders, SI[k, SI_ORDER], bar)
        SI[k, SI_ORDER] = -1
        SI[k, SI_STATE] = SLOT_OFF
        S[k, S_COST] = 0.0
    F[F_LOCKED] = 0.0
    q = F[F_POSITION]
    ok = True
    if q > 0.0:
        value = price * q
        fee = value * p.taker_fee
        pnl = value - fee - F[F_COST]
        F[F_CASH] += value - fee
        F[F_POSITION] = 0.0
        F[F_COST] = 0.0
        money[M_DUST_QTY] = 0.0
        money[M_DUST_COST] = 0.0
        money[M_FEES] += fee
        money[M_TURNOVER] += value
        money[M_REALIZED] += pnl
        counters[C_FILLS] += 1
        counters[C_SELLS] += 1
        ok = _record_trade(trades, I, bar, t, -1, price, q, fee, -1, role, pnl, F)
    F[F_MARKET_SELL] = 0.0
    return ok


@hot_njit
def _stop_grid(bar, t, price, reason, p, S, SI, F, I, orders, trades, counters, money):
    I[I_STOPPED] = 1
    counters[C_STOP] = reason
    counters[C_STOP_BAR] = bar
    if p.stop_action == STOP_SELL_ALL:
        role = STOP_LOSS if reason == 1 else TAKE_PROFIT
        return _sell_everything(bar, t, price, role, p, S, SI, F, I, orders, trades, counters, money)
    for k in range(I[I_SLOTS]):
        _cancel_order(orders, SI[k, SI_ORDER], bar)
        SI[k, SI_ORDER] = -1
    F[F_LOCKED] = 0.0
    F[F_MARKET_SELL] = 0.0
    return True


@hot_njit
def _market_fill(bar, t, fill_price, p, F, I, trades, counters, money):
    """The market order decided at the last close (F[F_MARKET_SELL]), filled: the sell of
    leftover inventory, or the buy of an infinity grid's reserve (which joins that inventory)."""
    if F[F_MARKET_SELL] < 0.0:
        return _buy_reserve(bar, t, fill_price, p, F, I, trades, counters, money)
    q = F[F_MARKET_SELL]
    value = fill_price * q
    fee = value * p.taker_fee
    dq = money[M_DUST_QTY]
    cost = money[M_DUST_COST] * (q / dq) if dq > 0.0 else 0.0
    pnl = value - fee - cost
    F[F_CASH] += value - fee
    F[F_POSITION] -= q
    F[F_COST] -= cost
    money[M_DUST_QTY] = dq - q
    money[M_DUST_COST] -= cost
    money[M_FEES] += fee
    money[M_TURNOVER] += value
    money[M_REALIZED] += pnl
    counters[C_FILLS] += 1
    counters[C_SELLS] += 1
    F[F_MARKET_SELL] = 0.0
    return _record_trade(trades, I, bar, t, -1, fill_price, q, fee, -1, REBALANCE_SELL, pnl, F)


@hot_njit
def _buy_reserve(bar, t, fill_price, p, F, I, trades, counters, money):
    q = -F[F_MARKET_SELL]
    value = fill_price * q
    fee = value * p.taker_fee
    F[F_CASH] -= value + fee
    F[F_POSITION] += q
    F[F_COST] += value + fee
    money[M_DUST_QTY] += q
    money[M_DUST_COST] += value + fee
    money[M_FEES] += fee
    money[M_TURNOVER] += value
    counters[C_FILLS] += 1
    counters[C_BUYS] += 1
    F[F_MARKET_SELL] = 0.0
    return _record_trade(trades, I, bar, t, 1, fill_price, q, fee, -1, RESERVE_BUY, 0.0, F)


@hot_njit
def on_fill_nb(oid, bar, t, fill_price, p, S, SI, F, I, orders, trades, counters, money, touched, nt):
    """on_fill: order ``oid`` (its row in the order log) filled in full at ``fill_price``.
    Returns the new count of slots touched since the last decide, or -1 when the order is not
    a resting order of this grid (already filled, cancelled, or unknown)."""
    if oid < 0 or oid >= I[I_ORDERS] or orders[oid]["status"] != ORDER_OPEN:
        return -1
    k = orders[oid]["level"] - I[I_FIRST_LEVEL]
    if k < 0 or k >= I[I_SLOTS] or SI[k, SI_ORDER] != oid:
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
    """on_fill of the market order (``market_qty``: a sell of leftover inventory, or < 0 the buy
    of an infinity grid's reserve)."""
    if F[F_MARKET_SELL] == 0.0:
        return False
    return _market_fill(bar, t, fill_price, p, F, I, trades, counters, money)
