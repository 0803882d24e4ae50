"""PaperExchange: orders rest locally and fill by the backtest's rules against live candles.

Market data (candles, market rules) come from a source adapter: a ccxt exchange's public
endpoints, or a replay of a candle file. Balances are kept here. A candle fills the resting
orders by the kernels' own rule (engine/kernels/matching.py, GRID_SEMANTICS.md): a buy limit
when the low reaches it, at min(open, price); a sell limit when the high reaches it, at
max(open, price); market orders at the open with adverse slippage; the leg nearer the open
first (open -> low -> high when the candle closes at or above its open). Each fill's
timestamp is the candle's time plus its rank, so fills sort in the order they happened.
"""

from __future__ import annotations

import itertools

from engine.exchange.base import (
    CANCELED,
    CLOSED,
    EXPIRED,
    OPEN,
    Adapter,
    Balance,
    InsufficientFunds,
    MarketRules,
    OrderNotFound,
    OrderRejected,
    OrderReport,
    OrderRequest,
)
from engine.kernels.matching import (
    FILL_MODELS,
    FILL_QUEUE,
    FILL_THROUGH,
    KIND_NAMES,
    down_first_nb,
    falls_nb,
    limit_fill_nb,
    market_fill_nb,
    match_bar,
    queue_fill_nb,
    stop_fill_nb,
)
from engine.kernels.perp import liquidation_price_nb

KEEP_ENDED = 10_000  # ended orders a paper exchange can still be asked about


class PaperExchange(Adapter):
    paper = True
    def __init__(self, source, rules: MarketRules | None, *, quote: float, base: float = 0.0, maker_fee: float = 0.001,
                 taker_fee: float = 0.001, slippage: float = 0.0, fill_rule: str = "touch", queue_depth: float = 0.001,
                 fill_seed: int = 0, name: str = "paper"):
        self.source = source
        self.rules = rules
        self.name = name
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        self.slippage = slippage
        self.fill_model = FILL_MODELS.index(fill_rule)  # as the backtest fills (engine/kernels/matching.py)
        self.queue_depth = queue_depth
        self.fill_seed = fill_seed
        self.base_total = base
        self.quote_total = quote
        self.orders: dict[str, OrderReport] = {}  # open, and ended since the last candle
        self.ended: dict[str, OrderReport] = {}  # the last KEEP_ENDED ended before it, to be asked about
        self._ids = itertools.count(1)
        self.last_candle_time = -1

    # -- market data: from the source ------------------------------------------------------------
    async def market(self, symbol: str) -> MarketRules:
        if self.rules is None:  # from the source exchange's own rules
            self.rules = await self.source.market(symbol)
        return self.rules

    async def candles(self, symbol: str, timeframe: str, since: int | None, limit: int) -> list[list[float]]:
        return await self.source.candles(symbol, timeframe, since, limit)

    @property
    def streams(self) -> bool:
        """Candles pushed by the source (an exchange's websocket), else polled."""
        return self.source.streams

    async def watch_candles(self, symbol: str, timeframe: str, since: int) -> list[list[float]]:
        return await self.source.watch_candles(symbol, timeframe, since)

    async def funding_rates(self, symbol: str, since: int, until: int) -> list[tuple[int, float]]:
        return await self.source.funding_rates(symbol, since, until)

    # -- orders --------------------------------------------------------------------------------
    def _locked(self) -> tuple[float, float]:
        quote = base = 0.0
        for o in self.orders.values():
            if o.status != OPEN:
                continue
            if o.side == "buy":
                quote += o.price * o.remaining * (1 + (self.maker_fee if o.type == "limit" else self.taker_fee))
            else:
                base += o.remaining
        return quote, base

    def _accept(self, r: OrderRequest) -> None:
        if r.client_order_id in self.orders or r.client_order_id in self.ended:
            raise OrderRejected(f"duplicate client order id {r.client_order_id}")
        why = self.rules.check(r.price, r.qty)
        if why:
            raise OrderRejected(why)

    async def place(self, r: OrderRequest) -> OrderReport:
        self._accept(r)
        lq, lb = self._locked()
        if r.side == "buy":
            fee = self.maker_fee if r.type == "limit" else self.taker_fee
            need = r.price * r.qty * (1 + fee)
            if self.quote_total - lq < need * (1 - 1e-12):
                raise InsufficientFunds(f"needs {need:.8g} {self.rules.quote}, free {self.quote_total - lq:.8g}")
        elif self.base_total - lb < r.qty * (1 - 1e-12):
            raise InsufficientFunds(f"needs {r.qty:.8g} {self.rules.base}, free {self.base_total - lb:.8g}")
        return self._rest(r)

    def _rest(self, r: OrderRequest) -> OrderReport:
        report = OrderReport(str(next(self._ids)), r.client_order_id, r.symbol, r.side, r.type, r.price, r.qty,
                             0.0, 0.0, 0.0, OPEN, position=r.position)
        self.orders[r.client_order_id] = report
        return _copy(report)

    def _find(self, client_order_id: str) -> OrderReport | None:
        return self.orders.get(client_order_id) or self.ended.get(client_order_id)

    async def cancel(self, symbol: str, report: OrderReport) -> OrderReport:
        o = self._find(report.client_order_id)
        if o is None:
            raise OrderNotFound(f"order {report.client_order_id} not found")
        if o.status == OPEN:
            o.status = CANCELED
        return _copy(o)

    async def order(self, symbol: str, client_order_id: str) -> OrderReport:
        o = self._find(client_order_id)
        if o is None:
            raise OrderNotFound(f"order {client_order_id} not found")
        return _copy(o)

    async def open_orders(self, symbol: str) -> list[OrderReport]:
        return [_copy(o) for o in self.orders.values() if o.status == OPEN]

    async def balance(self) -> Balance:
        lq, lb = self._locked()
        b, q = self.rules.base, self.rules.quote
        return Balance(free={q: self.quote_total - lq, b: self.base_total - lb},
                       total={q: self.quote_total, b: self.base_total})

    async def close(self) -> None:
        if hasattr(self.source, "close"):
            await self.source.close()

    # -- the matcher ---------------------------------------------------------------------------
    @staticmethod
    def _opens(o) -> bool:
        return o.side == "buy"

    def on_candle(self, t: int, o: float, h: float, lo: float, c: float) -> list[OrderReport]:
        """Fill what this closed candle reaches (orders placed before it), by the backtest's
        matcher (engine/kernels/matching.py); returns the fills."""
        if t <= self.last_candle_time:
            return []
        self.last_candle_time = t
        self._file_ended()
        tick = self.rules.tick if self.fill_model == FILL_THROUGH else 0.0
        reached = match_bar(o, h, lo, c, tick, [x for x in self.orders.values() if x.status == OPEN], self._opens)
        out: list[OrderReport] = []
        for x in reached:
            if x.type == "market":
                self._fill(x, float(market_fill_nb(x.side == "buy", o, self.slippage)), t, out)
        for down in ((True, False) if down_first_nb(o, c) else (False, True)):
            for x in reached:
                if x.type == "market" or falls_nb(x.side == "buy", KIND_NAMES.index(x.type)) != down:
                    continue
                self._reach(down, x.price)
                if x.status != OPEN:
                    continue  # cancelled by a liquidation
                if x.type == "limit" and self.fill_model == FILL_QUEUE and not queue_fill_nb(
                        self.fill_seed, t, x.price, x.price - lo if down else h - x.price, self.queue_depth):
                    continue  # reached, but not its turn in the queue
                px = (stop_fill_nb(down, o, x.price, self.slippage) if x.type == "stop"
                      else limit_fill_nb(down, o, x.price))
                self._fill(x, float(px), t, out)
            self._reach(down, lo if down else h)
        return out

    def _file_ended(self) -> None:
        """Ended orders leave the open book, so that what each order and candle looks through
        stays the size of the grid (it grew with every order ever placed: an hour of the sample
        had 10,000); the last KEEP_ENDED are kept to be asked about, as the exchange keeps an
        order's history."""
        for cid in [cid for cid, o in self.orders.items() if o.status != OPEN]:
            self.ended[cid] = self.orders.pop(cid)
        if len(self.ended) > KEEP_ENDED:  # (at each candle: the oldest go, no list of every id)
            for cid in list(itertools.islice(self.ended, len(self.ended) - KEEP_ENDED)):
                del self.ended[cid]

    def _reach(self, down: bool, price: float) -> None:
        """The leg to the low (``down``) or the high has come to ``price``: a perpetual looks
        for a liquidation there."""

    def _fill(self, x: OrderReport, price: float, t: int, out: list) -> None:
        value = price * x.qty
        fee = value * (self.maker_fee if x.type == "limit" else self.taker_fee)
        if x.side == "buy":
            self.quote_total -= value + fee
            self.base_total += x.qty
        else:
            self.quote_total += value - fee
            self.base_total -= x.qty
        x.filled, x.average, x.fee, x.status, x.timestamp = x.qty, price, fee, CLOSED, t + len(out)
        out.append(_copy(x))

    # -- persistence -------------------------------------------------------------------------
    def state(self) -> dict:
        return {"quote": self.quote_total, "base": self.base_total, "last_candle_time": self.last_candle_time,
                "orders": [vars(o) for o in self.orders.values() if o.status == OPEN]}

    def restore(self, state: dict) -> None:
        self.quote_total = float(state["quote"])
        self.base_total = float(state["base"])
        self.last_candle_time = int(state["last_candle_time"])
        self.orders = {d["client_order_id"]: OrderReport(**d) for d in state["orders"]}
        top = max((int(o.id) for o in self.orders.values()), default=0)
        self._ids = itertools.count(top + 1)
        if self.last_candle_time >= 0:
            self.source.resume_after(self.last_candle_time)


def _copy(o: OrderReport) -> OrderReport:
    return OrderReport(**vars(o))


class PaperPerpExchange(PaperExchange):
    """A USDT-margined perpetual in hedge mode, paper: long and short positions held apart,
    each with its isolated margin (notional / leverage at each opening fill, funding taken from
    it), the average entry price, and the liquidation price of the tier table; fees from the
    wallet. Orders carry the position they open or reduce (``position``); a buy of the long
    position or a sell of the short one opens, the other side reduces (never past zero).
    Stop orders (type "stop") trigger at their price and fill like market orders.

    The candle is matched the way the adaptive-grid backtest walks it (GRID_SEMANTICS.md):
    funding at the open, market orders at the open, then the leg to the low (long openings,
    short take-profits, long stops and the long position's liquidation, in price order from
    the open) and the leg to the high, mirrored; the leg nearer the open first."""

    def __init__(self, source, rules: MarketRules | None, *, quote: float, leverage: float, tiers,
                 maker_fee: float = -0.00005, taker_fee: float = 0.0002, slippage: float = 0.0005,
                 fill_rule: str = "touch", queue_depth: float = 0.001, fill_seed: int = 0, name: str = "paper-perp"):
        super().__init__(source, rules, quote=quote, maker_fee=maker_fee, taker_fee=taker_fee, slippage=slippage,
                         fill_rule=fill_rule, queue_depth=queue_depth, fill_seed=fill_seed, name=name)
        self.leverage = float(leverage)
        self.tiers = tiers
        self.pos = {"long": [0.0, 0.0, 0.0], "short": [0.0, 0.0, 0.0]}  # qty, average entry, isolated margin

    @staticmethod
    def _opens(o) -> bool:
        return (o.side == "buy") == (o.position == "long")

    def _locked(self) -> tuple[float, float]:
        """Margin and fees the resting opening orders hold back."""
        lock = 0.0
        for o in self.orders.values():
            if o.status == OPEN and self._opens(o):
                fee = self.maker_fee if o.type == "limit" else self.taker_fee
                lock += o.price * o.remaining * (1.0 / self.leverage + max(fee, 0.0))
        return lock, 0.0

    async def place(self, r: OrderRequest) -> OrderReport:
        if r.position not in ("long", "short"):
            raise OrderRejected("a hedge-mode order needs positionSide LONG or SHORT")
        self._accept(r)
        if self._opens(r):
            fee = self.maker_fee if r.type == "limit" else self.taker_fee
            need = r.price * r.qty * (1.0 / self.leverage + max(fee, 0.0))
            free = self.quote_total - self._locked()[0]
            if free < need * (1 - 1e-12):
                raise InsufficientFunds(f"needs {need:.8g} {self.rules.quote} of margin, free {free:.8g}")
        return self._rest(r)

    async def balance(self) -> Balance:
        q = self.rules.quote
        margin = self.pos["long"][2] + self.pos["short"][2]
        return Balance(free={q: self.quote_total - self._locked()[0]}, total={q: self.quote_total + margin})

    async def positions(self, symbol: str) -> dict[str, float]:
        return {side: p[0] for side, p in self.pos.items()}

    def liquidation_price(self, side: str) -> float:
        q, entry, margin = self.pos[side]
        return float(liquidation_price_nb(self.tiers, 1 if side == "long" else -1, q, entry, margin))

    # -- the matcher ---------------------------------------------------------------------------
    def on_candle(self, t: int, o: float, h: float, lo: float, c: float, funding_rate: float = 0.0,
                  funding_count: int = 0) -> list[OrderReport]:
        if t <= self.last_candle_time:
            return []
        if funding_count:  # funding at the open, from each side's isolated margin
            for side, p in self.pos.items():
                if p[0] > 0:
                    p[2] -= funding_rate * p[0] * o * (1.0 if side == "long" else -1.0)
        return super().on_candle(t, o, h, lo, c)

    def _reach(self, down: bool, price: float) -> None:
        """On the leg towards ``price`` (the long side's fall, the short side's rise), the
        exchange liquidates the side as soon as its liquidation price is reached: before any
        order at that price or beyond (its liquidation price moves with each of its fills)."""
        leg = "long" if down else "short"
        if self.pos[leg][0] > 0:
            liq = self.liquidation_price(leg)
            if (price <= liq) if down else (price >= liq):
                self._liquidate(leg)

    def _fill(self, x: OrderReport, price: float, t: int, out: list) -> None:
        p = self.pos[x.position]
        qty = x.qty if self._opens(x) else min(x.qty, p[0])
        if qty <= 0:
            x.status = EXPIRED  # a reduce order with nothing left to reduce
            return
        fee = price * qty * (self.taker_fee if x.type != "limit" else self.maker_fee)
        if self._opens(x):
            margin = price * qty / self.leverage
            p[1] = (p[0] * p[1] + qty * price) / (p[0] + qty)
            p[0] += qty
            p[2] += margin
            self.quote_total -= margin + fee
        else:
            sign = 1.0 if x.position == "long" else -1.0
            share = p[2] * qty / p[0]
            self.quote_total += share + sign * (price - p[1]) * qty - fee
            p[0] -= qty
            p[2] -= share
            if p[0] <= 1e-12:
                self.quote_total += p[2]
                p[:] = [0.0, 0.0, 0.0]
        x.filled, x.average, x.fee, x.status, x.timestamp = qty, price, fee, CLOSED, t + len(out)
        out.append(_copy(x))

    def _liquidate(self, side: str) -> None:
        """The position is closed by the exchange, its isolated margin lost, and its open
        orders cancelled ("during the liquidation process, all open orders are immediately
        canceled": Binance futures, Liquidation Protocol)."""
        self.pos[side] = [0.0, 0.0, 0.0]
        for x in self.orders.values():
            if x.status == OPEN and x.position == side:
                x.status = CANCELED

    # -- persistence -------------------------------------------------------------------------
    def state(self) -> dict:
        return {**super().state(), "positions": self.pos}

    def restore(self, state: dict) -> None:
        super().restore(state)
        self.pos = {k: [float(v) for v in p] for k, p in state["positions"].items()}
