"""The futures grid, long / short / neutral (Binance's, Bybit's, OKX's): a fixed range of price
lines on a USDT-M perpetual, leverage, isolated margin in hedge mode (the kernel:
engine/kernels/futures_grid.py). Its settings, their checks, the lines it lays, the estimated
liquidation prices shown before start, the backtest, the runtime's runner and its spec.
"""

from __future__ import annotations

import time as _time
from dataclasses import asdict, dataclass

import numpy as np

from engine.data import Candles, FundingRates
from engine.kernels import adaptive_grid as ag
from engine.kernels import futures_grid as kernel
from engine.kernels.breaker import atr_breaker
from engine.kernels.grid import grid_levels
from engine.kernels.matching import FILL_MODELS
from engine.kernels.perp import funding_on_bars, liquidation_price_nb, tiers_for
from engine.risk import OPEN_GATE, Gate, RiskGate, RiskLimits
from engine.strategies.adaptive_grid import AdaptiveGridRunner
from engine.strategies.adaptive_grid.backtest import PerpResult, perp_result
from engine.strategies.adaptive_grid.settings import check_perp_costs, positive
from engine.strategies.errors import ParamError
from engine.strategies.space import Choice, FloatRange, IntRange
from engine.strategies.spec import MAX_CAPITAL, StrategySpec, checked_settings, drive, not_laid_before, trigger_start

NAME = "futures-grid"
EXTRA_LOTS = 8  # lots a side may hold beyond one a slot: fills booked apart from the levels (runtime)
COUNTERS = ("longs_opened", "longs_closed", "shorts_opened", "shorts_closed", "liquidations", "funding_events",
            "lots_full", "refused_min_notional", "refused_balance", "risk_waits", "round_trips", "active_bars")


@dataclass
class FuturesGridConfig:
    direction: str = "neutral"  # neutral | long | short
    lower: float = 0.0  # 0 (both): the range is +-range_pct around the price the grid is laid at
    upper: float = 0.0
    range_pct: float = 0.1
    levels: int = 21  # price lines (levels - 1 slots)
    spacing: str = "arithmetic"  # arithmetic | geometric
    capital: float = 10_000.0
    leverage: float = 2.0
    stop_top: float = 0.0  # a candle reaching this price ends the grid, closing what it holds (0: none)
    stop_bottom: float = 0.0
    stop_loss_pct: float = 0.0  # the total PnL at a close at or below -this x capital ends the grid (0: none)
    take_profit_pct: float = 0.0  # ... at or above this x capital
    maker_fee: float = 0.0002
    taker_fee: float = 0.0005
    slippage: float = 0.0005
    lot: float = 0.001
    tick: float = 0.1
    min_notional: float = 5.0
    funding_rate: float = 0.0001  # per 8 h when no funding file covers a settlement
    tiers: str = ""  # a tier table file; "": the symbol's Binance brackets (engine.kernels.perp.tiers_for)
    trigger_price: float = 0.0
    fill_rule: str = "touch"
    queue_depth: float = 0.001
    fill_seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FuturesGridConfig:
        return checked_settings(cls, data, NAME)


def check(cfg: FuturesGridConfig, first_price: float | None = None) -> None:
    """Every setting by name; with ``first_price`` (where the grid is laid) also the range and
    the stops against it."""
    if cfg.direction not in kernel.DIRECTIONS:
        raise ParamError("direction", f"{cfg.direction!r} is not one of {', '.join(kernel.DIRECTIONS)}")
    if cfg.spacing not in ("arithmetic", "geometric"):
        raise ParamError("spacing", f"{cfg.spacing!r}: a futures grid's lines are arithmetic or geometric")
    positive(cfg, "capital", upper=MAX_CAPITAL)
    positive(cfg, "leverage", upper=125)
    positive(cfg, "range_pct", upper=0.95)
    for name in ("lower", "upper", "stop_top", "stop_bottom", "lot", "tick", "min_notional", "trigger_price"):
        positive(cfg, name, zero_ok=True)
    positive(cfg, "stop_loss_pct", zero_ok=True, upper=1.0)
    positive(cfg, "take_profit_pct", zero_ok=True, upper=100.0)
    if (cfg.lower > 0) != (cfg.upper > 0) or (cfg.upper > 0 and cfg.lower >= cfg.upper):
        raise ParamError("upper", f"give both lower and upper, lower below upper (or neither: +-range_pct around the "
                                  f"price), got {cfg.lower:g} and {cfg.upper:g}")
    if cfg.stop_top and cfg.stop_bottom and cfg.stop_bottom >= cfg.stop_top:
        raise ParamError("stop_bottom", f"{cfg.stop_bottom:g} is not below the stop top {cfg.stop_top:g}")
    check_perp_costs(cfg)
    if not 3 <= cfg.levels <= 1000:
        raise ParamError("levels", f"must be a whole number from 3 to 1,000 (price lines), got {cfg.levels}")
    if first_price is not None:
        lines = grid_lines(cfg, first_price)
        if cfg.stop_top and cfg.stop_top <= first_price:
            raise ParamError("stop_top", f"{cfg.stop_top:,.8g} is not above the price {first_price:,.8g}")
        if cfg.stop_bottom and cfg.stop_bottom >= first_price:
            raise ParamError("stop_bottom", f"{cfg.stop_bottom:,.8g} is not below the price {first_price:,.8g}")
        if not lines[0] <= first_price <= lines[-1]:
            raise ParamError("lower", f"the price {first_price:,.8g} is outside the range {lines[0]:,.8g} .. "
                                      f"{lines[-1]:,.8g}: a grid bot starts inside its range")


def grid_lines(cfg: FuturesGridConfig, price: float) -> np.ndarray:
    """The price lines of a grid laid at ``price``, to the tick."""
    lower, upper = (cfg.lower, cfg.upper) if cfg.upper > 0 else (price * (1 - cfg.range_pct),
                                                                price * (1 + cfg.range_pct))
    try:
        return grid_levels(lower, upper, int(cfg.levels), cfg.spacing, cfg.tick)
    except ValueError as exc:
        name, _, why = str(exc).partition(": ")
        raise ParamError(name if name in ("levels", "tick") else "lower", why) from None


def build_params(cfg: FuturesGridConfig, start_bar: int = 0) -> kernel.FuturesGridParams:
    check(cfg)
    return kernel.FuturesGridParams(
        capital=float(cfg.capital), leverage=float(cfg.leverage), levels=int(cfg.levels) - 1,
        max_lots=int(cfg.levels) - 1 + EXTRA_LOTS, lot=float(cfg.lot), tick=float(cfg.tick),
        min_notional=float(cfg.min_notional), maker_fee=float(cfg.maker_fee), taker_fee=float(cfg.taker_fee),
        slippage=float(cfg.slippage), start_bar=int(start_bar), fill_model=FILL_MODELS.index(cfg.fill_rule),
        queue_depth=float(cfg.queue_depth), fill_seed=int(cfg.fill_seed), direction=kernel.DIRECTIONS[cfg.direction],
        stop_top=float(cfg.stop_top), stop_bottom=float(cfg.stop_bottom), stop_loss=float(cfg.stop_loss_pct),
        take_profit=float(cfg.take_profit_pct))


@dataclass(frozen=True)
class Plan:
    """A futures grid as laid at a price: its lines, which slots are long and which open at
    market at the next open, each slot's quote value, the net profit per grid after the maker
    fee (lowest and highest)."""

    lines: np.ndarray
    long: np.ndarray
    market: np.ndarray
    slot_value: float
    profit: tuple[float, float]


def planned(cfg: FuturesGridConfig, price: float) -> Plan:
    """The grid ``cfg`` lays at ``price`` (the kernel's layout, ``slot_sides``)."""
    from engine.kernels.grid import profit_range

    lines = grid_lines(cfg, price)
    long, market = kernel.slot_sides(lines, price, kernel.DIRECTIONS[cfg.direction])
    return Plan(lines, long, market, cfg.capital * cfg.leverage * kernel.BUDGET / (len(lines) - 1),
                profit_range(lines, cfg.maker_fee))


def estimated_liquidation(cfg: FuturesGridConfig, symbol: str, price: float) -> tuple[float | None, float | None]:
    """(long, short): where each side is liquidated once it holds every slot it may (isolated,
    the symbol's tiers, the margin each slot brings): the long side when the price has fallen
    through all its buys to the bottom, the short side when it has risen through all its sells,
    which is the worst each side can be before the price leaves the range. None for a side the
    grid does not have, or that no price liquidates. What the exchanges' futures grids show
    before start."""
    tiers = tiers_for(cfg.tiers, symbol)
    p = build_params(cfg)
    plan = planned(cfg, price)
    lines, long, market = plan.lines, plan.long, plan.market
    out = []
    for side, sign in ((long, 1), (~long, -1)):
        if not side.any():
            out.append(None)
            continue
        at = np.where(market[side], price, lines[:-1][side] if sign > 0 else lines[1:][side])
        qty = np.floor(plan.slot_value / at / p.lot) * p.lot if p.lot > 0 else plan.slot_value / at
        q = float(qty.sum())
        entry = float((qty * at).sum()) / q
        margin = float((qty * at).sum()) / p.leverage
        liq = float(liquidation_price_nb(tiers, sign, q, entry, margin))
        out.append(liq if 0.0 < liq < np.inf else None)
    return out[0], out[1]


def run_futures_grid(candles: Candles, cfg: FuturesGridConfig | None = None, funding: FundingRates | None = None, *,
                     orders: bool = False, progress=None, risk: RiskLimits | None = None,
                     not_before: int = 0) -> PerpResult:
    """Backtest the futures grid; ``orders``: keep the replay's order log and marks; ``risk``:
    the runtime's risk gate (its volatility breaker from the first bar traded, its exposure
    limits); ``not_before``: the grid is laid no earlier than this bar."""
    cfg = cfg or FuturesGridConfig()
    timings = {"indicators": 0.0}
    n = len(candles)
    start = trigger_start(candles.low, candles.high, not_laid_before(0, not_before, n), cfg.trigger_price)
    check(cfg, float(candles.close[start]))
    plan = planned(cfg, float(candles.close[start]))
    p = build_params(cfg, start)
    rate_time, rate = (funding.time, funding.rate) if funding is not None else (np.zeros(0, np.int64), np.zeros(0))
    a = {"start": start}
    a["funding"], a["funding_count"], a["funding_defaulted"] = funding_on_bars(candles.time, rate_time, rate,
                                                                               cfg.funding_rate)
    paused = np.zeros(0, dtype=np.bool_)
    if risk is not None:
        from engine.kernels.indicators import atr_nb

        p = p._replace(max_exposure=RiskGate(risk).exposure_room("backtest", "-"))
        paused = atr_breaker(atr_nb(candles.high, candles.low, candles.close, 14), risk.atr_jump, risk.calm_candles,
                             start)
    tiers = tiers_for(cfg.tiers, candles.symbol)
    t1 = _time.perf_counter()
    L, G, F, I = kernel.new_state(p)
    logs = {"trades": np.empty(1024 + n // 16, dtype=ag.TRADE_DTYPE)}
    equity, long_qty, short_qty = np.empty(n), np.empty(n), np.empty(n)
    counters = np.zeros(ag.N_COUNTERS, dtype=np.int64)
    money = np.zeros(ag.N_MONEY)
    olog, refs, marks = ag.new_order_log(p, n) if orders else kernel.no_replay_log()
    logs["orders"] = olog
    c = candles

    def run_part(end, first):
        return kernel.futures_grid_nb(c.time[:end], c.open[:end], c.high[:end], c.low[:end], c.close[:end],
                                      a["funding"][:end], a["funding_count"][:end], tiers, paused[:end], plan.lines,
                                      plan.long, plan.market, plan.slot_value, p, L, G, F, I, logs["trades"], equity,
                                      long_qty, short_qty, counters, money, first, logs["orders"], refs, marks)

    def grow():
        used = {"trades": int(I[ag.I_NTR]), "orders": int(refs[0]) if orders else 0}
        for name, log in logs.items():
            if name == "orders" and not orders:
                continue
            bigger = np.empty(2 * len(log), dtype=log.dtype)
            bigger[:used[name]] = log[:used[name]]
            logs[name] = bigger

    drive(run_part, n, grow, progress, "futures-grid kernel")
    timings["kernel"] = _time.perf_counter() - t1
    ended = int(I[kernel.I_ENDED])
    r = perp_result(NAME, cfg, candles, funding, a, logs["trades"][:int(I[ag.I_NTR])], equity, long_qty, short_qty,
                    counters, money, F, counter_names=COUNTERS, orders=logs["orders"][:refs[0]] if orders else None,
                    marks=marks if orders else None,
                    extra={"risk_paused_bars": int(paused.sum())} if risk is not None else {})
    r.metrics.update(ended=kernel.END_NAMES[ended], ended_bar=int(I[kernel.I_ENDED_AT]) if ended else -1,
                     lines=[float(plan.lines[0]), float(plan.lines[-1])])
    r.timings = timings
    return r


_KINDS = {ag.OPEN_ORDER: "open", ag.TAKE_PROFIT_ORDER: "tp", ag.MARKET_ORDER: "market", kernel.MARKET_CLOSE: "close"}
_SIDES = ("long", "short")


class FuturesGridRunner(AdaptiveGridRunner):
    """The futures grid's kernels held with their state for the paper and live runtime: the
    grid laid at the first close (``lay_nb``), ``close_nb`` at each close after it; each fill
    to the backtest's own ``open_fill_nb`` / ``on_take_profit_fill_nb`` / ``market_open_fill_nb``
    / ``market_close_fill_nb``. The books, funding, fees, liquidation and state are the adaptive
    grid's (the same lots), which this runner inherits."""

    strategy = NAME
    Params = kernel.FuturesGridParams
    new_state = staticmethod(kernel.new_state)
    trade_log_room = staticmethod(kernel.trade_log_room)
    build_params = staticmethod(build_params)

    def warmup_bars(self) -> int:
        return 2

    def indicators(self, hist: np.ndarray) -> dict:
        """What its decisions read of the last candle (rows: time, high, low, close, open); ``atr``
        for the risk gate's volatility breaker."""
        from engine.kernels.indicators import atr_nb

        atr = atr_nb(hist[:, 1], hist[:, 2], hist[:, 3], 14)
        return {"time": int(hist[-1, 0]), "high": float(hist[-1, 1]), "low": float(hist[-1, 2]),
                "atr": float(atr[-1]), "ready": True}

    def start(self, bar: int, close: float, ind: dict, gate: Gate = OPEN_GATE) -> None:
        check(self.cfg, close)
        plan = planned(self.cfg, close)
        kernel.lay_nb(close, plan.lines, plan.long, plan.market, plan.slot_value, self.params, self.G, self.I,
                      self.counters)
        self._close(bar, close, close, close, gate)

    def decide(self, bar: int, close: float, ind: dict, gate: Gate = OPEN_GATE) -> None:
        self._close(bar, ind["high"], ind["low"], close, gate)

    def _close(self, bar: int, high: float, low: float, close: float, gate: Gate) -> None:
        self.I[ag.I_NTR] = 0
        self.params = self.params._replace(max_exposure=float(gate.room))
        was = int(self.I[kernel.I_ENDED])
        kernel.close_nb(bar, high, low, close, bool(gate.paused), self.params, self.L, self.G, self.F, self.I,
                        self.counters)
        ended = int(self.I[kernel.I_ENDED])
        self.last_events = [kernel.END_NAMES[ended]] if ended and not was else []
        self.bar = bar
        self._assign_keys()

    @property
    def note(self) -> str:
        if not self.ended:
            return ""
        c, p = self.cfg, self.params
        why = {"STOP_TOP": f"the price reached its stop top {c.stop_top:,.8g}",
               "STOP_BOTTOM": f"the price reached its stop bottom {c.stop_bottom:,.8g}",
               "STOP_LOSS": f"its total PnL fell to its stop-loss (-{c.stop_loss_pct:.2%} of {p.capital:,.2f})",
               "TAKE_PROFIT": f"its total PnL reached its take-profit ({c.take_profit_pct:.2%} of {p.capital:,.2f})",
               "LIQUIDATION": "a side was liquidated"}[self.ended]
        held = "closing what it holds at market" if self.F[ag.F_QTY_L] or self.F[ag.F_QTY_S] else "nothing held"
        return f"grid ended: {why}; {held}. It lays no new grid: switch it off, and add a system to grid again"

    @property
    def ended(self) -> str:
        """Why the grid ended ("" while it runs): STOP_TOP, STOP_BOTTOM, STOP_LOSS, TAKE_PROFIT,
        LIQUIDATION."""
        return kernel.END_NAMES[int(self.I[kernel.I_ENDED])]

    def on_fill(self, key: int, bar: int, t: int, price: float) -> dict | None:
        ident = self.by_key.get(key)
        if ident is None:
            return None
        kind, s = ident[0], ident[1]
        args = (self.params, self.L, self.G, self.F, self.I, self._trades, self.counters, self.money, self.tiers)
        self.I[ag.I_NTR] = 0
        if kind == "open":
            j = ident[2]
            if self.G[s, j, ag.G_STATE] != ag.REST:
                return None
            ok = kernel.open_fill_nb(s, j, bar, t, price, *args)
        elif kind == "market":
            ok = kernel.market_open_fill_nb(s, bar, t, price, *args)
        elif kind == "close":
            ok = kernel.market_close_fill_nb(s, bar, t, price, ident[2], *args)
        else:
            m = self._lot(s, ident[2:6])
            if m < 0:
                return None
            ok = ag.on_take_profit_fill_nb(s, m, bar, t, price, *args)
        if not ok:
            raise RuntimeError("futures grid: trade log full (a bug)")
        self.keys.pop(ident, None)
        return self._summary()

    def liquidated(self, s: int, bar: int, t: int) -> dict:
        """The exchange liquidated side ``s``: its margin is lost, and the grid ends."""
        self.G[s, :, ag.G_STATE] = 0.0  # (the exchange cancelled the position's orders)
        return super().liquidated(s, bar, t)

    def _rows(self) -> np.ndarray:
        n = kernel.desired_orders_nb(self.params, self.L, self.G, self.F, self.I, self._want)
        return self._want[:n]

    def _identity(self, row) -> tuple:
        kind, s, ref = _KINDS[int(row["kind"])], int(row["book"]), int(row["ref"])
        price, qty = float(row["price"]), float(row["qty"])
        if kind == "open":
            return kind, s, ref, price, qty
        if kind in ("market", "close"):
            return kind, s, qty
        lot = self.L[s, ref]
        return (kind, s, float(lot[ag.L_TIME]), float(lot[ag.L_ENTRY]), int(lot[ag.L_LEVEL]),
                int(lot[ag.L_GENERATION]), price, qty)

    def desired(self, close: float):
        from engine.strategies.spec import DesiredOrder

        out = []
        for key, ident, row in self._assign_keys():
            kind, s = ident[0], ident[1]
            side = "buy" if row["side"] == 1 else "sell"
            market = kind in ("market", "close")
            role = {"open": "OPEN", "tp": "TAKE_PROFIT", "market": "OPEN_MARKET", "close": "CLOSE"}[kind] + "_" \
                + _SIDES[s].upper()
            out.append(DesiredOrder(key, side, "market" if market else "limit", float(close) if market else
                                    float(row["price"]), float(row["qty"]), int(row["ref"]) if kind == "open" else -1,
                                    role, kind in ("tp", "close"), _SIDES[s]))
        return out

    def books(self, price: float) -> dict:
        out = super().books(price)
        out.update(stop_long=None, stop_short=None, ended=self.ended)
        return out

    def levels(self) -> np.ndarray:
        G = self.G
        return np.sort(G[:, :, ag.G_PRICE][(G[:, :, ag.G_STATE] == ag.REST) | (G[:, :, ag.G_STATE] == kernel.MARKET)])

def _backtest(candles, cfg, funding=None, *, replay: bool = False, progress=None, risk=None, not_before: int = 0):
    return run_futures_grid(candles, cfg, funding, orders=replay, progress=progress, risk=risk, not_before=not_before)


SPEC = StrategySpec(
    NAME, FuturesGridConfig, _backtest,
    search_space={"levels": IntRange(5, 80), "range_pct": FloatRange(0.02, 0.3, log=True),
                  "spacing": Choice(("arithmetic", "geometric"))},
    check=check, funded=True, perpetual=True, market="perpetual", runner=FuturesGridRunner, risk_gate=True,
    presets={
        "Neutral, 2x, +-10%": {},
        "Long, 3x, +-15%": {"direction": "long", "leverage": 3.0, "range_pct": 0.15},
        "Short, 3x, +-15%": {"direction": "short", "leverage": 3.0, "range_pct": 0.15},
    })
