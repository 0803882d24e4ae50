"""The spot grid's backtest (the hedged grid's too): the kernel over candles, and everything a
report or a replay needs of the run (``BacktestResult``); many plain grids side by side for the
optimizer (``sweep_spot_grid``)."""

from __future__ import annotations

import json
import time as _time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from engine.data import Candles, FundingRates
from engine.kernels import indicators
from engine.kernels import metrics as metrics_kernel
from engine.kernels import spot_grid as spot_kernel
from engine.kernels.perp import funding_counts, funding_on_bars, tiers_for
from engine.strategies.spec import drive, not_laid_before, trigger_start
from engine.strategies.spot_grid.settings import SpotGridConfig, build_params, initial_levels

_NO_TIERS = np.zeros((1, 3))
@dataclass
class BacktestResult:
    """Trades and orders as record arrays, per-bar equity (and cash, position and cost basis,
    read from the trades), counters, money totals, metrics and timings. ``orders_at(i)`` gives
    the orders resting during bar ``i`` from the order log, so a replay seeks without
    simulating again."""

    strategy: str
    config: dict
    params: spot_kernel.SpotGridParams
    time: np.ndarray
    close: np.ndarray
    timeframe_ms: int
    trades: np.ndarray
    orders: np.ndarray
    equity: np.ndarray
    counters: dict[str, int]
    money: dict[str, float]
    metrics: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    levels: np.ndarray | None = None

    @property
    def n_bars(self) -> int:
        return len(self.time)

    def _after_trades(self, name: str, before: float) -> np.ndarray:
        """A per-bar series that changes only with a trade: at each bar's close, the value the
        bar's last trade (or an earlier one) left; ``before`` until the first."""
        t = self.trades
        last = np.searchsorted(t["bar"], np.arange(len(self.time)), side="right") - 1
        return np.where(last >= 0, t[name][np.maximum(last, 0)] if len(t) else before, before)

    def final(self, name: str) -> float:
        """The last bar's value of ``cash``, ``position`` or ``cost`` (the last trade's), without
        the per-bar series (a stress test's thousand paths need only this)."""
        t = self.trades
        return float(t[name][-1]) if len(t) else (float(self.params.capital) if name == "cash" else 0.0)

    @cached_property
    def cash(self) -> np.ndarray:
        return self._after_trades("cash", float(self.params.capital))

    @cached_property
    def position(self) -> np.ndarray:
        return self._after_trades("position", 0.0)

    @cached_property
    def cost(self) -> np.ndarray:
        """The position's cost basis, buy fees included."""
        return self._after_trades("cost", 0.0)

    @property
    def avg_entry(self) -> np.ndarray:
        """Break-even average entry per bar (cost basis incl. buy fees / position), NaN when flat."""
        held = self.position > 1e-12
        return np.where(held, self.cost / np.where(held, self.position, 1.0), np.nan)

    def orders_at(self, bar: int) -> np.ndarray:
        """The orders resting during ``bar``: placed at an earlier close, not yet filled or
        cancelled before this bar (an order that fills on ``bar`` is included)."""
        o = self.orders
        return o[(o["placed"] < bar) & (o["end"] >= bar)]

    def trades_frame(self):
        """The trades as a pandas DataFrame with readable side and role names."""
        import pandas as pd

        t = self.trades
        return pd.DataFrame({
            "time": pd.to_datetime(t["time"], unit="ms", utc=True),
            "bar": t["bar"],
            "side": np.where(t["side"] > 0, "buy", "sell"),
            "price": t["price"],
            "qty": t["qty"],
            "fee": t["fee"],
            "level": t["level"],
            "role": [spot_kernel.ROLE_NAMES[r] for r in t["role"]],
            "pnl": t["pnl"],
            "cash": t["cash"],
            "position": t["position"],
        })

    def to_json_dict(self) -> dict:
        return {
            "strategy": self.strategy,
            "config": self.config,
            "bars": self.n_bars,
            "start": int(self.time[0]),
            "end": int(self.time[-1]),
            "metrics": self.metrics,
            "counters": self.counters,
            "money": self.money,
            "timings": self.timings,
        }

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_json_dict(), **kw)


def _grown(records: np.ndarray, used: int) -> np.ndarray:
    out = np.empty(2 * len(records), dtype=records.dtype)
    out[:used] = records[:used]
    return out


def _first_valid(a: np.ndarray) -> int:
    ok = np.flatnonzero(np.isfinite(a))
    return int(ok[0]) if len(ok) else len(a)


def _atr_and_start(candles: Candles, cfg: SpotGridConfig, hedged: bool) -> tuple[np.ndarray, int]:
    """The ATR the grid needs (zeros when it needs none) and its first bar after the warm-up."""
    n = len(candles)
    if cfg.spacing != "atr" and not hedged:
        return np.zeros(n), 0
    atr = indicators.atr_nb(candles.high, candles.low, candles.close, int(cfg.atr_period))
    start = _first_valid(atr) if cfg.spacing == "atr" else 0
    if start >= n - 1:
        raise ValueError(f"--atr-period: {cfg.atr_period} bars of warm-up leave no data to trade")
    return atr, start


def sweep_spot_grid(candles: Candles, cfgs: list[SpotGridConfig]) -> dict[str, np.ndarray]:
    """Backtest many plain spot grids on the same candles in one parallel numba kernel; returns
    one array per ``SWEEP_COLUMNS`` name (a row per config, in order). Each config is
    validated as for ``run_spot_grid`` and runs the same kernel, so its numbers equal a single
    backtest's ``final_equity``, ``total_return``, ``max_drawdown``, fills, fees, grid profit."""
    from numba.typed import List

    from engine.kernels import sweep

    if any(c.hedged for c in cfgs):
        raise ValueError("the sweep runs plain spot grids; the hedged grid runs one backtest at a time")
    atrs = [np.zeros(len(candles))]
    by_period: dict[int, tuple[int, int]] = {}  # ATR period -> (row in atrs, first bar after its warm-up)
    params, rows = List(), np.zeros(len(cfgs), dtype=np.int64)
    for j, cfg in enumerate(cfgs):
        start = 0
        if cfg.spacing == "atr":
            if cfg.atr_period not in by_period:
                atr, first = _atr_and_start(candles, cfg, False)
                by_period[cfg.atr_period] = (len(atrs), first)
                atrs.append(atr)
            rows[j], start = by_period[cfg.atr_period]
        start = trigger_start(candles.low, candles.high, start, cfg.trigger_price)
        params.append(build_params(cfg, float(candles.close[start]), start))
    out = np.zeros((len(cfgs), len(sweep.SWEEP_COLUMNS)))
    if cfgs:
        import numba

        # one config at a time to whichever thread is free: their run times differ by 100x
        previous = numba.set_parallel_chunksize(1)
        try:
            sweep.spot_grid_sweep_nb(candles.time, candles.open, candles.high, candles.low, candles.close,
                                     np.stack(atrs), rows, params, out)
        finally:
            numba.set_parallel_chunksize(previous)
    if len(cfgs) and not out[:, -1].all():
        raise RuntimeError("spot-grid sweep: a record log overflowed (a bug: please report it)")
    return {name: out[:, i] for i, name in enumerate(sweep.SWEEP_COLUMNS[:-1])}


def run_spot_grid(candles: Candles, cfg: SpotGridConfig | None = None, funding: FundingRates | None = None, *,
                  log_capacity: int | None = None, progress=None, not_before: int = 0) -> BacktestResult:
    """Backtest a spot grid (GRID_SEMANTICS.md) over ``candles``, or the hedged lower-only grid
    when ``cfg`` is a HedgedGridConfig (``funding``: the perpetual's funding rates). The trade
    and order logs start at ``log_capacity`` rows (default: from the data's length) and double
    when they fill. ``progress``: see ``drive``; ``not_before``: the grid is laid no earlier
    than this bar (where a running system laid it: engine/parity.py)."""
    cfg = cfg or SpotGridConfig()
    hedged = cfg.hedged
    timings: dict[str, float] = {}
    t0 = _time.perf_counter()
    n = len(candles)
    atr, start = _atr_and_start(candles, cfg, hedged)
    start = trigger_start(candles.low, candles.high, not_laid_before(start, not_before, n), cfg.trigger_price)
    if hedged:
        ema = indicators.ema_nb(candles.close, int(cfg.ema_period))
        rate_time, rate = (funding.time, funding.rate) if funding is not None else (np.zeros(0, np.int64), np.zeros(0))
        funding_per_bar, settled, defaulted = funding_on_bars(candles.time, rate_time, rate, float(cfg.funding_rate))
        tiers = tiers_for(cfg.tiers, candles.symbol)
    else:
        ema, funding_per_bar, tiers = atr, np.zeros(n), _NO_TIERS
        settled = defaulted = np.zeros(n, dtype=np.int64)
    timings["indicators"] = _time.perf_counter() - t0
    params = build_params(cfg, float(candles.close[start]), start)
    t1 = _time.perf_counter()
    cap = log_capacity if log_capacity is not None else 1024 + n // 16 + 8 * params.levels
    logs = {"trades": np.empty(cap, dtype=spot_kernel.TRADE_DTYPE),
            "orders": np.empty(cap, dtype=spot_kernel.ORDER_DTYPE)}
    equity = np.empty(n)
    counters = np.zeros(spot_kernel.N_COUNTERS, dtype=np.int64)
    money = np.zeros(spot_kernel.N_MONEY)
    S, SI, F, I, H = spot_kernel.new_state(params, float(candles.close[start]))
    c = candles

    def kernel(end, first):
        return spot_kernel.spot_grid_nb(c.time[:end], c.open[:end], c.high[:end], c.low[:end], c.close[:end], atr[:end],
                               ema[:end], funding_per_bar[:end], tiers, params, S, SI, F, I, H, logs["trades"],
                               logs["orders"], equity, counters, money, first)

    def grow():  # the logs are full: double them, go on
        nt, no = spot_kernel.record_counts(I)
        logs["trades"], logs["orders"] = _grown(logs["trades"], nt), _grown(logs["orders"], no)

    drive(kernel, n, grow, progress, "spot-grid kernel")
    trades, orders = logs["trades"], logs["orders"]
    nt, no = spot_kernel.record_counts(I)
    timings["kernel"] = _time.perf_counter() - t1
    result = BacktestResult(
        strategy="hedged-grid" if hedged else "spot-grid",
        config=cfg.to_dict(),
        params=params,
        time=candles.time,
        close=candles.close,
        timeframe_ms=candles.timeframe_ms,
        trades=trades[:nt].copy(),
        orders=orders[:no].copy(),
        equity=equity,
        counters={**{name: int(v) for name, v in zip(spot_kernel.COUNTER_NAMES, counters, strict=True)},
                  **funding_counts(settled, defaulted, start, funding is not None)},
        money={
            "realized": float(money[spot_kernel.M_REALIZED]),
            "grid_profit": float(money[spot_kernel.M_GRID_PROFIT]),
            "fees": float(money[spot_kernel.M_FEES]),
            "dust_qty": float(money[spot_kernel.M_DUST_QTY]),
            "turnover": float(money[spot_kernel.M_TURNOVER]),
            "hedge_pnl": float(money[spot_kernel.M_HEDGE_PNL]),
            "hedge_funding": float(money[spot_kernel.M_HEDGE_FUNDING]),
            "loss_offset_by_hedge": float(money[spot_kernel.M_OFFSET_BY_HEDGE]),
            "banked": float(money[spot_kernel.M_BANKED]),
        },
        levels=initial_levels(params),
    )
    t2 = _time.perf_counter()
    result.metrics = summarize(result, candles, start)
    timings["metrics"] = _time.perf_counter() - t2
    result.timings = timings
    return result


def summarize(r: BacktestResult, candles: Candles, start: int = 0) -> dict:
    """Every metric of a result: returns, risk ratios, trade statistics and PnL split."""
    perf = metrics_kernel.performance(r.equity[start:], r.timeframe_ms, first_bar=start, time=r.time)
    t = r.trades
    closing = t[t["side"] < 0]
    wins = closing["pnl"][closing["pnl"] > 0]
    losses = closing["pnl"][closing["pnl"] < 0]
    last_close = float(candles.close[-1])
    floating = r.final("position") * last_close - r.final("cost")
    capital = r.params.capital
    return {
        **perf,
        "start_equity": capital,
        "final_equity": float(r.equity[-1]),
        "buy_hold_return": last_close / float(candles.close[start]) - 1.0,
        "grid_profit": r.money["grid_profit"],
        "realized_pnl": r.money["realized"],
        "floating_pnl": floating,
        "fees_paid": r.money["fees"],
        "fills": r.counters["fills"],
        "buys": r.counters["buys"],
        "sells": r.counters["sells"],
        "round_trips": r.counters["round_trips"],
        "win_rate": float(len(wins) / len(closing)) if len(closing) else 0.0,
        "profit_factor": float(wins.sum() / -losses.sum()) if len(losses) else (float("inf") if len(wins) else 0.0),
        "orders_refused_min_notional": r.counters["refused_min_notional"],
        "orders_refused_balance": r.counters["refused_balance"],
        **({"hedge_pnl": r.money["hedge_pnl"], "hedge_funding": r.money["hedge_funding"],
            "loss_offset_by_hedge": r.money["loss_offset_by_hedge"], "banked_profit": r.money["banked"],
            **{k: r.counters[k] for k in ("hedge_opens", "hedge_scales", "hedge_closes", "hedge_liquidations",
                                          "hedge_cut_short", "bag_reductions")}}
           if r.strategy == "hedged-grid" else {}),
        "final_position": r.final("position"),
        "final_cash": r.final("cash"),
        "bars": len(r.equity),
        "missing_bars": candles.missing_bars,
    }
