"""Grid maths: levels, rounding to tick and lot, quantities, net profit per grid after fees.

Plain numpy/numba functions shared by the backtest kernel, the CLI and (later) the Add System
preview, so every place shows the same numbers.
"""

from __future__ import annotations

import numpy as np
from numba import njit

ARITHMETIC, GEOMETRIC, ATR = 0, 1, 2
SPACING_NAMES = ("arithmetic", "geometric", "atr")
EQUAL_QUOTE, EQUAL_BASE = 0, 1
OPEN_END = 1 << 62  # the "last bar" of an order log row while the order still rests


@njit(cache=True, nogil=True, inline="always")
def round_tick_nb(price, tick):
    """Nearest multiple of ``tick`` (no rounding when tick is 0)."""
    if tick > 0.0:
        return np.round(price / tick) * tick
    return price


@njit(cache=True, nogil=True, inline="always")
def floor_lot_nb(qty, lot):
    """Round a quantity down to a whole number of lots (no rounding when lot is 0)."""
    if lot > 0.0:
        return np.floor(qty / lot) * lot
    return qty


@njit(cache=True, nogil=True, inline="always")
def lattice_price_nb(kind, base, step, j, top_j, top_price, tick):
    """Price of lattice level ``j``: ``base + j * step`` (arithmetic, as numpy.linspace computes
    it) or ``base * step ** j`` (geometric, step is the ratio); level ``top_j`` is exactly
    ``top_price`` so the grid's upper bound is hit without rounding error."""
    if j == top_j:
        p = top_price
    elif kind == GEOMETRIC:
        p = base * step**j
    else:
        p = j * step + base
    return round_tick_nb(p, tick)


@njit(cache=True, nogil=True)
def lattice_prices_nb(kind, base, step, j0, n, top_j, top_price, tick):
    """Prices of lattice levels j0 .. j0 + n - 1 (see ``lattice_price_nb``)."""
    out = np.empty(n)
    for i in range(n):
        out[i] = lattice_price_nb(kind, base, step, j0 + i, top_j, top_price, tick)
    return out


def grid_levels(lower: float, upper: float, n: int, spacing: str = "arithmetic", tick: float = 0.0) -> np.ndarray:
    """``n`` levels from ``lower`` to ``upper`` (both included), arithmetic or geometric."""
    if n < 2:
        raise ValueError("levels: a grid needs at least 2 levels")
    if not (0 < lower < upper):
        raise ValueError(f"lower/upper: need 0 < lower < upper, got {lower} and {upper}")
    if spacing == "arithmetic":
        step, kind, base = (upper - lower) / (n - 1), ARITHMETIC, lower
    elif spacing == "geometric":
        step, kind, base = (upper / lower) ** (1.0 / (n - 1)), GEOMETRIC, lower
    else:
        raise ValueError(f"spacing: {spacing!r} has no fixed levels (use arithmetic or geometric)")
    levels = lattice_prices_nb(kind, base, step, 0, n, n - 1, upper, tick)
    if np.any(np.diff(levels) <= 0):
        raise ValueError(f"tick: {tick} is too coarse for {n} levels between {lower} and {upper}")
    return levels


def level_quantities(levels: np.ndarray, capital: float, lot: float, qty_mode: int = EQUAL_QUOTE) -> np.ndarray:
    """Quantity per buy level: equal quote value ``capital / n`` per level, or an equal base
    amount (the same value at the grid's mid price), rounded down to the lot."""
    n = len(levels)
    if qty_mode == EQUAL_QUOTE:
        raw = capital / n / levels
    else:
        raw = np.full(n, capital / n / ((levels[0] + levels[-1]) / 2.0))
    if lot > 0:
        raw = np.floor(raw / lot) * lot
    return raw


def profit_per_grid(levels: np.ndarray, fee: float) -> np.ndarray:
    """Net profit of one round trip per slot (buy at L[k], sell at L[k+1], fee on both legs)
    as a fraction of the buy value: ``L[k+1] / L[k] * (1 - fee) - (1 + fee)``."""
    levels = np.asarray(levels, dtype=float)
    return levels[1:] / levels[:-1] * (1.0 - fee) - (1.0 + fee)


def profit_range(levels: np.ndarray, fee: float) -> tuple[float, float]:
    """(lowest, highest) net profit per grid: for arithmetic grids the lowest is at the top
    level and the highest at the bottom; geometric grids give one value."""
    p = profit_per_grid(levels, fee)
    return float(p.min()), float(p.max())
