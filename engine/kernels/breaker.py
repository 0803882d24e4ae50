"""The risk gate's volatility breaker, one rule for the runtime and the backtest.

A closed candle whose ATR changed by more than ``jump`` (a fraction) since the last candle's
pauses the system's new openings; ``calm_candles`` candles in a row whose changes stay under
half of it resume them (a change in between, neither, starts the count again). A candle
without an ATR (warming up) changes nothing.
"""

from __future__ import annotations

import numpy as np
from numba import njit

LAST_ATR, ON, CALM = range(3)  # the breaker's state: the last ATR, paused (1.0) or not, calm count


@njit(cache=True, nogil=True)
def atr_breaker_nb(atr, jump, calm_candles, state, paused):
    """Feed the ATR at each close (``atr[i]``) to the breaker in ``state`` (updated);
    ``paused[i]``: the breaker pauses openings after close i. Returns the change of the last
    candle's ATR (0 when there was nothing to compare)."""
    change = 0.0
    for i in range(len(atr)):
        a = atr[i]
        change = 0.0
        if state[LAST_ATR] > 0.0 and a > 0.0:
            change = abs(a / state[LAST_ATR] - 1.0)
            if change > jump:
                state[ON] = 1.0
                state[CALM] = 0.0
            elif state[ON] == 1.0:
                state[CALM] = state[CALM] + 1.0 if change < jump / 2.0 else 0.0
                if state[CALM] >= calm_candles:
                    state[ON] = 0.0
        if a > 0.0:
            state[LAST_ATR] = a
        paused[i] = state[ON] == 1.0
    return change


def atr_breaker(atr: np.ndarray, jump: float, calm_candles: int, first: int = 0) -> np.ndarray:
    """Where the breaker pauses openings, fed the ATR of every close from bar ``first`` on (the
    first a system sees); False before it."""
    paused = np.zeros(len(atr), dtype=np.bool_)
    atr_breaker_nb(np.ascontiguousarray(atr[first:], dtype=np.float64), float(jump), float(calm_candles),
                   np.zeros(3), paused[first:])
    return paused
