"""The spot grid: user-facing settings, their validation, and the call into the numba kernel.

Settings are checked here with errors that name the setting; the kernel takes the validated
numbers as a :class:`~engine.kernels.spot_grid.SpotGridParams`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from engine.kernels import grid
from engine.kernels import spot_grid as kernel
from engine.risk import OPEN_GATE, Gate
from engine.strategies.errors import ParamError
from engine.strategies.space import Choice, FloatRange, IntRange
from engine.strategies.spec import StrategyRunner, StrategySpec

_KINDS = {"float": "a number", "int": "a whole number", "str": "a text", "bool": "true or false"}


def checked_settings(cls, data: dict, label: str):
    """``cls(**data)`` for a settings dataclass, a name it does not have or a value of the wrong
    kind (text for a number, a fraction for a count) refused by the setting's name; numbers
    in range are the strategy's own checks."""
    by_name = {f.name: f for f in fields(cls)}
    out = {}
    for name in sorted(data):
        if name not in by_name:
            raise ParamError(name, f"unknown {label} setting")
        v = data[name]
        kinds = str(by_name[name].type).replace(" ", "").split("|")
        if v is None and "None" in kinds:
            out[name] = v
            continue
        if "bool" in kinds:
            ok = isinstance(v, bool)
        elif "int" in kinds:
            ok = (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
            v = int(v) if ok else v
        elif "float" in kinds:
            ok = isinstance(v, int | float) and not isinstance(v, bool)
        elif "str" in kinds:
            ok = isinstance(v, str)
        else:
            ok = True
        if not ok:
            raise ParamError(name, f"must be {_KINDS.get(kinds[0], kinds[0])}, got {v!r}")
        out[name] = v
    return cls(**out)


@dataclass
class SpotGridConfig:
    """A spot grid as a user describes it. ``lower``/``upper`` of 0 mean "from the data":
    range grids span +-``range_pct`` around the first price; lower-only grids anchor at the
    first price with ``lower`` at (1 - range_pct) of it."""

    mode: str = "range"  # range | lower-only
    spacing: str = "arithmetic"  # arithmetic | geometric | atr
    lower: float = 0.0
    upper: float = 0.0
    levels: int = 20
    range_pct: float = 0.2
    capital: float = 10_000.0
    fee: float = 0.001
    taker_fee: float | None = None  # defaults to fee
    slippage: float = 0.0
    lot: float = 1e-8
    tick: float = 0.0
    min_notional: float = 0.0
    qty_mode: str = "quote"  # quote | base
    atr_period: int = 14
    atr_k: float = 1.0
    atr_floor: float = 0.005
    trailing: str = "none"  # none | up | down | both
    recenter: float | None = None  # spacings beyond the grid; None: 0 (range), 2 (lower-only)
    consumed: float | None = None  # lower-only; None: 0.8
    dead_zone: float = 0.0
    stop_loss: float = 0.0
    take_profit: float = 0.0
    stop_action: str = "sell"  # sell | keep
    fill_rule: str = "touch"  # touch | through

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SpotGridConfig:
        return checked_settings(cls, data, "spot-grid")


# Settings that take one of a few words (the kernels' names where they have them).
CHOICES = {
    "mode": kernel.MODE_NAMES, "spacing": grid.SPACING_NAMES, "qty_mode": ("quote", "base"),
    "trailing": kernel.TRAIL_NAMES, "stop_action": ("sell", "keep"), "fill_rule": ("touch", "through"),
}

# What the optimizer may vary by default (the rest keep the user's values).
SEARCH_SPACE = {
    "spacing": Choice(("arithmetic", "geometric")),
    "levels": IntRange(5, 100),
    "range_pct": FloatRange(0.03, 0.5, log=True),
    "trailing": Choice(CHOICES["trailing"]),
}


def _choice(name: str, value: str, options: tuple[str, ...]) -> int:
    if value not in options:
        raise ParamError(name, f"{value!r} is not one of {', '.join(options)}")
    return options.index(value)


MAX_CAPITAL = 1e12  # no account holds more: a larger capital is a typo (or Infinity)


def _positive(name: str, value: float, *, zero_ok: bool = False) -> float:
    if value is None or not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise ParamError(name, f"must be {'>= 0' if zero_ok else '> 0'}, got {value}")
    return float(value)


def check_settings(cfg: SpotGridConfig) -> None:
    """What ``build_params`` checks without data (settings read from a file, before any
    candle): each setting's range, an explicit range's order, and what an exchange would make
    of the grid: a step that earns no more than the fees of its round trip, an order below
    the minimum notional."""
    price = (cfg.lower + cfg.upper) / 2 if cfg.lower and cfg.upper else cfg.upper or cfg.lower or 1.0
    p = build_params(cfg, price, check_price=False)
    if p.mode == kernel.RANGE:  # (a lower-only grid's top is the price at start: checked then)
        check_grid(p, price)


def check_grid(p: kernel.SpotGridParams, price: float) -> None:
    """What an exchange's grid bot refuses: a grid laid at ``price`` whose narrowest step earns
    no more than the fees of its round trip, and an order below the minimum notional."""
    if p.min_notional and p.capital / p.levels < p.min_notional:
        raise ParamError("capital", f"{p.capital:g} over {p.levels} levels is {p.capital / p.levels:.2f} an order, "
                                    f"below the minimum order value {p.min_notional:g}")
    planned = planned_grid(p, price)
    if planned is not None and planned[1] <= 0:
        raise ParamError("levels", f"{p.levels} levels over the range leave {planned[1]:+.3%} a grid after the fees "
                                   f"of its round trip ({2 * p.fee:.3%}): each trade would lose money")


def build_params(cfg: SpotGridConfig, first_price: float, start_bar: int = 0, *,
                 check_price: bool = True) -> kernel.SpotGridParams:
    """Validate ``cfg`` against the data's first price and turn it into kernel numbers
    (``check_price`` False: no data yet, the price-bound checks are left for the first candle)."""
    mode, spacing, trailing, qty_mode, stop_action, fill_through = (
        _choice(name, getattr(cfg, name), CHOICES[name])
        for name in ("mode", "spacing", "trailing", "qty_mode", "stop_action", "fill_rule"))
    if not isinstance(cfg.levels, int | np.integer) or cfg.levels < 2 or cfg.levels > 5000:
        raise ParamError("levels", f"must be a whole number from 2 to 5000, got {cfg.levels}")
    capital = _positive("capital", cfg.capital)
    if capital > MAX_CAPITAL:
        raise ParamError("capital", f"must be at most {MAX_CAPITAL:g}, got {capital:g}")
    fee = _positive("fee", cfg.fee, zero_ok=True)
    if fee >= 0.1:
        raise ParamError("fee", f"{fee} is a fraction of the notional (0.001 is 0.1%); 10% or more is not a fee")
    taker = fee if cfg.taker_fee is None else _positive("taker_fee", cfg.taker_fee, zero_ok=True)
    slippage = _positive("slippage", cfg.slippage, zero_ok=True)
    lot = _positive("lot", cfg.lot, zero_ok=True)
    tick = _positive("tick", cfg.tick, zero_ok=True)
    min_notional = _positive("min_notional", cfg.min_notional, zero_ok=True)
    lower = _positive("lower", cfg.lower, zero_ok=True)
    upper = _positive("upper", cfg.upper, zero_ok=True)
    range_pct = _positive("range_pct", cfg.range_pct)
    if range_pct >= 1:
        raise ParamError("range_pct", f"must be below 1, got {range_pct}")
    if mode == kernel.RANGE:
        lower = lower or first_price * (1 - range_pct)
        upper = upper or first_price * (1 + range_pct)
    else:
        anchor = upper or first_price
        lower = lower or anchor * (1 - range_pct)
        if spacing != grid.ATR and not lower < anchor:
            raise ParamError("lower", f"{lower} must be below the grid's anchor {anchor}")
    if spacing != grid.ATR and mode == kernel.RANGE:
        if not lower < upper:
            raise ParamError("upper", f"upper {upper} must be above lower {lower}")
        grid.grid_levels(lower, upper, cfg.levels, grid.SPACING_NAMES[spacing], tick)  # raises on coarse tick
    if mode == kernel.LOWER_ONLY and trailing in (kernel.TRAIL_DOWN, kernel.TRAIL_BOTH):
        raise ParamError("trailing", "a lower-only grid trails up only; it follows a fall by recentering (--consumed)")
    recenter = cfg.recenter if cfg.recenter is not None else (2.0 if mode == kernel.LOWER_ONLY else 0.0)
    consumed = cfg.consumed if cfg.consumed is not None else (0.8 if mode == kernel.LOWER_ONLY else 0.0)
    _positive("recenter", recenter, zero_ok=True)
    if not 0 <= consumed < 1:
        raise ParamError("consumed", f"must be from 0 to below 1, got {consumed}")
    dead_zone = _positive("dead_zone", cfg.dead_zone, zero_ok=True)
    if dead_zone >= 0.5:
        raise ParamError("dead_zone", f"{dead_zone} is a fraction of the price; 0.5 or more leaves no grid")
    stop_loss = _positive("stop_loss", cfg.stop_loss, zero_ok=True)
    take_profit = _positive("take_profit", cfg.take_profit, zero_ok=True)
    if check_price and stop_loss and stop_loss >= first_price:
        raise ParamError("stop_loss", f"{stop_loss} is not below the first price {first_price:.8g}")
    if check_price and take_profit and take_profit <= first_price:
        raise ParamError("take_profit", f"{take_profit} is not above the first price {first_price:.8g}")
    if spacing == grid.ATR:
        if cfg.atr_period < 1:
            raise ParamError("atr_period", f"must be >= 1, got {cfg.atr_period}")
        _positive("atr_k", cfg.atr_k, zero_ok=True)
        _positive("atr_floor", cfg.atr_floor, zero_ok=True)
        if cfg.atr_k == 0 and cfg.atr_floor == 0:
            raise ParamError("atr_k", "ATR spacing needs atr_k > 0 or atr_floor > 0")
    hedge = _hedge_numbers(cfg)
    return kernel.SpotGridParams(
        **hedge,
        mode=mode, spacing=spacing, lower=float(lower), upper=float(upper), levels=int(cfg.levels),
        capital=capital, fee=fee, taker_fee=taker, slippage=slippage, lot=lot, tick=tick,
        min_notional=min_notional, qty_mode=qty_mode, atr_k=float(cfg.atr_k),
        atr_floor=float(cfg.atr_floor), trailing=trailing, recenter=float(recenter),
        consumed=float(consumed), dead_zone=dead_zone, stop_loss=stop_loss,
        take_profit=take_profit, stop_action=stop_action, fill_through=fill_through,
        start_bar=int(start_bar),
    )


def _hedge_numbers(cfg: SpotGridConfig) -> dict:
    """Reserve, banking and hedge settings (a hedged-grid config has them; a spot grid none)."""
    if not hasattr(cfg, "hedge_ratio"):
        return {}
    out = {}
    for name, upper in (("reserve_ratio", 0.9), ("fee_reserve", 0.1), ("bank_frac", 1.0), ("bank_cap", 0.5),
                        ("hedge_ratio", 2.0), ("hedge_step", 2.0), ("hedge_max", 3.0), ("hedge_fee", 0.01),
                        ("hedge_tp", 1.0), ("hedge_reversal_k", 100.0)):
        v = float(getattr(cfg, name))
        if not 0 <= v <= upper:
            raise ParamError(name, f"must be from 0 to {upper}, got {v}")
        out[name] = v
    if out["reserve_ratio"] + out["fee_reserve"] >= 0.9:
        raise ParamError("reserve_ratio", "the reserves leave the grid less than 10% of the capital")
    if out["hedge_max"] < out["hedge_ratio"]:
        raise ParamError("hedge_max", f"must be at least --hedge-ratio ({out['hedge_ratio']})")
    lev = float(cfg.hedge_leverage)
    if not 1 <= lev <= 125:
        raise ParamError("hedge_leverage", f"must be from 1 to 125, got {lev}")
    out["hedge_leverage"] = lev
    out["reserve_ratio"] += out.pop("fee_reserve")  # the fee reserve is kept aside the same way
    return out


def initial_levels(params: kernel.SpotGridParams) -> np.ndarray | None:
    """The levels of the first grid for fixed spacings (None for ATR spacing: it needs data)."""
    if params.spacing == grid.ATR:
        return None
    if params.mode == kernel.RANGE:
        return grid.grid_levels(params.lower, params.upper, params.levels, grid.SPACING_NAMES[params.spacing],
                                params.tick)
    anchor = params.upper
    if anchor <= 0:
        return None
    return grid.grid_levels(params.lower, anchor, params.levels + 1, grid.SPACING_NAMES[params.spacing], params.tick)


def planned_grid(params: kernel.SpotGridParams, price: float) -> tuple[np.ndarray, float, float] | None:
    """The levels of the first grid laid at ``price`` (a lower-only grid without an upper bound
    anchors at it) and its net profit per grid after fees, lowest and highest; None for ATR
    spacing (its levels need data)."""
    if params.mode != kernel.RANGE and params.upper <= 0:
        params = params._replace(upper=float(price))
    levels = initial_levels(params)
    if levels is None:
        return None
    return (levels, *grid.profit_range(levels, params.fee))


# ---- the spot grid as the runtime drives it, candle by candle -------------------------------

RUNTIME_UNSUPPORTED = ("stop_loss", "take_profit")  # stops need resting stop orders: backtest only


@dataclass(frozen=True)
class DesiredOrder:
    """An order the strategy wants resting. ``key`` is its row in the strategy's order log
    (unique for the life of the system, so it goes into the client order id); the market sell
    of leftover inventory has key -n for the system's n-th such sell. ``type`` "stop" is a
    stop-market order triggered at ``price``."""

    key: int
    side: str  # buy | sell
    type: str  # limit | market
    price: float  # limit price; the last close for a market order
    qty: float
    level: int
    role: str
    reduces: bool
    position: str = ""  # perpetuals in hedge mode: the position it opens or reduces (long | short)


class SpotGridRunner(StrategyRunner):
    """The spot grid's numba ``decide`` / ``on_fill`` kernels (engine.kernels.spot_grid) held
    with their state, for the paper and live runtime. The backtest loop runs the same
    functions, so on the same candles and fills it makes the same orders and trades.

    Per closed candle the runtime calls ``on_fill`` for each fill the exchange reported during
    it (in the order they happened), then ``decide``; ``desired()`` lists the orders to keep
    resting. ``state()`` / ``from_state()`` round-trip exactly through JSON."""

    strategy = "spot-grid"

    def __init__(self, cfg: SpotGridConfig, params: kernel.SpotGridParams | None = None):
        for name in RUNTIME_UNSUPPORTED:
            if getattr(cfg, name):
                raise ParamError(name, "is backtest-only for now: a live stop needs a resting stop order")
        if getattr(cfg, "hedge_ratio", 0.0):
            raise ParamError("hedge_ratio", "the perpetual hedge runs in backtests only for now")
        self.cfg = cfg
        self.params = params
        self.arrays: dict[str, np.ndarray] = {}
        self.orders = np.zeros(0, dtype=kernel.ORDER_DTYPE)
        self._trades = np.zeros(16, dtype=kernel.TRADE_DTYPE)
        self._touched = np.zeros(0, dtype=np.int64)
        self._nt = 0
        self.bar = -1  # the last bar decided
        self.market_seq = 0  # market sells decided so far (the n-th has key -n)
        self._market_pending = 0.0

    # -- setup -------------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self.params is not None and bool(self.arrays)

    def warmup_bars(self) -> int:
        return int(self.cfg.atr_period) + 1 if self.cfg.spacing == "atr" else 1

    def indicators(self, hist: np.ndarray) -> dict:
        """ATR at the last of ``hist`` (rows: time, high, low, close, open; 0 when the grid does
        not use it) and whether there is history enough to start."""
        atr = 0.0
        if self.cfg.spacing == "atr":
            from engine.kernels.indicators import atr_nb

            atr = float(atr_nb(hist[:, 1], hist[:, 2], hist[:, 3], int(self.cfg.atr_period))[-1])
        return {"atr": atr, "ready": len(hist) >= self.warmup_bars() and not np.isnan(atr)}

    def _allocate(self) -> None:
        p = self.params
        if len(self._touched) != p.levels + 1:
            self._touched = np.zeros(p.levels + 1, dtype=np.int64)
        if len(self.orders) - int(self.arrays["I"][kernel.I_ORDERS]) < kernel.order_capacity_needed(p):
            grown = np.zeros(max(1024, 2 * len(self.orders)) + kernel.order_capacity_needed(p),
                             dtype=kernel.ORDER_DTYPE)
            grown[: len(self.orders)] = self.orders
            self.orders = grown
        need_trades = 2 * (p.levels + 1) + 8
        if len(self._trades) < need_trades:
            self._trades = np.zeros(need_trades, dtype=kernel.TRADE_DTYPE)

    def start(self, bar: int, close: float, ind: dict, gate: Gate = OPEN_GATE) -> None:
        """Lay the grid at the close of ``bar``. (``gate``: the spot kernel does not size its
        orders by the risk gate; an order it refuses waits in the runtime, with its backoff.)"""
        atr = ind["atr"]
        if self.params is None:
            self.params = build_params(self.cfg, close, 0)
        S, SI, F, I, H = kernel.new_state(self.params, close)
        self.arrays = {"S": S, "SI": SI, "F": F, "I": I, "H": H,
                       "counters": np.zeros(kernel.N_COUNTERS, np.int64), "money": np.zeros(kernel.N_MONEY)}
        self._allocate()
        a = self.arrays
        if not kernel.start_nb(bar, close, atr, self.params, a["S"], a["SI"], a["F"], a["I"], self.orders,
                          a["counters"], a["money"]):
            raise RuntimeError("spot grid: order log full (a bug)")
        self.bar = bar
        self._after_decide()

    # -- the two strategy calls ----------------------------------------------------------------
    def on_fill(self, key: int, bar: int, t: int, price: float) -> np.void | None:
        """One resting order filled in full at ``price``; returns the trade (TRADE_DTYPE) or
        None when ``key`` is not a resting order of this grid."""
        a = self.arrays
        a["I"][kernel.I_TRADES] = 0
        if key < 0:
            ok = kernel.on_market_fill_nb(bar, t, price, self.params, a["F"], a["I"], self._trades, a["counters"],
                                     a["money"])
            return self._trades[0].copy() if ok else None
        nt = kernel.on_fill_nb(key, bar, t, price, self.params, a["S"], a["SI"], a["F"], a["I"], self.orders,
                          self._trades, a["counters"], a["money"], self._touched, self._nt)
        if nt < 0:
            return None
        self._nt = nt
        return self._trades[0].copy()

    def on_stray_fill(self, position: str, role: str, otype: str, reduces: bool, qty: float, bar: int, t: int,
                      price: float) -> dict | None:
        """A fill ``on_fill`` could not place (the part filled of an order that then ended:
        cancelled while partly filled, an IOC's remainder expired). The books follow the
        exchange, which holds the fill: a buy adds to the leftover inventory (sold at market
        with the next re-lay, like any inventory no slot holds), a sell takes from it (at its
        average cost) and, beyond it, from the position at the books' average cost."""
        if qty <= 0:
            return None
        F, money = self.arrays["F"], self.arrays["money"]
        value = price * qty
        fee = value * (self.params.fee if otype == "limit" else self.params.taker_fee)
        pnl = -fee
        if not reduces:
            F[kernel.F_CASH] -= value + fee
            self._to_leftover(qty, value + fee)
        else:
            pnl = value - fee - self._from_position(qty)
            F[kernel.F_CASH] += value - fee
            money[kernel.M_REALIZED] += pnl
        money[kernel.M_FEES] += fee
        money[kernel.M_TURNOVER] += value
        return {"pnl": pnl, "cash": float(F[kernel.F_CASH]), "position": float(F[kernel.F_POSITION]), "fee": fee}

    def settle(self, side: str, booked_qty: float, booked_fee: float, pnl: float, filled: float, price: float,
               fee: float, fee_base: float) -> dict:
        """A fill the books took as ``booked_qty`` at ``price`` for ``booked_fee`` (quote), made
        what the exchange did: it traded ``filled`` and took ``fee`` in the quote and
        ``fee_base`` in coins. Coins it left beyond the books (a buy sent larger to pay its
        commission in coins) join the leftover inventory at the fill's price; coins it took
        beyond them leave the position as if sold at ``price``; the commission's difference is
        a cost at once. Returns the trade's pnl, fee, cash and position after it."""
        F, money = self.arrays["F"], self.arrays["money"]
        sign = 1.0 if side == "buy" else -1.0
        dq = filled - booked_qty
        d_fee = fee + fee_base * price - booked_fee
        if abs(dq) <= 1e-9 * booked_qty:
            dq = 0.0  # (the same quantity, written another way: a paper exchange's, the books' own)
        if abs(d_fee) <= 1e-12 * filled * price:
            d_fee = 0.0
        d_pos = sign * dq - fee_base
        F[kernel.F_CASH] -= d_pos * price  # (the coins moved at the fill's price; the commission apart)
        self._charge(d_fee)
        pnl -= d_fee
        if d_pos > 0:
            self._to_leftover(d_pos, d_pos * price)
        elif d_pos < 0:
            gain = -d_pos * price - self._from_position(-d_pos)
            money[kernel.M_REALIZED] += gain
            pnl += gain
        return {"pnl": pnl, "fee": booked_fee + d_fee, "cash": float(F[kernel.F_CASH]),
                "position": float(F[kernel.F_POSITION])}

    def _to_leftover(self, qty: float, cost: float) -> None:
        """``qty`` coins no slot holds join the position and the leftover inventory at ``cost``."""
        F, money = self.arrays["F"], self.arrays["money"]
        F[kernel.F_POSITION] += qty
        F[kernel.F_COST] += cost
        money[kernel.M_DUST_QTY] += qty
        money[kernel.M_DUST_COST] += cost

    def _from_position(self, qty: float) -> float:
        """``qty`` coins leave the books: from the leftover inventory first (its average cost
        leaves with them), the position at the books' average cost. Returns that cost."""
        F, money = self.arrays["F"], self.arrays["money"]
        pos = float(F[kernel.F_POSITION])
        cost = float(F[kernel.F_COST]) * min(qty / pos, 1.0) if pos > 0 else 0.0
        dq = float(money[kernel.M_DUST_QTY])
        take = min(qty, dq)
        if take > 0:
            money[kernel.M_DUST_COST] -= money[kernel.M_DUST_COST] * take / dq
            money[kernel.M_DUST_QTY] = dq - take
        F[kernel.F_POSITION] = pos - qty
        F[kernel.F_COST] -= cost
        return cost

    def as_taker(self, value: float) -> float:
        """A limit order of ``value`` booked by ``on_fill`` at the maker fee traded at once when
        it arrived (it crossed the market): the exchange charged the taker fee. Returns what
        more it charged."""
        extra = value * (self.params.taker_fee - self.params.fee)
        self._charge(extra)
        return extra

    def _charge(self, fee: float) -> None:
        """A commission beyond what the books took: a cost at once."""
        self.arrays["F"][kernel.F_CASH] -= fee
        self.arrays["money"][kernel.M_FEES] += fee
        self.arrays["money"][kernel.M_REALIZED] -= fee

    def decide(self, bar: int, close: float, ind: dict, gate: Gate = OPEN_GATE) -> None:
        """The decisions at the close of ``bar`` (``gate``: see ``start``)."""
        self._allocate()
        a = self.arrays
        if not kernel.decide_nb(bar, close, ind["atr"], self._touched, self._nt, self.params, a["S"], a["SI"], a["F"],
                           a["I"], self.orders, a["counters"], a["money"]):
            raise RuntimeError("spot grid: order log full (a bug)")
        self._nt = 0
        self.bar = bar
        self._after_decide()

    def _after_decide(self) -> None:
        """A new market sell of leftover inventory gets a new key; one still waiting for its
        fill keeps its key."""
        q = kernel.market_qty(self.arrays["F"])
        if q > 0 and q != self._market_pending:
            self.market_seq += 1
        self._market_pending = q

    def desired(self, close: float) -> list[DesiredOrder]:
        no = int(self.arrays["I"][kernel.I_ORDERS])
        rows = self.orders[:no]
        out = [
            DesiredOrder(int(oid), "buy" if r["side"] == 1 else "sell", "limit", float(r["price"]), float(r["qty"]),
                         int(r["level"]), kernel.ROLE_NAMES[r["role"]], bool(r["side"] == -1))
            for oid in np.flatnonzero(rows["status"] == kernel.ORDER_OPEN)
            for r in (rows[oid],)
        ]
        q = kernel.market_qty(self.arrays["F"])
        if q > 0:
            out.append(DesiredOrder(-self.market_seq, "sell", "market", float(close), q, -1, "REBALANCE_SELL", True))
        return out

    def is_live_key(self, key: int) -> bool:
        """Is ``key`` one of the orders this grid wants resting now?"""
        if key < 0:
            return key == -self.market_seq and kernel.market_qty(self.arrays["F"]) > 0
        return key < int(self.arrays["I"][kernel.I_ORDERS]) and self.orders[key]["status"] == kernel.ORDER_OPEN

    # -- books -------------------------------------------------------------------------------
    def books(self, price: float) -> dict:
        F, money = self.arrays["F"], self.arrays["money"]
        cash, pos, cost = float(F[kernel.F_CASH]), float(F[kernel.F_POSITION]), float(F[kernel.F_COST])
        return {"cash": cash, "position": pos, "equity": cash + pos * price, "cost": cost,
                "avg_long": cost / pos if pos > 0 else None, "exposure": pos * price,
                "grid_profit": float(money[kernel.M_GRID_PROFIT]), "realized": float(money[kernel.M_REALIZED]),
                "floating": pos * price - cost, "fees": float(money[kernel.M_FEES]), "funding": 0.0,
                "fills": int(self.arrays["counters"][kernel.C_FILLS]),
                "round_trips": int(self.arrays["counters"][kernel.C_ROUND_TRIPS])}

    def levels(self) -> np.ndarray:
        """The buy price of every slot of the current grid, and the top sell."""
        S, I = self.arrays["S"], self.arrays["I"]
        ns = int(I[kernel.I_SLOTS])
        return np.r_[S[:ns, kernel.S_BUY], S[ns - 1, kernel.S_SELL]] if ns else np.zeros(0)

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> dict:
        no = int(self.arrays["I"][kernel.I_ORDERS])
        open_ids = np.flatnonzero(self.orders[:no]["status"] == kernel.ORDER_OPEN)
        return {
            "strategy": self.strategy,
            "params": self.params._asdict(),
            "arrays": {name: a.tolist() for name, a in self.arrays.items()},
            "open_orders": {str(int(i)): list(self.orders[i].tolist()) for i in open_ids},
            "bar": self.bar,
            "market_seq": self.market_seq,
            "market_pending": self._market_pending,
        }

    @classmethod
    def from_state(cls, cfg: SpotGridConfig, state: dict) -> SpotGridRunner:
        self = cls(cfg, kernel.SpotGridParams(**state["params"]))
        dtypes = {"SI": np.int64, "I": np.int64, "counters": np.int64}
        self.arrays = {name: np.array(v, dtype=dtypes.get(name, np.float64)) for name, v in state["arrays"].items()}
        c = self.arrays["counters"]
        if len(c) < kernel.N_COUNTERS:  # a state from before the completed grids were counted
            self.arrays["counters"] = np.r_[c, np.zeros(kernel.N_COUNTERS - len(c), dtype=np.int64)]
        self.orders = np.zeros(0, dtype=kernel.ORDER_DTYPE)
        self._allocate()
        self.orders["status"] = kernel.ORDER_CANCELLED  # rows not saved are history: closed
        for oid, row in state["open_orders"].items():
            self.orders[int(oid)] = tuple(row)
        self.bar = int(state["bar"])
        self.market_seq = int(state["market_seq"])
        self._market_pending = float(state.get("market_pending", 0.0))
        return self


def check_spot(cfg: SpotGridConfig, first_price: float | None = None) -> None:
    """The spec's check: without data (``check_settings``), or against the data's first price."""
    if first_price is None:
        check_settings(cfg)
    else:
        build_params(cfg, first_price, 0)


def backtest_spot(candles, cfg, funding=None, *, replay: bool = False, progress=None, risk=None):
    """The spec's backtest: the spot-grid kernel (the hedged grid's too), engine.backtest."""
    from engine.backtest import run_spot_grid

    return run_spot_grid(candles, cfg, funding, progress=progress)


def _sweep(candles, cfgs):
    from engine.backtest import sweep_spot_grid

    return sweep_spot_grid(candles, cfgs)


SPEC = StrategySpec(
    "spot-grid", SpotGridConfig, backtest_spot, SEARCH_SPACE, check=check_spot, market="spot",
    runner=SpotGridRunner, sweep=_sweep,
    presets={
        "Defaults (arithmetic, +-20%)": {},
        "Geometric, trailing both ways": {"spacing": "geometric", "trailing": "both", "levels": 30},
        "ATR-spaced, recentering": {"spacing": "atr", "atr_k": 1.0, "levels": 20, "recenter": 1.0},
        "Lower-only, ATR": {"mode": "lower-only", "spacing": "atr", "levels": 15},
        "Tight and dense": {"spacing": "geometric", "range_pct": 0.05, "levels": 20},  # (0.5% a step: over the fees)
    })
