"""Runtime speed and footprint.

1. Our own time per candle: a paper trader on the bundled sample (replayed candle by candle,
   no network), from a closed candle to its orders handed to the exchange adapter, with the
   state file written (fsync) before sending; and the whole candle (fills, decide, orders,
   state saved twice).
2. 20 paper systems in one ``griddesk run`` process on the sample, each getting a new candle
   every ``--candle-seconds`` (1 s: 60x faster than real 1-minute candles, 900x faster than
   15-minute ones), for ``--seconds``: CPU share of one core and peak memory.

    python bench/bench_runtime.py [--candles 3000] [--systems 20] [--seconds 30] [--candle-seconds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.data import load_candles  # noqa: E402
from engine.exchange.base import MarketRules  # noqa: E402
from engine.exchange.paper import PaperExchange  # noqa: E402
from engine.exchange.replay import ReplaySource  # noqa: E402
from engine.risk import RiskGate  # noqa: E402
from engine.runtime.config import SystemConfig  # noqa: E402
from engine.runtime.trader import Trader  # noqa: E402
from engine.sample import SAMPLE_PATH  # noqa: E402
from engine.store import write_json_atomic  # noqa: E402

PARAMS = {"levels": 40, "spacing": "geometric", "trailing": "both", "fee": 0.001}


def latency(n: int) -> dict:
    candles = load_candles(SAMPLE_PATH).slice(0, n + 1)
    clock = [0.0]
    source = ReplaySource(candles, seconds_per_candle=1.0, warmup=1, clock=lambda: clock[0])
    rules = MarketRules("BTC/USDT", 0.01, 1e-5, 0.0, 5.0, "BTC", "USDT")
    paper = PaperExchange(source, rules, quote=10_000.0)
    with tempfile.TemporaryDirectory() as d:
        trader = Trader(SystemConfig(name="bench", params=PARAMS), paper, RiskGate(), d)
        per_candle = []

        async def go():
            await trader.boot()
            await trader.poll()
            for _ in range(n - 1):
                clock[0] += 1
                t = time.perf_counter()
                await trader.poll()
                per_candle.append(time.perf_counter() - t)

        asyncio.run(go())
    send = np.array(trader.latency) * 1000
    whole = np.array(per_candle) * 1000
    return {"candles": n - 1, "candles_with_orders": len(send),
            "close_to_sent_ms": {"median": float(np.median(send)), "p99": float(np.percentile(send, 99))},
            "whole_candle_ms": {"median": float(np.median(whole)), "p99": float(np.percentile(whole, 99))},
            "fills": trader.strategy.books(0.0)["fills"]}


def _proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def many_systems(n: int, seconds: float, candle_seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as d:
        config = Path(d) / "cryptos.json"
        systems = [{"name": f"paper {i}", "symbol": "BTC/USDT", "timeframe": "15m", "params": PARAMS,
                    "capital": 10_000, "mode": "paper", "dry_run": True, "enabled": True, "data": "sample",
                    "replay_seconds": candle_seconds} for i in range(n)]
        config.write_text(json.dumps({"schema_version": 1, "systems": systems}))
        # n systems of 10,000 on one symbol: a paper account they fit in under the default 20% per symbol
        write_json_atomic(Path(d) / "data" / "state" / "bot_state.json",
                          {"limits": {"paper_portfolio": n * 10_000 / 0.2}})
        p = subprocess.Popen([sys.executable, "-m", "app.cli", "run", "--config", str(config), "--data-dir",
                              str(Path(d) / "data"), "--poll", "1"], cwd=ROOT, stdout=subprocess.DEVNULL)
        time.sleep(8)  # start-up: imports, kernel cache, history
        cpu0, t0 = _proc_cpu_seconds(p.pid), time.monotonic()
        time.sleep(seconds)
        cpu1, t1 = _proc_cpu_seconds(p.pid), time.monotonic()
        rss = _peak_rss_mb(p.pid)
        p.terminate()
        p.wait(30)
        fills = 0
        for f in (Path(d) / "data" / "journal").glob("*.jsonl"):
            fills += f.read_text().count('"type":"fill"')
    return {"systems": n, "candle_every_s": candle_seconds, "measured_s": round(t1 - t0, 1),
            "cpu_share_of_one_core": (cpu1 - cpu0) / (t1 - t0), "peak_rss_mb": rss, "fills": fills}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--candles", type=int, default=3000)
    ap.add_argument("--systems", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--candle-seconds", type=float, default=1.0)
    args = ap.parse_args()
    lat = latency(args.candles)
    print(f"paper trader, {lat['candles']} candles ({lat['candles_with_orders']} sent orders): "
          f"close -> orders sent median {lat['close_to_sent_ms']['median']:.2f} ms, "
          f"p99 {lat['close_to_sent_ms']['p99']:.2f} ms; whole candle median "
          f"{lat['whole_candle_ms']['median']:.2f} ms, p99 {lat['whole_candle_ms']['p99']:.2f} ms")
    many = many_systems(args.systems, args.seconds, args.candle_seconds)
    print(f"{many['systems']} paper systems, a candle every {many['candle_every_s']} s each: "
          f"{many['cpu_share_of_one_core']:.1%} of one core, peak {many['peak_rss_mb']:.0f} MB, "
          f"{many['fills']} fills in {many['measured_s']} s")
    print(json.dumps({"latency": lat, "systems": many}, indent=2))


if __name__ == "__main__":
    main()
