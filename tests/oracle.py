"""Independent references for the spot grid, written from GRID_SEMANTICS.md alone.

``reference_grid`` is the pure-Python oracle of the reference arithmetic grid;
``backtesting_reference_grid`` runs the same case through backtesting.py.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def reference_grid(o, h, l, c, lower, upper, n, capital, fee, lot):
    """Returns (fills, equity per bar); fills are (bar, slot, side, price, qty) tuples."""
    levels = np.linspace(lower, upper, n)
    qty = [math.floor(capital / n / levels[k] / lot) * lot for k in range(n - 1)]
    holding = [False] * (n - 1)
    cash = capital
    pos = 0.0
    fills = []
    equity = [capital]
    for i in range(1, len(c)):
        for k in range(n - 1):
            if not holding[k] and l[i] <= levels[k]:
                price = min(o[i], levels[k])
                value = price * qty[k]
                cash -= value + value * fee
                pos += qty[k]
                holding[k] = True
                fills.append((i, k, 1, price, qty[k]))
            elif holding[k] and h[i] >= levels[k + 1]:
                price = max(o[i], levels[k + 1])
                value = price * qty[k]
                cash += value - value * fee
                pos -= qty[k]
                holding[k] = False
                fills.append((i, k, -1, price, qty[k]))
        equity.append(cash + pos * c[i])
    return fills, np.array(equity)


def backtesting_reference_grid(o, h, l, c, lower, upper, n, capital, fee, lot):
    """The reference grid in backtesting.py. Prices are quoted per lot so order sizes are
    whole units; a copy of bar 0 is put in front because backtesting.py first calls
    ``next()`` on its second bar, and the reference places its orders at the close of bar 0.
    Returns (final equity, number of fills)."""
    from backtesting import Backtest, Strategy

    levels = np.linspace(lower, upper, n)
    units = [math.floor(capital / n / levels[k] / lot) for k in range(n - 1)]
    scale = lot
    frame = pd.DataFrame({
        "Open": np.r_[o[0], o] * scale, "High": np.r_[h[0], h] * scale,
        "Low": np.r_[l[0], l] * scale, "Close": np.r_[c[0], c] * scale,
        "Volume": np.ones(len(c) + 1),
    }, index=pd.date_range("2020-01-01", periods=len(c) + 1, freq="min"))

    class ReferenceGrid(Strategy):
        def init(self):
            self.holding = [False] * (n - 1)
            self.pending = [None] * (n - 1)
            self.fills = 0

        def next(self):
            active = set(map(id, self.orders))
            for k in range(n - 1):
                order = self.pending[k]
                if order is not None and id(order) not in active:
                    self.holding[k] = not self.holding[k]
                    self.pending[k] = None
                    self.fills += 1
                if self.pending[k] is None and units[k] >= 1:
                    if self.holding[k]:
                        self.pending[k] = self.sell(size=units[k], limit=levels[k + 1] * scale)
                    else:
                        self.pending[k] = self.buy(size=units[k], limit=levels[k] * scale)

    bt = Backtest(frame, ReferenceGrid, cash=capital, commission=fee, exclusive_orders=False,
                  trade_on_close=False, hedging=False, finalize_trades=False)
    stats = bt.run()
    strat = stats._strategy
    # Fills on the last bar are seen by no further next(); count them from the broker's view.
    active = set(map(id, strat.orders))
    last = sum(1 for p in strat.pending if p is not None and id(p) not in active)
    return float(stats["Equity Final [$]"]), strat.fills + last
