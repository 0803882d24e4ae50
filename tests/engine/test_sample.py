"""The bundled sample candles: reproducible from their seed, valid, and shaped like crypto."""

import numpy as np
import pandas as pd

from engine.data import load_candles
from engine.kernels.metrics import max_drawdown_nb
from engine.sample import SAMPLE_PATH, generate


def test_sample_is_the_seeded_generator_output():
    bundled = pd.read_csv(SAMPLE_PATH)
    again = generate(seed=7)
    assert list(bundled.columns) == list(again.columns)
    assert np.array_equal(bundled["time"].to_numpy(), again["time"].to_numpy())
    for col in ("open", "high", "low", "close", "volume"):
        assert np.allclose(bundled[col].to_numpy(), again[col].to_numpy(), rtol=0, atol=1e-9)
    assert SAMPLE_PATH.stat().st_size < 5_000_000


def test_sample_is_valid_and_has_trends_a_crash_and_a_recovery():
    c = load_candles(SAMPLE_PATH)
    assert c.timeframe == "15m" and len(c) == 35_040 and not c.gaps
    close = c.close
    week = 7 * 96
    worst_week = max(float(max_drawdown_nb(close[i:i + week])[0]) for i in range(0, len(close) - week, 96))
    assert worst_week > 0.25  # a crash
    crash_bottom = int(np.argmin(close[: len(close) // 2 + 96 * 30]))
    assert close[crash_bottom:].max() > 1.3 * close[crash_bottom]  # and a recovery
    r = np.diff(np.log(close))
    vol = pd.Series(np.abs(r)).rolling(96 * 7).mean().dropna()
    assert vol.max() > 2.5 * vol.min()  # volatility clusters
