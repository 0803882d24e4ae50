"""Suggest: settings for a new system from the symbol's recent history, as the exchanges' "AI"
grids offer, but with the evidence they do not show. A quick walk-forward search (the
optimizer's, engine/optimize/study.py, in memory) on the last 7, 30 or 180 days: the trials are
chosen on two walk-forward windows, and the best is then run on the last 30% of the period,
which no trial read; its return, drawdown and fills a day there are what the user is shown.
Too little history is refused with the reason."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.data import Candles
from engine.optimize.study import DAY_MS, MEMORY, Search, Setup
from engine.optimize.walkforward import DataSet
from engine.strategies.errors import ParamError

PERIODS = (7, 30, 180)  # days, as the exchanges' bots look back
TRIALS = 64
WINDOWS, TRAIN_FRAC, TAIL_FRAC = 2, 0.7, 0.3
MIN_PART_BARS = 96  # a part of the period shorter than this cannot show what a grid does


@dataclass
class Suggestion:
    strategy: str
    days: int
    params: dict  # the settings: the form's, with the searched ones the best found
    searched: tuple[str, ...]
    bars: int
    trials: int
    tail: str  # the span the figures below are of (no trial read it)
    tail_days: float
    total_return: float
    max_drawdown: float
    fills_per_day: float
    source: str = ""  # the candles'

    def text(self) -> str:
        found = ", ".join(f"{k} {_short(self.params[k])}" for k in self.searched)
        of = f" of {self.source}" if self.source else ""
        return (f"Best of {self.trials} tried on the last {self.days} days{of} ({self.bars:,} bars): {found}. "
                f"On its last {self.tail_days:.1f} days, which no trial saw ({self.tail}): return "
                f"{self.total_return:+.2%}, max drawdown {self.max_drawdown:.2%}, {self.fills_per_day:.1f} fills a "
                "day. Past returns promise nothing.")


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def recent(candles: Candles, days: int) -> Candles:
    """The last ``days`` days of ``candles``; refused, with what there is, when they hold less."""
    if days not in PERIODS:
        raise ParamError("days", f"{days}: suggest looks back {', '.join(map(str, PERIODS))} days")
    if len(candles) == 0:
        raise ParamError("days", f"{candles.source or 'the market'}: no candles to suggest settings from")
    span = days * DAY_MS
    last = int(candles.time[-1]) + candles.timeframe_ms
    have = (last - int(candles.time[0])) / DAY_MS
    if have < days:
        raise ParamError("days", f"{candles.source}: {have:.1f} days of history, {days} needed to suggest settings "
                                 f"from the last {days} days; choose a shorter period")
    first = int(np.searchsorted(candles.time, last - span))
    return candles.slice(first, len(candles))


def suggest_settings(strategy: str, candles: Candles, days: int, base: dict, *, funding=None, trials: int = TRIALS,
                     seed: int = 1, stop=None) -> Suggestion:
    """The best settings for ``strategy`` on the last ``days`` of ``candles`` (``base``: the
    form's settings; the strategy's search space is varied, a range from the price at start)."""
    from engine.strategies.registry import SPACES

    window = recent(candles, days)
    base = dict(base)
    if "range_pct" in SPACES[strategy]:
        base.update(lower=0.0, upper=0.0)  # (the range searched is around the price at start)
    name = f"the last {days} days of {candles.source}"
    try:
        setup = Setup(strategy, [DataSet(name, window, funding)], base, None, WINDOWS, TRAIN_FRAC, TAIL_FRAC,
                      min_bars=MIN_PART_BARS)
    except ValueError as exc:
        if "too few" not in str(exc):
            raise
        tf = window.timeframe_ms / 60_000
        raise ParamError("days", f"the last {days} days are {len(window):,} bars of {tf:g} minutes: too few to "
                                 f"choose settings on and test them apart ({MIN_PART_BARS} bars a part); choose "
                                 "a longer period or a shorter timeframe") from None
    search = Search(setup, storage=MEMORY, study=f"suggest-{strategy}-{days}", seed=seed)
    try:
        search.run(trials, stop=stop)
        hold = search.holdout()["sets"][name]
        best = search.best_config().to_dict()
    finally:
        search.close()
    a, b = setup.data[0].split.tail
    tail_days = (b - a) * window.timeframe_ms / DAY_MS
    if hold.get("total_return") is None or not math.isfinite(hold["total_return"]):
        raise ValueError(f"the best settings could not be run on {hold['period']}")
    return Suggestion(strategy, days, best, tuple(sorted(setup.space)), len(window), trials, hold["period"],
                      tail_days, float(hold["total_return"]), float(hold["max_drawdown"]),
                      float(hold["fills"]) / tail_days, _named(candles.source))


def _named(source: str) -> str:
    """A candle file by its name (its folder says nothing); an exchange's candles as they are."""
    from pathlib import Path

    return Path(source).name if source and Path(source).is_file() else source
