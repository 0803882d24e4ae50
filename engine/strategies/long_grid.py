"""The long perpetual grid: a one-sided futures grid, the adaptive grid's long side alone.

Buys below the reservation price open longs, each closed by its take-profit one spacing up;
the side's two-stage ATR stop, pruning, the circuit breaker, funding, isolated margin and
liquidation work as in the adaptive grid, whose kernels, runtime runner and backtest this
strategy runs with ``no_short`` held on. What it adds is a grid that never opens a short,
with its own starting points and search space (no short-side settings to tune).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.strategies.adaptive_grid import AdaptiveGridConfig, AdaptiveGridRunner, check, run_adaptive_grid
from engine.strategies.errors import ParamError
from engine.strategies.space import FloatRange, IntRange
from engine.strategies.spec import StrategySpec, checked_settings

NAME = "long-grid"


@dataclass
class LongGridConfig(AdaptiveGridConfig):
    no_short: bool = True

    @classmethod
    def from_dict(cls, data: dict) -> LongGridConfig:
        cfg = checked_settings(cls, data, NAME)
        if cfg.no_short is not True:
            raise ParamError("no_short", "the long grid never opens a short (the adaptive grid trades both sides)")
        return cfg


class LongGridRunner(AdaptiveGridRunner):
    strategy = NAME


def _backtest(candles, cfg, funding=None, *, replay: bool = False, progress=None, risk=None, not_before: int = 0):
    result = run_adaptive_grid(candles, cfg, funding, orders=replay, progress=progress, risk=risk,
                               not_before=not_before)
    result.strategy = NAME
    return result


SPEC = StrategySpec(
    NAME, LongGridConfig, _backtest,
    search_space={
        "levels": IntRange(3, 20),
        "order_frac": FloatRange(0.01, 0.08, log=True),
        "atr_k": FloatRange(0.5, 3.0),
        "gamma": FloatRange(0.1, 5.0, log=True),
        "stop_m": FloatRange(2.0, 6.0),
        "leverage": FloatRange(1.0, 3.0),
    },
    check=lambda cfg, first_price=None: check(cfg), funded=True, perpetual=True, market="perpetual",
    runner=LongGridRunner, risk_gate=True, fixed=("no_short",),
    presets={
        "Defaults (1x, 10 levels)": {},
        "2x leverage": {"leverage": 2.0, "order_frac": 0.02},
        "Dense and small": {"levels": 20, "atr_k": 0.5, "order_frac": 0.015},
    })
