"""The spot grid: a window of slots over a price lattice that buys one level down and sells one
level up (GRID_SEMANTICS.md). ``settings`` (what a user sets, checked by name, and the kernel's
numbers), ``runner`` (the paper and live runtime's side), ``backtest`` (the kernel over candles,
and the optimizer's sweep); its spec below.
"""

from __future__ import annotations

from engine.strategies.spec import StrategySpec
from engine.strategies.spot_grid.backtest import BacktestResult, run_spot_grid, summarize, sweep_spot_grid
from engine.strategies.spot_grid.runner import RUNTIME_UNSUPPORTED, SpotGridRunner
from engine.strategies.spot_grid.settings import (
    CHOICES,
    SEARCH_SPACE,
    SpotGridConfig,
    build_params,
    check_grid,
    check_settings,
    check_spot,
    initial_levels,
    planned_grid,
)


def backtest_spot(candles, cfg, funding=None, *, replay: bool = False, progress=None, risk=None, not_before: int = 0):
    """The spec's backtest: the spot-grid kernel (the hedged grid's too)."""
    return run_spot_grid(candles, cfg, funding, progress=progress, not_before=not_before)


SPEC = StrategySpec(
    "spot-grid", SpotGridConfig, backtest_spot, SEARCH_SPACE, check=check_spot, market="spot",
    runner=SpotGridRunner, sweep=sweep_spot_grid,
    presets={
        "Defaults (arithmetic, +-20%)": {},
        "Geometric, trailing both ways": {"spacing": "geometric", "trailing": "both", "levels": 30},
        "ATR-spaced, recentering": {"spacing": "atr", "atr_k": 1.0, "levels": 20, "recenter": 1.0},
        "Lower-only, ATR": {"mode": "lower-only", "spacing": "atr", "levels": 15},
        "Tight and dense": {"spacing": "geometric", "range_pct": 0.05, "levels": 20},  # (0.5% a step: over the fees)
    })
