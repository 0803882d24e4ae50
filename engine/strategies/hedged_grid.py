"""The hedged lower-only grid (USDT only): a lower-only ATR-spaced spot grid with a reserve,
profit banking and a short on the perpetual that opens when the price breaks below the grid.

It runs in the spot-grid kernel (engine/kernels/spot_grid/), whose hedge and reserve
settings a plain spot grid leaves at zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from engine.strategies.space import FloatRange, IntRange
from engine.strategies.spec import StrategySpec
from engine.strategies.spot_grid import SpotGridConfig, backtest_spot, check_spot


@dataclass
class HedgedGridConfig(SpotGridConfig):
    hedged: ClassVar[bool] = True
    mode: str = "lower-only"
    spacing: str = "atr"
    reserve_ratio: float = 0.25  # of the capital, never spent by the grid: it margins the hedge
    fee_reserve: float = 0.01  # of the capital, kept for fees
    bank_frac: float = 0.10  # of each winning round trip, moved to the reserve
    bank_cap: float = 0.01  # of the capital: the most banking puts aside
    hedge_ratio: float = 0.5  # short size as a share of the spot inventory when it opens
    hedge_step: float = 0.25  # added share for each further spacing down
    hedge_max: float = 1.0
    hedge_leverage: float = 2.0
    hedge_fee: float = 0.0002  # perpetual taker fee
    hedge_tp: float = 0.03  # close at this profit, as a share of the short's notional
    hedge_reversal_k: float = 1.0  # or when the close rises above EMA + k x ATR
    ema_period: int = 50
    funding_rate: float = 0.0001  # per 8 h when no funding file covers a settlement
    tiers: str = ""  # a tier table file; "": the symbol's Binance brackets (engine.kernels.perp.tiers_for)


SEARCH_SPACE = {
    "levels": IntRange(5, 40),
    "atr_k": FloatRange(0.5, 3.0),
    "hedge_ratio": FloatRange(0.0, 1.0),
    "hedge_tp": FloatRange(0.01, 0.1, log=True),
    "hedge_reversal_k": FloatRange(0.5, 3.0),
}


SPEC = StrategySpec(
    "hedged-grid", HedgedGridConfig, backtest_spot, SEARCH_SPACE, check=check_spot, funded=True, hedged=True,
    presets={
        "Defaults (hedge 50%)": {},
        "Full hedge": {"hedge_ratio": 1.0, "hedge_step": 0.0},
        "Light hedge, wide grid": {"hedge_ratio": 0.25, "atr_k": 2.0},
    })
