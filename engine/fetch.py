"""Download candles through ccxt ``fetch_ohlcv`` page by page, into a Parquet cache.

The cache (one file per exchange, symbol and timeframe in the user data folder) only grows:
a later fetch asks the exchange for what lies outside the cached span. Gaps the exchange
itself has are kept and reported like any other gap, never filled.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from engine.data import Candles, DataError, candles_from_frame, parse_timeframe


def default_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("griddesk", appauthor=False)) / "candles"


def parse_when(text: str | int) -> int:
    """Epoch ms from epoch ms/s digits or an ISO 8601 date (UTC when no zone is given)."""
    s = str(text).strip()
    if s.isdigit():
        v = int(s)
        return v * 1000 if v < 10**11 else v
    ts = pd.Timestamp(s)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return int(ts.value // 1_000_000)


def cache_path(cache_dir: Path, exchange_id: str, symbol: str, timeframe: str) -> Path:
    safe = symbol.replace("/", "-").replace(":", "_")
    return cache_dir / exchange_id / f"{safe}-{timeframe}.parquet"


def _read_cache(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:
        raise DataError(f"{path}: candle cache is unreadable ({exc}); it was kept, move it away to refetch") from None
    return frame


def _write_cache(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    frame.to_parquet(tmp, index=False)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


async def _fetch_range(exchange, symbol: str, timeframe: str, tf_ms: int, since: int, until: int,
                       limit: int, progress, done0: int, total: int) -> list[list]:
    rows: list[list] = []
    cursor = since
    while cursor < until:
        batch = await exchange.fetch_ohlcv(symbol, timeframe, since=cursor, limit=limit)
        batch = [r for r in batch if cursor <= r[0] < until]
        if not batch:
            break
        rows.extend(batch)
        nxt = batch[-1][0] + tf_ms
        if nxt <= cursor:
            break
        cursor = nxt
        if progress:
            progress(min(done0 + (cursor - since) // tf_ms, total), total)
    return rows


async def fetch_candles(
    exchange_id: str,
    symbol: str,
    timeframe: str,
    since: int,
    until: int | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    cache_dir: Path | None = None,
    base_url: str | None = None,
    limit: int = 1000,
    exchange=None,
) -> Candles:
    """Candles of ``symbol`` from ``since`` (incl.) to ``until`` (excl., default: now) from the
    cache and the exchange. ``progress(done, total)`` is called in bars after each page."""
    tf_ms = parse_timeframe(timeframe)
    until = until if until is not None else int(time.time() * 1000) // tf_ms * tf_ms
    if until <= since:
        raise ValueError("--until: must be after --since")
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    path = cache_path(cache_dir, exchange_id, symbol, timeframe)
    cached = _read_cache(path)
    total = (until - since + tf_ms - 1) // tf_ms
    wanted: list[tuple[int, int]] = []
    if cached is None or cached.empty:
        wanted.append((since, until))
    else:
        lo, hi = int(cached["time"].iloc[0]), int(cached["time"].iloc[-1]) + tf_ms
        if since < lo:
            wanted.append((since, min(lo, until)))
        if until > hi:
            wanted.append((max(hi, since), until))
    own = exchange is None
    rows: list[list] = []
    if wanted:
        if own:
            from engine.exchange.ccxt_factory import make_exchange

            exchange = make_exchange(exchange_id, base_url=base_url)
        import ccxt

        try:
            done = total - sum((b - a) // tf_ms for a, b in wanted)
            for a, b in wanted:
                rows += await _fetch_range(exchange, symbol, timeframe, tf_ms, a, b, limit, progress, done, total)
                done += (b - a) // tf_ms
        except ccxt.BadSymbol:
            raise DataError(f"{exchange_id} {symbol}: the exchange has no such symbol") from None
        except ccxt.NetworkError as exc:  # unreachable, timed out, refused: nothing was written
            raise DataError(f"{exchange_id}: the exchange could not be reached ({type(exc).__name__}); check the "
                            "connection (or --exchange-url); nothing was written") from None
        except ccxt.ExchangeError as exc:
            raise DataError(f"{exchange_id} {symbol} {timeframe}: the exchange refused: {exc}") from None
        finally:
            if own:
                await exchange.close()
    if progress:
        progress(total, total)
    fresh = pd.DataFrame(rows, columns=["time", "open", "high", "low", "close", "volume"])
    frame = fresh if cached is None else pd.concat([cached, fresh], ignore_index=True)
    frame = frame.drop_duplicates("time", keep="last").sort_values("time", ignore_index=True)
    frame = frame.astype({"time": np.int64, **{c: np.float64 for c in ("open", "high", "low", "close", "volume")}})
    if len(fresh):
        _write_cache(path, frame)
    part = frame[(frame["time"] >= since) & (frame["time"] < until)]
    if len(part) < 2:
        raise DataError(f"{exchange_id} {symbol} {timeframe}: the exchange returned {len(part)} bar(s) for that span")
    candles = candles_from_frame(part.reset_index(drop=True), f"{exchange_id}:{symbol}:{timeframe}")
    return replace(candles, symbol=symbol.split(":")[0])
