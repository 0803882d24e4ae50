"""The adaptive grid's state, by name: lots L[side, lot, .], grid levels G[side, level, .], the
scalars F and I, the trade, order and replay-log records, the counters and money totals, and
the settings (``AdaptiveGridParams``). ``new_state`` makes them."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

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
# (quantity, entry price, open time, funding paid, its take-profit's price, its grid level, the
# grid generation it opened in, alive, what its take-profit order holds)
(L_QTY, L_ENTRY, L_TIME, L_FUNDING, L_TP_PRICE, L_LEVEL, L_GENERATION, L_ACTIVE,
 L_TP_QTY) = range(9)
N_L = 9
G_PRICE, G_QTY, G_STATE = range(3)
# Scalars F[.] and I[.].
(F_CASH, F_MARGIN_L, F_MARGIN_S, F_QTY_L, F_QTY_S, F_COST_L, F_COST_S, F_CENTER, F_SPACING, F_TRIG1_L, F_TRIG2_L,
 F_TRIG1_S, F_TRIG2_S, F_LIQ_L, F_LIQ_S, F_ORDER_QTY, F_MINT_L, F_MINT_S, F_WORST_L, F_WORST_S, F_FUND_L,
 F_FUND_S, F_SQ1_L, F_SQ1_S, F_SQ2_L, F_SQ2_S, F_XD, F_XE_L, F_XE_S, F_XD_S) = range(30)
N_F = 30  # _MINT: oldest open time, _WORST: highest long / lowest short entry, _FUND: funding paid,
# _SQ1 / _SQ2: what each stop stage's order holds (set at each close, with the triggers);
# the exchange's books of the wallet: _XE its average entry of each side, F_XD (long) and F_XD_S
# (short) what its wallet holds beyond F_CASH from each side's closes (it realizes a close against
# the average entry, the books against the lot; the two agree again when the side is closed out,
# and a liquidation, which loses the margin in both, books the side's difference: _xd)
# Grid levels' G[., ., G_STATE]: 0 not wanted, 1 resting (its margin held), 2 armed at this close,
# 3 wanted but not placed (no free margin for it, or no room for its lot)
REST, ARMED, UNPLACED = 1.0, 2.0, 3.0
(I_STAGE_L, I_STAGE_S, I_HALTED, I_GEN, I_GEN_REGIME, I_VAR_BLOCK, I_PRUNE_SIDE, I_PRUNE_LOT, I_PRUNE_LABEL,
 I_NTR, I_STARTED, I_NLOT_L, I_NLOT_S) = range(13)
N_I = 13  # lots of a side are kept packed in L[side, :I[I_NLOT_L + side]]


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
    fill_model: int = 0  # engine.kernels.matching FILL_TOUCH, FILL_THROUGH (by a tick) or FILL_QUEUE
    queue_depth: float = 0.001  # queue model: a limit surely fills once the price went this fraction beyond it
    fill_seed: int = 0  # queue model: the seed of its draws


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
    F[F_CASH] = p.capital
    F[F_LIQ_L] = 0.0
    F[F_LIQ_S] = np.inf
    F[F_TRIG1_L] = F[F_TRIG2_L] = -np.inf
    F[F_TRIG1_S] = F[F_TRIG2_S] = np.inf
    I[I_PRUNE_LOT] = -1
    I[I_GEN_REGIME] = -1
    return L, G, F, I
