"""The adaptive grid's books of its lots: opening one, closing it (take-profit, stop, prune,
the rest of a side), funding, liquidation, each side's margin, average entry and liquidation
price; the ``on_*_fill_nb`` functions are the runtime's way in."""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.kernels.adaptive_grid.layout import *  # (the state's names, the records, the settings)
from engine.kernels.grid import floor_lot_nb, round_tick_nb
from engine.kernels.jit import hot_njit
from engine.kernels.perp import liquidation_price_nb


@njit(cache=True, nogil=True, inline="always")
def _record(trades, I, bar, t, side, price, qty, fee, label, pnl, F):
    n = I[I_NTR]
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
    r["long_qty"] = F[F_QTY_L]
    r["short_qty"] = F[F_QTY_S]
    I[I_NTR] = n + 1
    return True


@njit(cache=True, nogil=True)
def next_stop_nb(F, I, s):
    """The price of side ``s``'s next stop (its stage's trigger), NaN when the side holds nothing:
    the replay's mark and the runtime's books."""
    if F[F_QTY_L + s] <= 0.0:
        return np.nan
    return F[(F_TRIG1_L if s == LONG else F_TRIG1_S) + I[I_STAGE_L + s]]


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
    for m in range(I[I_NLOT_L + s]):
        q += L[s, m, L_QTY]
        cost += L[s, m, L_QTY] * L[s, m, L_ENTRY]
        oldest = min(oldest, L[s, m, L_TIME])
        worst = max(worst, L[s, m, L_ENTRY]) if s == LONG else min(worst, L[s, m, L_ENTRY])
        fund += L[s, m, L_FUNDING]
    F[F_MINT_L + s] = oldest
    F[F_WORST_L + s] = worst
    F[F_FUND_L + s] = fund
    if q < 1e-12:
        q = 0.0
        cost = 0.0
        # (a side gone flat keeps its stop order to the close, as the exchange does: it fires on
        # a lot opened later in the bar; the close clears it, or a liquidation, which cancels it)
    if s == LONG:
        F[F_QTY_L] = q
        F[F_COST_L] = cost
        F[F_LIQ_L] = liquidation_price_nb(tiers, 1, q, F[F_XE_L], F[F_MARGIN_L]) if q > 0.0 else 0.0
    else:
        F[F_QTY_S] = q
        F[F_COST_S] = cost
        F[F_LIQ_S] = liquidation_price_nb(tiers, -1, q, F[F_XE_S], F[F_MARGIN_S]) if q > 0.0 else np.inf


@njit(cache=True, nogil=True, inline="always")
def _clear_stops(s, F):
    """Side s has no stop order (it is flat at a close, or was liquidated)."""
    if s == LONG:
        F[F_TRIG1_L] = -np.inf
        F[F_TRIG2_L] = -np.inf
    else:
        F[F_TRIG1_S] = np.inf
        F[F_TRIG2_S] = np.inf


@njit(cache=True, nogil=True, inline="always")
def _xd(s):
    """Where the exchange's wallet keeps side s's realized PnL beyond the books' (F index)."""
    return F_XD if s == LONG else F_XD_S


@njit(cache=True, nogil=True, inline="always")
def _open_lot(s, j, bar, t, price, qty, fee_rate, label, p, L, G, F, I, trades, counters, money, tiers):
    """on_fill of an opening order: margin moves from the wallet to the side's isolated margin."""
    m = I[I_NLOT_L + s]
    if m >= L.shape[1]:
        counters[C_LOTS_FULL] += 1
        return True
    value = price * qty
    fee = value * fee_rate
    margin = value / p.leverage
    if F[F_CASH] + F[F_XD] + F[F_XD_S] < margin + max(fee, 0.0):
        counters[C_REFUSED_BALANCE] += 1
        return True
    held = F[F_QTY_L + s]
    F[F_XE_L + s] = (held * F[F_XE_L + s] + qty * price) / (held + qty)
    F[F_CASH] -= margin + fee
    if s == LONG:
        F[F_MARGIN_L] += margin
        counters[C_LONGS_OPENED] += 1
    else:
        F[F_MARGIN_S] += margin
        counters[C_SHORTS_OPENED] += 1
    money[M_FEES] += fee
    sign = 1.0 if s == LONG else -1.0
    L[s, m, L_QTY] = qty
    L[s, m, L_ENTRY] = price
    L[s, m, L_TIME] = t
    L[s, m, L_FUNDING] = 0.0
    L[s, m, L_TP_PRICE] = round_tick_nb(price + sign * F[F_SPACING], p.tick)
    L[s, m, L_LEVEL] = j
    L[s, m, L_GENERATION] = I[I_GEN]
    L[s, m, L_ACTIVE] = 1.0
    L[s, m, L_TP_QTY] = qty
    I[I_NLOT_L + s] = m + 1
    _refresh_side(s, p, L, F, I, tiers)
    return _record(trades, I, bar, t, 1 if s == LONG else -1, price, qty, fee, label, 0.0, F)


@njit(cache=True, nogil=True, inline="always")
def _close_lot(s, m, qty, bar, t, price, fee_rate, label, p, L, G, F, I, trades, counters, money, tiers):
    """on_fill of a closing order: ``qty`` of lot m (at most all of it) closed at ``price``; its
    margin share and PnL go back to the wallet. A take-profit re-arms the grid level the lot
    came from."""
    sign = 1.0 if s == LONG else -1.0
    frac = min(qty / L[s, m, L_QTY], 1.0) if L[s, m, L_QTY] > 0.0 else 1.0
    if frac >= 1.0:
        qty = L[s, m, L_QTY]
    entry = L[s, m, L_ENTRY]
    value = price * qty
    fee = value * fee_rate
    pnl = sign * (price - entry) * qty
    side_margin = F[F_MARGIN_L] if s == LONG else F[F_MARGIN_S]
    side_qty = F[F_QTY_L] if s == LONG else F[F_QTY_S]
    margin = side_margin * (qty / side_qty) if side_qty > 0.0 else 0.0
    F[F_CASH] += margin + pnl - fee
    F[_xd(s)] += sign * (entry - F[F_XE_L + s]) * qty  # (the exchange's PnL less the books')
    if s == LONG:
        F[F_MARGIN_L] -= margin
        counters[C_LONGS_CLOSED] += 1
    else:
        F[F_MARGIN_S] -= margin
        counters[C_SHORTS_CLOSED] += 1
    money[M_REALIZED] += pnl - fee
    money[M_FEES] += fee
    if label == SELL_CLOSE_LONG or label == BUY_CLOSE_SHORT:
        money[M_GRID_PROFIT] += pnl - fee
        j = int(L[s, m, L_LEVEL])
        if L[s, m, L_GENERATION] == I[I_GEN] and j >= 0:
            G[s, j, G_STATE] = ARMED  # armed again: its order rests from this bar's close
    remaining = L[s, m, L_QTY] - qty
    if (label == SELL_CLOSE_LONG or label == BUY_CLOSE_SHORT) and (remaining <= 1e-12 or frac >= 1.0):
        counters[C_ROUND_TRIPS] += 1
    if remaining <= 1e-12 or frac >= 1.0:
        last = I[I_NLOT_L + s] - 1  # keep the lots packed: the last one takes this place
        if m != last:
            for k in range(N_L):
                L[s, m, k] = L[s, last, k]
        L[s, last, L_ACTIVE] = 0.0
        L[s, last, L_QTY] = 0.0
        I[I_NLOT_L + s] = last
    else:
        L[s, m, L_QTY] = remaining
        L[s, m, L_FUNDING] *= 1.0 - frac
    _refresh_side(s, p, L, F, I, tiers)
    if (F[F_QTY_L] if s == LONG else F[F_QTY_S]) == 0.0:
        # flat: whatever margin rounding left goes back to the wallet, the stops re-arm
        if s == LONG:
            F[F_CASH] += F[F_MARGIN_L]
            F[F_MARGIN_L] = 0.0
            I[I_STAGE_L] = 0
        else:
            F[F_CASH] += F[F_MARGIN_S]
            F[F_MARGIN_S] = 0.0
            I[I_STAGE_S] = 0
        F[F_XE_L + s] = 0.0
    return _record(trades, I, bar, t, -1 if s == LONG else 1, price, qty, fee, label, pnl - fee, F)


@njit(cache=True, nogil=True)
def on_open_fill_nb(s, j, bar, t, price, qty, fee_rate, p, L, G, F, I, trades, counters, money, tiers):
    """on_fill for the opening order of grid level j on side s (LONG / SHORT)."""
    G[s, j, G_STATE] = 0.0
    return _open_lot(s, j, bar, t, price, qty, fee_rate, BUY_OPEN_LONG if s == LONG else SELL_OPEN_SHORT, p, L, G,
                     F, I, trades, counters, money, tiers)


@njit(cache=True, nogil=True, inline="always")
def _prune_fill(s, m, label, bar, t, fill, p, L, G, F, I, trades, counters, money, tiers):
    """Lot m of side s closed by a prune's market order at ``fill`` (taker), counted by its label."""
    if label == PRUNE_OFFSET:
        sign = 1.0 if s == LONG else -1.0
        money[M_OFFSET_USED] += max(0.0, sign * (L[s, m, L_ENTRY] - fill) * L[s, m, L_QTY])
    counters[C_PRUNE_DEVIANCE + label - PRUNE_DEVIANCE] += 1
    return _close_lot(s, m, L[s, m, L_QTY], bar, t, fill, p.taker_fee, label, p, L, G, F, I, trades, counters, money,
                      tiers)


@njit(cache=True, nogil=True)
def on_prune_fill_nb(s, m, label, bar, t, fill, p, L, G, F, I, trades, counters, money, tiers):
    """on_fill for the prune's market order (``_prune_fill``); the prune is then done."""
    I[I_PRUNE_LOT] = -1
    return _prune_fill(s, m, label, bar, t, fill, p, L, G, F, I, trades, counters, money, tiers)


@njit(cache=True, nogil=True, inline="always")
def _pay_funding(o, rate, count, p, L, F, I, counters, money, tiers):
    """Funding at a bar's open ``o`` (``count`` settlements, summed ``rate``), on the position
    held into it, from each side's isolated margin."""
    counters[C_FUNDING_EVENTS] += count
    for s in range(2):
        q = F[F_QTY_L] if s == LONG else F[F_QTY_S]
        if q == 0.0 or rate == 0.0:
            continue
        _book_funding(s, rate * q * o * (1.0 if s == LONG else -1.0), p, L, F, I, money, tiers)


@njit(cache=True, nogil=True)
def _book_funding(s, pay, p, L, F, I, money, tiers):
    """Side ``s`` paid ``pay`` of funding (< 0: received): from its isolated margin while it
    holds a position (spread over its lots), from the cash once it is flat."""
    q = F[F_QTY_L] if s == LONG else F[F_QTY_S]
    money[M_FUNDING] -= pay
    if q == 0.0:
        F[F_CASH] -= pay
        return
    if s == LONG:
        F[F_MARGIN_L] -= pay
    else:
        F[F_MARGIN_S] -= pay
    for m in range(I[I_NLOT_L + s]):
        L[s, m, L_FUNDING] += pay * L[s, m, L_QTY] / q
    _refresh_side(s, p, L, F, I, tiers)


@njit(cache=True, nogil=True)
def book_funding_nb(s, pay, p, L, F, I, money, tiers):
    """The runtime's correction of a settlement to what the exchange charged (``_book_funding``)."""
    _book_funding(s, pay, p, L, F, I, money, tiers)


@njit(cache=True, nogil=True)
def pay_funding_nb(o, rate, count, p, L, F, I, counters, money, tiers):
    """The runtime's funding at a bar's open: what the backtest does (``_pay_funding``)."""
    _pay_funding(o, rate, count, p, L, F, I, counters, money, tiers)


@hot_njit
def liquidate_nb(s, bar, t, p, L, G, F, I, trades, counters, money, tiers):
    """The side's isolated margin is lost; the position is gone. What the exchange realized on
    the side's earlier closes beyond the books (``_xd``: against its average entry) stays in its
    wallet: the books take it now, so they hold what the exchange holds."""
    price = F[F_LIQ_L] if s == LONG else F[F_LIQ_S]
    qty = F[F_QTY_L] if s == LONG else F[F_QTY_S]
    lost = F[F_MARGIN_L] if s == LONG else F[F_MARGIN_S]
    beyond = F[_xd(s)]
    F[F_CASH] += beyond
    F[_xd(s)] = 0.0
    for m in range(I[I_NLOT_L + s]):
        L[s, m, L_ACTIVE] = 0.0
        L[s, m, L_QTY] = 0.0
    I[I_NLOT_L + s] = 0
    if s == LONG:
        F[F_MARGIN_L] = 0.0
        I[I_STAGE_L] = 0
    else:
        F[F_MARGIN_S] = 0.0
        I[I_STAGE_S] = 0
    F[F_XE_L + s] = 0.0
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
    q = L[s, m, L_QTY]
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
    while rest > 1e-12 and I[I_NLOT_L + s] > 0:
        k = I[I_NLOT_L + s] - 1
        q = min(rest, L[s, k, L_QTY])
        rest -= q
        ok = _close_lot(s, k, q, bar, t, price, fee_rate, label, p, L, G, F, I, trades, counters, money,
                        tiers) and ok
    return ok


@njit(cache=True, nogil=True, inline="always")
def _take_profit(s, m, bar, t, price, p, L, G, F, I, trades, counters, money, tiers):
    """Lot m's take-profit filled: it closes what the order holds (the lot as it was at the last
    close), the lot first."""
    label = SELL_CLOSE_LONG if s == LONG else BUY_CLOSE_SHORT
    q_order = min(L[s, m, L_TP_QTY], F[F_QTY_L + s])
    q = min(q_order, L[s, m, L_QTY])
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
    n_lots = I[I_NLOT_L + s]
    n_held = 0
    for m in range(n_lots):
        if L[s, m, L_TIME] != t:
            n_held += 1
    label = STOP_LONG if s == LONG else STOP_SHORT
    rest = min(F[(F_SQ1_L if stage == 1 else F_SQ2_L) + s], F[F_QTY_L + s])
    ok = True
    for m in range(n_lots - 1, -1, -1):  # backwards: a closed lot's place is taken by one already done
        if L[s, m, L_TIME] != t and rest > 1e-12:
            q = min(_stop_lot_qty(s, m, stage, n_held, p, L), rest)
            rest -= q
            ok = _close_lot(s, m, q, bar, t, price, p.taker_fee, label, p, L, G, F, I, trades, counters, money,
                            tiers) and ok
    ok = _close_rest(s, rest, bar, t, price, p.taker_fee, label, p, L, G, F, I, trades, counters, money, tiers) and ok
    full = stage == 2 or F[F_SQ2_L + s] <= 0.0
    counters[C_STOPS_LONG + s] += 1
    I[I_STAGE_L + s] = 0 if full or F[F_QTY_L + s] == 0.0 else 1
    if full:  # what is left was opened in this bar: its stops come with this close
        F[F_TRIG1_L + 2 * s] = F[F_TRIG2_L + 2 * s] = -np.inf if s == LONG else np.inf
        F[F_SQ1_L + s] = F[F_SQ2_L + s] = 0.0
    else:
        F[F_SQ1_L + s] = 0.0
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
    return _close_rest(s, min(qty, F[F_QTY_L + s]), bar, t, price, fee_rate, label, p, L, G, F, I, trades, counters,
                       money, tiers)
