"""CcxtExchange: the adapter over ccxt.async_support for real (or testnet, or simulated) trading.

- ccxt errors become ours (engine.exchange.base); only temporary ones are retried, with
  exponential backoff and jitter, up to ``retries`` times, honouring a Retry-After.
- An order whose placement failed in a way that may have reached the exchange (timeout, lost
  response, dropped connection, 5xx) is looked up by its client order id before any retry, so
  a retry never places it twice.
- An order-rate budget (Binance spot: 50 orders per 10 s) paces placements; ``place_many``
  sends a batch concurrently within it.
- With ``websocket``, candles and order updates also come pushed on the exchange's streams
  (ccxt's pro client, where it has one for the exchange): ``watch_candles`` and
  ``watch_orders`` return at the next update. A stream's failure is raised as ours, not
  retried here: the runtime polls meanwhile and opens the stream again.
- Messages never carry keys or request signatures.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import deque
from dataclasses import replace

from engine.exchange import base
from engine.exchange.ccxt_factory import make_exchange

# Orders per window, by exchange id and market (the most restrictive published limit).
ORDER_BUDGETS = {("binance", "spot"): (50, 10.0), ("binance", "perpetual"): (300, 10.0),
                 ("binanceusdm", "perpetual"): (300, 10.0)}
DEFAULT_BUDGET = (10, 1.0)
_SECRET_PARAMS = re.compile(r"(signature|apiKey|api_key|secret|X-MBX-APIKEY)([=:]\s*)[^&\s\"',}]+", re.I)


class RateBudget:
    """At most ``count`` acquisitions in any ``window`` seconds (a sliding window)."""

    def __init__(self, count: int, window: float, clock=time.monotonic):
        self.count = count
        self.window = window
        self.clock = clock
        self._times: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self.clock()
                while self._times and now - self._times[0] >= self.window:
                    self._times.popleft()
                if len(self._times) < self.count:
                    self._times.append(now)
                    return
                await asyncio.sleep(self.window - (now - self._times[0]) + 0.001)


def map_error(exc: Exception, secrets: tuple[str, ...] = ()) -> base.ExchangeError:
    """A ccxt exception as one of ours, its message cleaned of keys and signatures."""
    import ccxt

    msg = _SECRET_PARAMS.sub(r"\1\2***", str(exc))
    for s in secrets:
        if s:
            msg = msg.replace(s, "***")
    msg = f"{type(exc).__name__}: {msg}"
    if isinstance(exc, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
        return base.RateLimited(msg)
    if isinstance(exc, ccxt.NetworkError | ccxt.OperationFailed):  # timeouts, 5xx, dropped connections
        return base.TemporaryError(msg)
    if isinstance(exc, ccxt.OrderNotFound):
        return base.OrderNotFound(msg)
    if isinstance(exc, ccxt.InsufficientFunds):
        return base.InsufficientFunds(msg)
    if isinstance(exc, ccxt.AuthenticationError | ccxt.PermissionDenied | ccxt.AccountSuspended):
        return base.AuthError(msg)
    if isinstance(exc, ccxt.InvalidOrder | ccxt.BadRequest):  # the exchange refused what we asked
        return base.OrderRejected(msg)
    if isinstance(exc, ccxt.ExchangeError):
        return base.ExchangeError(msg)
    return base.ExchangeError(msg)


_STOP_MARKET = "STOP_MARKET"  # Binance futures' stop-market order: our "stop"
_POSITIONS = {"LONG": "long", "SHORT": "short"}
_STATUS = {"open": base.OPEN, "closed": base.CLOSED, "canceled": base.CANCELED, "cancelled": base.CANCELED,
           "rejected": base.REJECTED, "expired": base.EXPIRED}


QUOTES = (None, "USDT", "USDC", "BUSD", "FDUSD")  # a commission taken as in the quote when the market is unknown


def report_from_ccxt(o: dict, fee_rate: float = 0.0, rules: base.MarketRules | None = None) -> base.OrderReport:
    """Our report of a ccxt order. The commission is what the exchange says it took, when its
    trades in the report cover all the order filled (Binance's answer to a placement, FULL):
    in the quote, or in the base asset where ``rules.fee_in_received`` and the order bought.
    (ccxt keeps the executions an order-update stream tells as the order's trades too.)
    Otherwise (an order lookup carries no commission) it is our schedule's ``fee_rate`` taken
    where the exchange takes it, marked ``fee_told=False``. A commission in a
    third asset (BNB) is not ours to book: it leaves the trade's quote untouched."""
    info = o.get("info") or {}
    filled = float(o.get("filled") or 0.0)
    average = float(o.get("average") or 0.0) or (float(o.get("price") or 0.0) if filled else 0.0)
    base_asset = rules.base if rules is not None else ""
    trades = o.get("trades") or []
    told = not filled or (bool(trades) and abs(sum(float(x.get("amount") or 0.0) for x in trades) - filled)
                          <= 1e-9 * filled)
    fee_cost = fee_base = 0.0
    quotes = (None, rules.quote) if rules is not None else QUOTES
    for f in (o.get("fees") or ([o["fee"]] if o.get("fee") else [])) if told else ():
        cost = float(f.get("cost") or 0.0)
        if base_asset and f.get("currency") == base_asset:
            fee_base += cost
        elif f.get("currency") in quotes:
            fee_cost += cost
    if not told:
        if rules is not None and rules.fee_in_received and o.get("side") == "buy":
            fee_base = filled * fee_rate
        else:
            fee_cost = filled * average * fee_rate
    return base.OrderReport(
        id=str(o.get("id") or ""), client_order_id=str(o.get("clientOrderId") or ""), symbol=o.get("symbol", ""),
        side=o.get("side", ""), type="stop" if _STOP_MARKET in (info.get("orderType"), info.get("origType"))
        else str(o.get("type") or ""),
        price=float(o.get("price") or o.get("triggerPrice") or 0.0),
        qty=float(o.get("amount") or 0.0), filled=filled, average=average, fee=fee_cost,
        status=_STATUS.get(o.get("status") or "", base.OPEN),
        timestamp=int(o.get("lastTradeTimestamp") or o.get("timestamp") or 0),
        position=_POSITIONS.get(str(info.get("positionSide", "")), ""), fee_base=fee_base, fee_told=told,
    )


class CcxtExchange(base.Adapter):
    def __init__(self, exchange_id: str, *, market: str = "spot", base_url: str | None = None,
                 api_key: str = "", secret: str = "", retries: int = 5, backoff: float = 0.5,
                 max_backoff: float = 10.0, timeout_ms: int = 10_000, fee_rate: float = 0.001,
                 sandbox: bool = False, budget: tuple[int, float] | None = None, taker_rate: float | None = None,
                 throttle: bool = True, websocket: bool = False):
        # throttle: ccxt's own request pacing (the exchange's weights); off only against a local
        # simulator. Our order budget applies either way.
        config = {"timeout": timeout_ms, "enableRateLimit": throttle}
        if api_key:
            config.update(apiKey=api_key, secret=secret)
        self.client = make_exchange(exchange_id, base_url=base_url, market=market, config=config,
                                    websocket=websocket)
        if sandbox:
            self.client.set_sandbox_mode(True)
        self.name = exchange_id
        self.perpetual = market == "perpetual"
        has = self.client.has if type(self.client).__module__.startswith("ccxt.pro.") else {}
        self.streams = bool(has.get("watchOHLCV"))  # candles pushed (else polled)
        self.order_stream = bool(has.get("watchOrders")) and bool(api_key)  # our order updates pushed
        self._secrets = (api_key, secret)
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.fee_rate = fee_rate  # the fee schedule, for reports that carry no fee: maker (limit orders)
        self.taker_rate = fee_rate if taker_rate is None else taker_rate  # market and stop orders
        self.budget = RateBudget(*(budget or ORDER_BUDGETS.get((exchange_id, market), DEFAULT_BUDGET)))
        self.retried = 0  # temporary errors met (for tests and the status line)
        self._markets_loaded = False
        self._rules_by_symbol: dict[str, base.MarketRules] = {}  # (ccxt's symbols) for the reports
        if base_url and exchange_id.startswith("binance"):
            _errors_by_path(self.client)
            # a stream's market kind is told by Binance's host names (stream.binance.com is spot),
            # gone from a rewritten URL: this client trades one kind
            self.client.is_spot_url = lambda client: not self.perpetual

    # -- plumbing ------------------------------------------------------------------------------
    async def _call(self, what: str, fn, *args, **kwargs):
        """Call ccxt, retrying temporary errors with exponential backoff and jitter."""
        attempt = 0
        while True:
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                err = map_error(exc, self._secrets)
                if not isinstance(err, base.TemporaryError) or attempt >= self.retries:
                    raise err from None
                attempt += 1
                self.retried += 1
                await asyncio.sleep(self._delay(attempt, err))

    def _delay(self, attempt: int, err: base.TemporaryError) -> float:
        headers = getattr(self.client, "last_response_headers", None) or {}
        retry_after = headers.get("Retry-After") or headers.get("retry-after")
        if isinstance(err, base.RateLimited) and retry_after:
            try:
                return min(float(retry_after), 60.0)
            except ValueError:
                pass
        d = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
        return d * (0.5 + random.random() / 2)

    async def _load(self) -> None:
        if not self._markets_loaded:
            await self._call("load_markets", self.client.load_markets)
            self._markets_loaded = True

    # -- market data ---------------------------------------------------------------------------
    async def market(self, symbol: str) -> base.MarketRules:
        await self._load()
        try:
            return self._rules(self.client.market(symbol), symbol)
        except Exception as exc:
            raise map_error(exc, self._secrets) from None

    @staticmethod
    def _rules(m: dict, symbol: str = "") -> base.MarketRules:
        prec, lim = m.get("precision") or {}, m.get("limits") or {}
        return base.MarketRules(symbol=symbol or m["symbol"], tick=float(prec.get("price") or 0.0),
                             lot=float(prec.get("amount") or 0.0),
                             min_qty=float((lim.get("amount") or {}).get("min") or 0.0),
                             min_notional=float((lim.get("cost") or {}).get("min") or 0.0),
                             base=m.get("base", ""), quote=m.get("quote", ""),
                             fee_in_received=bool(m.get("spot")) and m.get("feeSide") == "get")

    async def symbols(self) -> list[str]:
        """The exchange's active markets of this adapter's kind (spot, or linear perpetuals)."""
        await self._load()
        kind = "swap" if self.perpetual else "spot"
        return sorted(s for s, m in self.client.markets.items()
                      if m.get("type") == kind and m.get("active") is not False and (kind == "spot" or m.get("linear")))

    async def candles(self, symbol: str, timeframe: str, since: int | None, limit: int) -> list[list[float]]:
        await self._load()
        return await self._call("fetch_ohlcv", self.client.fetch_ohlcv, symbol, timeframe, since, limit)

    async def watch_candles(self, symbol: str, timeframe: str, since: int) -> list[list[float]]:
        """At the stream's next update, the candles it holds from ``since`` on, oldest first
        (the last one forming). Needs ``streams``."""
        await self._load()
        try:
            await self.client.watch_ohlcv(symbol, timeframe)
        except Exception as exc:
            raise map_error(exc, self._secrets) from None
        held = self.client.ohlcvs.get(self.client.market(symbol)["symbol"], {}).get(timeframe, [])
        out = []
        for r in reversed(held):
            if r[0] < since:
                break
            out.append(list(r))
        return out[::-1]

    async def watch_orders(self, symbol: str) -> list[base.OrderReport]:
        """At the stream's next update, the orders it reported. Needs ``order_stream``."""
        await self._load()
        try:
            rows = await self.client.watch_orders(symbol)
        except Exception as exc:
            raise map_error(exc, self._secrets) from None
        return [self._report(o) for o in rows]

    # -- orders --------------------------------------------------------------------------------
    async def place(self, r: base.OrderRequest) -> base.OrderReport:
        await self._load()
        attempt = 0
        while True:
            await self.budget.acquire()
            try:
                o = await self.client.create_order(r.symbol, *self._order_args(r))
                return await self._with_trades(o, r.symbol)
            except Exception as exc:
                err = map_error(exc, self._secrets)
                if not isinstance(err, base.TemporaryError) or attempt >= self.retries:
                    if isinstance(err, base.TemporaryError):
                        found = await self._lookup(r)
                        if found is not None:
                            return found
                    raise err from None
                attempt += 1
                self.retried += 1
                await asyncio.sleep(self._delay(attempt, err))
                # It may have reached the exchange: look before placing again.
                found = await self._lookup(r)
                if found is not None:
                    return found

    @staticmethod
    def _order_args(r: base.OrderRequest) -> tuple:
        """ccxt's (type, side, amount, price, params) for our request. In hedge mode each order
        names its position (LONG or SHORT: it opens or reduces that one, never the other); a stop
        is a stop-market order triggered at its price (Binance futures keep those on the algo
        service, where ccxt sends an order with a trigger price)."""
        params = {"clientOrderId": r.client_order_id}
        if r.position:
            params["positionSide"] = r.position.upper()
        if r.type == "stop":
            return "market", r.side, r.qty, None, {**params, "stopPrice": r.price}
        return r.type, r.side, r.qty, (r.price if r.type == "limit" else None), params

    def _report(self, o: dict) -> base.OrderReport:
        symbol = o.get("symbol") or ""
        rules = self._rules_by_symbol.get(symbol)
        if rules is None and self._markets_loaded and symbol in self.client.markets:
            rules = self._rules_by_symbol[symbol] = self._rules(self.client.markets[symbol])
        return report_from_ccxt(o, self.fee_rate if o.get("type") == "limit" else self.taker_rate, rules)

    async def _lookup(self, r: base.OrderRequest) -> base.OrderReport | None:
        try:
            return await self.order(r.symbol, r.client_order_id)
        except base.OrderNotFound:
            return None

    async def place_many(self, requests: list[base.OrderRequest]) -> list[base.OrderReport | base.ExchangeError]:
        """Place a batch concurrently within the rate budget; each result is a report or the
        error that order met (one refusal does not stop the others)."""
        async def one(r):
            try:
                return await self.place(r)
            except base.ExchangeError as e:
                return e
        return list(await asyncio.gather(*(one(r) for r in requests)))

    async def cancel(self, symbol: str, report: base.OrderReport) -> base.OrderReport:
        await self._load()
        stop = self.perpetual and report.type == "stop"  # on the algo service, by our id
        if stop:
            args = (None, symbol, {"clientOrderId": report.client_order_id, "trigger": True})
        else:
            args = (report.id or None, symbol, {} if report.id else {"clientOrderId": report.client_order_id})
        look = self._stop_order if stop else self.order
        try:
            o = await self._call("cancel_order", self.client.cancel_order, *args)
            if stop and str((o.get("info") or {}).get("code")) == "200":  # a stop cancelled before it triggered
                return replace(report, status=base.CANCELED, filled=0.0, average=0.0)
            if o.get("status") is None or not o.get("clientOrderId"):
                return await look(symbol, report.client_order_id)
            return await self._with_trades(o, symbol)
        except base.OrderNotFound:
            # Gone already (filled, or a re-sent DELETE that succeeded the first time): ask.
            return await look(symbol, report.client_order_id)

    async def order(self, symbol: str, client_order_id: str) -> base.OrderReport:
        await self._load()
        try:
            o = await self._call("fetch_order", self.client.fetch_order, None, symbol,
                                 {"clientOrderId": client_order_id})
        except base.OrderNotFound:
            if not self.perpetual:
                raise
            return await self._stop_order(symbol, client_order_id)
        return await self._with_trades(o, symbol)

    async def _with_trades(self, o: dict, symbol: str) -> base.OrderReport:
        """The report of ``o``; one that traded with no word of its commission (an order lookup,
        a cancel, a futures order's answer) with that of each of its trades, from the account's
        trade list (Binance GET /api/v3/myTrades, /fapi/v1/userTrades, by orderId)."""
        report = self._report(o)
        if report.fee_told or not o.get("id") or not self.client.has.get("fetchMyTrades"):
            return report
        try:
            trades = await self._call("fetch_my_trades", self.client.fetch_my_trades, symbol, None, None,
                                      {"orderId": o["id"]})
        except base.ExchangeError:
            return report  # (what the order did is known: its commission stays our schedule's)
        return self._report({**o, "trades": trades, "fees": [t["fee"] for t in trades if t.get("fee")], "fee": None})

    async def _stop_order(self, symbol: str, client_order_id: str) -> base.OrderReport:
        """A stop on the exchange's conditional-order service (Binance futures: the algo
        service). Once triggered it names the market order it placed, whose fill is the stop's;
        until that order exists the stop is still open."""
        a = await self._call("fetch_order", self.client.fetch_order, None, symbol,
                             {"clientOrderId": client_order_id, "trigger": True})
        stop = self._report(a)
        info = a.get("info") or {}
        status, actual = str(info.get("algoStatus", "")), str(info.get("actualOrderId") or "")
        if actual and status in ("TRIGGERED", "FINISHED"):
            fill = await self._with_trades(await self._call("fetch_order", self.client.fetch_order, actual, symbol),
                                           symbol)
            return replace(fill, id=stop.id, client_order_id=client_order_id, type="stop", price=stop.price)
        if status in ("TRIGGERING", "TRIGGERED"):
            return replace(stop, status=base.OPEN)
        if status == "FINISHED":  # finished without an order: nothing was filled
            return replace(stop, status=base.EXPIRED, filled=0.0, average=0.0)
        return stop

    async def open_orders(self, symbol: str) -> list[base.OrderReport]:
        await self._load()
        rows = await self._call("fetch_open_orders", self.client.fetch_open_orders, symbol)
        if self.perpetual:  # and the stops, kept apart
            rows += await self._call("fetch_open_orders", self.client.fetch_open_orders, symbol, None, None,
                                     {"trigger": True})
        return [self._report(o) for o in rows]

    # -- perpetuals ----------------------------------------------------------------------------
    async def prepare(self, symbol: str, leverage: float) -> None:
        """Set the account up for a hedge-mode grid on ``symbol``: hedge (dual-side) position
        mode, isolated margin, the system's leverage. First, changing nothing, that the account
        can run the grid at all: the symbol offers stop-market orders (exchangeInfo
        ``orderTypes``) and the conditional-order service answers (a read of our open stops);
        a grid whose stops would be refused is refused before the account is touched. What is
        already so is left alone; the exchange refuses a mode change while positions or orders
        are open (the error says so)."""
        await self._load()
        if leverage != int(leverage) or leverage < 1:
            raise base.OrderRejected(f"leverage {leverage:g}: the exchange takes a whole number from 1")
        types = (self.client.market(symbol).get("info") or {}).get("orderTypes")
        if types is not None and _STOP_MARKET not in types:
            raise base.OrderRejected(f"{symbol}: the exchange offers no stop-market orders here (order types: "
                                  f"{', '.join(types)}): the grid's stops would be refused; nothing was changed")
        try:  # (a venue without the service answers 404, which ccxt takes for "not available")
            await self._call("fetch_open_orders", self.client.fetch_open_orders, symbol, None, None, {"trigger": True})
        except base.ExchangeError as e:
            raise base.OrderRejected(f"{symbol}: the exchange's conditional-order service refused us ({e}): the grid's "
                                  "stops could not be placed; nothing was changed on the account") from None
        mode = await self._call("fetch_position_mode", self.client.fetch_position_mode, symbol)
        if not mode.get("hedged"):
            await self._call("set_position_mode", self.client.set_position_mode, True, symbol)
        try:
            await self._call("set_margin_mode", self.client.set_margin_mode, "isolated", symbol)
        except base.ExchangeError as e:
            if "-4046" not in str(e):  # "No need to change margin type."
                raise
        await self._call("set_leverage", self.client.set_leverage, int(leverage), symbol)

    async def positions(self, symbol: str) -> dict[str, float]:
        await self._load()
        out = {"long": 0.0, "short": 0.0}
        for p in await self._call("fetch_positions", self.client.fetch_positions, [symbol]):
            if p.get("symbol") == symbol and p.get("side") in out:
                out[p["side"]] += abs(float(p.get("contracts") or 0.0))
        return out

    async def funding_rates(self, symbol: str, since: int, until: int) -> list[tuple[int, float]]:
        await self._load()
        rows = await self._call("fetch_funding_rate_history", self.client.fetch_funding_rate_history, symbol,
                                since, 1000, {"endTime": until})
        return [(int(r["timestamp"]), float(r["fundingRate"])) for r in rows if since <= r["timestamp"] <= until]

    async def funding_paid(self, symbol: str, since: int, until: int) -> list[tuple[int, float]]:
        """(time ms, amount: < 0 paid, > 0 received) of the account's funding on ``symbol`` in
        [since, until]: Binance's income history, type FUNDING_FEE (GET /fapi/v1/income, by
        ccxt's fetch_funding_history; kept three months), oldest first."""
        await self._load()
        out: list[tuple[int, float]] = []
        while True:
            rows = await self._call("fetch_funding_history", self.client.fetch_funding_history, symbol, since,
                                    1000, {"endTime": until})
            out += [(int(r["timestamp"]), float(r["amount"])) for r in rows if since <= r["timestamp"] <= until]
            if len(rows) < 1000:
                return out
            since = int(rows[-1]["timestamp"]) + 1  # more than a page: the next from after the last

    async def balance(self) -> base.Balance:
        await self._load()
        bal = await self._call("fetch_balance", self.client.fetch_balance)
        return base.Balance(free={k: float(v or 0) for k, v in (bal.get("free") or {}).items()},
                         total={k: float(v or 0) for k, v in (bal.get("total") or {}).items()})

    async def close(self) -> None:
        await self.client.close()


def _errors_by_path(client) -> None:
    """With the base URL rewritten, ccxt cannot tell spot from futures error tables by the
    official URL prefix; choose the table by the path instead (STACK.md)."""
    original = client.get_exceptions_by_url

    def by_path(url: str, exact_or_broad: str):
        kind = "linear" if "/fapi/" in (url or "") else "spot" if "/api/" in (url or "") else None
        if kind is None:
            return original(url, exact_or_broad)
        return client.safe_dict(client.safe_dict(client.exceptions, kind, {}), exact_or_broad, {})

    client.get_exceptions_by_url = by_path
