"""Crash test: ``griddesk run`` trades live (the real ccxt client) against the fake Binance, a
spot grid and a perpetual adaptive grid, and is killed with SIGKILL at random moments, 20
times, restarted each time. At the end the exchange holds no duplicate order, every fill is in
the journal exactly once, the state file holds exactly the orders the exchange has open, and
the books equal the exchange's balances (spot) or positions and wallet (perpetual)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import FUNDING, ROOT, shared_file
from fake_exchange import FakeBinance, wait_until
from fake_futures import FakeBinanceFutures

from engine.data import load_funding
from engine.store import read_json, read_jsonl

KEY, SECRET = "crash-key", "crash-secret"
KILLS = 20
# the system trades 10,000 of the account: its exposure within 20% of it per symbol (the
# perpetual's, at 3x, up to 30,000)
ACCOUNT = {"spot": 60_000.0, "perpetual": 200_000.0}


def start(config: Path, data_dir: Path, url: str, log) -> subprocess.Popen:
    env = dict(os.environ, GRIDDESK_BINANCE_API_KEY=KEY, GRIDDESK_BINANCE_SECRET=SECRET)
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run", "--config", str(config), "--data-dir", str(data_dir),
         "--exchange-url", url, "--poll", "0.05"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def logged(data_dir: Path, text: str) -> int:
    logs = data_dir / "logs"
    return sum(p.read_text().count(text) for p in logs.glob("*.jsonl")) if logs.exists() else 0


def hot_boots(data_dir: Path) -> int:
    return logged(data_dir, '"hot_boot"')


SYSTEMS = {
    "spot": {"symbol": "BTC/USDT", "params": {"levels": 20, "spacing": "arithmetic", "range_pct": 0.03,
                                              "recenter": 1.0, "fee": 0.001}},
    "perpetual": {"symbol": "BTC/USDT:USDT", "market": "perpetual", "strategy": "adaptive-grid",
                  "params": {"leverage": 3.0, "stop_m": 2.0, "prune_age_hours": 4.0, "levels": 8, "atr_k": 0.25}},
}


@pytest.mark.slow
@pytest.mark.parametrize("market", ["spot", "perpetual"])
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(btc5m, tmp_path, market):
    c = btc5m.slice(0, 3000)
    rows = np.c_[c.time, c.open, c.high, c.low, c.close, c.volume]
    if market == "spot":
        fake = FakeBinance({"BTCUSDT": rows}, c.timeframe_ms, keys={KEY: SECRET},
                           balances={"USDT": ACCOUNT[market]}, cursor=100)
    else:  # the adaptive grid's indicators need 300 candles before it opens
        f = load_funding(shared_file(FUNDING))
        fake = FakeBinanceFutures({"BTCUSDT": rows}, c.timeframe_ms, keys={KEY: SECRET},
                                  balances={"USDT": ACCOUNT[market]}, cursor=300,
                                  funding=list(zip(f.time.tolist(), f.rate.tolist(), strict=True)))
    config = tmp_path / "cryptos.json"
    config.write_text(json.dumps({"schema_version": 1, "systems": [{
        "name": "crash", "exchange": "binance", "timeframe": "5m", **SYSTEMS[market],
        "capital": 10_000, "mode": "live", "dry_run": False, "enabled": True}]}))
    data_dir = tmp_path / "data"
    rng = random.Random(int(os.environ.get("CRASH_SEED", "20261121")))
    fake.start(candle_seconds=0.08 if market == "spot" else 0.4)  # (a perpetual asks more of the exchange a candle)
    log = open(tmp_path / "run.log", "ab")  # noqa: SIM115
    p = None
    try:
        # a first run, not killed, compiles what the kernels' cache lacks (a fresh clone, an
        # edited kernel), as a user's first run does: a kill every second or two in a first
        # compile (longer than that) would leave nothing cached, and no run would ever trade
        p = start(config, data_dir, fake.url, log)
        assert wait_until(lambda: logged(data_dir, '"order_filled"'), timeout=180)
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        boots = hot_boots(data_dir)
        for i in range(KILLS):
            p = start(config, data_dir, fake.url, log)
            if i % 3 == 0:  # anywhere, start-up included
                time.sleep(rng.uniform(0.2, 2.5))
            else:  # while it trades: after its hot boot
                wait_until(lambda seen=boots: hot_boots(data_dir) > seen, timeout=30)
                time.sleep(rng.uniform(0.0, 1.5) if market == "spot" else rng.uniform(1.0, 3.0))
            boots = hot_boots(data_dir)
            p.send_signal(signal.SIGKILL)
            p.wait(10)
        assert boots >= KILLS * 2 // 3
        # the market stops moving; one last run catches up and is stopped cleanly
        with fake._lock:
            fake.stop_at = fake.cursor
            last_closed = int(rows[fake.cursor - 1, 0])
        view = data_dir / "state" / "bot_state.json"  # (rewritten within 2 s of a change)
        p = start(config, data_dir, fake.url, log)

        def caught_up():
            return view.exists() and (read_json(view).data or {}).get("systems", {}).get("crash", {}).get(
                "last_time") == last_closed

        assert wait_until(caught_up, timeout=60), (tmp_path / "run.log").read_text()[-3000:]
        time.sleep(0.5)  # a last poll finds nothing new
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0, (tmp_path / "run.log").read_text()[-3000:]
    finally:
        if p is not None and p.poll() is None:  # (a failed wait above: no run may outlive the test)
            p.kill()
            p.wait(10)
        log.close()
        fake.stop()

    text = (tmp_path / "run.log").read_text()
    assert "Traceback" not in text, text[-3000:]
    # no duplicate order: every order the exchange holds was sent once
    assert fake.duplicate_attempts == []
    cids = [o["cid"] for o in fake.our_orders("gd")]
    assert len(cids) == len(set(cids))
    assert len(fake.sent_cids) == len(set(fake.sent_cids))  # no id reached the order endpoint twice
    assert len(cids) > 20 + 10 if market == "spot" else len(cids) > 8 + 10  # the first grid and orders sent
    # after fills (a run spends most of its life starting under load, and replays the candles it
    # missed without sending)
    # every fill journaled exactly once
    records, problems = read_jsonl(data_dir / "journal" / "crash.jsonl")
    assert problems == []
    journaled = [r["cid"] for r in records if r["type"] == "fill"]
    assert len(journaled) == len(set(journaled))
    filled = {o["cid"] for o in fake.our_orders("gd") if o["status"] == "FILLED"}
    # (the perpetual's grid, 8 levels a side an ATR apart, fills less often in the same time)
    assert set(journaled) == filled and len(filled) > (10 if market == "spot" else 6)
    # the state file holds exactly what the exchange has open
    state = read_json(data_dir / "state" / "systems" / "crash.json").data
    resting = {o["cid"] for o in fake.our_orders("gd") if o["status"] in ("NEW", "PARTIALLY_FILLED")}
    assert {o["cid"] for o in state["orders"]} == resting
    # and the strategy's books agree with the exchange's
    books = state["summary"]
    if market == "spot":
        usdt = fake.free["USDT"] + sum(o["locked"] for o in fake.open_orders_of())
        assert abs(books["cash"] - (usdt - (ACCOUNT[market] - 10_000))) < 0.01
    else:
        held = fake.positions_of()
        assert books["long"] == pytest.approx(held["long"], abs=1e-9)
        assert books["short"] == pytest.approx(held["short"], abs=1e-9)
        price = books["price"]
        upnl = sum((1 if side == "LONG" else -1) * (price - p[1]) * p[0] for (_, side), p in fake.pos.items())
        # the wallet (PnL, the commissions and the funding it charged) plus the open positions
        # is the books' equity: the books take each settlement from the exchange's funding
        # history (a fill made while the process was dead is booked after the settlements it
        # replays, on a position the exchange did not hold then). A settlement still awaiting
        # the exchange's figure has none in its history (the fake posts at once): charged nothing.
        awaiting = sum(v[1] + v[2] for v in state.get("funding_due", {}).values())
        assert fake.wallet + upnl - (ACCOUNT[market] - 10_000) == pytest.approx(
            books["equity"] + awaiting, abs=0.01)
        assert books["funding"] + awaiting == pytest.approx(-fake.funding_paid, abs=0.01)
