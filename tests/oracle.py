"""Independent references for the spot grid, written from GRID_SEMANTICS.md alone.

``reference_grid`` is the pure-Python oracle of the reference arithmetic grid;
``backtesting_reference_grid`` runs the same case through backtesting.py.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

_M64 = (1 << 64) - 1


def _mix(x):
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def queue_draw(seed, t, price):
    """The queue model's draw (engine/kernels/matching.py's docstring): splitmix64's finaliser
    over the seed times the golden-ratio constant plus the candle's time, then over that xor
    the price in units of 1e-8; the top 53 bits as a fraction."""
    x = _mix((seed * 0x9E3779B97F4A7C15 + t) & _M64)
    x = _mix(x ^ round(price * 1e8))
    return (x >> 11) / 2.0 ** 53


def _fills(rule, buy, price, extreme, t, tick, depth, seed):
    """Whether a buy (``buy``) or sell limit at ``price`` fills on a bar whose low (buy) or
    high (sell) is ``extreme``: GRID_SEMANTICS.md's touch and through rules, and the queue
    model (a chance of (how far beyond) / (depth x price), nothing at a bare touch)."""
    if rule == "touch":
        return extreme <= price if buy else extreme >= price
    if rule == "through":
        return extreme < price - tick if buy else extreme > price + tick
    beyond = price - extreme if buy else extreme - price
    return beyond > 0 and queue_draw(seed, t, price) < beyond / (depth * price)


def reference_grid(o, h, l, c, lower, upper, n, capital, fee, lot, *, rule="touch", t=None, tick=0.0, depth=0.001,
                   seed=0):
    """Returns (fills, equity per bar); fills are (bar, slot, side, price, qty) tuples. ``rule``:
    touch (the reference), through (by more than ``tick``) or queue (``t``: the bars' times)."""
    levels = np.linspace(lower, upper, n)
    qty = [math.floor(capital / n / levels[k] / lot) * lot for k in range(n - 1)]
    return _walk_slots(o, h, l, c, levels, qty, capital, fee, rule=rule, t=t, tick=tick, depth=depth, seed=seed)


def _walk_slots(o, h, l, c, levels, qty, capital, fee, *, held=0.0, rule="touch", t=None, tick=0.0, depth=0.001,
                seed=0):
    """The reference grid's slots (slot k buys ``qty[k]`` at ``levels[k]``, sells at
    ``levels[k + 1]``), all flat at the close of bar 0, each acting at most once a bar;
    ``held``: coins bought at bar 1's open and never sold. Returns (fills, equity per bar)."""
    holding = [False] * len(qty)
    cash = capital
    pos = 0.0
    fills = []
    equity = [capital]
    for i in range(1, len(c)):
        if i == 1 and held:
            value = o[1] * held
            cash -= value + value * fee
            pos += held
        for k in range(len(qty)):
            ti = None if t is None else int(t[i])
            if not holding[k] and _fills(rule, True, levels[k], l[i], ti, tick, depth, seed):
                price = min(o[i], levels[k])
                value = price * qty[k]
                cash -= value + value * fee
                pos += qty[k]
                holding[k] = True
                fills.append((i, k, 1, price, qty[k]))
            elif holding[k] and _fills(rule, False, levels[k + 1], h[i], ti, tick, depth, seed):
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


def reference_infinity_grid(o, h, l, c, lowest, step, capital, fee):
    """Pionex's infinity grid, from its description alone: levels ``lowest x (1 + step)**j``
    without end; every level j buys ``Q / L(j)`` coins at L(j) and sells them at L(j + 1), Q the
    same quote for each, so that the coins held above the price are worth V = Q (1 + step) /
    step; the capital pays for V and for a buy at every level from the lowest to the price
    (``(1 + fee) (Q (levels below + 1) + V)``). Each level is a slot of the reference grid
    (GRID_SEMANTICS.md: placed at the close of bar 0, those above the price buy at bar 1's open;
    each acts at most once a bar). Levels beyond every high the data reaches are simulated as
    one holding: bought at bar 1's open, never sold. Returns (fills, equity per bar); fills are
    (bar, level, side, price, qty)."""
    r = 1.0 + step
    p0 = c[0]
    below = 0
    while lowest * r ** (below + 1) <= p0:
        below += 1
    q_quote = capital / ((1.0 + fee) * (below + 1 + r / step))
    top = below + 1
    while lowest * r ** top <= max(h) * r * r:
        top += 1
    levels = [lowest * r**j for j in range(top + 1)]
    qty = [q_quote / levels[j] for j in range(top)]
    tail = q_quote * r / step / levels[top]  # every level from ``top`` up: sum of Q / L(j)
    return _walk_slots(o, h, l, c, levels, qty, capital, fee, held=tail)
