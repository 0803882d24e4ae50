"""PaperExchange: orders rest locally and fill by the backtest's rules against live candles.

Market data (candles, market rules) come from a source adapter: a ccxt exchange's public
endpoints, or a replay of a candle file. Balances are kept here. The fill rules are those of
GRID_SEMANTICS.md and the spot-grid kernel: a buy limit fills when the low reaches it, at
min(open, price); a sell limit when the high reaches it, at max(open, price); market orders
at the next open with adverse slippage; within a candle that closes at or above its open the
buys come first (open -> low -> high), otherwise the sells. Each fill's timestamp is the
candle's time plus its rank, so fills sort in the order they happened.
"""

from __future__ import annotations

import itertools

from engine.exchange.base import (
    CANCELED,
    CLOSED,
    OPEN,
    Balance,
    InsufficientFunds,
    MarketRules,
    OrderNotFound,
    OrderRejected,
    OrderReport,
    OrderRequest,
)


class PaperExchange:
    def __init__(self, source, rules: MarketRules | None, *, quote: float, base: float = 0.0, maker_fee: float = 0.001,
                 taker_fee: float = 0.001, slippage: float = 0.0, fill_through: bool = False, name: str = "paper"):
        self.source = source
        self.rules = rules
        self.name = name
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        self.slippage = slippage
        self.fill_through = fill_through
        self.base_total = base
        self.quote_total = quote
        self.orders: dict[str, OrderReport] = {}
        self._ids = itertools.count(1)
        self.last_candle_time = -1

    # -- market data: from the source ------------------------------------------------------------
    async def market(self, symbol: str) -> MarketRules:
        if self.rules is None:  # from the source exchange's own rules
            self.rules = await self.source.market(symbol)
        return self.rules

    async def candles(self, symbol: str, timeframe: str, since: int | None, limit: int) -> list[list[float]]:
        return await self.source.candles(symbol, timeframe, since, limit)

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

    async def place(self, r: OrderRequest) -> OrderReport:
        if r.client_order_id in self.orders:
            raise OrderRejected(f"duplicate client order id {r.client_order_id}")
        why = self.rules.check(r.price, r.qty)
        if why:
            raise OrderRejected(why)
        lq, lb = self._locked()
        if r.side == "buy":
            fee = self.maker_fee if r.type == "limit" else self.taker_fee
            need = r.price * r.qty * (1 + fee)
            if self.quote_total - lq < need * (1 - 1e-12):
                raise InsufficientFunds(f"needs {need:.8g} {self.rules.quote}, free {self.quote_total - lq:.8g}")
        elif self.base_total - lb < r.qty * (1 - 1e-12):
            raise InsufficientFunds(f"needs {r.qty:.8g} {self.rules.base}, free {self.base_total - lb:.8g}")
        report = OrderReport(str(next(self._ids)), r.client_order_id, r.symbol, r.side, r.type, r.price, r.qty,
                             0.0, 0.0, 0.0, OPEN)
        self.orders[r.client_order_id] = report
        return _copy(report)

    async def cancel(self, symbol: str, report: OrderReport) -> OrderReport:
        o = self.orders.get(report.client_order_id)
        if o is None:
            raise OrderNotFound(f"order {report.client_order_id} not found")
        if o.status == OPEN:
            o.status = CANCELED
        return _copy(o)

    async def order(self, symbol: str, client_order_id: str) -> OrderReport:
        o = self.orders.get(client_order_id)
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
    def on_candle(self, t: int, o: float, h: float, lo: float, c: float) -> list[OrderReport]:
        """Fill what this closed candle reaches (orders placed before it); returns the fills."""
        if t <= self.last_candle_time:
            return []
        self.last_candle_time = t
        tick = self.rules.tick if self.fill_through else 0.0
        resting = [x for x in self.orders.values() if x.status == OPEN]
        fills: list[tuple[OrderReport, float]] = []
        for x in resting:
            if x.type == "market":
                fills.append((x, o * (1 - self.slippage) if x.side == "sell" else o * (1 + self.slippage)))
        buys = sorted((x for x in resting if x.type == "limit" and x.side == "buy"), key=lambda x: -x.price)
        sells = sorted((x for x in resting if x.type == "limit" and x.side == "sell"), key=lambda x: x.price)
        down = [(x, min(o, x.price)) for x in buys if (lo < x.price - tick if tick else lo <= x.price)]
        up = [(x, max(o, x.price)) for x in sells if (h > x.price + tick if tick else h >= x.price)]
        fills += down + up if c >= o else up + down
        out = []
        for rank, (x, price) in enumerate(fills):
            fee_rate = self.taker_fee if x.type == "market" else self.maker_fee
            value = price * x.qty
            fee = value * fee_rate
            if x.side == "buy":
                self.quote_total -= value + fee
                self.base_total += x.qty
            else:
                self.quote_total += value - fee
                self.base_total -= x.qty
            x.filled, x.average, x.fee, x.status, x.timestamp = x.qty, price, fee, CLOSED, t + rank
            out.append(_copy(x))
        return out

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


def _copy(o: OrderReport) -> OrderReport:
    return OrderReport(**vars(o))
