"""The spot-grid backtest kernel (numba).

Fill model: GRID_SEMANTICS.md. The grid is a window of ``ns`` slots over a price lattice:
slot k buys at P(j0 + k) and, once it holds, sells at P(j0 + k + 1); after the sell it buys
again. Orders are decided at the close of a bar and can fill from the next bar on, so no
round trip completes inside one bar and nothing can look ahead.

The kernel is event-driven: it keeps the highest resting buy, the lowest resting sell and
the prices that trigger a stop, a trailing shift or a recenter as a "quiet band". A bar whose
low and high stay inside the band cannot change anything, so it costs two comparisons and
the mark-to-market; other bars scan only the levels they crossed.

Intra-bar order (used for stops and for the order of trades in one bar): a bar that closes at
or above its open is taken as open -> low -> high -> close, otherwise open -> high -> low ->
close. Buy orders lock their cost plus fee when placed (an order the account cannot pay for
is refused and counted), so a fill never makes a balance negative.

Its modules: ``layout`` (the state's arrays and every column by name, the records, the
settings), ``fills``, ``relay`` (laying the grid and the decisions at a close), ``hedge`` (the
hedged grid's short), ``loop`` (the backtest over bars). This package's names are its interface.
"""

from engine.kernels.spot_grid.fills import on_fill_nb, on_market_fill_nb
from engine.kernels.spot_grid.layout import *  # (the state's names, the records, the settings)
from engine.kernels.spot_grid.loop import spot_grid_nb
from engine.kernels.spot_grid.relay import decide_nb, start_nb
