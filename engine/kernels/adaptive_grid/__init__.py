"""Adaptive long/short grid for USDT-margined perpetuals in hedge mode (numba).

Two grids around an Avellaneda-Stoikov reservation price: buys below open longs, sells above
open shorts; every opening fill is a lot with its own take-profit one spacing away. Which
grids run follows the regime; a z-score circuit breaker halts opening orders; lots are pruned
one at a time by a priority list; each side has a two-stage ATR stop; a VaR gate blocks new
exposure; isolated margin per side with tiered maintenance margin and liquidation; funding at
every settlement.

Timing (GRID_SEMANTICS.md): every decision uses data up to the close of bar i and acts from
bar i + 1. Within a bar, events at fixed prices (limit orders, stop triggers set at the last
close) happen in price order along the path open -> low -> high -> close when the bar closes
at or above its open, else open -> high -> low -> close; a side's liquidation is checked at the
end of each leg with the position it then has. Funding and market orders (prunes) happen at
the open.

Units of the Avellaneda-Stoikov terms: sigma is the standard deviation of per-bar log returns,
q the net inventory in order units (net quantity / one order's quantity), T in bars; the
reservation price is ``close * (1 - q * gamma * sigma^2 * T)`` and the spread, a fraction of
the price, ``gamma * sigma^2 * T + (2 / gamma) * ln(1 + gamma / kappa)``.

Its modules: ``layout`` (the state's arrays and every column by name, the records, the
settings), ``lots`` (the books of each lot: opening, closing, funding, liquidation), ``relay``
(the decisions at a close), ``loop`` (the backtest over bars and one close for the runtime).
This package's names are its interface.
"""

from engine.kernels.adaptive_grid.layout import *  # (the state's names, the records, the settings)
from engine.kernels.adaptive_grid.loop import adaptive_grid_log_nb, adaptive_grid_nb, decide_nb
from engine.kernels.adaptive_grid.lots import (
    book_funding_nb,
    liquidate_nb,
    next_stop_nb,
    on_open_fill_nb,
    on_prune_fill_nb,
    on_stop_fill_nb,
    on_stray_fill_nb,
    on_take_profit_fill_nb,
    pay_funding_nb,
)
from engine.kernels.adaptive_grid.relay import desired_orders_nb
