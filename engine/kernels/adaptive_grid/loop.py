"""The adaptive grid's loop over bars: funding and prunes at the open, each leg of the bar's path
(fills, stops, liquidation), the decisions at the close, the replay's order log; ``decide_nb``
runs one close for the runtime."""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.kernels.adaptive_grid.layout import *  # (the state's names, the records, the settings)
from engine.kernels.adaptive_grid.lots import (
    _clear_stops,
    _open_lot,
    _pay_funding,
    _prune_fill,
    _record,
    _take_profit,
    liquidate_nb,
    next_stop_nb,
    on_stop_fill_nb,
)
from engine.kernels.adaptive_grid.relay import _at_close, _bests, _choose_prune, _regenerate
from engine.kernels.grid import OPEN_END, round_tick_nb
from engine.kernels.indicators import BREAKOUT_UP, UPTREND
from engine.kernels.jit import hot_njit
from engine.kernels.matching import (
    FILL_QUEUE,
    FILL_THROUGH,
    down_first_nb,
    limit_fill_nb,
    market_fill_nb,
    queue_fill_nb,
    reached_nb,
    stop_fill_nb,
)


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
    tick_t = p.tick if p.fill_model == FILL_THROUGH else 0.0  # (limits: the fill model; stops touch)
    queue = p.fill_model == FILL_QUEUE  # (a limit reached fills when its seeded draw says: the same each time)
    ok = True
    done_j = -1  # grid levels are in order: j = 0 is nearest the price
    while True:
        # the next event is the one nearest the open along the leg
        best = -np.inf
        kind = -1
        idx = -1
        for j in range(done_j + 1, p.levels):
            if G[s, j, G_STATE] == REST:  # (ARMED: armed again in this bar, not resting yet)
                px = G[s, j, G_PRICE]
                if reached_nb(s == LONG, px, extreme, tick_t) and sign * px > best:
                    if queue and not queue_fill_nb(p.fill_seed, t, px, sign * (px - extreme), p.queue_depth):
                        continue  # reached, not its turn in the queue: a level further on may fill
                    best, kind, idx = sign * px, 0, j
                break
        for m in range(I[I_NLOT_L + other]):
            if L[other, m, L_TIME] != t:
                px = L[other, m, L_TP_PRICE]
                if reached_nb(s == LONG, px, extreme, tick_t) and sign * px > best and (
                        not queue or queue_fill_nb(p.fill_seed, t, px, sign * (px - extreme), p.queue_depth)):
                    best, kind, idx = sign * px, 1, m
        stage = I[I_STAGE_L] if s == LONG else I[I_STAGE_S]
        qty_side = F[F_QTY_L] if s == LONG else F[F_QTY_S]
        if qty_side > 0.0:
            trig = (F[F_TRIG1_L] if stage == 0 else F[F_TRIG2_L]) if s == LONG else \
                (F[F_TRIG1_S] if stage == 0 else F[F_TRIG2_S])
            if reached_nb(s == LONG, trig, extreme, 0.0) and sign * trig > best:
                best, kind, idx = sign * trig, 2, stage + 1
            liq = F[F_LIQ_L] if s == LONG else F[F_LIQ_S]
            if reached_nb(s == LONG, liq, extreme, 0.0) and sign * liq >= best:
                best, kind = sign * liq, 3
        if kind < 0:
            break
        px = sign * best
        if kind == 3:
            ok = liquidate_nb(s, i, t, p, L, G, F, I, trades, counters, money, tiers) and ok
            done_j = p.levels
        elif kind == 0:
            fill = limit_fill_nb(s == LONG, o, px)
            G[s, idx, G_STATE] = 0.0
            done_j = idx
            ok = _open_lot(s, idx, i, t, fill, G[s, idx, G_QTY], p.maker_fee,
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
            active = G[s, j, G_STATE] == REST
            if row >= 0:
                if active and olog[row]["price"] == G[s, j, G_PRICE] and olog[row]["qty"] == G[s, j, G_QTY]:
                    continue
                olog[row]["end"] = i
                oref[k] = -1
            if active:
                oref[k] = _new_order_row(olog, oref, i, 1 if s == LONG else -1, OPEN_ORDER, s, G[s, j, G_PRICE],
                                         G[s, j, G_QTY], -1.0, 0.0)
    for s in range(2):
        for m in range(nm):
            oref[seen + s * nm + m] = 0
    keep = 0
    for r in range(oref[n_tp]):
        row = oref[tp0 + r]
        s = olog[row]["book"]
        found = False
        for m in range(I[I_NLOT_L + s]):
            if oref[seen + s * nm + m] == 0 and L[s, m, L_TIME] == olog[row]["lot_time"] \
                    and L[s, m, L_ENTRY] == olog[row]["entry"] and L[s, m, L_TP_PRICE] == olog[row]["price"] \
                    and L[s, m, L_TP_QTY] == olog[row]["qty"]:
                oref[seen + s * nm + m] = 1
                found = True
                break
        if found:
            oref[tp0 + keep] = row
            keep += 1
        else:
            olog[row]["end"] = i
    for s in range(2):
        for m in range(I[I_NLOT_L + s]):
            if oref[seen + s * nm + m] == 0:
                oref[tp0 + keep] = _new_order_row(olog, oref, i, -1 if s == LONG else 1, TAKE_PROFIT_ORDER, s,
                                                  L[s, m, L_TP_PRICE], L[s, m, L_TP_QTY], L[s, m, L_TIME],
                                                  L[s, m, L_ENTRY])
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
    n0 = I[I_NTR]
    nxt = _run(np.array([t]), one, one, one, np.array([close]), np.array([atr]), np.array([kama]), np.array([er]),
               np.array([std_price]), np.array([sigma]), np.array([zscore]), np.array([regime]), np.empty(0),
               np.empty(0, dtype=np.int64), np.zeros((1, 3)), gate, p, L, G, F, I, trades, np.empty(1), np.empty(1),
               np.empty(1), counters, money, np.int64(0), np.empty(0, dtype=ORDER_LOG_DTYPE),
               np.empty(0, dtype=np.int64), np.empty((0, N_MARKS)))  # (np.int64(0): a literal 0 compiles _run again)
    for k in range(n0, I[I_NTR]):
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
            waiting += 1 if G[s, j, G_STATE] == UNPLACED else 0
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
            budget = (len(trades) - I[I_NTR]) // need - 1
            if budget < 0:
                return i
        if rec and len(olog) - oref[0] < room:
            return i
        n_records = I[I_NTR]
        t = time[i]
        o = open_[i]
        c = close[i]
        ok = True
        if events and I[I_STARTED] == 1:
            if funding_count[i] > 0:
                _pay_funding(o, funding[i], funding_count[i], p, L, F, I, counters, money, tiers)
            # a prune decided at the last close: a market close at this open
            if I[I_PRUNE_LOT] >= 0:
                s = I[I_PRUNE_SIDE]
                m = I[I_PRUNE_LOT]
                label = I[I_PRUNE_LABEL]
                if m < I[I_NLOT_L + s]:
                    fill = market_fill_nb(s == SHORT, o, p.slippage)  # a long closes with a sell
                    ok = _prune_fill(s, m, label, i, t, fill, p, L, G, F, I, trades, counters, money, tiers) and ok
                I[I_PRUNE_LOT] = -1
            # the bar: both legs in path order, skipped when nothing is within reach
            lo_band = max(near_lo, F[F_LIQ_L])
            hi_band = min(near_hi, F[F_LIQ_S])
            if F[F_QTY_L] > 0.0:
                lo_band = max(lo_band, F[F_TRIG1_L] if I[I_STAGE_L] == 0 else F[F_TRIG2_L])
            if F[F_QTY_S] > 0.0:
                hi_band = min(hi_band, F[F_TRIG1_S] if I[I_STAGE_S] == 0 else F[F_TRIG2_S])
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
        upnl = c * F[F_QTY_L] - F[F_COST_L] + F[F_COST_S] - c * F[F_QTY_S]
        eq = F[F_CASH] + F[F_MARGIN_L] + F[F_MARGIN_S] + upnl
        regen = I[I_STARTED] == 0
        z = zscore[i]
        if I[I_HALTED] == 0 and z < p.z_halt:
            I[I_HALTED] = 1
            counters[C_HALTS] += 1
            for s in range(2):
                for j in range(p.levels):
                    G[s, j, G_STATE] = 0.0
            ok = _record(trades, I, i, t, 0, c, 0.0, 0.0, CIRCUIT_BREAKER_HALT, 0.0, F)
        elif I[I_HALTED] == 1 and z > p.z_resume:
            I[I_HALTED] = 0
            regen = True
        block = 1 if p.var_z * sigma[i] * (F[F_QTY_L] + F[F_QTY_S]) * c > p.var_max_dd * eq else 0
        if block != I[I_VAR_BLOCK]:
            I[I_VAR_BLOCK] = block
            regen = True
        if block:
            counters[C_VAR_BLOCKS] += 1
        reg = regime[i]
        base = c
        if not regen:
            if reg != I[I_GEN_REGIME]:
                regen = True
            elif (reg == UPTREND or reg == BREAKOUT_UP) and er[i] > p.er_threshold:
                top = F[F_CENTER] + (p.levels - 0.5) * F[F_SPACING]
                if c > top:  # trailing up: the anchor moves up by half the gap
                    base = F[F_CENTER] + 0.5 * (c - F[F_CENTER])
                    counters[C_TRAIL] += 1
                    regen = True
            else:
                order_qty = F[F_ORDER_QTY]
                q_units = (F[F_QTY_L] - F[F_QTY_S]) / order_qty if order_qty > 0.0 else 0.0
                r = c * (1.0 - q_units * p.gamma * sigma[i] * sigma[i] * p.horizon)
                if abs(r - F[F_CENTER]) > F[F_SPACING]:
                    regen = True
        if regen:
            _regenerate(base, atr[i], sigma[i], reg, p, G, F, I, counters)
            I[I_STARTED] = 1
        changed = regen or I[I_NTR] != n_records or not events  # (the runtime's fills came from outside)
        # stop triggers for the next bar, from the entries and ATR now
        stop_d = p.stop_m * atr[i]
        if F[F_QTY_L] > 0.0:
            ep = F[F_COST_L] / F[F_QTY_L]
            F[F_TRIG1_L] = round_tick_nb(ep - stop_d, p.tick)
            F[F_TRIG2_L] = round_tick_nb(ep - 1.5 * stop_d, p.tick)
        else:  # flat at the close: no stop rests (a stale trigger must not fire on a later lot)
            _clear_stops(LONG, F)
        if F[F_QTY_S] > 0.0:
            ep = F[F_COST_S] / F[F_QTY_S]
            F[F_TRIG1_S] = round_tick_nb(ep + stop_d, p.tick)
            F[F_TRIG2_S] = round_tick_nb(ep + 1.5 * stop_d, p.tick)
        else:
            _clear_stops(SHORT, F)
        if F[F_QTY_L] > 0.0 or F[F_QTY_S] > 0.0:
            _choose_prune(c, kama[i], std_price[i], t, p, L, F, I, money)
        if changed or waiting > 0:
            waiting = _at_close(c, gated and paused[i], p, L, G, F, I, counters)
            near_lo, near_hi = _bests(p, L, G, I)
            if rec:
                _log_orders(i, p, L, G, I, olog, oref)
        if not ok:
            return -1
        equity[i] = F[F_CASH] + F[F_MARGIN_L] + F[F_MARGIN_S] + upnl
        long_qty[i] = F[F_QTY_L]
        short_qty[i] = F[F_QTY_S]
        if rec:
            for s in range(2):
                q = F[F_QTY_L + s]
                held = q > 0.0
                marks[i, s] = F[F_COST_L + s] / q if held else np.nan
                marks[i, 2 + s] = F[F_LIQ_L + s] if held and 0.0 < F[F_LIQ_L + s] < np.inf else np.nan
                marks[i, 4 + s] = next_stop_nb(F, I, s)
    return n
