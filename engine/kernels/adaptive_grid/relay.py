"""The adaptive grid's decisions at a close: laying the two grids around the reservation price
(``_regenerate``), which lot to prune, which openings to place (margin, VaR, the risk gate),
and the orders the runtime should hold (``desired_orders_nb``)."""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.kernels.adaptive_grid.layout import *  # (the state's names, the records, the settings)
from engine.kernels.adaptive_grid.lots import _stop_lot_qty
from engine.kernels.grid import floor_lot_nb, round_tick_nb
from engine.kernels.indicators import BREAKOUT_DOWN, BREAKOUT_UP, DOWNTREND, NOISE, UPTREND


@njit(cache=True, nogil=True)
def desired_orders_nb(p, L, G, F, I, out):
    """The orders the state wants resting after a decision, written to ``out`` (ORDER_DTYPE):
    the active grid openings, each lot's take-profit, each side's next stop stage, and the
    prune (a market order). ``book`` is the side (0 long, 1 short); ``ref`` the grid level or
    the lot. Returns how many. The live runtime diffs them against the exchange's orders."""
    n = 0
    for s in range(2):
        for j in range(p.levels):
            if G[s, j, G_STATE] == REST and n < len(out):
                out[n]["side"], out[n]["kind"], out[n]["price"] = (1 if s == LONG else -1), OPEN_ORDER, G[s, j, G_PRICE]
                out[n]["qty"], out[n]["ref"], out[n]["book"] = G[s, j, G_QTY], j, s
                n += 1
        for m in range(I[I_NLOT_L + s]):
            if n < len(out):
                out[n]["side"], out[n]["kind"] = (-1 if s == LONG else 1), TAKE_PROFIT_ORDER
                out[n]["price"] = L[s, m, L_TP_PRICE]
                out[n]["qty"], out[n]["ref"], out[n]["book"] = L[s, m, L_TP_QTY], m, s
                n += 1
        # both stop stages rest (both can trigger in one bar): stage 1 for half of every lot,
        # stage 2 for what stage 1 leaves; only stage 2, for all, once stage 1 has fired
        for st in range(1, 3):
            qty = F[(F_SQ1_L if st == 1 else F_SQ2_L) + s]
            if qty > 1e-12 and n < len(out):
                trig = F[(F_TRIG1_L if st == 1 else F_TRIG2_L) + 2 * s]
                out[n]["side"], out[n]["kind"], out[n]["price"] = (-1 if s == LONG else 1), STOP_ORDER, trig
                out[n]["qty"], out[n]["ref"], out[n]["book"] = qty, st, s
                n += 1
    if I[I_PRUNE_LOT] >= 0 and n < len(out):
        s = I[I_PRUNE_SIDE]
        m = I[I_PRUNE_LOT]
        out[n]["side"], out[n]["kind"], out[n]["price"] = (-1 if s == LONG else 1), MARKET_ORDER, 0.0
        out[n]["qty"], out[n]["ref"], out[n]["book"] = L[s, m, L_QTY], m, s
        n += 1
    return n


@njit(cache=True, nogil=True, inline="always")
def _regenerate(close, atr_now, sigma, regime, p, G, F, I, counters):
    """Lay out both grids around the reservation price; the regime, the halt and the VaR gate
    decide which side gets opening orders."""
    spacing = max(p.atr_k * atr_now, p.atr_floor * close)
    F[F_SPACING] = spacing
    order_qty = floor_lot_nb(p.order_frac * p.capital * p.leverage / close, p.lot)
    F[F_ORDER_QTY] = order_qty
    q_units = (F[F_QTY_L] - F[F_QTY_S]) / order_qty if order_qty > 0.0 else 0.0
    s2t = sigma * sigma * p.horizon
    r = close * (1.0 - q_units * p.gamma * s2t)
    half = 0.5 * (p.gamma * s2t + p.spread_const)
    F[F_CENTER] = r
    I[I_GEN] += 1
    I[I_GEN_REGIME] = regime
    counters[C_REGENERATIONS] += 1
    allow_long = (regime == NOISE or regime == UPTREND or regime == BREAKOUT_UP) and I[I_HALTED] == 0 \
        and I[I_VAR_BLOCK] == 0
    allow_short = (regime == NOISE or regime == DOWNTREND or regime == BREAKOUT_DOWN) and I[I_HALTED] == 0 \
        and I[I_VAR_BLOCK] == 0 and p.no_short == 0
    # the grid's margin budget leaves the trailing reserve aside
    budget = p.capital * (1.0 - p.trail_reserve)
    per_order = p.order_frac * p.capital
    n_fit = int(budget / per_order / 2.0) if per_order > 0.0 else 0
    for j in range(p.levels):  # a side that may not open gets no levels (nothing rests there)
        G[LONG, j, G_STATE] = 0.0
        G[SHORT, j, G_STATE] = 0.0
        if allow_long and j < n_fit:
            buy = round_tick_nb(r * (1.0 - half) - j * spacing, p.tick)
            G[LONG, j, G_PRICE] = buy
            G[LONG, j, G_QTY] = order_qty
            if order_qty > 0.0 and buy > 0.0 and order_qty * buy >= p.min_notional:
                G[LONG, j, G_STATE] = ARMED
            else:
                counters[C_REFUSED_MIN] += 1
        if allow_short and j < n_fit:
            sell = round_tick_nb(r * (1.0 + half) + j * spacing, p.tick)
            G[SHORT, j, G_PRICE] = sell
            G[SHORT, j, G_QTY] = order_qty
            if order_qty > 0.0 and order_qty * sell >= p.min_notional:
                G[SHORT, j, G_STATE] = ARMED
            else:
                counters[C_REFUSED_MIN] += 1


@njit(cache=True, nogil=True, inline="always")
def _choose_prune(close, kama, std_price, t, p, L, F, I, money):
    """The one lot to prune at the next open, by priority: deviance, oldest, gap, funding,
    profit offset. Sets I[I_PRUNE_SIDE], I[I_PRUNE_LOT], I[I_PRUNE_LABEL]; lot -1 for none."""
    I[I_PRUNE_LOT] = -1
    if F[F_QTY_L] == 0.0 and F[F_QTY_S] == 0.0:
        return
    spacing = F[F_SPACING]
    # O(1) screen from the sides' summaries; the lots are only scanned when a prune may apply
    far = max(F[F_WORST_L] - close, close - F[F_WORST_S])
    deviant = std_price > 0.0 and not np.isnan(kama) and (
        (F[F_QTY_L] > 0.0 and close < kama - p.prune_sigma * std_price)
        or (F[F_QTY_S] > 0.0 and close > kama + p.prune_sigma * std_price))
    possible = deviant or t - min(F[F_MINT_L], F[F_MINT_S]) > p.prune_age_ms or far > p.prune_gap * spacing \
        or (money[M_GRID_PROFIT] > 0.0 and F[F_FUND_L] + F[F_FUND_S] > p.prune_funding * money[M_GRID_PROFIT]) \
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
            for m in range(I[I_NLOT_L + s]):
                e = L[s, m, L_ENTRY]
                if best < 0 or (e > L[s, best, L_ENTRY] if s == LONG else e < L[s, best, L_ENTRY]):
                    best = m
            if best >= 0:
                I[I_PRUNE_SIDE] = s
                I[I_PRUNE_LOT] = best
                I[I_PRUNE_LABEL] = PRUNE_DEVIANCE
                return
    # 2. oldest, 3. gap, 4. funding, 5. profit offset: one pass collects the candidates
    old_s, old_m, old_t = -1, -1, np.inf
    gap_s, gap_m, gap_d = -1, -1, 0.0
    fund_s, fund_m, fund_v, fund_total = -1, -1, 0.0, 0.0
    off_s, off_m, off_loss = -1, -1, 0.0
    for s in range(2):
        sign = 1.0 if s == LONG else -1.0
        for m in range(I[I_NLOT_L + s]):
            if t - L[s, m, L_TIME] > p.prune_age_ms and L[s, m, L_TIME] < old_t:
                old_s, old_m, old_t = s, m, L[s, m, L_TIME]
            d = sign * (L[s, m, L_ENTRY] - close)
            if d > p.prune_gap * spacing and d > gap_d:
                gap_s, gap_m, gap_d = s, m, d
            fund_total += L[s, m, L_FUNDING]
            if L[s, m, L_FUNDING] > fund_v:
                fund_s, fund_m, fund_v = s, m, L[s, m, L_FUNDING]
            loss = sign * (L[s, m, L_ENTRY] - close) * L[s, m, L_QTY]
            if loss > off_loss and d >= p.offset_min_spacings * spacing:
                off_s, off_m, off_loss = s, m, loss
    if old_m >= 0:
        I[I_PRUNE_SIDE], I[I_PRUNE_LOT], I[I_PRUNE_LABEL] = old_s, old_m, PRUNE_OLDEST
    elif gap_m >= 0:
        I[I_PRUNE_SIDE], I[I_PRUNE_LOT], I[I_PRUNE_LABEL] = gap_s, gap_m, PRUNE_GAP
    elif fund_m >= 0 and money[M_GRID_PROFIT] > 0.0 and fund_total > p.prune_funding * money[M_GRID_PROFIT]:
        I[I_PRUNE_SIDE], I[I_PRUNE_LOT], I[I_PRUNE_LABEL] = fund_s, fund_m, PRUNE_FUNDING
    elif p.prune_offset and off_m >= 0 and money[M_GRID_PROFIT] - money[M_OFFSET_USED] >= off_loss:
        I[I_PRUNE_SIDE], I[I_PRUNE_LOT], I[I_PRUNE_LABEL] = off_s, off_m, PRUNE_OFFSET


@njit(cache=True, nogil=True, inline="always")
def _at_close(close, paused, p, L, G, F, I, counters):
    """After a change, the orders placed at this close: the levels armed (or waiting) rest from
    now where they fit (``_place_openings``), each lot's take-profit holds its quantity, each
    side's stop stages their shares. Returns how many openings wait."""
    waiting = _place_openings(close, paused, p, G, F, I, counters)
    for s in range(2):
        n = I[I_NLOT_L + s]
        staged = I[I_STAGE_L + s] == 0
        first = 0.0  # stage 1's order: the lots' planned shares (none once it has fired)
        for m in range(n):
            L[s, m, L_TP_QTY] = L[s, m, L_QTY]
            if staged:
                first += _stop_lot_qty(s, m, 1, n, p, L)
        q = F[F_QTY_L + s]
        F[F_SQ1_L + s] = first if q > 0.0 else 0.0
        F[F_SQ2_L + s] = q - first if q > 0.0 else 0.0
    return waiting


@njit(cache=True, nogil=True, inline="always")
def _place_openings(close, paused, p, G, F, I, counters, committed=0.0):
    """The exchange's rule for an opening order, Binance's: it rests only with its initial
    margin (and fee) held from the wallet's free balance, the wallet as the exchange keeps it
    (closes realized against the average entry). And the risk gate's (``engine.risk``): no new
    opening while it pauses the system's openings (``paused``: its volatility breaker, or any
    pause of the runtime), none that would take what the system holds at the close and has
    resting to add to it past ``p.max_exposure``. Levels armed at this close (or waiting) are placed in the order the
    runtime sends them (long levels nearest first, then short), each while the free margin
    covers it, the gate lets it through and its side has room for one more lot (a lot the
    strategy would refuse is never an order); the rest wait, and are counted. ``committed``: the
    value of market openings sent before them at this close (the futures grid's starting
    position), whose margin and exposure come first. Returns how many wait."""
    rate = 1.0 / p.leverage + max(p.maker_fee, 0.0)
    free = F[F_CASH] + F[F_XD] + F[F_XD_S] - committed / p.leverage
    exposure = (F[F_QTY_L] + F[F_QTY_S]) * close + committed
    for s in range(2):
        for j in range(p.levels):
            if G[s, j, G_STATE] == REST:
                free -= G[s, j, G_PRICE] * G[s, j, G_QTY] * rate
                exposure += G[s, j, G_PRICE] * G[s, j, G_QTY]
    waiting = 0
    for s in range(2):
        room = p.max_lots - I[I_NLOT_L + s]
        for j in range(p.levels):
            room -= 1 if G[s, j, G_STATE] == REST else 0
        for j in range(p.levels):
            if G[s, j, G_STATE] < ARMED:
                continue
            value = G[s, j, G_PRICE] * G[s, j, G_QTY]
            need = value * rate
            gate = not paused and exposure + value <= p.max_exposure
            if room > 0 and gate and free >= need * (1.0 - 1e-12):
                G[s, j, G_STATE] = REST
                free -= need
                exposure += value
                room -= 1
            else:
                if G[s, j, G_STATE] == ARMED:  # (counted once, while it waits)
                    counters[C_LOTS_FULL if room <= 0 else C_RISK_WAITS if not gate else C_REFUSED_BALANCE] += 1
                G[s, j, G_STATE] = UNPLACED
                waiting += 1
    return waiting


@njit(cache=True, nogil=True, inline="always")
def _bests(p, L, G, I):
    """The nearest order prices: (the highest of the long buys and the short take-profits, the
    lowest of the short sells and the long take-profits)."""
    lo = -np.inf
    hi = np.inf
    for j in range(p.levels):  # levels run away from the price: the first resting one is nearest
        if G[LONG, j, G_STATE] == REST:
            lo = G[LONG, j, G_PRICE]
            break
    for j in range(p.levels):
        if G[SHORT, j, G_STATE] == REST:
            hi = G[SHORT, j, G_PRICE]
            break
    for m in range(I[I_NLOT_S]):
        lo = max(lo, L[SHORT, m, L_TP_PRICE])
    for m in range(I[I_NLOT_L]):
        hi = min(hi, L[LONG, m, L_TP_PRICE])
    return lo, hi
