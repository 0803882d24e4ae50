"""Seeded generator of the bundled sample candles (resources/sample/).

It imitates crypto price action with a scripted sequence of regimes (quiet range, trend up,
blow-off, crash, capitulation range, recovery, chop) and GARCH(1,1) volatility clustering on
top; each bar is built from sub-steps so high and low come from a path, not from noise.
Run ``python -m engine.sample --out resources/sample/SAMPLE-15m.csv`` to make it again:
the same seed gives the same file, byte for byte.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported where the file is made: the app reads the sample without pandas
    import pandas as pd

# (days, drift per year, base volatility per year)
REGIMES = (
    (40, 0.0, 0.45),     # quiet range
    (60, 1.6, 0.55),     # steady uptrend
    (20, 4.0, 0.90),     # blow-off top
    (6, -18.0, 1.60),    # crash
    (30, -0.2, 0.95),    # capitulation range
    (70, 1.1, 0.60),     # recovery
    (50, 0.0, 0.50),     # chop
    (45, -0.9, 0.55),    # slow bleed
    (44, 0.5, 0.50),     # base building
)
SAMPLE_PATH = Path(__file__).resolve().parents[1] / "resources" / "sample" / "SAMPLE-15m.csv"


def generate(seed: int = 7, timeframe_min: int = 15, start: str = "2024-01-01",
             price: float = 42_000.0, substeps: int = 8) -> pd.DataFrame:
    import pandas as pd

    rng = np.random.default_rng(seed)
    bars_per_day = 24 * 60 // timeframe_min
    dt = timeframe_min / (365 * 24 * 60) / substeps
    drift = np.concatenate([np.full(d * bars_per_day, mu) for d, mu, _ in REGIMES])
    base_vol = np.concatenate([np.full(d * bars_per_day, s) for d, _, s in REGIMES])
    n = len(drift)
    # GARCH(1,1) on the per-bar variance multiplier: clusters of calm and of storm.
    omega, alpha, beta = 0.02, 0.12, 0.86
    mult = np.empty(n)
    var = 1.0
    shock = rng.standard_normal(n)
    for i in range(n):
        mult[i] = np.sqrt(var)
        var = omega + alpha * var * shock[i] ** 2 + beta * var
        var = min(var, 9.0)
    sigma = base_vol * mult
    steps = rng.standard_normal((n, substeps)) * (sigma * np.sqrt(dt))[:, None]
    steps += ((drift - 0.5 * sigma**2) * dt)[:, None]
    # Rare jumps (liquidation cascades and squeezes), larger in the crash.
    jump = rng.random(n) < np.where(drift < -5, 0.01, 0.0007)
    steps[jump, rng.integers(0, substeps, jump.sum())] += rng.normal(-0.012, 0.02, jump.sum())
    path = price * np.exp(np.cumsum(steps.ravel())).reshape(n, substeps)
    close = path[:, -1]
    open_ = np.r_[price, close[:-1]]
    high = np.maximum(path.max(axis=1), open_)
    low = np.minimum(path.min(axis=1), open_)
    ret = np.abs(np.log(close / open_))
    volume = rng.lognormal(3.0, 0.5, n) * (1.0 + 200.0 * ret)
    time = pd.Timestamp(start, tz="UTC").value // 1_000_000 + np.arange(n, dtype=np.int64) * timeframe_min * 60_000
    frame = pd.DataFrame({"time": time, "open": open_, "high": high, "low": low, "close": close, "volume": volume})
    for col in ("open", "high", "low", "close"):
        frame[col] = frame[col].round(2)
    frame["high"] = frame[["open", "high", "close"]].max(axis=1)
    frame["low"] = frame[["open", "low", "close"]].min(axis=1)
    frame["volume"] = frame["volume"].round(4)
    return frame


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=SAMPLE_PATH)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    frame = generate(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(f"wrote {len(frame)} bars to {args.out}")


if __name__ == "__main__":
    main()
