"""A fake Binance on 127.0.0.1 for tests: the real ccxt client talks to it through the
base-URL override. It serves the spot endpoints ccxt calls for market data (exchangeInfo,
klines) from candles given to it, and counts the requests it answers."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
from aiohttp import web

REQUESTS = web.AppKey("requests", list)


def _symbol_info(symbol: str, base: str, quote: str) -> dict:
    return {
        "symbol": symbol, "status": "TRADING", "baseAsset": base, "baseAssetPrecision": 8,
        "quoteAsset": quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
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


class FakeBinance:
    """``FakeBinance(candles_by_symbol, timeframe_ms)``; ``start()`` returns the base URL."""

    def __init__(self, candles: dict[str, np.ndarray], timeframe_ms: int, page_limit: int = 1000):
        self.candles = candles  # "BTCUSDT" -> array rows [time, o, h, l, c, v]
        self.timeframe_ms = timeframe_ms
        self.page_limit = page_limit
        self.requests: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _exchange_info(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        symbols = [_symbol_info(s, s[:-4], s[-4:]) for s in self.candles]
        return web.json_response({"timezone": "UTC", "serverTime": 0, "rateLimits": [], "symbols": symbols})

    async def _klines(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        q = request.query
        rows = self.candles.get(q.get("symbol", ""))
        if rows is None:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        limit = min(int(q.get("limit", 500)), self.page_limit)
        t = rows[:, 0]
        lo = int(q["startTime"]) if "startTime" in q else int(t[0])
        hi = int(q["endTime"]) if "endTime" in q else int(t[-1])
        sel = rows[(t >= lo) & (t <= hi)][:limit]
        out = [
            [int(r[0]), f"{r[1]:.8f}", f"{r[2]:.8f}", f"{r[3]:.8f}", f"{r[4]:.8f}", f"{r[5]:.8f}",
             int(r[0]) + self.timeframe_ms - 1, "0", 0, "0", "0", "0"]
            for r in sel
        ]
        return web.json_response(out)

    async def _time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": 0})

    async def _serve(self, ready: threading.Event) -> None:
        app = web.Application()
        app.router.add_get("/api/v3/exchangeInfo", self._exchange_info)
        app.router.add_get("/api/v3/klines", self._klines)
        app.router.add_get("/api/v3/time", self._time)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        ready.set()

    def start(self) -> str:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run():
            asyncio.set_event_loop(self._loop)
            self._loop.create_task(self._serve(ready))
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake exchange did not start")
        return self.url

    def stop(self) -> None:
        if self._loop is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = None
