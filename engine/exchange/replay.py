"""Candles of a file served as if they were arriving live: the market-data source of paper
systems on recorded data (the bundled sample, a download). One candle closes every
``seconds_per_candle`` of wall time, starting ``warmup`` candles in (so indicators have
history); like an exchange, the last row served is the candle still forming."""

from __future__ import annotations

import time

from engine.data import Candles, FundingRates


class ReplaySource:
    def __init__(self, candles: Candles, *, seconds_per_candle: float = 1.0, warmup: int = 100,
                 clock=time.monotonic, funding: FundingRates | None = None):
        if len(candles) < 2:
            raise ValueError("a replay needs at least 2 candles")
        self.data = candles
        self.seconds_per_candle = seconds_per_candle
        self.warmup = min(max(warmup, 1), len(candles) - 1)
        self.clock = clock
        self.started: float | None = None  # the first request starts the clock: a replay is reproducible
        self.name = "replay"
        self.funding = funding
        self.streams = False  # (polled: each request sees the candles its clock has reached)

    def forming_index(self) -> int:
        """Index of the candle now forming (the one after the last closed): ``warmup`` at the
        first request, one more every ``seconds_per_candle`` after it."""
        if self.started is None:
            return self.warmup
        elapsed = self.clock() - self.started
        steps = int(elapsed / self.seconds_per_candle) if self.seconds_per_candle > 0 else len(self.data)
        return min(self.warmup + steps, len(self.data) - 1)

    def resume_after(self, t: int) -> None:
        """A system restarted from its state goes on from the candle after ``t``, the last it
        processed: the replay's clock starts there, not at its first candle again (where the
        system would wait, silent, as long as it had run)."""
        if self.started is None:
            self.warmup = min(max(int(self.data.time.searchsorted(t, side="right")), 1), len(self.data) - 1)

    @property
    def finished(self) -> bool:
        return self.forming_index() >= len(self.data) - 1

    async def candles(self, symbol: str, timeframe: str, since: int | None, limit: int) -> list[list[float]]:
        if self.started is None:
            self.started = self.clock()
        c = self.data
        end = self.forming_index() + 1
        if since is None:  # like an exchange: the newest ``limit``, or ``limit`` from ``since`` on
            start = max(end - limit, 0)
        else:
            start = int(c.time.searchsorted(since))
            end = min(end, start + limit)
        return [[int(c.time[i]), float(c.open[i]), float(c.high[i]), float(c.low[i]), float(c.close[i]),
                 float(c.volume[i])] for i in range(start, end)]

    async def funding_rates(self, symbol: str, since: int, until: int) -> list[tuple[int, float]]:
        """The recorded funding settlements in [since, until] (none without a funding file)."""
        f = self.funding
        if f is None:
            return []
        i, j = f.time.searchsorted(since), f.time.searchsorted(until, side="right")
        return [(int(f.time[k]), float(f.rate[k])) for k in range(i, j)]

    async def close(self) -> None:
        return None
