"""Walk-forward windows, the data sets a study reads through, and the fitness it maximizes.

Each data set is cut into a held-out tail (the last ``tail_frac`` of its bars, which no trial
reads) and ``k`` sliding windows over the rest: each window trains on 70% and tests on the
30% after it; a window slides by its test length, so the test parts tile the data after the
first training part, and the last one ends where the tail starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from engine.data import Candles, FundingRates


@dataclass(frozen=True)
class Window:
    index: int
    train: tuple[int, int]  # bars [start, stop)
    test: tuple[int, int]


@dataclass(frozen=True)
class Split:
    windows: tuple[Window, ...]
    tail: tuple[int, int]


def walk_forward(n_bars: int, windows: int = 3, train_frac: float = 0.7, tail_frac: float = 0.15,
                 min_bars: int = 200, source: str = "data") -> Split:
    """The windows and the tail over ``n_bars`` bars. Refuses (naming ``source``) a split whose
    shortest part would have fewer than ``min_bars`` bars: a grid needs room to trade."""
    if windows < 1:
        raise ValueError(f"--windows: must be 1 or more, got {windows}")
    if not 0.0 < train_frac < 1.0:
        raise ValueError(f"--train-frac: must be between 0 and 1, got {train_frac}")
    if not 0.0 <= tail_frac < 1.0:
        raise ValueError(f"--tail: must be from 0 to below 1, got {tail_frac}")
    tail_start = n_bars - round(n_bars * tail_frac)
    test_frac = 1.0 - train_frac
    length = tail_start / (1.0 + test_frac * (windows - 1))  # window length; windows slide by its test part
    train_len = round(train_frac * length)
    cuts = [round(train_len + k * (tail_start - train_len) / windows) for k in range(windows + 1)]
    out = [Window(k, (cuts[k] - train_len, cuts[k]), (cuts[k], cuts[k + 1])) for k in range(windows)]
    shortest = min([w.test[1] - w.test[0] for w in out] + [out[0].train[1] - out[0].train[0]]
                   + ([n_bars - tail_start] if tail_frac > 0 else []))
    if shortest < min_bars:
        raise ValueError(f"{source}: {n_bars:,} bars are too few for {windows} walk-forward windows and a "
                         f"{tail_frac:.0%} tail (the shortest part would have {shortest} bars; {min_bars} needed)")
    return Split(tuple(out), (tail_start, n_bars))


@dataclass
class DataSet:
    """One market's candles (and funding) as a study reads them: every read goes through
    ``segment``, which keeps a log of what was read and why, so a test can check that the
    trials never read the tail."""

    name: str
    candles: Candles
    funding: FundingRates | None = None
    split: Split | None = None
    reads: list[tuple[int, int, str]] = field(default_factory=list)
    _cache: dict = field(default_factory=dict, repr=False)

    def segment(self, start: int, stop: int, purpose: str) -> Candles:
        self.reads.append((start, stop, purpose))
        key = (start, stop)
        if key not in self._cache:
            self._cache[key] = self.candles.slice(start, stop)
        return self._cache[key]

    def period(self, start: int, stop: int) -> str:
        from engine.data import utc_text

        return f"{utc_text(int(self.candles.time[start]))} .. {utc_text(int(self.candles.time[stop - 1]))}"


@dataclass
class Fitness:
    """How a backtest on one part of the data is scored, and how a trial's scores combine.

    A part's score is its Calmar ratio, the part's return over its maximum drawdown (not
    annualized: parts of different lengths stay comparable to each other within one study),
    with the drawdown floored at ``dd_floor`` so a curve that barely moved does not score
    infinity, less ``overtrade_weight`` for each 100% of fills per day beyond
    ``max_fills_per_day``. Per data set the window scores combine as their mean less
    ``stability_weight`` x their standard deviation (the square root of their variance, so
    it is in score units); a trial's score is the mean over data sets."""

    dd_floor: float = 0.02
    max_fills_per_day: float = 50.0
    overtrade_weight: float = 1.0
    stability_weight: float = 0.5

    def part(self, total_return: float, max_drawdown: float, fills: float, days: float) -> float:
        calmar = total_return / max(max_drawdown, self.dd_floor)
        per_day = fills / max(days, 1e-9)
        excess = max(0.0, per_day - self.max_fills_per_day) / self.max_fills_per_day
        return float(calmar - self.overtrade_weight * excess)

    def combine(self, scores: np.ndarray) -> float:
        """``scores[d, k]``: data set d, window k."""
        scores = np.asarray(scores, dtype=float)
        if scores.size == 0 or not np.isfinite(scores).all():
            return math.nan
        per_set = scores.mean(axis=1) - self.stability_weight * scores.std(axis=1)
        return float(per_set.mean())

    def check(self) -> None:
        for name in ("dd_floor", "max_fills_per_day"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name.replace('_', '-')}: must be > 0, got {getattr(self, name)}")
        for name in ("overtrade_weight", "stability_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"--{name.replace('_', '-')}: must be >= 0, got {getattr(self, name)}")


def open_data_sets(sources: list[str], *, resample: str = "", funding: list[str] = ()) -> list[DataSet]:
    """The data sets of a study from candle files ('sample': the bundled sample), each made into
    ``resample`` bars when given; ``funding``: one rate file for all or one per data set."""
    from pathlib import Path

    from engine.data import load_candles, load_funding
    from engine.data import resample as make_bars
    from engine.sample import SAMPLE_PATH

    if not sources:
        raise ValueError("--data: give at least one data set")
    if len(funding) not in (0, 1, len(sources)):
        raise ValueError(f"--funding: give one file for all data sets or one per data set ({len(sources)})")
    rates = [load_funding(Path(f)) for f in funding]
    out = []
    for i, src in enumerate(sources):
        candles = load_candles(SAMPLE_PATH if src == "sample" else Path(src))
        if resample:
            candles = make_bars(candles, resample)
        out.append(DataSet(Path(src).stem if src != "sample" else "sample", candles,
                           rates[i if len(rates) > 1 else 0] if rates else None))
    return out
