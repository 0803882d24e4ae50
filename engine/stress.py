"""Stress test of a spot grid: the same grid on many price paths resampled from the history.

A path is a block bootstrap of the history's bars: each bar taken as its moves from the close
before it (open, high, low and close over the previous close, in logs), in blocks of ``block``
bars drawn at random (their volatility clustering kept within a block), chained from the
history's first close. Regime-shifted variants add a constant drift to every bar's logs: a crash
(the path ends at half its price, the history's own drift taken out), a trend (double), a range
(no drift). Each path runs through the backtest's kernel; what comes out, per scenario, is the
distribution of return and maximum drawdown, the chance the price leaves the grid's range, and
the share of the time the price sits outside the range (the grid idle) and the equity below the
capital (underwater).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
from numba import njit

from engine.data import Candles
from engine.strategies.errors import ParamError

# scenario -> the path's total log drift over its length (None: the history's own)
STRESSED = ("spot-grid", "infinity-grid")  # the strategies it runs: spot kernel grids without a hedge
SCENARIOS = {"bootstrap": None, "crash": math.log(0.5), "trend": math.log(2.0), "range": 0.0}


# a scenario's summary as tables show it: (key, heading, format)
SUMMARY_COLUMNS = (("scenario", "Scenario", "{}"), ("return_p5", "Return p5", "{:+.2%}"),
                   ("return_p50", "p50", "{:+.2%}"), ("return_p95", "p95", "{:+.2%}"),
                   ("drawdown_p50", "Max DD p50", "{:.2%}"), ("drawdown_p95", "p95", "{:.2%}"),
                   ("left_range", "Leaves range", "{:.1%}"), ("idle", "Idle", "{:.1%}"),
                   ("underwater", "Underwater", "{:.1%}"))
EXPLAINED = ("Each scenario runs the grid on paths resampled from the candles in blocks (bootstrap: their own drift; "
             "crash: ending at half the price; trend: at double; range: where it began). Leaves range: the share of "
             "paths whose price went beyond the grid as first laid (a trailing grid follows it there); idle: the "
             "share of the time the close was outside that range; underwater: the share of the time the equity was "
             "below the capital.")


@dataclass
class StressResult:
    scenario: str
    total_return: np.ndarray  # a value per path
    max_drawdown: np.ndarray
    left_range: np.ndarray  # the price went beyond the lowest or highest level of the grid as first laid
    idle: np.ndarray  # share of the bars whose close is outside that range (a trailing grid moves with it)
    underwater: np.ndarray  # share of the bars whose equity is below the capital

    def summary(self) -> dict:
        q = np.percentile
        return {"scenario": self.scenario, "paths": len(self.total_return),
                "return_p5": float(q(self.total_return, 5)), "return_p50": float(q(self.total_return, 50)),
                "return_p95": float(q(self.total_return, 95)),
                "drawdown_p50": float(q(self.max_drawdown, 50)), "drawdown_p95": float(q(self.max_drawdown, 95)),
                "left_range": float(self.left_range.mean()), "idle": float(self.idle.mean()),
                "underwater": float(self.underwater.mean())}


def bar_moves(candles: Candles) -> np.ndarray:
    """(n - 1, 4): each bar's log open, high, low and close over the close before it."""
    prev = np.log(candles.close[:-1])
    return np.stack([np.log(candles.open[1:]) - prev, np.log(candles.high[1:]) - prev,
                     np.log(candles.low[1:]) - prev, np.log(candles.close[1:]) - prev], axis=1)


@njit(cache=True, nogil=True)
def _path_nb(ratios, rows, first, factor, o, h, lo, c):  # pragma: no cover (compiled)
    """Bars 1.. of a path: ``ratios[rows]`` (each bar over the close before it) chained from
    the bar ``first`` (open, high, low, close), each times ``factor``; high and low hold the
    open and the close."""
    o[0], h[0], lo[0], c[0] = first[0], first[1], first[2], first[3]
    prev = first[3]
    for i in range(1, len(c)):
        r = rows[i - 1]
        base = prev * factor
        close = base * ratios[r, 3]
        op = base * ratios[r, 0]
        o[i] = op
        c[i] = close
        h[i] = max(base * ratios[r, 1], op, close)
        lo[i] = min(base * ratios[r, 2], op, close)
        prev = close


def resample(candles: Candles, moves: np.ndarray, block: int, rng: np.random.Generator,
             drift: float | None = None, ratios: np.ndarray | None = None) -> Candles:
    """One path as long as ``candles``: blocks of ``moves`` (``bar_moves``; ``ratios``: their
    exponentials, when already made) chained from its first bar; with ``drift``, every bar's
    moves shifted so the path's closes drift by that log amount in all (the drawn bars' own
    mean taken out first)."""
    n = len(candles)
    starts = rng.integers(0, len(moves) - block + 1, size=-(-(n - 1) // block))
    rows = (starts[:, None] + np.arange(block)).ravel()[: n - 1]
    shift = 0.0 if drift is None else drift / (n - 1) - float(moves[rows, 3].mean())
    o, h, lo, c = (np.empty(n) for _ in range(4))
    first = np.array([candles.open[0], candles.high[0], candles.low[0], candles.close[0]])
    _path_nb(np.exp(moves) if ratios is None else ratios, rows, first, math.exp(shift), o, h, lo, c)
    return replace(candles, open=o, high=h, low=lo, close=c, gaps=[], filled=None,
                   source=f"{candles.source} (resampled)")


def run_path(candles: Candles, cfg) -> tuple[float, float, bool, float, float]:
    """(total return, max drawdown, left the range, idle share, underwater share) of one path."""
    from engine.strategies.spot_grid.backtest import run_spot_grid

    r = run_spot_grid(candles, cfg, log_capacity=4096)
    start = r.params.start_bar
    bottom, top = first_range(r)
    c = candles.close[start:]
    outside = (c < bottom) | (c > top)
    return (float(r.metrics["total_return"]), float(r.metrics["max_drawdown"]),
            bool((candles.low[start:] < bottom).any() or (candles.high[start:] > top).any()),
            float(outside.mean()), float((r.equity[start:] < cfg.capital).mean()))


def first_range(r) -> tuple[float, float]:
    """The prices a spot grid's first layout spans: its levels; an infinity grid's lowest price
    and no top; an ATR-spaced grid's first orders (its levels come from the data)."""
    from engine.kernels import spot_grid as kernel

    if r.levels is not None:
        return float(r.levels[0]), float(r.levels[-1])
    if r.params.mode == kernel.INFINITY:
        return float(r.params.lower), math.inf
    first = r.orders[r.orders["placed"] == r.params.start_bar]
    return float(first["price"].min()), float(first["price"].max())


def stress(candles: Candles, cfg, *, paths: int = 1000, block: int = 1440, seed: int = 1,
           scenarios: tuple[str, ...] = tuple(SCENARIOS), workers: int | None = None) -> list[StressResult]:
    """``paths`` resampled paths per scenario through the spot grid ``cfg`` (a SpotGridConfig),
    in ``workers`` threads (the kernel lets go of the GIL); the same seed, the same paths."""
    if getattr(cfg, "hedged", True) or not hasattr(cfg, "range_pct"):
        raise ParamError("strategy", f"the stress test runs spot grids ({', '.join(STRESSED)})")
    for name in scenarios:
        if name not in SCENARIOS:
            raise ParamError("scenario", f"{name!r} is not one of {', '.join(SCENARIOS)}")
    if not 1 <= block <= len(candles) // 4:
        raise ParamError("block", f"must be 1 to {len(candles) // 4:,} bars (a quarter of the history), got {block:,}")
    if paths < 1:
        raise ParamError("paths", f"must be at least 1, got {paths}")
    moves = bar_moves(candles)
    ratios = np.exp(moves)
    out = []
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for k, name in enumerate(scenarios):
            seeds = np.random.SeedSequence([seed, k]).spawn(paths)

            def one(s, drift=SCENARIOS[name]):
                return run_path(resample(candles, moves, block, np.random.default_rng(s), drift, ratios), cfg)

            rows = np.array(list(pool.map(one, seeds)), dtype=float)
            out.append(StressResult(name, rows[:, 0], rows[:, 1], rows[:, 2].astype(bool), rows[:, 3], rows[:, 4]))
    return out
