"""Candle download through the real ccxt client against a fake Binance on 127.0.0.1."""

import asyncio

import numpy as np
import pytest
from fake_exchange import FakeBinance

from engine.fetch import cache_path, fetch_candles, parse_when


@pytest.fixture
def fake(btc5m):
    c = btc5m.slice(0, 6000)
    rows = np.column_stack([c.time, c.open, c.high, c.low, c.close, c.volume])
    server = FakeBinance({"BTCUSDT": rows}, c.timeframe_ms)
    server.start()
    yield server, c
    server.stop()


def fetch(server, since, until, cache, progress=None):
    return asyncio.run(fetch_candles("binance", "BTC/USDT", "5m", since, until, cache_dir=cache,
                                     base_url=server.url, progress=progress))


def test_paginated_fetch_returns_the_exchanges_candles_with_progress(fake, tmp_path):
    server, c = fake
    seen = []
    got = fetch(server, int(c.time[0]), int(c.time[-1]) + 300_000, tmp_path, lambda d, t: seen.append((d, t)))
    assert len(got) == len(c)
    for col in ("time", "open", "high", "low", "close", "volume"):
        assert np.allclose(getattr(got, col), getattr(c, col))
    assert got.gaps == c.gaps  # the exchange's own outage is reported, not filled
    assert server.requests.count("GET /api/v3/klines") == 6  # 1000 bars a page
    done = [d for d, _ in seen]
    assert done == sorted(done) and seen[-1][0] == seen[-1][1]
    assert cache_path(tmp_path, "binance", "BTC/USDT", "5m").exists()


def test_the_cache_answers_again_and_only_new_spans_are_fetched(fake, tmp_path):
    server, c = fake
    mid = int(c.time[3000])
    fetch(server, int(c.time[0]), mid, tmp_path)
    first = server.requests.count("GET /api/v3/klines")
    again = fetch(server, int(c.time[0]), mid, tmp_path)
    assert server.requests.count("GET /api/v3/klines") == first  # no request at all
    assert len(again) == 3000
    wider = fetch(server, int(c.time[0]), int(c.time[-1]) + 300_000, tmp_path)
    assert server.requests.count("GET /api/v3/klines") - first == 3  # only bars 3000..5999
    assert len(wider) == len(c)


def test_parse_when():
    assert parse_when("2021-01-01") == 1609459200000
    assert parse_when("1609459200") == 1609459200000
    assert parse_when("1609459200000") == 1609459200000
    assert parse_when("2021-01-01T01:00:00+01:00") == 1609459200000
