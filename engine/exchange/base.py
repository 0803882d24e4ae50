"""The exchange adapter protocol, its records, and our own error types.

Both adapters (``PaperExchange`` and ``CcxtExchange``) speak it; the runtime knows nothing
else about an exchange. Errors are ours, not ccxt's: ``TemporaryError`` (network, timeout,
5xx, rate limit: worth a retry) versus everything else (refused, funds, auth: a retry would
not help).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

# Order statuses reported by an adapter (the runtime's lifecycle has more states).
OPEN, CLOSED, CANCELED, REJECTED, EXPIRED = "open", "closed", "canceled", "rejected", "expired"


class ExchangeError(Exception):
    """Something the exchange refused or failed at. Messages never hold keys or signatures."""


class TemporaryError(ExchangeError):
    """Network trouble, a timeout, a 5xx, or a rate limit: the same call may work later."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(TemporaryError):
    pass


class OrderRejected(ExchangeError):
    """The exchange refused the order (price or size rules, a duplicate id, post-only...)."""


class InsufficientFunds(OrderRejected):
    pass


class OrderNotFound(ExchangeError):
    pass


class AuthError(ExchangeError):
    """Bad or missing API keys, or a key without the needed permission."""


@dataclass(frozen=True)
class MarketRules:
    symbol: str
    tick: float  # price step (0: none)
    lot: float  # quantity step (0: none)
    min_qty: float = 0.0
    min_notional: float = 0.0
    base: str = ""
    quote: str = ""
    # The commission is taken from what an order receives (Binance spot: "trading fees are always
    # charged in the asset you receive", a buy pays it in the base asset): a buy of q leaves q less
    # its fee in the account.
    fee_in_received: bool = False

    def round_price(self, price: float, side: str) -> float:
        """To the tick, never to a worse price for us: buys down, sells up."""
        if self.tick <= 0:
            return price
        steps = price / self.tick
        steps = math.floor(steps + 1e-9) if side == "buy" else math.ceil(steps - 1e-9)
        return round(steps * self.tick, 12)

    def round_qty(self, qty: float, up: bool = False) -> float:
        if self.lot <= 0:
            return qty
        steps = math.ceil(qty / self.lot - 1e-9) if up else math.floor(qty / self.lot + 1e-9)
        return round(steps * self.lot, 12)

    def check(self, price: float, qty: float) -> str:
        """'' when an order of this price and size is acceptable, else the reason."""
        if qty <= 0 or qty < self.min_qty:
            return f"quantity {qty:g} is below the minimum {self.min_qty:g}"
        if self.min_notional and price * qty < self.min_notional * (1 - 1e-12):
            return f"order value {price * qty:.4f} is below the minimum {self.min_notional:g}"
        return ""


@dataclass(frozen=True)
class OrderRequest:
    symbol: str
    side: str  # buy | sell
    type: str  # limit | market | stop (stop-market, triggered at ``price``)
    qty: float
    price: float  # limit price or stop trigger; for market orders the price the risk gate judged
    client_order_id: str
    position: str = ""  # perpetuals in hedge mode: long | short (the position it opens or reduces)


@dataclass
class OrderReport:
    """An order as the exchange sees it."""

    id: str
    client_order_id: str
    symbol: str
    side: str
    type: str
    price: float
    qty: float
    filled: float
    average: float  # average fill price (0 when nothing filled)
    fee: float  # the commission taken in the quote currency
    status: str  # open | closed | canceled | rejected | expired
    timestamp: int = 0  # ms
    position: str = ""  # hedge mode: long | short
    fee_base: float = 0.0  # the commission taken in the base asset (a spot buy on Binance), base units
    fee_told: bool = True  # the exchange said what it charged (False: ``fee`` / ``fee_base`` are our schedule's)

    @property
    def remaining(self) -> float:
        return max(self.qty - self.filled, 0.0)


@dataclass
class Balance:
    free: dict[str, float] = field(default_factory=dict)
    total: dict[str, float] = field(default_factory=dict)


class Adapter:
    """What the runtime needs from an exchange, every capability with its explicit default: an
    adapter overrides what it can do. The runtime asks the capability, never the type."""

    name: str = ""
    paper: bool = False  # fills by the backtest's rules: the runtime feeds it each candle and keeps its snapshot
    streams: bool = False  # candles pushed (watch_candles), else polled
    order_stream: bool = False  # our order updates pushed (watch_orders)

    async def market(self, symbol: str) -> MarketRules:
        raise NotImplementedError

    async def candles(self, symbol: str, timeframe: str, since: int | None, limit: int) -> list[list[float]]:
        """[time ms, open, high, low, close, volume] rows, oldest first; the last row may be the
        candle still forming."""
        raise NotImplementedError

    async def place(self, request: OrderRequest) -> OrderReport:
        raise NotImplementedError

    async def place_many(self, requests: list[OrderRequest]) -> list[OrderReport | ExchangeError]:
        """Place a batch; each result is the order's report or the error it met (one refusal
        does not stop the others). By default one after the other, letting the event loop run
        every few orders (a paper exchange answers without waiting: a grid of 40 laid in one
        go would hold the loop, and the GUI on it)."""
        out: list[OrderReport | ExchangeError] = []
        for i, r in enumerate(requests):
            if i % 8 == 7:
                await asyncio.sleep(0)
            try:
                out.append(await self.place(r))
            except ExchangeError as e:
                out.append(e)
        return out

    async def cancel(self, symbol: str, report: OrderReport) -> OrderReport:
        raise NotImplementedError

    async def order(self, symbol: str, client_order_id: str) -> OrderReport:
        """Look an order up by its client order id (raises OrderNotFound)."""
        raise NotImplementedError

    async def open_orders(self, symbol: str) -> list[OrderReport]:
        raise NotImplementedError

    async def balance(self) -> Balance:
        raise NotImplementedError

    async def watch_candles(self, symbol: str, timeframe: str, since: int) -> list[list[float]]:
        """The candle stream's next rows (adapters whose ``streams`` is true)."""
        raise NotImplementedError

    async def watch_orders(self, symbol: str) -> list[OrderReport]:
        """The order stream's next updates (adapters whose ``order_stream`` is true)."""
        raise NotImplementedError

    # perpetuals (adapters that trade them)
    async def prepare(self, symbol: str, leverage: float) -> None:
        """Set the account up to trade ``symbol`` (a perpetual: hedge mode, isolated margin,
        the leverage); nothing by default."""

    async def positions(self, symbol: str) -> dict[str, float]:
        """Hedge mode: the quantity held long and short, {"long": q, "short": q}."""
        raise NotImplementedError

    async def funding_rates(self, symbol: str, since: int, until: int) -> list[tuple[int, float]]:
        """(settlement time ms, rate) of the funding settlements in [since, until]; none by
        default (the strategy's default rate is paid, and logged)."""
        return []

    async def funding_paid(self, symbol: str, since: int, until: int) -> list[tuple[int, float]]:
        """(time ms, amount: < 0 paid, > 0 received) of the funding the account settled on
        ``symbol`` in [since, until] (live exchanges: the books take it from here)."""
        return []

    # paper exchanges (``paper``)
    def on_candle(self, t: int, o: float, h: float, lo: float, c: float, *funding) -> list[OrderReport]:
        """A candle closed: match the resting orders against it."""
        raise NotImplementedError

    def state(self) -> dict | None:
        """What it holds, for the runtime's state file (None: the exchange keeps it)."""
        return None

    def restore(self, state: dict) -> None:
        """Hold again what ``state`` says."""

    def resume_after(self, t: int) -> None:
        """A system restarted from its state goes on after the candle at ``t`` (recorded
        candles: the replay serves the one after it next); nothing by default (a live
        exchange's next candle is the market's)."""

    async def close(self) -> None:
        """Let go of connections; nothing by default."""
