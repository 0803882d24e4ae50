"""The backtest's loop over bars (``spot_grid_nb``): funding and the hedge at the open, the
quiet-band test, the grid's fills along the bar's path (engine/kernels/matching.py), then
the decisions at the close."""

from __future__ import annotations

import numpy as np
from numba import njit

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
from engine.kernels.spot_grid.fills import _fill_buy, _fill_sell, _market_fill, _stop_grid
from engine.kernels.spot_grid.hedge import _hedge_at_open, _hedge_decide, _hedge_liquidation
from engine.kernels.spot_grid.layout import *  # (the state's names, the records, the settings)
from engine.kernels.spot_grid.relay import _decide_at_close, _quiet_band, _regenerate


@njit(cache=True, nogil=True)
def spot_grid_nb(time, open_, high, low, close, atr, ema, funding, tiers, p, S_io, SI_io, F_io, I_io, H_io, trades,
                 orders, equity, counters, money, first):
    """Run the spot grid from bar ``first`` (0 for a new run, with state from ``new_state``),
    filling ``trades`` and ``orders`` (TRADE_DTYPE and ORDER_DTYPE record arrays), the per-bar
    ``equity``, ``counters`` and ``money``. Cash, position and cost basis change only with a
    trade, whose record holds them after it: their per-bar series come from the trades.

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
               counters, money, first, np.empty(ns_cap, dtype=np.int64))
    S_io[:] = S
    SI_io[:] = SI
    F_io[:] = F
    I_io[:] = I
    H_io[:] = H
    return nxt


@hot_njit
def _quiet_until(low, high, close, equity, i, n, qlo, qhi, cash, pos):
    """Mark the quiet bars from ``i`` on (low > qlo and high < qhi: nothing fills) at ``cash +
    pos * close``; returns the first bar that is not quiet (``n``: none).

    Most bars of a year are quiet, so this loop is most of a backtest's time. It indexes views
    from 0 so that LLVM knows no index is negative: an index that may be (a bar number from an
    argument) costs a test and a select per access for numba's wraparound. Cash and position come
    as scalars: read from the state at each store to ``equity`` (LLVM cannot prove the two arrays
    apart), they are loaded again every bar. Together: the quiet scan of a year 0.62 -> 0.35 ms,
    the busy 20-level year 0.68 -> 0.96 of a minimal loop's speed (bench/bench_spot_grid.py)."""
    lo, hi, c, eq = low[i:n], high[i:n], close[i:n], equity[i:n]
    for j in range(n - i):
        if not (lo[j] > qlo and hi[j] < qhi):
            return i + j
        eq[j] = cash + pos * c[j]
    return n


@hot_njit
def _run(time, open_, high, low, close, atr, ema, funding, tiers, p, S, SI, F, I, H, trades, orders, equity,
         counters, money, first, touched):
    n = len(close)
    ns_cap = p.levels + 1
    need_trades = 2 * ns_cap + 8  # each slot fills once a bar (and may be sold down), market orders, stops
    need_orders = 2 * ns_cap + 4  # a new grid, or follow-ups and retries, one per slot
    start = p.start_bar
    if first <= start:
        for i in range(min(start, n)):
            equity[i] = p.capital
        if start >= n:
            return n
        if len(orders) < need_orders or len(trades) < need_trades:
            return 0
        if not _regenerate(start, close[start], atr[start], 0, 0, p, S, SI, F, I, orders, counters, money):
            return -1
        equity[start] = F[F_CASH] + F[F_POSITION] * close[start]
        first = start + 1
    qlo, qhi = _quiet_band(p, S, SI, F, I, H)
    tick_t = p.tick if p.fill_model == FILL_THROUGH else 0.0
    queue = p.fill_model == FILL_QUEUE
    budget = 0  # active bars that surely fit in the logs; counted down, then recounted
    cash = F[F_CASH]
    pos = F[F_POSITION]
    i = first - 1
    while True:
        i = _quiet_until(low, high, close, equity, i + 1, n, qlo, qhi, cash, pos)
        if i >= n:
            break
        lo = low[i]
        hi = high[i]
        budget -= 1
        if budget < 0:  # recount the room left from what the bars really used
            budget = min((len(trades) - I[I_TRADES]) // need_trades, (len(orders) - I[I_ORDERS]) // need_orders) - 1
            if budget < 0:
                return i
        counters[C_ACTIVE_BARS] += 1
        op = open_[i]
        c = close[i]
        t = time[i]
        ok = True
        nt = 0
        ns = I[I_SLOTS]
        if p.hedge_ratio > 0.0:
            ok, nt = _hedge_at_open(i, t, op, p, S, SI, F, I, H, funding, tiers, orders, trades, counters, money,
                                    touched, nt)
        if I[I_STOPPED] == 0:
            # A market order decided at the last close fills at this open: the sell of leftover
            # inventory, or the buy of an infinity grid's reserve.
            if F[F_MARKET_SELL] != 0.0:
                ok = _market_fill(i, t, market_fill_nb(F[F_MARKET_SELL] < 0.0, op, p.slippage), p, F, I, trades,
                                  counters, money)
            # a bar that opens beyond a trigger stops the grid at the open
            reason = 1 if (p.stop_loss > 0.0 and op <= p.stop_loss) else (
                2 if (p.take_profit > 0.0 and op >= p.take_profit) else 0)
            if reason:
                ok = _stop_grid(i, t, market_fill_nb(False, op, p.slippage), reason, p, S, SI, F, I, orders, trades,
                                counters, money) and ok
        down_first = down_first_nb(op, c)
        for leg in range(2):
            if I[I_STOPPED] != 0:
                break
            if (leg == 0) == down_first:
                # Down leg: buys from the highest, then the stop-loss when the low reaches it.
                floor_p = lo
                hit_stop = p.stop_loss > 0.0 and lo <= p.stop_loss
                if hit_stop:
                    floor_p = p.stop_loss
                k = I[I_TOP_BUY]
                while k >= 0:
                    bp = S[k, S_BUY]
                    if bp < floor_p or not reached_nb(True, bp, lo, tick_t):
                        break
                    if SI[k, SI_STATE] == SLOT_FLAT and SI[k, SI_ORDER] >= 0 and (
                            not queue or queue_fill_nb(p.fill_seed, t, bp, bp - lo, p.queue_depth)):
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
                k = I[I_LOW_SELL]
                while k < ns:
                    sp = S[k, S_SELL]
                    if sp > ceil_p or not reached_nb(False, sp, hi, tick_t):
                        break
                    if SI[k, SI_STATE] == SLOT_HOLD and SI[k, SI_ORDER] >= 0 and (
                            not queue or queue_fill_nb(p.fill_seed, t, sp, hi - sp, p.queue_depth)):
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
        if I[I_STOPPED] == 0 and not _decide_at_close(i, c, atr[i], touched, nt, p, S, SI, F, I, orders, counters,
                                                     money):
            return -1
        if p.hedge_ratio > 0.0:
            _hedge_decide(c, atr[i], ema[i], p, F, I, H)
        qlo, qhi = _quiet_band(p, S, SI, F, I, H)
        cash = F[F_CASH]
        pos = F[F_POSITION]
        equity[i] = F[F_CASH] + F[F_POSITION] * c + H[H_MARGIN] + (H[H_ENTRY] - c) * H[H_QTY]
    return n
