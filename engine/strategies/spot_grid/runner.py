"""The spot grid as the paper and live runtime drive it, candle by candle (``SpotGridRunner``)."""

from __future__ import annotations

import numpy as np

from engine.kernels import spot_grid as kernel
from engine.risk import OPEN_GATE, Gate
from engine.strategies.errors import ParamError
from engine.strategies.spec import DesiredOrder, StrategyRunner
from engine.strategies.spot_grid.settings import SpotGridConfig, build_params

RUNTIME_UNSUPPORTED = ("stop_loss", "take_profit")  # stops need resting stop orders: backtest only


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
        self.market_seq = 0  # market orders decided so far (the n-th has key -n)
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
        """A new market order (a sell of leftover inventory, an infinity grid's reserve bought)
        gets a new key; one still waiting for its fill keeps its key."""
        q = kernel.market_qty(self.arrays["F"])
        if q != 0 and q != self._market_pending:
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
        elif q < 0:
            out.append(DesiredOrder(-self.market_seq, "buy", "market", float(close), -q, -1, "RESERVE_BUY", False))
        return out

    def is_live_key(self, key: int) -> bool:
        """Is ``key`` one of the orders this grid wants resting now?"""
        if key < 0:
            return key == -self.market_seq and kernel.market_qty(self.arrays["F"]) != 0
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
        params = dict(state["params"])
        if "fill_through" in params:  # a state from before the queue model: 0 touch, 1 through, as FILL_MODELS
            params["fill_model"] = params.pop("fill_through")
        self = cls(cfg, kernel.SpotGridParams(**params))
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
