"""The adaptive grid's backtest: its indicators (each from data up to its bar), the kernel over
candles with funding and the runtime's risk gate when asked, and the run as a report and a
replay read it (``PerpResult``)."""

from __future__ import annotations

import time as _time
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from engine.data import Candles, FundingRates
from engine.kernels import adaptive_grid as kernel
from engine.kernels import indicators as indicator_kernels
from engine.kernels import metrics as metrics_kernel
from engine.kernels.breaker import atr_breaker
from engine.kernels.perp import funding_counts, funding_on_bars, tiers_for
from engine.risk import RiskGate, RiskLimits
from engine.strategies.adaptive_grid.settings import AdaptiveGridConfig, build_params, check
from engine.strategies.errors import ParamError
from engine.strategies.spec import drive, not_laid_before, trigger_start


def log_return_std(close: np.ndarray, window: int) -> np.ndarray:
    """Rolling standard deviation (ddof 0) of per-bar log returns over ``window`` returns;
    NaN during the warm-up. Equivalent to ``pd.Series(np.log(close)).diff().rolling(window).std(ddof=0)``."""
    return _log_return_std_nb(close, window)


@njit(cache=True, nogil=True)
def _log_return_std_nb(close, window):
    # Running sums are safe here: log returns are centred near 0, so there is no cancellation.
    n = len(close)
    out = np.full(n, np.nan)
    s1 = 0.0
    s2 = 0.0
    for i in range(1, n):
        r = np.log(close[i] / close[i - 1])
        s1 += r
        s2 += r * r
        if i > window:
            old = np.log(close[i - window] / close[i - window - 1])
            s1 -= old
            s2 -= old * old
        if i >= window:
            mean = s1 / window
            var = s2 / window - mean * mean
            out[i] = np.sqrt(var) if var > 0.0 else 0.0
    return out


@dataclass
class PerpResult:
    strategy: str
    config: dict
    time: np.ndarray
    close: np.ndarray
    timeframe_ms: int
    trades: np.ndarray
    equity: np.ndarray
    long_qty: np.ndarray
    short_qty: np.ndarray
    counters: dict
    money: dict
    metrics: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    start_bar: int = 0
    funding_rate: np.ndarray | None = None  # per bar: the rate settled at the bar's open (0: none)
    orders: np.ndarray | None = None  # the order log (ag.ORDER_LOG_DTYPE), when the run kept it
    marks: np.ndarray | None = None  # per bar x ag.MARK_NAMES, with the order log

    def orders_at(self, bar: int) -> np.ndarray | None:
        """The grid openings and take-profits resting during ``bar`` (placed at an earlier close,
        not filled or cancelled before it), or None when the run kept no order log."""
        o = self.orders
        return None if o is None else o[(o["placed"] < bar) & (o["end"] >= bar)]

    def trades_frame(self):
        import pandas as pd

        t = self.trades
        return pd.DataFrame({
            "time": pd.to_datetime(t["time"], unit="ms", utc=True), "bar": t["bar"],
            "side": np.where(t["side"] > 0, "buy", np.where(t["side"] < 0, "sell", "")),
            "price": t["price"], "qty": t["qty"], "fee": t["fee"],
            "label": [kernel.LABELS[x] for x in t["label"]], "pnl": t["pnl"],
            "long_qty": t["long_qty"], "short_qty": t["short_qty"],
        })

    def to_json_dict(self) -> dict:
        return {"strategy": self.strategy, "config": self.config, "bars": len(self.time),
                "metrics": self.metrics, "counters": self.counters, "money": self.money, "timings": self.timings}


def indicator_arrays(high: np.ndarray, low: np.ndarray, close: np.ndarray, cfg: AdaptiveGridConfig) -> dict:
    """The strategy's indicators per bar (each from data up to its bar) and ``start``, the first
    bar they all exist for (regime needs one KAMA bar more)."""
    atr = indicator_kernels.atr_nb(high, low, close, int(cfg.atr_period))
    kama, er = indicator_kernels.kama_er_nb(close, int(cfg.kama_period))
    sma = indicator_kernels.sma_nb(close, 20)
    std = indicator_kernels.stddev_nb(close, 20, 1.0)
    z = indicator_kernels.zscore_nb(close, sma, atr)
    regime = indicator_kernels.regime_nb(kama, er, atr, cfg.theta, cfg.er_threshold, 1).astype(np.int64)
    sigma = log_return_std(close, int(cfg.sigma_window))
    arrays = dict(atr=atr, kama=kama, er=er, std=std, sigma=sigma, z=z, regime=regime)
    warm = max(int(np.argmax(np.isfinite(a))) if np.isfinite(a).any() else len(close)
               for a in (atr, kama, er, std, sigma, z))
    arrays["start"] = warm + 1
    return arrays


def prepare(candles: Candles, cfg: AdaptiveGridConfig, funding: FundingRates | None = None) -> dict:
    """Indicators and per-bar funding, aligned with the bars (all from data up to each bar)."""
    check(cfg)  # (a window of 0 would divide by zero in the indicators)
    arrays = indicator_arrays(candles.high, candles.low, candles.close, cfg)
    if funding is not None:
        rate_time, rate = funding.time, funding.rate
    else:
        rate_time, rate = np.zeros(0, dtype=np.int64), np.zeros(0)
    arrays["funding"], arrays["funding_count"], arrays["funding_defaulted"] = funding_on_bars(
        candles.time, rate_time, rate, cfg.funding_rate)
    return arrays


def run_adaptive_grid(candles: Candles, cfg: AdaptiveGridConfig | None = None, funding: FundingRates | None = None,
                      *, log_capacity: int | None = None, orders: bool = False, progress=None,
                      risk: RiskLimits | None = None, not_before: int = 0) -> PerpResult:
    """Backtest the adaptive long/short grid on a USDT-margined perpetual. ``orders``: also keep
    the order log and per-bar marks (average entry, liquidation, stop per side) a replay shows;
    ``progress``: see ``engine.strategies.spec.drive``; ``risk``: the runtime's risk gate with these
    limits, as a paper system alone in its account meets it (its volatility breaker fed from
    the first bar traded, its exposure limits): the openings it would refuse wait, as the
    runtime's strategy is told they would. ``not_before``: the grid is laid no earlier than
    this bar (where a running system laid it: engine/parity.py)."""
    cfg = cfg or AdaptiveGridConfig()
    timings = {}
    t0 = _time.perf_counter()
    a = prepare(candles, cfg, funding)
    timings["indicators"] = _time.perf_counter() - t0
    n = len(candles)
    if a["start"] >= n - 1:
        raise ParamError("sigma_window", f"the indicators' warm-up ({a['start']} bars) leaves no data to trade")
    a["start"] = trigger_start(candles.low, candles.high, not_laid_before(a["start"], not_before, n),
                               cfg.trigger_price)
    p = build_params(cfg, a["start"])
    paused = np.zeros(0, dtype=np.bool_)
    if risk is not None:
        p = p._replace(max_exposure=RiskGate(risk).exposure_room("backtest", "-"))
        paused = atr_breaker(a["atr"], risk.atr_jump, risk.calm_candles, int(a["start"]))
    tiers = tiers_for(cfg.tiers, candles.symbol)
    t1 = _time.perf_counter()
    L, G, F, I = kernel.new_state(p)
    logs = {"trades": np.empty(log_capacity or 1024 + n // 16, dtype=kernel.TRADE_DTYPE)}
    equity, long_qty, short_qty = np.empty(n), np.empty(n), np.empty(n)
    counters = np.zeros(kernel.N_COUNTERS, dtype=np.int64)
    money = np.zeros(kernel.N_MONEY)
    if orders:
        logs["orders"], refs, marks = kernel.new_order_log(p, n)
    c = candles

    def run_part(end, first):
        args = (c.time[:end], c.open[:end], c.high[:end], c.low[:end], c.close[:end], a["atr"][:end],
                a["kama"][:end], a["er"][:end], a["std"][:end], a["sigma"][:end], a["z"][:end], a["regime"][:end],
                a["funding"][:end], a["funding_count"][:end], tiers, paused[:end], p, L, G, F, I, logs["trades"],
                equity, long_qty, short_qty, counters, money, first)
        if orders:
            return kernel.adaptive_grid_log_nb(*args, logs["orders"], refs, marks)
        return kernel.adaptive_grid_nb(*args)

    def grow():  # a log is full: double it, go on
        used = {"trades": int(I[kernel.I_NTR]), "orders": int(refs[0]) if orders else 0}
        for name, log in logs.items():
            if len(log) - used[name] <= (kernel.order_log_room(p) if name == "orders" else kernel.trade_log_room(p)):
                bigger = np.empty(2 * len(log), dtype=log.dtype)
                bigger[:used[name]] = log[:used[name]]
                logs[name] = bigger

    drive(run_part, n, grow, progress, "adaptive-grid kernel")
    timings["kernel"] = _time.perf_counter() - t1
    r = perp_result("adaptive-grid", cfg, candles, funding, a, logs["trades"][:int(I[kernel.I_NTR])], equity, long_qty,
                    short_qty, counters, money, F, orders=logs["orders"][:refs[0]] if orders else None,
                    marks=marks if orders else None,
                    extra={"risk_paused_bars": int(paused.sum())} if risk is not None else {})
    r.timings = timings
    return r


def perp_result(strategy: str, cfg, candles: Candles, funding, a: dict, trades, equity, long_qty, short_qty, counters,
                money, F, *, counter_names=kernel.COUNTER_NAMES, orders=None, marks=None, extra=None) -> PerpResult:
    """A perpetual grid's run as a report and a replay read it, from the adaptive grid's books
    (``F``, ``money``) and the counters named ``counter_names`` (the others are not the
    strategy's); ``a``: its start bar and per-bar funding (``prepare``)."""
    r = PerpResult(
        strategy=strategy, config=cfg.to_dict(), time=candles.time, close=candles.close,
        timeframe_ms=candles.timeframe_ms, trades=trades.copy(), equity=equity, long_qty=long_qty,
        short_qty=short_qty, counters={**{k: int(counters[kernel.COUNTER_NAMES.index(k)]) for k in counter_names},
                                       **funding_counts(a["funding_count"], a["funding_defaulted"], int(a["start"]),
                                                        funding is not None),
                                       **(extra or {})},
        money={"realized": float(money[kernel.M_REALIZED]), "grid_profit": float(money[kernel.M_GRID_PROFIT]),
               "funding": float(money[kernel.M_FUNDING]), "fees": float(money[kernel.M_FEES]),
               "liquidated_margin": float(money[kernel.M_LIQUIDATED])},
        start_bar=int(a["start"]),
        funding_rate=np.where(a["funding_count"] > 0, a["funding"], 0.0),
        orders=None if orders is None else orders.copy(), marks=marks,
    )
    perf = metrics_kernel.performance(equity[a["start"]:], candles.timeframe_ms, first_bar=int(a["start"]),
                                      time=candles.time)
    last = float(candles.close[-1])
    t = r.trades
    closing = t[(t["pnl"] != 0) | np.isin(t["label"], [kernel.SELL_CLOSE_LONG, kernel.BUY_CLOSE_SHORT])]
    wins, losses = closing["pnl"][closing["pnl"] > 0], closing["pnl"][closing["pnl"] < 0]
    r.metrics = {
        **perf, "start_equity": float(cfg.capital), "final_equity": float(equity[-1]),
        "buy_hold_return": last / float(candles.close[a["start"]]) - 1.0,
        "grid_profit": r.money["grid_profit"], "funding_pnl": r.money["funding"], "fees_paid": r.money["fees"],
        # what stops, prunes and liquidations realized: the rest of the realized PnL
        "stops_prunes_pnl": r.money["realized"] - r.money["grid_profit"],
        "realized_pnl": r.money["realized"],
        "floating_pnl": float(equity[-1] - cfg.capital - r.money["realized"] - r.money["funding"]),
        # what the open lots make at the last close, as the runtime's books say it (the floating
        # PnL above also holds every opening fee, which no close has realized)
        "unrealized_pnl": float(last * (F[kernel.F_QTY_L] - F[kernel.F_QTY_S])
                                - F[kernel.F_COST_L] + F[kernel.F_COST_S]),
        "win_rate": float(len(wins) / len(closing)) if len(closing) else 0.0,
        "profit_factor": float(wins.sum() / -losses.sum()) if len(losses) else (float("inf") if len(wins) else 0.0),
        "final_long_qty": float(long_qty[-1]), "final_short_qty": float(short_qty[-1]),
        "fills": sum(r.counters[k] for k in ("longs_opened", "longs_closed", "shorts_opened", "shorts_closed")),
        **{k: v for k, v in r.counters.items() if k != "active_bars"},
    }
    return r
