"""The hedged grid's short on the perpetual: opening and scaling it at the open after a close
below the grid, its liquidation inside a bar, and the decision at each close to add or close."""

from __future__ import annotations

import numpy as np

from engine.kernels.grid import floor_lot_nb
from engine.kernels.jit import hot_njit
from engine.kernels.matching import market_fill_nb
from engine.kernels.perp import liquidation_price_nb
from engine.kernels.spot_grid.fills import _cancel_order, _price, _record_trade
from engine.kernels.spot_grid.layout import *  # (the state's names, the records, the settings)


@hot_njit
def _hedge_at_open(i, t, o, p, S, SI, F, I, H, funding, tiers, orders, trades, counters, money, touched, nt):
    """At the open of bar i: funding on the short, then the hedge order decided at the last
    close (a market order: taker fee, adverse slippage). Closing in profit spends the profit
    on the worst spot lots (highest buys first) while it covers the loss each one realizes.
    Returns (ok, number of touched slots)."""
    ok = True
    if H[H_QTY] > 0.0 and funding[i] != 0.0:
        got = funding[i] * H[H_QTY] * o  # a short receives positive funding
        H[H_MARGIN] += got
        money[M_HEDGE_FUNDING] += got
        H[H_LIQ_PRICE] = liquidation_price_nb(tiers, -1, H[H_QTY], H[H_ENTRY], H[H_MARGIN])
    pend = H[H_PENDING]
    H[H_PENDING] = 0.0
    if pend > 0.0:
        fill = market_fill_nb(False, o, p.slippage)  # the hedge's short opens with a market sell
        # as much of the wanted size as the free cash (the reserve included) can margin
        afford = floor_lot_nb((F[F_CASH] - F[F_LOCKED]) / (fill * (1.0 / p.hedge_leverage + p.hedge_fee)), p.lot)
        if afford < pend:
            counters[C_HEDGE_CUT] += 1
            if afford <= 0.0 or afford * fill < p.min_notional:
                return ok, nt
            pend = afford
        value = fill * pend
        fee = value * p.hedge_fee
        margin = value / p.hedge_leverage
        counters[C_HEDGE_SCALES if H[H_QTY] > 0.0 else C_HEDGE_OPENS] += 1
        F[F_CASH] -= margin + fee
        H[H_ENTRY] = (H[H_ENTRY] * H[H_QTY] + fill * pend) / (H[H_QTY] + pend)
        H[H_QTY] += pend
        H[H_MARGIN] += margin
        H[H_LIQ_PRICE] = liquidation_price_nb(tiers, -1, H[H_QTY], H[H_ENTRY], H[H_MARGIN])
        money[M_FEES] += fee
        money[M_HEDGE_PNL] -= fee
        ok = _record_trade(trades, I, i, t, -1, fill, pend, fee, -1, HEDGE_OPEN_SHORT, -fee, F)
    elif pend < 0.0 and H[H_QTY] > 0.0:
        q = H[H_QTY]
        fill = market_fill_nb(True, o, p.slippage)
        fee = fill * q * p.hedge_fee
        gain = (H[H_ENTRY] - fill) * q - fee
        F[F_CASH] += H[H_MARGIN] + gain
        money[M_FEES] += fee
        money[M_HEDGE_PNL] += gain
        counters[C_HEDGE_CLOSES] += 1
        H[H_QTY] = 0.0
        H[H_ENTRY] = 0.0
        H[H_MARGIN] = 0.0
        H[H_LIQ_PRICE] = np.inf
        ok = _record_trade(trades, I, i, t, 1, fill, q, fee, -1, HEDGE_CLOSE_SHORT, gain, F) and ok
        # the hedge's net profit so far that no lot has used yet pays for selling the bag down
        avail = money[M_HEDGE_PNL] - money[M_OFFSET_BY_HEDGE]
        sp = market_fill_nb(False, o, p.slippage)
        for k in range(I[I_SLOTS] - 1, -1, -1):
            if SI[k, SI_STATE] != SLOT_HOLD:
                continue
            qk = S[k, S_QTY]
            value = sp * qk
            fee_k = value * p.taker_fee
            loss = S[k, S_COST] - (value - fee_k)
            if loss <= 0.0:
                continue  # not under water: the grid sells it at its level
            if loss > avail:
                break
            _cancel_order(orders, SI[k, SI_ORDER], i)
            SI[k, SI_ORDER] = -1
            SI[k, SI_STATE] = SLOT_FLAT
            F[F_CASH] += value - fee_k
            F[F_POSITION] -= qk
            F[F_COST] -= S[k, S_COST]
            S[k, S_COST] = 0.0
            avail -= loss
            money[M_OFFSET_BY_HEDGE] += loss
            money[M_REALIZED] -= loss
            money[M_FEES] += fee_k
            money[M_TURNOVER] += value
            counters[C_BAG_REDUCTIONS] += 1
            counters[C_FILLS] += 1
            counters[C_SELLS] += 1
            ok = _record_trade(trades, I, i, t, -1, sp, qk, fee_k, I[I_FIRST_LEVEL] + k, BAG_REDUCE, -loss, F) and ok
            touched[nt] = k
            nt += 1
    return ok, nt


@hot_njit
def _hedge_liquidation(i, t, hi, p, F, I, H, trades, counters, money):
    """A bar whose high reaches the short's liquidation price loses its isolated margin."""
    if H[H_QTY] > 0.0 and hi >= H[H_LIQ_PRICE]:
        lost = H[H_MARGIN]
        q = H[H_QTY]
        money[M_HEDGE_PNL] -= lost
        money[M_REALIZED] -= lost
        counters[C_HEDGE_LIQUIDATIONS] += 1
        H[H_QTY] = 0.0
        H[H_ENTRY] = 0.0
        H[H_MARGIN] = 0.0
        H[H_PENDING] = 0.0
        price = H[H_LIQ_PRICE]
        H[H_LIQ_PRICE] = np.inf
        return _record_trade(trades, I, i, t, 1, price, q, 0.0, -1, HEDGE_LIQUIDATION, -lost, F)
    return True


@hot_njit
def _hedge_decide(c, atr_now, ema_now, p, F, I, H):
    """At the close: open the hedge below the grid's lowest level, scale it a step for each
    further spacing down, close it at its profit target or on a reversal."""
    inv = F[F_POSITION]
    reversal = not np.isnan(ema_now) and not np.isnan(atr_now) and c > ema_now + p.hedge_reversal_k * atr_now
    if H[H_QTY] == 0.0:
        bottom = _price(F, I, I[I_FIRST_LEVEL], p.tick)
        # not while the reversal that would close it holds: it would only churn
        if I[I_STOPPED] == 0 and inv > 0.0 and c < bottom and not reversal:
            q = floor_lot_nb(p.hedge_ratio * inv, p.lot)
            if q > 0.0 and q * c >= p.min_notional:
                H[H_PENDING] = q
                H[H_LAST_ADD] = c
                H[H_SHARE] = p.hedge_ratio
        return
    notional = H[H_ENTRY] * H[H_QTY]
    if (H[H_ENTRY] - c) * H[H_QTY] >= p.hedge_tp * notional or reversal or I[I_STOPPED] != 0:
        H[H_PENDING] = -H[H_QTY]
        return
    spacing = _price(F, I, I[I_FIRST_LEVEL] + 1, p.tick) - _price(F, I, I[I_FIRST_LEVEL], p.tick)
    if c < H[H_LAST_ADD] - spacing and H[H_SHARE] < p.hedge_max:
        frac = min(p.hedge_max, H[H_SHARE] + p.hedge_step)
        add = floor_lot_nb(frac * inv - H[H_QTY], p.lot)
        H[H_SHARE] = frac
        H[H_LAST_ADD] = c
        if add > 0.0 and add * c >= p.min_notional:
            H[H_PENDING] = add
