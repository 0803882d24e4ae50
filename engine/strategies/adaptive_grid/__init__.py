"""The adaptive long/short perpetual grid: two grids around an Avellaneda-Stoikov reservation
price, run by the regime (engine/kernels/adaptive_grid/). ``settings`` (what a user sets,
checked by name, and the kernel's numbers), ``backtest`` (its indicators and the kernel over
candles), ``runner`` (the paper and live runtime's side); its spec below.
"""

from __future__ import annotations

from engine.strategies.adaptive_grid.backtest import (
    PerpResult,
    indicator_arrays,
    log_return_std,
    prepare,
    run_adaptive_grid,
)
from engine.strategies.adaptive_grid.runner import AdaptiveGridRunner
from engine.strategies.adaptive_grid.settings import (
    SEARCH_SPACE,
    AdaptiveGridConfig,
    build_params,
    check,
    estimated_liquidation,
)
from engine.strategies.spec import StrategySpec


def _check(cfg: AdaptiveGridConfig, first_price: float | None = None) -> None:
    check(cfg)


def _backtest(candles, cfg, funding=None, *, replay: bool = False, progress=None, risk=None, not_before: int = 0):
    return run_adaptive_grid(candles, cfg, funding, orders=replay, progress=progress, risk=risk, not_before=not_before)


SPEC = StrategySpec(
    "adaptive-grid", AdaptiveGridConfig, _backtest, SEARCH_SPACE, check=_check, funded=True, perpetual=True,
    market="perpetual", runner=AdaptiveGridRunner, risk_gate=True,
    presets={
        "Defaults (1x, 10 levels a side)": {},
        "3x leverage": {"leverage": 3.0, "order_frac": 0.02},
        "Wide spacing": {"atr_k": 2.0, "levels": 6},
    })
