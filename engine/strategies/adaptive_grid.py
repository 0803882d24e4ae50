"""The adaptive long/short perpetual grid: settings, validation, indicators and the run."""

from __future__ import annotations

import time as _time
from dataclasses import asdict, dataclass, field

import numpy as np
from numba import njit

from engine.data import Candles, FundingRates
from engine.kernels import adaptive_grid as kernel
from engine.kernels import indicators as indicator_kernels
from engine.kernels import metrics as metrics_kernel
from engine.kernels.breaker import atr_breaker
from engine.kernels.perp import funding_counts, funding_on_bars, liquidation_price_nb, load_tiers, tiers_for
from engine.risk import OPEN_GATE, Gate, RiskGate, RiskLimits
from engine.strategies.errors import ParamError
from engine.strategies.space import FloatRange, IntRange
from engine.strategies.spec import StrategyRunner, StrategySpec, drive
from engine.strategies.spot_grid import MAX_CAPITAL, DesiredOrder, checked_settings


@dataclass
class AdaptiveGridConfig:
    capital: float = 10_000.0
    leverage: float = 1.0
    levels: int = 10
    order_frac: float = 0.03
    atr_period: int = 14
    atr_k: float = 1.0
    atr_floor: float = 0.005
    kama_period: int = 10
    theta: float = 0.15
    er_threshold: float = 0.5
    gamma: float = 1.0
    kappa: float = 1000.0
    horizon: float = 96.0
    sigma_window: int = 96
    z_halt: float = -3.0
    z_resume: float = -1.0
    stop_m: float = 3.5
    prune_sigma: float = 3.0
    prune_age_hours: float = 24.0
    prune_gap: float = 3.0
    prune_funding: float = 0.5
    prune_offset: bool = True
    offset_min_spacings: float = 2.0
    trail_reserve: float = 0.1
    var_z: float = 1.65
    var_max_dd: float = 0.25
    maker_fee: float = -0.00005
    taker_fee: float = 0.0002
    slippage: float = 0.0005
    no_short: bool = False
    lot: float = 0.001
    tick: float = 0.1
    min_notional: float = 5.0
    max_lots: int = 40
    funding_rate: float = 0.0001  # per 8 h when no funding file covers a settlement
    tiers: str = ""  # a tier table file; "": the symbol's Binance brackets (engine.kernels.perp.tiers_for)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AdaptiveGridConfig:
        return checked_settings(cls, data, "adaptive-grid")


SEARCH_SPACE = {
    "levels": IntRange(3, 20),
    "order_frac": FloatRange(0.01, 0.08, log=True),
    "atr_k": FloatRange(0.5, 3.0),
    "theta": FloatRange(0.05, 0.5),
    "er_threshold": FloatRange(0.2, 0.8),
    "gamma": FloatRange(0.1, 5.0, log=True),
    "stop_m": FloatRange(2.0, 6.0),
}


def check(cfg: AdaptiveGridConfig) -> None:
    def positive(name, zero_ok=False, upper=None):
        v = getattr(cfg, name)
        if not np.isfinite(v) or v < 0 or (v == 0 and not zero_ok) or (upper is not None and v > upper):
            bound = f" and at most {upper:g}" if upper is not None else ""
            raise ParamError(name, f"must be {'>= 0' if zero_ok else '> 0'}{bound}, got {v}")

    positive("capital", upper=MAX_CAPITAL)
    for name in ("atr_floor", "gamma", "kappa", "horizon", "stop_m", "prune_sigma",
                 "prune_age_hours", "prune_gap", "var_z", "var_max_dd"):
        positive(name)
    positive("leverage", upper=125)
    positive("order_frac", upper=0.5)
    positive("trail_reserve", zero_ok=True, upper=0.9)
    positive("prune_funding", zero_ok=True)
    positive("offset_min_spacings", zero_ok=True)
    for name in ("atr_k", "slippage", "lot", "tick", "min_notional", "taker_fee"):
        positive(name, zero_ok=True)
    if not -0.01 < cfg.maker_fee < 0.01:
        raise ParamError("maker_fee", f"{cfg.maker_fee} is a fraction (-0.00005 is a 0.005% rebate)")
    if not abs(cfg.funding_rate) < 0.05:
        raise ParamError("funding_rate", f"{cfg.funding_rate} is a fraction per 8 hours")
    # (the upper bounds keep a run's memory and time in reach: 500 levels a side, 10,000 lots,
    # windows of a year of minutes)
    for name, lo, hi in (("levels", 1, 500), ("atr_period", 1, 525_600), ("kama_period", 2, 525_600),
                         ("sigma_window", 2, 525_600), ("max_lots", 1, 10_000)):
        v = getattr(cfg, name)
        if not np.isfinite(v) or int(v) != v or not lo <= v <= hi:
            raise ParamError(name, f"must be a whole number from {lo} to {hi:,}, got {v}")
    if not cfg.z_halt < cfg.z_resume:
        raise ParamError("z_resume", f"must be above --z-halt ({cfg.z_halt}), got {cfg.z_resume}")
    if cfg.theta <= 0 or not 0 < cfg.er_threshold <= 1:
        raise ParamError("theta" if cfg.theta <= 0 else "er_threshold", "theta must be > 0, ER threshold in (0, 1]")


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


def build_params(cfg: AdaptiveGridConfig, start_bar: int) -> kernel.AdaptiveGridParams:
    check(cfg)
    return kernel.AdaptiveGridParams(
        capital=float(cfg.capital), leverage=float(cfg.leverage), levels=int(cfg.levels),
        order_frac=float(cfg.order_frac), atr_k=float(cfg.atr_k), atr_floor=float(cfg.atr_floor),
        gamma=float(cfg.gamma), kappa=float(cfg.kappa),
        spread_const=kernel.spread_const(cfg.gamma, cfg.kappa), horizon=float(cfg.horizon), z_halt=float(cfg.z_halt),
        z_resume=float(cfg.z_resume), stop_m=float(cfg.stop_m), prune_sigma=float(cfg.prune_sigma),
        prune_age_ms=float(cfg.prune_age_hours) * 3_600_000.0, prune_gap=float(cfg.prune_gap),
        prune_funding=float(cfg.prune_funding), prune_offset=int(bool(cfg.prune_offset)),
        offset_min_spacings=float(cfg.offset_min_spacings),
        er_threshold=float(cfg.er_threshold), trail_reserve=float(cfg.trail_reserve), var_z=float(cfg.var_z),
        var_max_dd=float(cfg.var_max_dd), maker_fee=float(cfg.maker_fee), taker_fee=float(cfg.taker_fee),
        slippage=float(cfg.slippage), no_short=int(bool(cfg.no_short)), lot=float(cfg.lot), tick=float(cfg.tick),
        min_notional=float(cfg.min_notional), max_lots=int(cfg.max_lots), start_bar=int(start_bar),
    )


def run_adaptive_grid(candles: Candles, cfg: AdaptiveGridConfig | None = None, funding: FundingRates | None = None,
                      *, log_capacity: int | None = None, orders: bool = False, progress=None,
                      risk: RiskLimits | None = None) -> PerpResult:
    """Backtest the adaptive long/short grid on a USDT-margined perpetual. ``orders``: also keep
    the order log and per-bar marks (average entry, liquidation, stop per side) a replay shows;
    ``progress``: see ``engine.strategies.spec.drive``; ``risk``: the runtime's risk gate with these
    limits, as a paper system alone in its account meets it (its volatility breaker fed from
    the first bar traded, its exposure limits): the openings it would refuse wait, as the
    runtime's strategy is told they would."""
    cfg = cfg or AdaptiveGridConfig()
    timings = {}
    t0 = _time.perf_counter()
    a = prepare(candles, cfg, funding)
    timings["indicators"] = _time.perf_counter() - t0
    n = len(candles)
    if a["start"] >= n - 1:
        raise ParamError("sigma_window", f"the indicators' warm-up ({a['start']} bars) leaves no data to trade")
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
    trades = logs["trades"]
    timings["kernel"] = _time.perf_counter() - t1
    nt = int(I[kernel.I_NTR])
    r = PerpResult(
        strategy="adaptive-grid", config=cfg.to_dict(), time=candles.time, close=candles.close,
        timeframe_ms=candles.timeframe_ms, trades=trades[:nt].copy(), equity=equity, long_qty=long_qty,
        short_qty=short_qty, counters={**{k: int(v) for k, v in zip(kernel.COUNTER_NAMES, counters, strict=True)},
                                       **funding_counts(a["funding_count"], a["funding_defaulted"], int(a["start"]),
                                                        funding is not None),
                                       **({"risk_paused_bars": int(paused.sum())} if risk is not None else {})},
        money={"realized": float(money[kernel.M_REALIZED]), "grid_profit": float(money[kernel.M_GRID_PROFIT]),
               "funding": float(money[kernel.M_FUNDING]), "fees": float(money[kernel.M_FEES]),
               "liquidated_margin": float(money[kernel.M_LIQUIDATED])},
        start_bar=int(a["start"]),
        funding_rate=np.where(a["funding_count"] > 0, a["funding"], 0.0),
        orders=logs["orders"][:refs[0]].copy() if orders else None, marks=marks if orders else None,
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
    r.timings = timings
    return r


# ---- the adaptive grid as the runtime drives it, candle by candle -------------------------------

_KINDS = {kernel.OPEN_ORDER: "open", kernel.TAKE_PROFIT_ORDER: "tp", kernel.STOP_ORDER: "stop",
          kernel.MARKET_ORDER: "prune"}
_SIDES = ("long", "short")


class AdaptiveGridRunner(StrategyRunner):
    """The adaptive grid's numba kernels held with their state, for the paper and live runtime:
    at each close ``decide_nb`` (the backtest's decisions, fills left to the exchange); each fill
    the exchange reports goes to the backtest's own ``on_open_fill_nb`` / ``on_take_profit_fill_nb``
    / ``on_stop_fill_nb`` / ``on_prune_fill_nb``, funding to ``pay_funding_nb``, a liquidation the
    exchange made to ``liquidate_nb``. On the same candles and fills it makes the backtest's trades.

    Orders are known by keys unique for the system's life (they go into client order ids): an
    order keeps its key while the state wants it; one wanted anew (a level armed again, a
    take-profit resized by a stop, a stop moved with the ATR) gets the next key. Opening orders
    rest in the position's side (hedge mode); take-profits, stops and prunes reduce it."""

    strategy = "adaptive-grid"
    perpetual = True

    def __init__(self, cfg: AdaptiveGridConfig, params: kernel.AdaptiveGridParams | None = None):
        self.cfg = cfg
        self.params = params or build_params(cfg, 0)
        p = self.params
        self.tiers = load_tiers(cfg.tiers)  # (the runtime names the symbol's file: Trader._strategy_config)
        self.L, self.G, self.F, self.I = kernel.new_state(p)
        self.counters = np.zeros(kernel.N_COUNTERS, dtype=np.int64)
        self.money = np.zeros(kernel.N_MONEY)
        self._trades = np.empty(2 * kernel.trade_log_room(p) + 8, dtype=kernel.TRADE_DTYPE)
        self._want = np.empty(2 * p.levels + 2 * p.max_lots + 8, dtype=kernel.ORDER_DTYPE)
        self.keys: dict[tuple, int] = {}  # identity of an order wanted now -> its key
        self.by_key: dict[int, tuple] = {}
        self.next_key = 0
        self.bar = -1
        self.last_events: list[str] = []  # labels the last decision recorded (a circuit-breaker halt)

    # -- setup -------------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return bool(self.I[kernel.I_STARTED])

    def warmup_bars(self) -> int:
        c = self.cfg
        return max(int(c.atr_period), int(c.kama_period) + 1, 20, int(c.sigma_window) + 1) + 2

    def indicators(self, hist: np.ndarray) -> dict:
        """The indicators at the last of ``hist`` (rows: time, high, low, close, open)."""
        a = indicator_arrays(hist[:, 1], hist[:, 2], hist[:, 3], self.cfg)
        out = {k: float(a[k][-1]) for k in ("atr", "kama", "er", "std", "sigma", "z")}
        out.update(time=int(hist[-1, 0]), regime=int(a["regime"][-1]), ready=len(hist) - 1 >= a["start"])
        return out

    def start(self, bar: int, close: float, ind: dict, gate: Gate = OPEN_GATE) -> None:
        self.decide(bar, close, ind, gate)

    # -- the strategy calls ----------------------------------------------------------------------
    def on_open(self, bar: int, t: int, open_: float, rate: float, count: int) -> None:
        """A bar opened at ``open_`` after ``count`` funding settlements (summed ``rate``)."""
        if self.started and count:
            kernel.pay_funding_nb(open_, rate, count, self.params, self.L, self.F, self.I, self.counters, self.money,
                              self.tiers)

    def correct_funding(self, s: int, pay: float) -> None:
        """Side ``s`` (0 long, 1 short) paid ``pay`` more funding than the books took (< 0: less):
        the exchange's figure for a settlement, which settles on what it held then."""
        kernel.book_funding_nb(s, pay, self.params, self.L, self.F, self.I, self.money, self.tiers)

    def decide(self, bar: int, close: float, ind: dict, gate: Gate = OPEN_GATE) -> None:
        """The decisions at the close of ``bar``; ``gate``: what the risk gate lets through now
        (the backtest's ``risk``): an opening it would refuse waits, it is not an order."""
        self.I[kernel.I_NTR] = 0
        self.params = self.params._replace(max_exposure=float(gate.room))
        if not kernel.decide_nb(bar, ind["time"], close, ind["atr"], ind["kama"], ind["er"], ind["std"], ind["sigma"],
                            ind["z"], ind["regime"], bool(gate.paused), self.params, self.L, self.G, self.F, self.I,
                            self._trades, self.counters, self.money):
            raise RuntimeError("adaptive grid: trade log full (a bug)")
        self.last_events = [kernel.LABELS[x] for x in self._trades["label"][:self.I[kernel.I_NTR]]]
        self.bar = bar
        self._assign_keys()

    def on_fill(self, key: int, bar: int, t: int, price: float) -> dict | None:
        """The order of ``key`` filled (all it holds) at ``price``; returns what it did to the
        books, or None when the state no longer has what it was for (kept outside the grid's
        books)."""
        ident = self.by_key.get(key)
        if ident is None:
            return None
        kind, s = ident[0], ident[1]
        args = (self.params, self.L, self.G, self.F, self.I, self._trades, self.counters, self.money, self.tiers)
        self.I[kernel.I_NTR] = 0
        if kind == "open":
            j = ident[2]
            if self.G[s, j, kernel.G_STATE] <= 0 or self.I[kernel.I_GEN] != ident[3]:
                return None
            ok = kernel.on_open_fill_nb(s, j, bar, t, price, self.G[s, j, kernel.G_QTY], self.params.maker_fee, *args)
        elif kind == "stop":
            if self.I[kernel.I_STAGE_L + s] != ident[2] - 1 or self.F[kernel.F_QTY_L + s] <= 0:
                return None
            ok = kernel.on_stop_fill_nb(s, ident[2], bar, t, price, *args)
        else:
            m = self._lot(s, ident[2:6])
            if m < 0:
                return None
            if kind == "tp":
                ok = kernel.on_take_profit_fill_nb(s, m, bar, t, price, *args)
            else:
                ok = kernel.on_prune_fill_nb(s, m, ident[6], bar, t, price, *args)
        if not ok:
            raise RuntimeError("adaptive grid: trade log full (a bug)")
        # the order is done: the same order wanted again (its level re-armed by a take-profit
        # before the next decision) is a new order, with a new key and client order id
        self.keys.pop(ident, None)
        return self._summary()

    def on_stray_fill(self, position: str, role: str, otype: str, reduces: bool, qty: float, bar: int, t: int,
                      price: float) -> dict | None:
        """A fill ``on_fill`` could not place: the order was for a state the grid has moved on
        from (it filled while being cancelled, or the lot it was to close is gone). The books
        follow the exchange, which holds the fill: an opening fill is a lot of no grid level, a
        closing one closes ``qty`` of its side, newest lots first. None when nothing changed."""
        s = _SIDES.index(position)
        if not reduces:
            label = 0
        elif role.startswith("STOP"):
            label = kernel.STOP_LONG if s == 0 else kernel.STOP_SHORT
        elif role in kernel.LABELS:
            label = kernel.LABELS.index(role)
        else:
            label = kernel.SELL_CLOSE_LONG if s == 0 else kernel.BUY_CLOSE_SHORT
        p = self.params
        self.I[kernel.I_NTR] = 0
        if not kernel.on_stray_fill_nb(s, not reduces, label, qty, bar, t, price,
                                   p.maker_fee if otype == "limit" else p.taker_fee, p, self.L, self.G, self.F,
                                   self.I, self._trades, self.counters, self.money, self.tiers):
            raise RuntimeError("adaptive grid: trade log full (a bug)")
        return self._summary()

    def as_taker(self, value: float) -> float:
        """A limit order of ``value`` booked at the maker fee traded at once when it arrived
        (it crossed the market): the exchange charged the taker fee. Returns what more it
        charged."""
        extra = value * (self.params.taker_fee - self.params.maker_fee)
        self.F[kernel.F_CASH] -= extra
        self.money[kernel.M_FEES] += extra
        return extra

    def settle(self, side: str, booked_qty: float, booked_fee: float, pnl: float, filled: float, price: float,
               fee: float, fee_base: float) -> dict:
        """A fill the books took for ``booked_fee`` made what the exchange charged: ``fee``, in
        the quote (a linear perpetual takes no commission in coins; a quantity that differs
        from the books' is the positions check's, after the sync). Returns the trade's pnl, fee
        and cash after it."""
        d_fee = fee - booked_fee
        if abs(d_fee) > 1e-12 * filled * price:
            self.F[kernel.F_CASH] -= d_fee
            self.money[kernel.M_FEES] += d_fee
            pnl -= d_fee
        else:
            d_fee = 0.0
        return {"pnl": pnl, "fee": booked_fee + d_fee, "cash": float(self.F[kernel.F_CASH])}

    def liquidated(self, s: int, bar: int, t: int) -> dict:
        """The exchange liquidated side ``s`` (0 long, 1 short): its isolated margin is lost."""
        self.I[kernel.I_NTR] = 0
        kernel.liquidate_nb(s, bar, t, self.params, self.L, self.G, self.F, self.I, self._trades, self.counters,
                      self.money, self.tiers)
        self._assign_keys()
        return self._summary()

    def _summary(self) -> dict | None:
        t = self._trades[:self.I[kernel.I_NTR]]
        if not len(t):
            return None  # refused (no lot room, no balance): counted, nothing changed
        return {"pnl": float(t["pnl"].sum()), "fee": float(t["fee"].sum()), "qty": float(t["qty"].sum()),
                "cash": float(self.F[kernel.F_CASH]),
                "position": float(self.F[kernel.F_QTY_L] - self.F[kernel.F_QTY_S]),
                "label": kernel.LABELS[t["label"][0]],
                "trades": t.copy()}

    def _lot(self, s: int, ident: tuple) -> int:
        L = self.L
        for m in range(int(self.I[kernel.I_NLOT_L + s])):
            lot = (float(L[s, m, kernel.L_TIME]), float(L[s, m, kernel.L_ENTRY]), int(L[s, m, kernel.L_LEVEL]),
                   int(L[s, m, kernel.L_GENERATION]))
            if lot == ident:
                return m
        return -1

    # -- desired orders ------------------------------------------------------------------------
    def _rows(self) -> np.ndarray:
        n = kernel.desired_orders_nb(self.params, self.L, self.G, self.F, self.I, self._want)
        return self._want[:n]

    def _identity(self, row) -> tuple:
        kind, s, ref = _KINDS[int(row["kind"])], int(row["book"]), int(row["ref"])
        price, qty = float(row["price"]), float(row["qty"])
        if kind == "open":
            return kind, s, ref, int(self.I[kernel.I_GEN]), price, qty
        if kind == "stop":
            return kind, s, ref, price, qty
        lot = self.L[s, ref]
        lot_id = (float(lot[kernel.L_TIME]), float(lot[kernel.L_ENTRY]), int(lot[kernel.L_LEVEL]),
                  int(lot[kernel.L_GENERATION]))
        if kind == "tp":
            return (kind, s, *lot_id, price, qty)
        return (kind, s, *lot_id, int(self.I[kernel.I_PRUNE_LABEL]))

    def _assign_keys(self) -> list[tuple]:
        keys, out = {}, []
        for row in self._rows():
            ident = self._identity(row)
            if ident not in keys:
                if ident in self.keys:
                    keys[ident] = self.keys[ident]
                else:
                    keys[ident] = self.next_key
                    self.next_key += 1
            out.append((keys[ident], ident, row))
        self.keys = keys
        self.by_key = {k: ident for ident, k in keys.items()}
        return out

    def desired(self, close: float) -> list[DesiredOrder]:
        out = []
        for key, ident, row in self._assign_keys():
            kind, s = ident[0], ident[1]
            side = "buy" if row["side"] == 1 else "sell"
            otype = {"open": "limit", "tp": "limit", "stop": "stop", "prune": "market"}[kind]
            role = kernel.LABELS[ident[-1]] if kind == "prune" else \
                {"open": "OPEN", "tp": "TAKE_PROFIT", "stop": f"STOP{ident[2]}"}[kind] + "_" + _SIDES[s].upper()
            price = float(close) if kind == "prune" else float(row["price"])
            level = int(row["ref"]) if kind == "open" else -1
            out.append(DesiredOrder(key, side, otype, price, float(row["qty"]), level, role, kind != "open", _SIDES[s]))
        return out

    def is_live_key(self, key: int) -> bool:
        return key in self.by_key

    def positions(self) -> tuple[float, float]:
        return float(self.F[kernel.F_QTY_L]), float(self.F[kernel.F_QTY_S])

    # -- books ---------------------------------------------------------------------------------
    def books(self, price: float) -> dict:
        F, money, c = self.F, self.money, self.counters
        ql, qs = float(F[kernel.F_QTY_L]), float(F[kernel.F_QTY_S])
        upnl = price * ql - F[kernel.F_COST_L] + F[kernel.F_COST_S] - price * qs
        margin = float(F[kernel.F_MARGIN_L] + F[kernel.F_MARGIN_S])
        return {"cash": float(F[kernel.F_CASH]), "margin": margin, "position": ql - qs, "long": ql, "short": qs,
                "equity": float(F[kernel.F_CASH]) + margin + float(upnl), "floating": float(upnl),
                "avg_long": float(F[kernel.F_COST_L] / ql) if ql else None,
                "avg_short": float(F[kernel.F_COST_S] / qs) if qs else None,
                "liq_long": float(F[kernel.F_LIQ_L]) if ql else None,
                "liq_short": float(F[kernel.F_LIQ_S]) if qs else None,
                "stop_long": float(kernel.next_stop_nb(F, self.I, kernel.LONG)) if ql else None,
                "stop_short": float(kernel.next_stop_nb(F, self.I, kernel.SHORT)) if qs else None,
                "grid_profit": float(money[kernel.M_GRID_PROFIT]), "realized": float(money[kernel.M_REALIZED]),
                "fees": float(money[kernel.M_FEES]), "funding": float(money[kernel.M_FUNDING]),
                "fills": int(c[kernel.C_LONGS_OPENED] + c[kernel.C_LONGS_CLOSED] + c[kernel.C_SHORTS_OPENED]
                             + c[kernel.C_SHORTS_CLOSED]),
                "round_trips": int(c[kernel.C_ROUND_TRIPS]),
                "exposure": (ql + qs) * price}

    def levels(self) -> np.ndarray:
        """The opening orders' prices of both grids."""
        G = self.G
        return np.sort(G[:, :, kernel.G_PRICE][G[:, :, kernel.G_STATE] == kernel.REST])

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "strategy": self.strategy,  # (the gate's room is the gate's, told at each close)
            "params": {k: v for k, v in self.params._asdict().items() if k != "max_exposure"},
            "arrays": {name: getattr(self, name).tolist() for name in ("L", "G", "F", "I", "counters", "money")},
            "keys": [[list(ident), k] for ident, k in self.keys.items()], "next_key": self.next_key, "bar": self.bar,
        }

    @classmethod
    def from_state(cls, cfg: AdaptiveGridConfig, state: dict) -> AdaptiveGridRunner:
        self = cls(cfg, kernel.AdaptiveGridParams(**state["params"]))
        for name, v in state["arrays"].items():
            setattr(self, name, np.array(v, dtype=np.int64 if name in ("I", "counters") else np.float64))
        if len(self.counters) < kernel.N_COUNTERS:  # a state from before some counters (completed grids) were kept
            self.counters = np.r_[self.counters, np.zeros(kernel.N_COUNTERS - len(self.counters), dtype=np.int64)]
        old = len(self.F)
        if old < kernel.N_F:  # (a state from before the short side's wallet difference was kept apart: all long's)
            self.F = np.r_[self.F, np.zeros(kernel.N_F - old)]
        if old <= kernel.F_XD:  # a state from before the exchange's wallet was kept: it starts from the books'
            for s in range(2):
                q = self.F[kernel.F_QTY_L + s]
                self.F[kernel.F_XE_L + s] = self.F[kernel.F_COST_L + s] / q if q > 0 else 0.0
        self.keys = {tuple(ident): int(k) for ident, k in state["keys"]}
        self.by_key = {k: ident for ident, k in self.keys.items()}
        self.next_key = int(state["next_key"])
        self.bar = int(state["bar"])
        return self


def estimated_liquidation(cfg: AdaptiveGridConfig, symbol: str, price: float) -> tuple[int, float, float]:
    """(lots, long, short): where a side holding every lot its grid may open (its levels, at
    most ``max_lots``), bought or sold at about ``price`` with each lot's margin, is liquidated
    (isolated, the symbol's tiers): what an exchange's grid bot shows before start. The lots
    open spread around the price, so the real figure moves with the fills; ValueError when the
    symbol's tiers are not known."""
    tiers = tiers_for(cfg.tiers, symbol)
    lots = min(int(cfg.levels), int(cfg.max_lots))
    margin = lots * float(cfg.order_frac) * float(cfg.capital)
    qty = margin * float(cfg.leverage) / price
    return (lots, float(liquidation_price_nb(tiers, 1, qty, price, margin)),
            float(liquidation_price_nb(tiers, -1, qty, price, margin)))


def _check(cfg: AdaptiveGridConfig, first_price: float | None = None) -> None:
    check(cfg)


def _backtest(candles, cfg, funding=None, *, replay: bool = False, progress=None, risk=None):
    return run_adaptive_grid(candles, cfg, funding, orders=replay, progress=progress, risk=risk)


SPEC = StrategySpec(
    "adaptive-grid", AdaptiveGridConfig, _backtest, SEARCH_SPACE, check=_check, funded=True, perpetual=True,
    market="perpetual", runner=AdaptiveGridRunner, risk_gate=True,
    presets={
        "Defaults (1x, 10 levels a side)": {},
        "3x leverage": {"leverage": 3.0, "order_frac": 0.02},
        "Wide spacing": {"atr_k": 2.0, "levels": 6},
    })
