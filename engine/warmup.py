"""Compile every numba kernel GridDesk runs, once, into the on-disk cache, so that the first
backtest, the first ON of a system and each test process load them instead of compiling
(``griddesk warmup``; ``make test`` runs it before the tests). It runs the real paths on a
slice of the bundled sample: each strategy's backtest (with and without the replay's logs, the
perpetual's with the risk gate), the optimizer's sweep, and a paper spot and perpetual system
trading a few dozen candles through the runtime. The spot grids', the adaptive perpetual
grids' and the futures grid's kernels compile in three processes side by side; a warm cache
makes it a few seconds."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from engine.data import load_candles
from engine.kernels import mark_warm
from engine.sample import SAMPLE_PATH


def _backtests(candles, part: str) -> None:
    from engine.risk import RiskLimits
    from engine.strategies.registry import SPECS
    from engine.trips import round_trips

    for spec in SPECS.values():
        if _part_of(spec) != part:
            continue
        for replay in (False, True):
            result = spec.backtest(candles, spec.config(), replay=replay)
        round_trips(result.trades, spec.perpetual)  # (the replay's)
        if spec.risk_gate:
            spec.backtest(candles, spec.config(), risk=RiskLimits())
        if spec.sweep:
            spec.sweep(candles, [spec.config(levels=n) for n in (10, 20)])
    if part == "spot":
        from engine.strategies.spot_grid import SpotGridConfig, run_spot_grid

        run_spot_grid(candles, SpotGridConfig(spacing="atr", levels=10))  # the ATR-spaced grid's paths


def _part_of(spec) -> str:
    """Which warm-up process compiles a strategy's kernels: the spot grids', the futures grid's
    (its own kernel), the other perpetual grids' (the adaptive grid's)."""
    from engine.strategies import futures_grid

    return "futures" if spec.name == futures_grid.NAME else "perpetual" if spec.perpetual else "spot"


async def _trade(candles, strategy: str, market: str, symbol: str, params: dict, folder: str) -> None:
    from engine.risk import RiskGate, RiskLimits
    from engine.runtime.config import SystemConfig
    from engine.runtime.runner import build_adapter
    from engine.runtime.trader import Trader

    cfg = SystemConfig(name=f"warm-up {strategy}", symbol=symbol, market=market, strategy=strategy, params=params,
                       timeframe=candles.timeframe, data="sample", replay_seconds=1.0)
    adapter = build_adapter(cfg)
    now = [0.0]
    adapter.source.clock = lambda: now[0]
    trader = Trader(cfg, adapter, RiskGate(RiskLimits(atr_jump=1e9)), folder)
    await trader.boot()
    for _ in range(60):
        now[0] += adapter.source.seconds_per_candle
        await trader.poll()
    trader.journal.close()


PARTS: dict[str, tuple[tuple[str, Callable], ...]] = {
    "spot": (
        ("spot backtests, replay and sweep", lambda c, d: _backtests(c, "spot")),
        ("paper spot trading", lambda c, d: asyncio.run(_trade(c, "spot-grid", "spot", "BTC/USDT",
                                                                {"levels": 20, "range_pct": 0.03}, d))),
    ),
    "perpetual": (
        ("perpetual backtests and replay", lambda c, d: _backtests(c, "perpetual")),
        ("paper perpetual trading", lambda c, d: asyncio.run(_trade(c, "adaptive-grid", "perpetual",
                                                                    "BTC/USDT:USDT", {"leverage": 3.0}, d))),
    ),
    "futures": (
        ("futures grid backtests and replay", lambda c, d: _backtests(c, "futures")),
        # (a neutral grid; a long one that ends at a small loss: its market opening and close)
        ("paper futures grid trading", lambda c, d: [asyncio.run(_trade(
            c, "futures-grid", "perpetual", "BTC/USDT:USDT", params, d)) for params in (
                {"range_pct": 0.02}, {"direction": "long", "range_pct": 0.02, "stop_loss_pct": 0.004})]),
    ),
}


def warm_part(part: str, say: Callable[[str], None] = print) -> None:
    candles = load_candles(SAMPLE_PATH).slice(0, 3_000)
    with tempfile.TemporaryDirectory(prefix="griddesk-warmup-") as folder:
        for what, step in PARTS[part]:
            t = time.perf_counter()
            step(candles, folder)
            say(f"preparing the engine: {what} ({time.perf_counter() - t:.1f} s)")


def load() -> None:
    """Every kernel from the cache into this process, by the same paths on a few hundred bars:
    the app does it in a worker thread once the engine is prepared, so that neither a system's
    first candle nor a first backtest loads one on the GUI thread or holds the GIL there (the
    spot grid's took 200 ms)."""
    candles = load_candles(SAMPLE_PATH).slice(0, 400)
    with tempfile.TemporaryDirectory(prefix="griddesk-load-") as folder:
        for steps in PARTS.values():
            for _, step in steps:
                step(candles, folder)


def warm(say: Callable[[str], None] = print) -> float:
    """Every part, each in a process of its own, side by side; ``say`` gets their progress
    lines as they come. Returns the seconds it took; raises when a part failed."""
    t0 = time.perf_counter()
    procs = {part: subprocess.Popen([sys.executable, "-m", "engine.warmup", part], stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True) for part in PARTS}
    failed = []
    for part, p in procs.items():  # (each part's lines in order; the parts' lines may interleave late)
        for line in p.stdout:
            say(line.rstrip())
        if p.wait() != 0:
            failed.append(part)
    if failed:
        raise RuntimeError(f"griddesk warmup: the {', '.join(failed)} part failed (see above)")
    mark_warm()
    return time.perf_counter() - t0


if __name__ == "__main__":
    warm_part(sys.argv[1], lambda line: print(line, flush=True))
