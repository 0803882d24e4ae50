"""The indicator set the strategies use, computed in one call from candles."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from engine.data import Candles
from engine.kernels import indicators as kernels


@dataclass(frozen=True)
class IndicatorParams:
    atr_periods: tuple[int, ...] = (14, 28)
    ema_periods: tuple[int, ...] = (14, 28, 50, 100, 200)
    sma_period: int = 20
    std_period: int = 20
    kama_period: int = 10
    zscore_atr: int = 14
    regime_theta: float = 0.15
    regime_er: float = 0.5
    regime_lag: int = 1
    regime_atr: int = 14


def compute_indicators(candles: Candles, params: IndicatorParams | None = None) -> dict[str, np.ndarray]:
    """Every indicator by column name: atr14, atr28, ema14..ema200, sma20, std20, kama10, er10,
    zscore20 and regime (0..4, see ``engine.kernels.indicators.REGIME_NAMES``)."""
    p = params or IndicatorParams()
    h, l, c = candles.high, candles.low, candles.close
    out: dict[str, np.ndarray] = {}
    atr_periods = sorted({*p.atr_periods, p.zscore_atr, p.regime_atr})
    for n in atr_periods:
        out[f"atr{n}"] = kernels.atr_nb(h, l, c, n)
    for n in p.ema_periods:
        out[f"ema{n}"] = kernels.ema_nb(c, n)
    out[f"sma{p.sma_period}"] = sma = kernels.sma_nb(c, p.sma_period)
    out[f"std{p.std_period}"] = kernels.stddev_nb(c, p.std_period, 1.0)
    kama, er = kernels.kama_er_nb(c, p.kama_period)
    out[f"kama{p.kama_period}"] = kama
    out[f"er{p.kama_period}"] = er
    out[f"zscore{p.sma_period}"] = kernels.zscore_nb(c, sma, out[f"atr{p.zscore_atr}"])
    out["regime"] = kernels.regime_nb(
        kama, er, out[f"atr{p.regime_atr}"], p.regime_theta, p.regime_er, p.regime_lag
    )
    return out


def indicators_frame(candles: Candles, params: IndicatorParams | None = None) -> pd.DataFrame:
    ind = compute_indicators(candles, params)
    return pd.DataFrame({"time": candles.time, **ind})
