"""A fake Binance spot exchange on 127.0.0.1 for tests: the real ccxt client talks to it
through the base-URL override, never the internet.

It serves market data (exchangeInfo, klines up to the candle now "forming") and the signed
trading endpoints ccxt calls (order place / query / cancel, openOrders, account), checks the
API key and the HMAC-SHA256 signature, keeps balances, and matches resting orders against
each candle as it closes, by the rules of GRID_SEMANTICS.md (buy limit fills when the low
reaches it, at min(open, price); sell limit when the high does, at max(open, price); market
orders at the open). ``advance()`` closes the forming candle; ``start(candle_seconds=...)``
also closes one every so often on its own.

Websocket streams as Binance serves them, where ccxt's pro client looks for them: candles
(``/ws/<n>``, futures ``/market/ws/<n>``: SUBSCRIBE to ``btcusdt@kline_1m``; the forming candle
on subscribing, then at each close the closed candle, final, and the new one) and the user's
order updates (spot: the WebSocket API's ``userDataStream.subscribe.signature`` on
``/ws-api/v3``, signature checked; futures: a listenKey from ``POST /fapi/v1/listenKey`` and
``/private/ws?listenKey=``), sent for every change of an order's status or filled quantity.
``drop_streams()`` closes every websocket (a network fault); ``streams = False`` serves none;
``mute_klines = n``: the candle streams stay connected but miss the next n closes.

Faults can be queued per endpoint (``inject("POST /api/v3/order", "lost")``): ``timeout``
(answer after the client gave up, having done nothing), ``lost`` (do it, then answer too
late), ``drop`` (close the connection, having done nothing), ``drop-after`` (do it, then close
the connection), ``500``, ``429`` (with Retry-After).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import threading
import time
from urllib.parse import parse_qsl

import numpy as np
from aiohttp import WSMsgType, web

STREAM_INTERVALS = {60_000: "1m", 300_000: "5m", 900_000: "15m", 3_600_000: "1h", 14_400_000: "4h",
                    86_400_000: "1d"}
FAULTS = ("timeout", "lost", "drop", "drop-after", "500", "429")
LIVE = ("NEW", "PARTIALLY_FILLED")  # an order still working on the book


SPOT_ORDER_TYPES = ("LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")


def _symbol_info(symbol: str, base: str, quote: str) -> dict:
    return {
        "symbol": symbol, "status": "TRADING", "baseAsset": base, "baseAssetPrecision": 8,
        "quoteAsset": quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
        "orderTypes": list(SPOT_ORDER_TYPES),
        "icebergAllowed": True, "ocoAllowed": True, "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True, "cancelReplaceAllowed": True, "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000.00", "tickSize": "0.01"},
            {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000.00", "stepSize": "0.00001"},
            {"filterType": "NOTIONAL", "minNotional": "5.00", "applyMinToMarket": True,
             "maxNotional": "9000000.00", "applyMaxToMarket": False, "avgPriceMins": 5},
        ],
        "permissions": [], "permissionSets": [["SPOT"]], "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def _err(code: int, msg: str, status: int = 400) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status)


class FakeBinance:
    """``FakeBinance(candles_by_symbol, timeframe_ms)``; ``start()`` returns the base URL.

    ``candles``: "BTCUSDT" -> rows [time, o, h, l, c, v]. ``cursor``: index of the candle now
    forming (klines serve up to it). Without ``keys`` only market data is served."""

    def __init__(self, candles: dict[str, np.ndarray], timeframe_ms: int, page_limit: int = 1000, *,
                 keys: dict[str, str] | None = None, balances: dict[str, float] | None = None, cursor: int = 0,
                 maker_fee: float = 0.001, taker_fee: float | None = None, slow_seconds: float = 3.0,
                 taker_depth: float | None = None, order_limit: int | None = None):
        self.candles = candles
        self.timeframe_ms = timeframe_ms
        self.page_limit = page_limit
        self.keys = keys or {}
        self.free = dict(balances or {})
        self.cursor = cursor if cursor else max(len(r) for r in candles.values()) - 1
        self.maker_fee = maker_fee
        self.taker_fee = maker_fee if taker_fee is None else taker_fee
        self.taker_depth = taker_depth
        self.order_limit = order_limit
        self._order_times: list[float] = []
        self._clock = (time.monotonic(), 0.0)  # (when the forming candle began here, the clock's last reading)
        self.sent_cids: list[str] = []  # every newClientOrderId that reached the order endpoint
        self.slow_seconds = slow_seconds
        self.requests: list[str] = []
        self.orders: dict[int, dict] = {}  # every order ever accepted, by orderId
        self.by_cid: dict[str, int] = {}
        self.duplicate_attempts: list[str] = []
        self.short_of_funds: list[str] = []  # ids refused for insufficient balance
        self.faults: list[tuple[str, str]] = []
        self.faults_served: list[tuple[str, str]] = []
        self.fills: list[dict] = []
        self._ids = itertools.count(1000)
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task | None = None
        self.url = ""
        self.stop_at = 1 << 62  # the ticker closes no candle beyond this index
        self.streams = True  # serve websocket streams
        self.mute_klines = 0  # the candle streams miss the messages of this many closes (still connected)
        self.stream_messages = 0  # sent on every stream
        self._sockets: list[web.WebSocketResponse] = []
        self._kline_subs: list[tuple[asyncio.Queue, set[str]]] = []  # candle streams and what each asked for
        self._user_subs: list[asyncio.Queue] = []  # order-update streams
        self._seen: dict[int, tuple] = {}  # each order's (status, executed) as last sent
        self.listen_keys: set[str] = set()

    # -- test controls (thread-safe) -------------------------------------------------------------
    def inject(self, endpoint: str, kind: str, times: int = 1) -> None:
        assert kind in FAULTS, kind
        with self._lock:
            self.faults.extend([(endpoint, kind)] * times)

    def advance(self, n: int = 1) -> None:
        """Close the forming candle (n times): match resting orders against it; the streams get
        the order updates, then the closed candle and the new one forming."""
        with self._lock:
            for _ in range(n):
                for symbol, rows in self.candles.items():
                    if self.cursor < len(rows):
                        self._match(symbol, rows[self.cursor])
                self._publish_orders()
                muted = self.mute_klines > 0
                self.mute_klines -= muted
                for symbol in self.candles:
                    if not muted:
                        self._publish_kline(symbol, self.cursor, closed=True)
                self.cursor += 1
                for symbol in self.candles:
                    if not muted:
                        self._publish_kline(symbol, self.cursor, closed=False)
            self._clock = (time.monotonic(), self._clock[1])

    def clock(self) -> float:
        """The exchange's time in seconds: the forming candle's open, and the real time since it
        began forming here. A test's candles close far faster than the market's, and the
        exchange counts its limits (new orders per 10 s) in its own time: a client that paces
        its orders by this clock paces them as against the real exchange. It never goes back
        (a candle held past its length here)."""
        with self._lock:
            began, last = self._clock
            now = max(last, self._now() / 1000 + time.monotonic() - began)
            self._clock = (began, now)
            return now

    @property
    def user_streams(self) -> int:
        """Order-update streams subscribed now."""
        return len(self._user_subs)

    def drop_streams(self) -> None:
        """Close every websocket connection, as a network fault would."""
        async def close_all():
            for ws in list(self._sockets):
                await ws.close()
        asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(10)

    def our_orders(self, prefix: str) -> list[dict]:
        """Every order whose client id starts with ``prefix``."""
        with self._lock:
            return [dict(o) for o in self.orders.values() if str(o["cid"]).startswith(prefix)]

    def open_orders_of(self, symbol: str = "BTCUSDT") -> list[dict]:
        with self._lock:
            return [dict(o) for o in self.orders.values() if o["symbol"] == symbol and o["status"] in LIVE]

    # -- matching ----------------------------------------------------------------------------
    def _match(self, symbol: str, row) -> None:
        t, o, h, lo = int(row[0]), float(row[1]), float(row[2]), float(row[3])
        for order in list(self.orders.values()):
            if order["symbol"] != symbol or order["status"] not in LIVE:
                continue
            price = order["price"]
            if order["side"] == "BUY" and lo <= price:
                fill = min(o, price)
            elif order["side"] == "SELL" and h >= price:
                fill = max(o, price)
            else:
                continue
            self._fill(order, fill, t + self.timeframe_ms - 1, order["qty"] - order["executed"], self.maker_fee,
                       maker=True)

    def _fill(self, order: dict, price: float, t: int, qty: float, fee_rate: float, maker: bool = False) -> dict:
        """``qty`` of the order trades at ``price``: balances move, the order's executed
        quantity grows (FILLED when nothing is left), the trade is recorded and returned.
        The commission is taken from what the order receives, as Binance spot does ("Trading
        fees are always charged in the asset you receive. For example, if you buy ETH/USDT,
        the fee is paid in ETH. If you sell ETH/USDT, the fee is paid in USDT": Binance FAQ,
        What is Binance Spot Trading Fee and How to Calculate), to 8 decimals (the
        ``baseCommissionPrecision`` / ``quoteCommissionPrecision`` of exchangeInfo)."""
        base, quote = order["base"], order["quote"]
        remaining = order["qty"] - order["executed"]
        value = qty * price
        if order["side"] == "BUY":
            fee = round(qty * fee_rate, 8)
            share = order["locked"] * qty / remaining  # the funds held back for this part
            order["locked"] -= share
            self.free[quote] = self.free.get(quote, 0.0) + share - value
            self.free[base] = self.free.get(base, 0.0) + qty - fee
        else:
            fee = round(value * fee_rate, 8)
            self.free[quote] = self.free.get(quote, 0.0) + value - fee
        order["executed"] = round(order["executed"] + qty, 12)
        order["quote_qty"] += value
        order["fee"] = order.get("fee", 0.0) + fee
        order["last"] = (qty, price, fee)  # the last execution, as the order-update stream tells it
        order["update"] = t
        if order["executed"] >= order["qty"] - 1e-12:
            order.update(status="FILLED", locked=0.0)
        else:
            order["status"] = "PARTIALLY_FILLED"
        trade = {"cid": order["cid"], "price": price, "qty": qty, "fee": fee, "asset": self.fee_asset(order),
                 "time": t, "id": next(self._ids), "order": order["id"], "maker": maker}
        self.fills.append(trade)
        return trade

    @staticmethod
    def fee_asset(order: dict) -> str:
        """The asset an order's commission is taken in: what it receives."""
        return order["base"] if order["side"] == "BUY" else order["quote"]

    def _price_now(self, symbol: str) -> float:
        """The market now: the last trade, the close of the last closed candle (a trader acts
        the moment a candle closes)."""
        rows = self.candles[symbol]
        return float(rows[max(min(self.cursor, len(rows)) - 1, 0), 4])

    def _take(self, order: dict) -> list[dict]:
        """An order arriving: what of it would immediately match trades now, as taker (up to
        ``taker_depth``); IOC and MARKET orders expire for the rest, FOK fills all or nothing."""
        now = self._price_now(order["symbol"])
        crosses = order["type"] == "MARKET" or (now <= order["price"] if order["side"] == "BUY"
                                                else now >= order["price"])
        if not crosses:
            if order["tif"] in ("IOC", "FOK"):
                self._expire(order)
            return []
        depth = order["qty"] if self.taker_depth is None else min(order["qty"], self.taker_depth)
        if order["tif"] == "FOK" and depth < order["qty"]:
            self._expire(order)
            return []
        price = now if order["type"] == "MARKET" else (min(now, order["price"]) if order["side"] == "BUY"
                                                          else max(now, order["price"]))
        trades = [self._fill(order, price, self._now(), depth, self.taker_fee)] if depth > 0 else []
        if order["status"] in LIVE and (order["type"] == "MARKET" or order["tif"] == "IOC"):
            self._expire(order)
        return trades

    def _expire(self, order: dict) -> None:
        self._release(order)
        order.update(status="EXPIRED", update=self._now())

    def _release(self, order: dict) -> None:
        """What a working order held back goes back to the free balance."""
        if order["side"] == "BUY":
            self.free[order["quote"]] += order["locked"]
        else:
            self.free[order["base"]] += order["qty"] - order["executed"]
        order["locked"] = 0.0

    # -- streams -------------------------------------------------------------------------------
    def _send(self, queue: asyncio.Queue, message: dict) -> None:
        self._loop.call_soon_threadsafe(queue.put_nowait, message)

    def _publish_kline(self, symbol: str, i: int, closed: bool) -> None:
        rows = self.candles[symbol]
        if i >= len(rows):
            return
        stream = f"{symbol.lower()}@kline_{STREAM_INTERVALS[self.timeframe_ms]}"
        for queue, subs in self._kline_subs:
            if stream in subs:
                self._send(queue, self._kline_msg(symbol, rows[i], closed))

    def _kline_msg(self, symbol: str, r, closed: bool) -> dict:
        t = int(r[0])
        return {"e": "kline", "E": t + (self.timeframe_ms if closed else 0), "s": symbol, "k": {
            "t": t, "T": t + self.timeframe_ms - 1, "s": symbol, "i": STREAM_INTERVALS[self.timeframe_ms],
            "o": f"{r[1]:.8f}", "h": f"{r[2]:.8f}", "l": f"{r[3]:.8f}", "c": f"{r[4]:.8f}", "v": f"{r[5]:.8f}",
            "n": 1, "x": closed}}

    def _publish_orders(self) -> None:
        """An update for every order whose status or filled quantity changed since the last."""
        for oid, o in self.orders.items():
            now = (o["status"], o["executed"])
            if self._seen.get(oid) != now:
                self._seen[oid] = now
                for queue in self._user_subs:
                    self._send(queue, self._order_update(o))

    def _order_update(self, o: dict) -> dict:
        """Binance spot's executionReport, as the WebSocket API's user-data subscription sends it."""
        execution = {"NEW": "NEW", "FILLED": "TRADE", "PARTIALLY_FILLED": "TRADE",
                     "CANCELED": "CANCELED"}.get(o["status"], o["status"])
        last_qty, last_price, last_fee = o.get("last", (0.0, 0.0, 0.0)) if execution == "TRADE" else (0.0, 0.0, 0.0)
        cancel = o["status"] == "CANCELED"
        return {"subscriptionId": 0, "event": {
            "e": "executionReport", "E": o["update"], "s": o["symbol"],
            "c": f"cancel-{o['id']}" if cancel else o["cid"], "S": o["side"], "o": o["type"], "f": "GTC",
            "q": f"{o['qty']:.8f}", "p": f"{o['price']:.8f}",
            "P": "0.00000000", "x": execution, "X": o["status"], "r": "NONE", "i": o["id"], "l": f"{last_qty:.8f}",
            "z": f"{o['executed']:.8f}", "L": f"{last_price:.8f}",
            "n": f"{last_fee:.8f}", "N": self.fee_asset(o) if last_qty else None,
            "T": o["update"], "t": -1, "w": o["status"] in LIVE, "m": True, "O": o["time"],
            "Z": f"{o['quote_qty']:.8f}", "C": o["cid"] if cancel else ""}}

    async def _socket(self, request: web.Request, on_text) -> web.WebSocketResponse:
        """A websocket connection: what is queued for it goes out in order; ``on_text(message,
        queue)`` answers what the client sends."""
        if not self.streams:
            raise web.HTTPNotFound()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        queue: asyncio.Queue = asyncio.Queue()
        self._sockets.append(ws)

        async def write():
            while True:
                message = await queue.get()
                self.stream_messages += 1
                await ws.send_str(json.dumps(message))
        writer = asyncio.get_running_loop().create_task(write())
        try:
            await on_text(None, queue)
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await on_text(json.loads(msg.data), queue)
        finally:
            writer.cancel()
            self._sockets.remove(ws)
            with self._lock:
                self._kline_subs = [x for x in self._kline_subs if x[0] is not queue]
                self._user_subs = [x for x in self._user_subs if x is not queue]
        return ws

    def _subscribe_user(self, queue: asyncio.Queue) -> None:
        """Order updates from now on go to ``queue`` (what is known now needs none)."""
        with self._lock:
            self._user_subs.append(queue)
            for o in self.orders.values():
                self._seen.setdefault(o["id"], (o["status"], o["executed"]))

    async def _ws_market(self, request: web.Request) -> web.WebSocketResponse:
        async def on_text(message, queue):
            if not message or message.get("method") != "SUBSCRIBE":
                return
            with self._lock:
                subs = next((s for q, s in self._kline_subs if q is queue), None)
                if subs is None:
                    subs = set()
                    self._kline_subs.append((queue, subs))
                subs.update(message["params"])
                queue.put_nowait({"result": None, "id": message["id"]})
                for symbol in self.candles:  # the candle forming now
                    if f"{symbol.lower()}@kline_{STREAM_INTERVALS[self.timeframe_ms]}" in message["params"]:
                        queue.put_nowait(self._kline_msg(symbol, self.candles[symbol][self.cursor], False))
        return await self._socket(request, on_text)

    async def _ws_api(self, request: web.Request) -> web.WebSocketResponse:
        """Spot's WebSocket API: the signed user-data subscription."""
        async def on_text(message, queue):
            if not message:
                return
            if message.get("method") != "userDataStream.subscribe.signature":
                queue.put_nowait({"id": message.get("id"), "status": 400,
                                  "error": {"code": -1100, "msg": "Unknown method."}})
                return
            params = dict(message.get("params") or {})
            sig = params.pop("signature", "")
            secret = self.keys.get(params.get("apiKey", ""))
            payload = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
            if secret is None or not hmac.compare_digest(
                    hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest(), sig):
                queue.put_nowait({"id": message["id"], "status": 401,
                                  "error": {"code": -1022, "msg": "Signature for this request is not valid."}})
                return
            self._subscribe_user(queue)
            queue.put_nowait({"id": message["id"], "status": 200, "result": {"subscriptionId": 0}})
        return await self._socket(request, on_text)

    # -- plumbing ----------------------------------------------------------------------------
    def _signed(self, request: web.Request, body: str) -> dict | web.Response:
        key = request.headers.get("X-MBX-APIKEY", "")
        if key not in self.keys:
            return _err(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        payload = request.query_string if request.method in ("GET", "DELETE") else body
        if "&signature=" not in payload:
            return _err(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        signed, sig = payload.rsplit("&signature=", 1)
        want = hmac.new(self.keys[key].encode(), signed.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, sig):
            return _err(-1022, "Signature for this request is not valid.")
        return dict(parse_qsl(signed))

    def _take_fault(self, endpoint: str) -> str | None:
        with self._lock:
            for i, (ep, kind) in enumerate(self.faults):
                if ep == endpoint:
                    del self.faults[i]
                    self.faults_served.append((ep, kind))
                    return kind
        return None

    def _wrap(self, handler, signed: bool):
        async def serve(request: web.Request) -> web.StreamResponse:
            endpoint = f"{request.method} {request.path}"
            self.requests.append(endpoint)
            body = await request.text() if request.can_read_body else ""
            fault = self._take_fault(endpoint)
            if fault == "500":
                return _err(-1000, "An unknown error occurred while processing the request.", 500)
            if fault == "429":
                return web.json_response({"code": -1003, "msg": "Too many requests."}, status=429,
                                         headers={"Retry-After": "1"})
            if fault in ("timeout", "drop"):
                if fault == "timeout":
                    await asyncio.sleep(self.slow_seconds)
                else:
                    request.transport.close()
                raise asyncio.CancelledError
            params = self._signed(request, body) if signed else dict(request.query)
            if isinstance(params, web.Response):
                return params
            with self._lock:
                response = handler(params)
                self._publish_orders()
            if fault == "lost":
                await asyncio.sleep(self.slow_seconds)
            elif fault == "drop-after":
                request.transport.close()
                raise asyncio.CancelledError
            return response
        return serve

    # -- market data -------------------------------------------------------------------------
    def _exchange_info(self, q) -> web.Response:
        symbols = [_symbol_info(s, s[:-4], s[-4:]) for s in self.candles]
        return web.json_response({"timezone": "UTC", "serverTime": 0, "rateLimits": [], "symbols": symbols})

    def _klines(self, q) -> web.Response:
        rows = self.candles.get(q.get("symbol", ""))
        if rows is None:
            return _err(-1121, "Invalid symbol.")
        rows = rows[: self.cursor + 1]
        limit = min(int(q.get("limit", 500)), self.page_limit)
        t = rows[:, 0]
        lo = int(q["startTime"]) if "startTime" in q else None
        hi = int(q["endTime"]) if "endTime" in q else int(t[-1])
        if lo is None:
            sel = rows[t <= hi][-limit:]
        else:
            sel = rows[(t >= lo) & (t <= hi)][:limit]
        out = [
            [int(r[0]), f"{r[1]:.8f}", f"{r[2]:.8f}", f"{r[3]:.8f}", f"{r[4]:.8f}", f"{r[5]:.8f}",
             int(r[0]) + self.timeframe_ms - 1, "0", 0, "0", "0", "0"]
            for r in sel
        ]
        return web.json_response(out)

    def _now(self) -> int:
        rows = next(iter(self.candles.values()))
        return int(rows[min(self.cursor, len(rows) - 1), 0])

    def _time(self, q) -> web.Response:
        return web.json_response({"serverTime": self._now()})

    # -- trading -------------------------------------------------------------------------------
    def _order_json(self, o: dict, fills: list[dict] | None = None) -> dict:
        out = {
            "symbol": o["symbol"], "orderId": o["id"], "orderListId": -1, "clientOrderId": o["cid"],
            "transactTime": o["time"], "time": o["time"], "updateTime": o["update"],
            "price": f"{0.0 if o['type'] == 'MARKET' else o['price']:.8f}", "origQty": f"{o['qty']:.8f}",
            "executedQty": f"{o['executed']:.8f}",
            "cummulativeQuoteQty": f"{o['quote_qty']:.8f}", "status": o["status"], "timeInForce": o["tif"],
            "type": o["type"], "side": o["side"], "stopPrice": "0.00000000", "icebergQty": "0.00000000",
            "isWorking": True, "workingTime": o["time"], "origQuoteOrderQty": "0.00000000",
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }
        if fills is not None:  # newOrderRespType FULL: the trades the order made on arrival
            out["fills"] = [{"price": f"{f['price']:.8f}", "qty": f"{f['qty']:.8f}",
                             "commission": f"{f['fee']:.8f}", "commissionAsset": f["asset"], "tradeId": f["id"]}
                            for f in fills]
        return out

    def _rate_limited(self) -> bool:
        """The ORDERS rate limit: at most ``order_limit`` new orders in any 10 s of the exchange's
        time (exchangeInfo ``rateLimits``; Binance answers -1015 "Too many new orders; current
        limit is 50 orders per 10 SECOND.", as quoted at dev.binance.vision/t/6000)."""
        if self.order_limit is None:
            return False
        now = self.clock()
        self._order_times = [x for x in self._order_times if now - x < 10.0]
        if len(self._order_times) >= self.order_limit:
            return True
        self._order_times.append(now)
        return False

    def _place(self, q) -> web.Response:
        symbol = q.get("symbol", "")
        if symbol not in self.candles:
            return _err(-1121, "Invalid symbol.")
        cid = q.get("newClientOrderId") or f"x-{next(self._ids)}"
        self.sent_cids.append(cid)
        if self._rate_limited():
            return _err(-1015, f"Too many new orders; current limit is {self.order_limit} orders per 10 SECOND.", 429)
        if cid in self.by_cid:
            self.duplicate_attempts.append(cid)
            return _err(-2010, "Duplicate order sent.")
        side, typ = q["side"], q["type"]
        if typ not in SPOT_ORDER_TYPES:
            return _err(-1116, "Invalid orderType.")
        qty = float(q["quantity"])
        now_price = self._price_now(symbol)
        price = float(q.get("price", 0) or 0) if typ != "MARKET" else now_price
        if qty < 1e-5 or round(qty / 1e-5, 6) % 1:
            return _err(-1013, "Filter failure: LOT_SIZE")
        if price * qty < 5.0:
            return _err(-1013, "Filter failure: NOTIONAL")
        if typ == "LIMIT_MAKER" and (now_price <= price if side == "BUY" else now_price >= price):
            return _err(-2010, "Order would immediately match and take.")
        base, quote = symbol[:-4], symbol[-4:]
        locked = 0.0
        if side == "BUY":  # holds back what it pays: its commission comes out of the coins bought
            locked = price * qty
            if self.free.get(quote, 0.0) < locked - 1e-9:
                self.short_of_funds.append(cid)
                return _err(-2010, "Account has insufficient balance for requested action.")
            self.free[quote] -= locked
        else:
            if self.free.get(base, 0.0) < qty - 1e-12:
                self.short_of_funds.append(cid)
                return _err(-2010, "Account has insufficient balance for requested action.")
            self.free[base] -= qty
        now = self._now()
        oid = next(self._ids)
        o = {"id": oid, "cid": cid, "symbol": symbol, "side": side, "type": "LIMIT" if typ == "LIMIT_MAKER" else typ,
             "price": price, "qty": qty, "executed": 0.0, "quote_qty": 0.0,
             "status": "NEW", "time": now, "update": now, "locked": locked, "base": base, "quote": quote,
             "tif": q.get("timeInForce", "GTC") if typ == "LIMIT" else "GTC"}
        self.orders[oid] = o
        self.by_cid[cid] = oid
        trades = self._take(o)
        return web.json_response(self._order_json(o, trades))

    def _find(self, q) -> dict | None:
        if "origClientOrderId" in q:
            oid = self.by_cid.get(q["origClientOrderId"])
        else:
            oid = int(q.get("orderId", -1))
        o = self.orders.get(oid)
        return o if o is not None and o["symbol"] == q.get("symbol") else None

    def _query(self, q) -> web.Response:
        o = self._find(q)
        if o is None:
            return _err(-2013, "Order does not exist.")
        return web.json_response(self._order_json(o))

    def _cancel(self, q) -> web.Response:
        o = self._find(q)
        if o is None or o["status"] not in LIVE:
            return _err(-2011, "Unknown order sent.")
        self._release(o)
        o.update(status="CANCELED", update=self._now())
        return web.json_response(self._order_json(o))

    def _my_trades(self, q) -> web.Response:
        """GET /api/v3/myTrades (Account trade list, USER_DATA): the trades of an account on a
        symbol, here of one ``orderId``, each with its commission, the asset it was taken in
        and whether the order was the maker."""
        symbol, oid = q.get("symbol", ""), int(q.get("orderId", -1))
        rows = [f for f in self.fills if f.get("order") == oid and self.orders[oid]["symbol"] == symbol]
        return web.json_response([
            {"symbol": symbol, "id": f["id"], "orderId": oid, "orderListId": -1, "price": f"{f['price']:.8f}",
             "qty": f"{f['qty']:.8f}", "quoteQty": f"{f['price'] * f['qty']:.8f}", "commission": f"{f['fee']:.8f}",
             "commissionAsset": f["asset"], "time": f["time"], "isBuyer": self.orders[oid]["side"] == "BUY",
             "isMaker": f["maker"], "isBestMatch": True} for f in rows])

    def _open_orders(self, q) -> web.Response:
        sym = q.get("symbol")
        return web.json_response([self._order_json(o) for o in self.orders.values()
                                  if o["status"] in LIVE and (sym is None or o["symbol"] == sym)])

    def _account(self, q) -> web.Response:
        locked: dict[str, float] = {}
        for o in self.orders.values():
            if o["status"] in LIVE:
                asset, amount = (o["quote"], o["locked"]) if o["side"] == "BUY" else (o["base"],
                                                                                     o["qty"] - o["executed"])
                locked[asset] = locked.get(asset, 0.0) + amount
        assets = set(self.free) | set(locked)
        return web.json_response({
            "makerCommission": 10, "takerCommission": 10, "canTrade": True, "canWithdraw": True,
            "canDeposit": True, "updateTime": 0, "accountType": "SPOT",
            "balances": [{"asset": a, "free": f"{self.free.get(a, 0.0):.8f}", "locked": f"{locked.get(a, 0.0):.8f}"}
                         for a in sorted(assets)],
            "permissions": ["SPOT"],
        })

    # -- server ------------------------------------------------------------------------------
    def routes(self) -> list[tuple]:
        """(method, path, handler, signed) of every endpoint served."""
        return [
            ("GET", "/api/v3/exchangeInfo", self._exchange_info, False),
            ("GET", "/api/v3/klines", self._klines, False),
            ("GET", "/api/v3/time", self._time, False),
            ("POST", "/api/v3/order", self._place, True),
            ("GET", "/api/v3/order", self._query, True),
            ("DELETE", "/api/v3/order", self._cancel, True),
            ("GET", "/api/v3/openOrders", self._open_orders, True),
            ("GET", "/api/v3/myTrades", self._my_trades, True),
            ("GET", "/api/v3/account", self._account, True),
        ]

    def stream_routes(self) -> list[tuple]:
        return [("/ws/{stream}", self._ws_market), ("/ws-api/v3", self._ws_api)]

    async def _serve(self, ready: threading.Event, candle_seconds: float | None) -> None:
        app = web.Application()
        for method, path, handler, signed in self.routes():
            app.router.add_route(method, path, self._wrap(handler, signed))
        for path, handler in self.stream_routes():
            app.router.add_get(path, handler)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        if candle_seconds:
            self._ticker = asyncio.get_running_loop().create_task(self._tick(candle_seconds))
        ready.set()

    async def _tick(self, seconds: float) -> None:
        rows = max(len(r) for r in self.candles.values())
        while self.cursor < min(rows - 1, self.stop_at):
            await asyncio.sleep(seconds)
            with self._lock:  # (stop_at may have been set while it slept)
                if self.cursor < min(rows - 1, self.stop_at):
                    self.advance()

    def start(self, candle_seconds: float | None = None) -> str:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run():
            asyncio.set_event_loop(self._loop)
            self._loop.create_task(self._serve(ready, candle_seconds))
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake exchange did not start")
        return self.url

    def stop(self) -> None:
        if self._loop is None:
            return
        if self._ticker is not None:
            self._loop.call_soon_threadsafe(self._ticker.cancel)
        fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = None


def wait_until(predicate, timeout: float = 10.0, step: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


async def until(check, seconds: float = 10.0) -> None:
    """Wait on the event loop until ``check()`` holds (AssertionError after ``seconds``)."""
    for _ in range(int(seconds / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def live_client(fake, **kw):
    """Our adapter over the real ccxt client on ``fake``, with its first key. ccxt's pacing of
    requests by their weights is off (the fake counts none; it took 0.3 s of each candle's
    0.31); the adapter's order budget counts in the exchange's time (``FakeBinance.clock``),
    whose candles close in milliseconds: paced by the wall clock, runs through a few hundred
    candles waited a minute and more on it."""
    from engine.exchange.live import CcxtExchange

    key, secret = next(iter(fake.keys.items()))
    ex = CcxtExchange("binance", base_url=fake.url, api_key=key, secret=secret, backoff=0.01, throttle=False,
                      **{"timeout_ms": 2000, **kw})
    ex.budget.clock = fake.clock
    return ex


def live_trader(fake, cfg, data_dir, **limits):
    """A Trader of system ``cfg`` live over the real ccxt client against ``fake`` (its first
    key), alone in its account: no share-of-the-portfolio caps, the ATR breaker off unless given."""
    from engine.risk import RiskGate, RiskLimits
    from engine.runtime.trader import Trader

    ex = live_client(fake)
    limits = {"atr_jump": 1e9, "max_symbol_share": float("inf"), "max_total_share": float("inf"), **limits}
    return Trader(cfg, ex, RiskGate(RiskLimits(**limits)), data_dir)


async def trade_candles(trader, fake, candles: int) -> None:
    """Boot ``trader``, then poll it at each of ``candles`` closes; the client closed."""
    await trader.boot()
    await trader.poll()
    for _ in range(candles):
        fake.advance()
        await trader.poll()
    await trader.adapter.close()


async def trade_through_faults(trader, fake, endpoints, *, steps: int, every: int, seed: int) -> None:
    """Boot ``trader`` and poll it candle by candle for ``steps`` candles, a random fault on a
    random endpoint every ``every`` candles (an error the trader lets through must be one of
    ours, never ccxt's); then a quiet market for three candles, and the client closed."""
    import numpy as np

    rng = np.random.default_rng(seed)
    await trader.boot()
    await trader.poll()
    for step in range(steps):
        if step % every == every - 1:
            fake.inject(endpoints[rng.integers(len(endpoints))], FAULTS[rng.integers(len(FAULTS))])
        fake.advance()
        try:
            await trader.poll()
        except Exception as e:
            assert type(e).__module__.startswith("engine.exchange"), e
    fake.faults.clear()
    for _ in range(3):  # a quiet market: everything settles
        fake.advance()
        await trader.poll()
    await trader.adapter.close()


def assert_invariants(trader, fake, *, position_tolerance: float | None = None) -> None:
    """What every live test ends with: each exchange fill journaled once (the journal's quantity
    of each of our orders is what the exchange executed of it), no client order id of ours sent
    twice, no order of ours on the exchange that the trader does not know, and the books equal
    to the exchange: cash within a cent and the position within a lot (this account is the
    system's alone; a perpetual's positions, each side within a lot)."""
    from engine.store import read_jsonl

    prefix = f"gd{trader.cfg.id}-"
    records, _ = read_jsonl(trader.journal_path)
    journaled = [r for r in records if r["type"] == "fill"]
    cids = [r["cid"] for r in journaled]
    assert len(cids) == len(set(cids)), "a fill journaled twice"
    orders = fake.our_orders(prefix)
    with fake._lock:
        sent = [c for c in fake.sent_cids if c.startswith(prefix)]
    done = {o["cid"]: o["executed"] for o in orders if o["executed"] > 0 and o["status"] not in LIVE}
    qty = {r["cid"]: r["qty"] for r in journaled}
    assert set(qty) == set(done), (f"exchange fills not journaled: {sorted(set(done) - set(qty))[:5]}; "
                                   f"journaled, not on the exchange: {sorted(set(qty) - set(done))[:5]}")
    assert all(abs(qty[c] - done[c]) < 1e-9 for c in done), "a journaled quantity differs from the exchange's"
    assert len(sent) == len(set(sent)) and fake.duplicate_attempts == [], "a client order id sent twice"
    orphans = {o["cid"] for o in orders if o["status"] in LIVE} - {o.cid for o in trader.book.live()}
    assert not orphans, f"orders of ours the trader does not know: {sorted(orphans)}"
    books = trader.strategy.books(1.0)
    lot = position_tolerance if position_tolerance is not None else (trader.rules.lot or 1e-8)
    if trader.perpetual:
        held = fake.positions_of()
        for side, q in zip(("long", "short"), trader.strategy.positions(), strict=True):
            assert abs(held[side] - q) <= lot * 1.0001, f"{side}: exchange {held[side]}, books {q}"
    else:
        with fake._lock:
            base, quote = trader.rules.base, trader.rules.quote
            usdt = fake.free.get(quote, 0.0) + sum(o["locked"] for o in orders if o["status"] in LIVE)
            btc = fake.free.get(base, 0.0) + sum(o["qty"] - o["executed"] for o in orders
                                                 if o["status"] in LIVE and o["side"] == "SELL")
        assert abs(books["cash"] - usdt) <= 0.01, f"cash: exchange {usdt:.4f}, books {books['cash']:.4f}"
        assert abs(books["position"] - btc) <= lot * 1.0001, f"position: exchange {btc}, books {books['position']}"
