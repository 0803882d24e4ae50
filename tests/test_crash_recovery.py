"""Crash test: ``griddesk run`` trades live (the real ccxt client) against the fake Binance and
is killed with SIGKILL at random moments, 20 times, restarted each time. At the end the
exchange holds no duplicate order, every fill is in the journal exactly once, and the state
file holds exactly the orders the exchange has open."""

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
from fake_exchange import FakeBinance, wait_until

from engine.store import read_json, read_jsonl

ROOT = Path(__file__).resolve().parents[1]
KEY, SECRET = "crash-key", "crash-secret"
KILLS = 20
ACCOUNT = 60_000.0  # the system trades 10,000 of it: within 20% of the portfolio per symbol


def start(config: Path, data_dir: Path, url: str, log) -> subprocess.Popen:
    env = dict(os.environ, GRIDDESK_BINANCE_API_KEY=KEY, GRIDDESK_BINANCE_SECRET=SECRET)
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run", "--config", str(config), "--data-dir", str(data_dir),
         "--exchange-url", url, "--poll", "0.05"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def hot_boots(data_dir: Path) -> int:
    logs = data_dir / "logs"
    return sum(p.read_text().count('"hot_boot"') for p in logs.glob("*.jsonl")) if logs.exists() else 0


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(btc5m, tmp_path):
    c = btc5m.slice(0, 3000)
    rows = np.c_[c.time, c.open, c.high, c.low, c.close, c.volume]
    fake = FakeBinance({"BTCUSDT": rows}, c.timeframe_ms, keys={KEY: SECRET}, balances={"USDT": ACCOUNT},
                       cursor=100)
    config = tmp_path / "cryptos.json"
    config.write_text(json.dumps({"schema_version": 1, "systems": [{
        "name": "crash", "exchange": "binance", "symbol": "BTC/USDT", "timeframe": "5m",
        "params": {"levels": 20, "spacing": "arithmetic", "range_pct": 0.03, "recenter": 1.0, "fee": 0.001},
        "capital": 10_000, "mode": "live", "dry_run": False, "enabled": True}]}))
    data_dir = tmp_path / "data"
    rng = random.Random(20261121)
    fake.start(candle_seconds=0.08)
    log = open(tmp_path / "run.log", "ab")  # noqa: SIM115
    try:
        boots = 0
        for i in range(KILLS):
            p = start(config, data_dir, fake.url, log)
            if i % 3 == 0:  # anywhere, start-up included
                time.sleep(rng.uniform(0.2, 2.5))
            else:  # while it trades: after its hot boot
                wait_until(lambda seen=boots: hot_boots(data_dir) > seen, timeout=30)
                time.sleep(rng.uniform(0.0, 1.5))
            boots = hot_boots(data_dir)
            p.send_signal(signal.SIGKILL)
            p.wait(10)
        assert boots >= KILLS * 2 // 3
        # the market stops moving; one last run catches up and is stopped cleanly
        fake.stop_at = fake.cursor
        time.sleep(0.2)
        last_closed = int(rows[fake.cursor - 1, 0])
        state_path = data_dir / "state" / "systems" / "crash.json"
        p = start(config, data_dir, fake.url, log)
        assert wait_until(lambda: state_path.exists() and read_json(state_path).data.get("last_time") == last_closed,
                          timeout=60), (tmp_path / "run.log").read_text()[-3000:]
        time.sleep(0.5)  # a last poll finds nothing new
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0, (tmp_path / "run.log").read_text()[-3000:]
    finally:
        log.close()
        fake.stop()

    text = (tmp_path / "run.log").read_text()
    assert "Traceback" not in text, text[-3000:]
    # no duplicate order: every order the exchange holds was sent once
    assert fake.duplicate_attempts == []
    cids = [o["cid"] for o in fake.orders.values()]
    assert len(cids) == len(set(cids))
    assert len(fake.sent_cids) == len(set(fake.sent_cids))  # no id reached the order endpoint twice
    assert len(cids) > 20 + 10  # the first grid of 20 and orders sent after fills (a run spends
    # most of its life starting under load, and replays the candles it missed without sending)
    # every fill journaled exactly once
    records, problems = read_jsonl(data_dir / "journal" / "crash.jsonl")
    assert problems == []
    journaled = [r["cid"] for r in records if r["type"] == "fill"]
    assert len(journaled) == len(set(journaled))
    filled = {o["cid"] for o in fake.orders.values() if o["status"] == "FILLED"}
    assert set(journaled) == filled and len(filled) > 10
    # the state file holds exactly what the exchange has open
    state = read_json(data_dir / "state" / "systems" / "crash.json").data
    assert {o["cid"] for o in state["orders"]} == {o["cid"] for o in fake.open_orders_of()}
    # and the strategy's books agree with the exchange's balances
    usdt = fake.free["USDT"] + sum(o["locked"] for o in fake.open_orders_of())
    assert abs(state["summary"]["cash"] - (usdt - (ACCOUNT - 10_000))) < 1e-6 * 10_000
