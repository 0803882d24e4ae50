"""When a trader works: the run loop, which processes each candle as soon as the candle stream
shows it closed, else by polling; the candle and order streams, read for as long as the system
runs and opened again after a failure (REST polling meanwhile). A part of
``engine.runtime.trader.Trader``, on its state.
"""

from __future__ import annotations

import asyncio
import time

from engine.exchange import base
from engine.runtime import lifecycle

STREAM_REST_SECONDS = 60.0  # while candles come on a stream, the REST poll is only a safety net


class Feed:
    async def run(self, stop: asyncio.Event, poll_seconds: float = 1.0) -> None:
        """Boot, then process candles until ``stop``: at once when the candle stream shows one
        closed, else by polling every ``poll_seconds`` (every minute or so while the stream is
        up, as a safety net)."""
        await self.boot()
        streams = []
        if self.adapter.streams:
            streams.append(asyncio.ensure_future(self._keep_reading("candles", self._read_candles)))
        if self.adapter.order_stream:
            streams.append(asyncio.ensure_future(self._keep_reading("orders", self._read_orders)))
        silent_after = max(3 * self.tf / 1000, 30 * poll_seconds)
        try:
            while not stop.is_set():
                streamed, self._streamed = self._streamed, None
                try:
                    await self.poll(streamed)
                except base.TemporaryError as e:
                    self._log("feed_error", reason=str(e))
                if time.monotonic() - self.last_candle_wall > silent_after:
                    self._log("feed_silent", seconds=round(time.monotonic() - self.last_candle_wall))
                    self.status_note = "feed silent: polling again"
                    self.last_candle_wall = time.monotonic()
                    # a stream that says nothing is not trusted until it speaks again: poll meanwhile
                    self.streaming["candles"] = False
                await self._wait_for_candles(stop, poll_seconds)
        finally:
            for task in streams:
                task.cancel()
            await asyncio.gather(*streams, return_exceptions=True)
        self.risk.system(self.cfg.name).on = False
        await self._save()

    async def _wait_for_candles(self, stop: asyncio.Event, poll_seconds: float) -> None:
        """Until the next poll is due: a stream shows a candle closed (or fails), ``stop``, or
        the REST poll's time comes: ``poll_seconds`` after the last poll without a candle stream,
        a minute or so with one. The stream can open or drop while the loop waits, so the time
        is counted from the last poll and looked at again each ``poll_seconds`` (a stream that
        reopened did not let a poll meant for the time it was down go out after it)."""
        polled_at = time.monotonic()
        while self._streamed is None and not stop.is_set():
            on_stream = bool(self.streaming.get("candles"))
            self.feed = "stream" if on_stream else "polling"
            every = max(poll_seconds, STREAM_REST_SECONDS) if on_stream else poll_seconds
            left = polled_at + every - time.monotonic()
            if left <= 0 or await self._sleep(stop, min(left, poll_seconds)):
                return

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> bool:
        """Until ``stop``, a wake-up from a stream, or ``seconds``; whether a stream woke it."""
        self._wake.clear()
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        return self._wake.is_set()

    async def _keep_reading(self, name: str, read) -> None:
        """Read a stream for as long as the system runs. When it fails: report it, poll by REST
        meanwhile, and open it again after a backoff (1 s doubling to a minute)."""
        delay = 1.0
        while True:
            try:
                await read()
                if not self.streaming.get(name):
                    self._log("stream_open", stream=name)
                self.streaming[name] = True
                delay = 1.0
            except base.ExchangeError as e:
                self.streaming[name] = False
                self._log("stream_error", stream=name, reason=str(e), retry_seconds=delay)
                self._wake.set()  # poll now
                await asyncio.sleep(delay)
                delay = min(2 * delay, 60.0)

    async def _read_candles(self) -> None:
        """One update of the candle stream: wake the loop when a candle past the last processed
        has closed (a newer one is forming)."""
        rows = await self.adapter.watch_candles(self.cfg.symbol, self.cfg.timeframe, max(self.last_time, 0))
        if not self.streaming.get("candles") and rows:  # (re)opened: what it held before is not to be trusted
            self._stream_from = rows[-1][0]
        if self.last_time >= 0 and len(rows) > 1 and rows[-1][0] > self.last_time + self.tf:
            self._streamed = rows
            self._wake.set()

    async def _read_orders(self) -> None:
        """One update of our order stream. A fill (or an order the exchange ended) is reported
        at once; it is applied, through the exchange's REST answer, at the candle close, where
        the grid's decisions are made (GRID_SEMANTICS.md)."""
        for r in await self.adapter.watch_orders(self.cfg.symbol):
            o = self.book.orders.get(r.client_order_id)
            if o is None or o.state not in lifecycle.WORKING:
                continue
            seen = f"{r.status}: {r.filled:g} filled at {r.average:,.2f} (stream), applied at the candle close"
            if self._stream_seen.get(o.cid) != seen and (r.filled > o.filled or r.status != base.OPEN):
                self._stream_seen[o.cid] = seen
                self._log("order_update", cid=o.cid, status=r.status, filled=r.filled, price=r.average)
                if o.state != lifecycle.PENDING_CANCEL:  # (one being cancelled keeps its reason)
                    o.note = seen  # (shown in the Orders tab until the close applies it)
        if len(self._stream_seen) > 10_000:
            self._stream_seen = {c: v for c, v in self._stream_seen.items() if c in self.book.orders}
