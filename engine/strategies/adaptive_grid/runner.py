"""The adaptive grid as the paper and live runtime drive it, candle by candle
(``AdaptiveGridRunner``)."""

from __future__ import annotations

import numpy as np

from engine.kernels import adaptive_grid as kernel
from engine.kernels.perp import load_tiers
from engine.risk import OPEN_GATE, Gate
from engine.strategies.adaptive_grid.backtest import indicator_arrays
from engine.strategies.adaptive_grid.settings import AdaptiveGridConfig, build_params
from engine.strategies.spec import DesiredOrder, StrategyRunner

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
    # its kernel's settings, state and trade-log room (a strategy on these books names its own)
    Params = kernel.AdaptiveGridParams
    new_state = staticmethod(kernel.new_state)
    trade_log_room = staticmethod(kernel.trade_log_room)

    @staticmethod
    def build_params(cfg):
        return build_params(cfg, 0)

    def __init__(self, cfg: AdaptiveGridConfig, params=None):
        self.cfg = cfg
        self.params = params or self.build_params(cfg)
        p = self.params
        self.tiers = load_tiers(cfg.tiers)  # (the runtime names the symbol's file: Trader._strategy_config)
        self.L, self.G, self.F, self.I = self.new_state(p)
        self.counters = np.zeros(kernel.N_COUNTERS, dtype=np.int64)
        self.money = np.zeros(kernel.N_MONEY)
        self._trades = np.empty(2 * self.trade_log_room(p) + 8, dtype=kernel.TRADE_DTYPE)
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
        self = cls(cfg, cls.Params(**state["params"]))
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
