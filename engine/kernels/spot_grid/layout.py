"""The spot grid's state, by name: the slot table S (floats) and SI (ints), the scalars F and I,
the hedge H, the trade and order records, the counters and money totals, and the settings
(``SpotGridParams``) the kernels take. ``new_state`` makes them."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

RANGE, LOWER_ONLY, INFINITY = 0, 1, 2
MODE_NAMES = ("range", "lower-only", "infinity")
TRAIL_NONE, TRAIL_UP, TRAIL_DOWN, TRAIL_BOTH = 0, 1, 2, 3
TRAIL_NAMES = ("none", "up", "down", "both")
STOP_SELL_ALL, STOP_KEEP_COIN = 0, 1

# Trade roles.
GRID_BUY, GRID_SELL, REBUY, REBALANCE_SELL, STOP_LOSS, TAKE_PROFIT, HEDGE_OPEN_SHORT, HEDGE_CLOSE_SHORT, \
    HEDGE_LIQUIDATION, BAG_REDUCE, RESERVE_BUY = range(11)
ROLE_NAMES = ("GRID_BUY", "GRID_SELL", "REBUY", "REBALANCE_SELL", "STOP_LOSS", "TAKE_PROFIT", "HEDGE_OPEN_SHORT",
              "HEDGE_CLOSE_SHORT", "HEDGE_LIQUIDATION", "BAG_REDUCE", "RESERVE_BUY")

TRADE_DTYPE = np.dtype([
    ("bar", np.int64), ("time", np.int64), ("side", np.int8), ("price", np.float64),
    ("qty", np.float64), ("fee", np.float64), ("level", np.int64), ("role", np.int8),
    ("pnl", np.float64), ("cash", np.float64), ("position", np.float64), ("cost", np.float64),
])  # (cash, position and cost basis after the trade: every change of them is a trade's)
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
H_QTY, H_ENTRY, H_MARGIN, H_LIQ_PRICE, H_LAST_ADD, H_SHARE, H_PENDING = range(7)
N_HEDGE = 7

# Slot columns: floats S[k, .] and ints SI[k, .].
S_BUY, S_SELL, S_QTY, S_COST = 0, 1, 2, 3
SI_STATE, SI_ORDER, SI_FLAG = 0, 1, 2
SLOT_OFF, SLOT_FLAT, SLOT_HOLD, SLOT_DISABLED = 0, 1, 2, 3
FLAG_NONE, FLAG_REBUY, FLAG_RETRY, FLAG_DEFER = 0, 1, 2, 3

# Scalar state F[.] (floats): cash, cash locked by resting buys, coin held and its cost; the
# price lattice (engine.kernels.grid.lattice_price_nb: base, step, top price); a slot's order
# size (quote, or base with equal-base quantities); coin to trade at market at the next open (> 0
# sell leftover inventory, < 0 buy an infinity grid's reserve); the reserve the grid never spends.
(F_CASH, F_LOCKED, F_POSITION, F_COST, F_LATTICE_BASE, F_LATTICE_STEP, F_TOP_PRICE, F_SLOT_QUOTE, F_SLOT_BASE_QTY,
 F_MARKET_SELL, F_RESERVED) = range(11)
N_F = 11
# Scalar state I[.] (ints): the lattice level of slot 0 (slot k buys at level I_FIRST_LEVEL + k),
# the slots in the window, the highest slot with a resting buy and the lowest with a resting sell
# (-1 / I_SLOTS when none), the lattice's top level and spacing kind, trades and orders
# recorded, stopped, slots waiting to place their order, resting buys and how many were laid.
(I_FIRST_LEVEL, I_SLOTS, I_TOP_BUY, I_LOW_SELL, I_TOP_LEVEL, I_SPACING, I_TRADES, I_ORDERS, I_STOPPED, I_WAITING,
 I_BUYS, I_BUYS_LAID) = range(12)
N_I = 12

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
    step: float = 0.0  # infinity: each level this fraction above the one below
    fill_model: int = 0  # engine.kernels.matching FILL_TOUCH, FILL_THROUGH (by a tick) or FILL_QUEUE
    queue_depth: float = 0.001  # queue model: a level surely fills once the price went this fraction beyond it
    fill_seed: int = 0  # queue model: the seed of its draws
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


def market_qty(F) -> float:
    """Leftover inventory decided to be sold at market (0 when none)."""
    return float(F[F_MARKET_SELL])


def order_capacity_needed(p: SpotGridParams) -> int:
    """Free rows the order log needs before a decide (a new grid, or one order per slot)."""
    return 2 * (p.levels + 1) + 4


@njit(cache=True, nogil=True)
def new_state(p, first_price):
    """Fresh grid state (S, SI, F, I): the arrays the kernel and the strategy functions share.
    Keeping them outside the kernel lets a run pause and go on (when its logs fill up) and lets
    the live runtime drive the same decisions."""
    ns_cap = p.levels + 1
    S = np.zeros((ns_cap, 4))
    SI = np.zeros((ns_cap, 3), dtype=np.int64)
    SI[:, SI_ORDER] = -1
    F = np.zeros(N_F)
    I = np.zeros(N_I, dtype=np.int64)
    H = np.zeros(N_HEDGE)
    H[H_LIQ_PRICE] = np.inf
    F[F_CASH] = p.capital
    F[F_RESERVED] = p.capital * p.reserve_ratio
    F[F_SLOT_QUOTE] = p.capital * (1.0 - p.reserve_ratio) / p.levels
    if p.mode == INFINITY:
        # Each slot's buy is worth Q = V g / (1 + g), V being the value the grid keeps in coin (its
        # slots above the price and the reserve above its window: sum of Q / L_j over j up, V / L);
        # the capital pays for V at the start and for a buy at every level down to the lowest.
        r = 1.0 + p.step
        below = below_levels_nb(p.lower, r, first_price) + 1  # levels from the lowest to the price
        fee = max(p.fee, p.taker_fee)
        F[F_SLOT_QUOTE] = p.capital * (1.0 - p.reserve_ratio) / ((1.0 + fee) * (below + r / p.step))
    if p.qty_mode == 1:
        mid = (p.lower + p.upper) / 2.0 if p.upper > 0.0 else first_price
        raw = p.capital * (1.0 - p.reserve_ratio) / p.levels / mid
        F[F_SLOT_BASE_QTY] = np.floor(raw / p.lot) * p.lot if p.lot > 0.0 else raw
    return S, SI, F, I, H


@njit(cache=True, nogil=True)
def below_levels_nb(base, ratio, price):
    """The level j of the lattice ``base x ratio**j`` at or below ``price`` (0 below the base),
    exact at a level's own price."""
    if price <= base:
        return 0
    j = int(np.floor(np.log(price / base) / np.log(ratio)))
    while base * ratio ** (j + 1) <= price:
        j += 1
    while j > 0 and base * ratio**j > price:
        j -= 1
    return j


def record_counts(I) -> tuple[int, int]:
    """(trades, orders) written so far."""
    return int(I[I_TRADES]), int(I[I_ORDERS])
