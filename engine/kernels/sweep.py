"""Many spot grids over the same candles in one parallel kernel (numba ``prange``).

Each parameter set runs the very kernel a single backtest runs (``spot_grid_nb``), so a
swept configuration and a backtest of it agree to the last bit; only the summary numbers an
optimizer scores come back, not the logs.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from engine.kernels import spot_grid
from engine.kernels.metrics import max_drawdown_nb

# Columns of the sweep's output, one row per parameter set.
SWEEP_COLUMNS = ("final_equity", "total_return", "max_drawdown", "fills", "fees", "grid_profit", "ok")
_EQ, _RET, _DD, _FILLS, _FEES, _PROFIT, _OK = range(7)

@njit(cache=True, nogil=True)
def _one(time, open_, high, low, close, atr, zeros, tiers, p, out):
    n = len(close)
    start = p.start_bar
    S, SI, F, I, H = spot_grid.new_state(p, close[start])
    cap = 1024 + n // 64 + 8 * p.levels
    trades = np.empty(cap, dtype=spot_grid.TRADE_DTYPE)
    orders = np.empty(cap, dtype=spot_grid.ORDER_DTYPE)
    equity = np.empty(n)
    counters = np.zeros(spot_grid.N_COUNTERS, dtype=np.int64)
    money = np.zeros(spot_grid.N_MONEY)
    bar = np.int64(0)  # (a literal 0 would compile the kernel once more, for the constant)
    while True:
        bar = spot_grid.spot_grid_nb(time, open_, high, low, close, atr, zeros, zeros, tiers, p, S, SI, F, I, H, trades,
                              orders, equity, counters, money, bar)
        if bar < 0 or bar >= n:
            break
        used_t, used_o = I[spot_grid.I_TRADES], I[spot_grid.I_ORDERS]
        if used_t * 2 > len(trades):  # the logs are full: double the one that filled, go on
            bigger_t = np.empty(2 * len(trades), dtype=spot_grid.TRADE_DTYPE)
            bigger_t[:used_t] = trades[:used_t]
            trades = bigger_t
        if used_o * 2 > len(orders):
            bigger_o = np.empty(2 * len(orders), dtype=spot_grid.ORDER_DTYPE)
            bigger_o[:used_o] = orders[:used_o]
            orders = bigger_o
    if bar < 0:
        out[_OK] = 0.0
        return
    e0 = equity[start]
    out[_EQ] = equity[n - 1]
    out[_RET] = equity[n - 1] / e0 - 1.0 if e0 > 0.0 else 0.0
    out[_DD] = max_drawdown_nb(equity[start:])[0]
    out[_FILLS] = counters[spot_grid.C_FILLS]
    out[_FEES] = money[spot_grid.M_FEES]
    out[_PROFIT] = money[spot_grid.M_GRID_PROFIT]
    out[_OK] = 1.0


@njit(cache=True, nogil=True, parallel=True)
def spot_grid_sweep_nb(time, open_, high, low, close, atrs, atr_row, params, out):
    """Run every parameter set of ``params`` (a typed list of SpotGridParams without a hedge)
    over the candles, in parallel; ``atrs[atr_row[j]]`` is set j's ATR series. Row j of
    ``out`` gets SWEEP_COLUMNS (``ok`` 0 when a log overflowed: a bug)."""
    zeros = np.zeros(len(close))
    # (made here, not a global: numba takes a global array for a read-only one, and the kernel
    # would compile once more for it than for the backtest's)
    no_tiers = np.zeros((1, 3))
    for jj in prange(len(params)):
        j = np.int64(jj)
        _one(time, open_, high, low, close, atrs[atr_row[j]], zeros, no_tiers, params[j], out[j])
