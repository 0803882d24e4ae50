"""A fake Binance USDT-M futures exchange on 127.0.0.1 for tests: the real ccxt client talks to
it through the base-URL override, never the internet.

What it serves is what ccxt calls for a hedge-mode grid: exchangeInfo, klines, fundingRate
and leverageBracket; position mode, margin type and leverage; orders (place, query, cancel,
openOrders); stop orders on the algo service (/fapi/v1/algoOrder: since December 2025 Binance
takes STOP_MARKET orders there; once triggered an algo order names the market order it
placed, ``actualOrderId``); positionRisk (v3) and account (v3). API key and HMAC signature are
checked (``FakeBinance``), and faults can be injected per endpoint the same way.

Its own model of the exchange, written apart from the paper exchange it checks:
- hedge mode (``positionSide`` LONG or SHORT on every order; one-way orders are refused while
  hedge mode is on), isolated margin per position: notional / leverage at each opening fill,
  the average entry price, a flat 0.4% maintenance rate for liquidation (the first tier);
- a closing order never closes more than the position holds: it fills what is there (FILLED,
  executedQty below origQty), or expires when nothing is;
- opening orders need their margin free in the wallet (-2019 otherwise);
- each closed candle is walked open -> the nearer extreme -> the other one; orders fill in the
  order the price reaches them: limits at their price (at the open when it is already through),
  a stop at its trigger (at the open when the candle opens through it), as a taker; funding is
  settled at 00:00, 08:00 and 16:00 UTC on the notional at the open.

What an order meets when it arrives, as Binance documents it (USDT-M Futures API, "New Order
(TRADE)", "Error Codes"; "the market" is the last trade, the close of the last closed candle):
- a MARKET order, or a LIMIT order that would immediately match, trades at once as taker at the
  market's price; the answer is ``newOrderRespType`` ACK by default, which says NEW with nothing
  executed (the fill shows when the order is queried), RESULT gives the final state;
- GTX (post only) that would immediately match: -5022 "Due to the order could not be executed as
  maker, the Post Only order will be rejected.";
- a type the symbol does not list in exchangeInfo ``orderTypes`` (``order_types``): -4120;
  ``algo_service = False``: the algo-order endpoints answer 404 (an account or venue without the
  conditional-order service);
- -4116 for a duplicate client order id, -2019 margin insufficient, -4164 notional below 5;
- ``order_limit``: -1015 (HTTP 429) beyond that many new orders in 10 s of the exchange's time
  (``FakeBinance.clock``), USDT-M's ORDERS limit being 300 per 10 s.
"""

from __future__ import annotations

import itertools
import secrets

from aiohttp import web
from fake_exchange import FakeBinance, _err

FUNDING_MS = 8 * 3_600_000
MMR = 0.004


FUTURES_ORDER_TYPES = ("LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                       "TRAILING_STOP_MARKET")


def _contract_info(symbol: str, base: str, quote: str, order_types=FUTURES_ORDER_TYPES) -> dict:
    return {
        "symbol": symbol, "pair": symbol, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
        "onboardDate": 1569398400000, "status": "TRADING", "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000", "baseAsset": base, "quoteAsset": quote, "marginAsset": quote,
        "pricePrecision": 2, "quantityPrecision": 3, "baseAssetPrecision": 8, "quotePrecision": 8,
        "underlyingType": "COIN", "underlyingSubType": [], "settlePlan": 0, "triggerProtect": "0.0500",
        "liquidationFee": "0.012500", "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.10", "maxPrice": "4529764", "tickSize": "0.10"},
            {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000", "stepSize": "0.001"},
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0.001", "maxQty": "120", "stepSize": "0.001"},
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": "5"},
            {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
             "multiplierDecimal": "4"},
        ],
        "orderTypes": list(order_types),
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
    }


class FakeBinanceFutures(FakeBinance):
    """``FakeBinanceFutures(candles_by_symbol, timeframe_ms, keys=..., balances={"USDT": ...},
    funding=[(time ms, rate), ...])``; the test controls are FakeBinance's."""

    def __init__(self, candles, timeframe_ms, *, funding=(), maker_fee: float = -0.00005,
                 taker_fee: float = 0.0002, leverage: int = 20, **kw):
        super().__init__(candles, timeframe_ms, maker_fee=maker_fee, **kw)
        self.taker_fee = taker_fee
        self.funding = sorted((int(t), float(r)) for t, r in funding)
        self._rates = {round(t / FUNDING_MS): (t, r) for t, r in self.funding}  # by settlement (times carry ms of lag)
        self.hedge = False
        self.margin_type = {s: "CROSSED" for s in candles}
        self.leverage = {s: leverage for s in candles}
        self.pos = {(s, side): [0.0, 0.0, 0.0] for s in candles for side in ("LONG", "SHORT")}  # qty, entry, margin
        self.algos: dict[int, dict] = {}
        self.by_algo_cid: dict[str, int] = {}
        self.funding_paid = 0.0  # what the account paid (received: negative)
        self.income: list[dict] = []  # the account's income history (FUNDING_FEE entries)
        self.liquidations: list[tuple[str, str, int]] = []
        self._algo_ids = itertools.count(5000)
        self.order_types = FUTURES_ORDER_TYPES  # what exchangeInfo lists for each symbol
        self.algo_service = True
        self.account_changes: list[str] = []  # position mode, margin type, leverage: each change made

    @property
    def wallet(self) -> float:
        return self.free.get("USDT", 0.0)

    def _add_wallet(self, amount: float) -> None:
        self.free["USDT"] = self.free.get("USDT", 0.0) + amount

    def positions_of(self, symbol: str = "BTCUSDT") -> dict[str, float]:
        with self._lock:
            return {side.lower(): self.pos[(symbol, side)][0] for side in ("LONG", "SHORT")}

    def our_orders(self, prefix: str) -> list[dict]:
        """Every order and stop whose client id starts with ``prefix``, as orders: a stop that
        triggered has what its market order executed, and its status (EXPIRED when it had
        nothing left to close: the position was closed before the stop triggered)."""
        with self._lock:
            out = [dict(o) for o in self.orders.values() if str(o["cid"]).startswith(prefix)]
            for a in self.algos.values():
                if a["cid"].startswith(prefix):
                    actual = self.orders.get(a.get("actual", -1))
                    out.append({"cid": a["cid"], "executed": actual["executed"] if actual else 0.0,
                                "status": "NEW" if a["status"] == "NEW" else actual["status"] if actual else "EXPIRED"})
            return out

    def open_algos_of(self, symbol: str = "BTCUSDT") -> list[dict]:
        with self._lock:
            return [dict(a) for a in self.algos.values() if a["symbol"] == symbol and a["status"] == "NEW"]

    # -- matching ----------------------------------------------------------------------------
    @staticmethod
    def _opens(o: dict) -> bool:
        return (o["side"] == "BUY") == (o["position"] == "LONG")

    def _match(self, symbol: str, row) -> None:
        t, o, h, lo = int(row[0]), float(row[1]), float(row[2]), float(row[3])
        if t % FUNDING_MS == 0:
            self._settle_funding(symbol, t, o)
        legs = [(o, lo), (lo, h)] if o - lo <= h - o else [(o, h), (h, lo)]
        for start, end in legs:
            down = end < start
            while True:  # the next order the price reaches on this leg, one at a time
                hit = self._next_on_leg(symbol, start, end, down)
                if hit is None:
                    break
                kind, x, at = hit
                if kind == "algo":
                    self._trigger(x, at, t)
                else:
                    self._fill(x, at, t)
            self._liquidate(symbol, end, t)

    def _next_on_leg(self, symbol: str, start: float, end: float, down: bool):
        best = None
        for x in self.orders.values():
            if x["symbol"] != symbol or x["status"] != "NEW" or x["type"] != "LIMIT":
                continue
            if x["side"] == ("BUY" if down else "SELL") and (end <= x["price"] if down else end >= x["price"]):
                at = min(start, x["price"]) if down else max(start, x["price"])
                best = min(best, ("order", x, at), key=lambda b: abs(b[2] - start)) if best else ("order", x, at)
        for a in self.algos.values():
            if a["symbol"] != symbol or a["status"] != "NEW":
                continue
            if a["side"] == ("SELL" if down else "BUY") and (end <= a["trigger"] if down else end >= a["trigger"]):
                at = min(start, a["trigger"]) if down else max(start, a["trigger"])
                best = min(best, ("algo", a, at), key=lambda b: abs(b[2] - start)) if best else ("algo", a, at)
        return best

    def _trigger(self, a: dict, price: float, t: int) -> None:
        """The stop's condition is met: it places a market order, filled at once."""
        oid = next(self._ids)
        order = {"id": oid, "cid": f"algo{a['id']}", "symbol": a["symbol"], "side": a["side"], "type": "MARKET",
                 "position": a["position"], "price": 0.0, "qty": a["qty"], "executed": 0.0, "quote_qty": 0.0,
                 "status": "NEW", "time": t, "update": t, "stop": a["trigger"], "orig_type": "STOP_MARKET"}
        self.orders[oid] = order
        self._fill(order, price, t)
        a.update(status="FINISHED", actual=oid, update=t + self.timeframe_ms - 1, trigger_time=t)

    def _fill(self, order: dict, price: float, t: int, taker: bool = False) -> None:
        key = (order["symbol"], order["position"])
        qty, entry, margin = self.pos[key]
        fee_rate = self.maker_fee if order["type"] == "LIMIT" and not taker else self.taker_fee
        lev = self.leverage[order["symbol"]]
        if self._opens(order):
            q = order["qty"]
            self.pos[key] = [round(qty + q, 9), (qty * entry + q * price) / (qty + q), margin + q * price / lev]
        else:
            q = min(order["qty"], qty)
            if q <= 0:
                order.update(status="EXPIRED", update=t)
                return
            sign = 1.0 if order["position"] == "LONG" else -1.0
            self._add_wallet(sign * (price - entry) * q)
            left = round(qty - q, 9)  # quantities are whole lots
            self.pos[key] = [left, entry, margin * left / qty] if left > 0 else [0.0, 0.0, 0.0]
        fee = q * price * fee_rate
        self._add_wallet(-fee)
        order.update(status="FILLED", executed=q, quote_qty=q * price, fee=fee,
                     avg=price, update=t if taker else t + self.timeframe_ms - 1)
        self.fills.append({"cid": order["cid"], "price": price, "qty": q, "fee": fee, "time": t,
                           "position": order["position"], "side": order["side"], "order": order["id"],
                           "maker": order["type"] == "LIMIT" and not taker, "id": next(self._ids)})

    def _settle_funding(self, symbol: str, t: int, mark: float) -> None:
        if t // FUNDING_MS not in self._rates:
            return
        when, rate = self._rates[t // FUNDING_MS]
        for side, sign in (("LONG", 1.0), ("SHORT", -1.0)):
            p = self.pos[(symbol, side)]
            if p[0] > 0:
                pay = sign * p[0] * mark * rate
                self._add_wallet(-pay)
                p[2] -= pay  # isolated: from the position's margin
                self.funding_paid += pay
                # each position's payment is an entry of the income history, stamped with the
                # settlement's fundingTime (hedge mode: one per side; Binance's entries carry
                # no positionSide, so the sign tells the side)
                self.income.append({"symbol": symbol, "incomeType": "FUNDING_FEE", "income": f"{-pay:.8f}",
                                    "asset": "USDT", "info": "FUNDING_FEE", "time": when,
                                    "tranId": next(self._ids), "tradeId": ""})

    def _liq_price(self, side: str, qty: float, entry: float, margin: float) -> float:
        if side == "LONG":
            return (qty * entry - margin) / (qty * (1 - MMR))
        return (qty * entry + margin) / (qty * (1 + MMR))

    def _liquidate(self, symbol: str, price: float, t: int) -> None:
        for side in ("LONG", "SHORT"):
            qty, entry, margin = self.pos[(symbol, side)]
            if qty <= 0:
                continue
            liq = self._liq_price(side, qty, entry, margin)
            if (side == "LONG" and price <= liq) or (side == "SHORT" and price >= liq):
                self._add_wallet(-margin)  # the isolated margin is lost
                self.pos[(symbol, side)] = [0.0, 0.0, 0.0]
                self.liquidations.append((symbol, side, t))

    # -- margin ------------------------------------------------------------------------------
    def _order_margin(self) -> float:
        m = 0.0
        for x in self.orders.values():
            if x["status"] == "NEW" and self._opens(x):
                m += x["qty"] * (x["price"] or self._last(x["symbol"])) / self.leverage[x["symbol"]]
        return m

    def _available(self) -> float:
        return self.wallet - sum(p[2] for p in self.pos.values()) - self._order_margin()

    def _last(self, symbol: str) -> float:
        rows = self.candles[symbol]
        return float(rows[max(self.cursor - 1, 0), 4])

    # -- orders --------------------------------------------------------------------------------
    def _check_new(self, q: dict, trigger: bool) -> tuple[dict, web.Response | None]:
        symbol = q.get("symbol", "")
        if symbol not in self.candles:
            return {}, _err(-1121, "Invalid symbol.")
        position = q.get("positionSide", "BOTH")
        if self.hedge and position not in ("LONG", "SHORT"):
            return {}, _err(-4061, "Order's position side does not match user's setting.")
        if not self.hedge and position != "BOTH":
            return {}, _err(-4061, "Order's position side does not match user's setting.")
        side, qty = q["side"], float(q["quantity"])
        last = self._last(symbol)
        price = float(q.get("price", 0) or 0) if q.get("type") == "LIMIT" else 0.0
        order = {"symbol": symbol, "side": side, "position": position, "qty": qty, "price": price}
        if qty < 0.001 or round(qty / 0.001, 6) % 1:
            return order, _err(-1111, "Precision is over the maximum defined for this asset.")
        if self._opens(order):
            if (price or last) * qty < 5.0:
                return order, _err(-4164, "Order's notional must be no smaller than 5 (unless you choose reduce only).")
            need = (price or last) * qty / self.leverage[symbol]
            if need > self._available() + 1e-9:
                return order, _err(-2019, "Margin is insufficient.")
        elif self.pos[(symbol, position)][0] < qty - 1e-12:
            return order, _err(-2022, "ReduceOnly Order is rejected.")
        if trigger:
            stop = float(q["triggerPrice"])
            if (side == "SELL" and last <= stop) or (side == "BUY" and last >= stop):
                return order, _err(-2021, "Order would immediately trigger.")
            order["trigger"] = stop
        return order, None

    def _order_json(self, o: dict) -> dict:
        return {
            "orderId": o["id"], "symbol": o["symbol"], "status": o["status"], "clientOrderId": o["cid"],
            "price": f"{o['price']:.2f}", "avgPrice": f"{o.get('avg', 0.0):.8f}", "origQty": f"{o['qty']:.3f}",
            "executedQty": f"{o['executed']:.3f}", "cumQty": f"{o['executed']:.3f}",
            "cumQuote": f"{o['quote_qty']:.8f}", "timeInForce": "GTC", "type": o["type"], "reduceOnly": False,
            "closePosition": False, "side": o["side"], "positionSide": o["position"],
            "stopPrice": f"{o.get('stop', 0.0):.2f}", "workingType": "CONTRACT_PRICE", "priceProtect": False,
            "origType": o.get("orig_type", o["type"]), "priceMatch": "NONE", "selfTradePreventionMode": "NONE",
            "goodTillDate": 0, "time": o["time"], "updateTime": o["update"],
        }

    def _algo_json(self, a: dict) -> dict:
        actual = self.orders.get(a.get("actual", -1))
        return {
            "algoId": a["id"], "clientAlgoId": a["cid"], "algoType": "CONDITIONAL", "orderType": "STOP_MARKET",
            "symbol": a["symbol"], "side": a["side"], "positionSide": a["position"], "timeInForce": "GTC",
            "quantity": f"{a['qty']:.3f}", "algoStatus": a["status"], "actualOrderId": str(a.get("actual", "")),
            "actualPrice": f"{actual.get('avg', 0.0):.8f}" if actual else "0",
            "triggerPrice": f"{a['trigger']:.2f}", "price": "0.00", "icebergQuantity": None,
            "selfTradePreventionMode": "NONE", "workingType": "CONTRACT_PRICE", "priceMatch": "NONE",
            "closePosition": False, "priceProtect": False, "reduceOnly": False, "createTime": a["time"],
            "updateTime": a["update"], "triggerTime": a.get("trigger_time", 0), "goodTillDate": 0,
        }

    def _place(self, q) -> web.Response:
        cid = q.get("newClientOrderId") or f"x-{next(self._ids)}"
        self.sent_cids.append(cid)
        if self._rate_limited():
            return _err(-1015, f"Too many new orders; current limit is {self.order_limit} orders per TEN_SECONDS.", 429)
        if cid in self.by_cid:
            self.duplicate_attempts.append(cid)
            return _err(-4116, "ClientOrderId is duplicated.")
        order, error = self._check_new(q, trigger=False)
        if error is not None:
            return error
        if q["type"] not in ("LIMIT", "MARKET") or q["type"] not in self.order_types:
            return _err(-4120, "Order type not supported for this endpoint. Please use the Algo Order API endpoints.")
        market = self._price_now(order["symbol"])
        crosses = q["type"] == "MARKET" or (market <= order["price"] if order["side"] == "BUY"
                                            else market >= order["price"])
        if crosses and q.get("timeInForce") == "GTX":
            return _err(-5022, "Due to the order could not be executed as maker, the Post Only order will be rejected.")
        now = self._now()
        oid = next(self._ids)
        order.update(id=oid, cid=cid, type=q["type"], executed=0.0, quote_qty=0.0, status="NEW", time=now,
                     update=now)
        self.orders[oid] = order
        self.by_cid[cid] = oid
        accepted = self._order_json(order)  # (ACK: as accepted, before it trades)
        if crosses:
            px = market if q["type"] == "MARKET" else (min(market, order["price"]) if order["side"] == "BUY"
                                                       else max(market, order["price"]))
            self._fill(order, px, now, taker=True)
        return web.json_response(self._order_json(order) if q.get("newOrderRespType") == "RESULT" else accepted)

    def _cancel(self, q) -> web.Response:
        o = self._find(q)
        if o is None or o["status"] != "NEW":
            return _err(-2011, "Unknown order sent.")
        o.update(status="CANCELED", update=self._now())
        return web.json_response(self._order_json(o))

    def _place_algo(self, q) -> web.Response:
        if not self.algo_service:
            return web.Response(status=404, text="Not Found")
        cid = q.get("clientAlgoId") or f"a-{next(self._algo_ids)}"
        self.sent_cids.append(cid)
        if cid in self.by_algo_cid:
            self.duplicate_attempts.append(cid)
            return _err(-4116, "ClientOrderId is duplicated.")
        if q.get("algoType") != "CONDITIONAL" or q.get("type") != "STOP_MARKET":
            return _err(-1116, "Invalid orderType.")
        algo, error = self._check_new(q, trigger=True)
        if error is not None:
            return error
        now = self._now()
        aid = next(self._algo_ids)
        algo.update(id=aid, cid=cid, status="NEW", time=now, update=now)
        self.algos[aid] = algo
        self.by_algo_cid[cid] = aid
        return web.json_response(self._algo_json(algo))

    def _find_algo(self, q) -> dict | None:
        aid = self.by_algo_cid.get(q["clientAlgoId"]) if "clientAlgoId" in q else int(q.get("algoId", -1))
        a = self.algos.get(aid)
        return a if a is not None and a["symbol"] == q.get("symbol", a["symbol"]) else None

    def _query_algo(self, q) -> web.Response:
        a = self._find_algo(q)
        if a is None:
            return _err(-2013, "Order does not exist.")
        return web.json_response(self._algo_json(a))

    def _cancel_algo(self, q) -> web.Response:
        a = self._find_algo(q)
        if a is None or a["status"] != "NEW":
            return _err(-2011, "Unknown order sent.")
        a.update(status="CANCELED", update=self._now())
        return web.json_response({"algoId": a["id"], "clientAlgoId": a["cid"], "code": "200", "msg": "success"})

    def _open_algos(self, q) -> web.Response:
        if not self.algo_service:
            return web.Response(status=404, text="Not Found")
        sym = q.get("symbol")
        return web.json_response([self._algo_json(a) for a in self.algos.values()
                                  if a["status"] == "NEW" and (sym is None or a["symbol"] == sym)])

    # -- account -------------------------------------------------------------------------------
    def _position_json(self, symbol: str, side: str) -> dict:
        qty, entry, margin = self.pos[(symbol, side)]
        mark = self._last(symbol)
        sign = 1.0 if side == "LONG" else -1.0
        upnl = sign * (mark - entry) * qty
        return {
            "symbol": symbol, "positionSide": side, "positionAmt": f"{sign * qty:.3f}", "entryPrice": f"{entry:.8f}",
            "breakEvenPrice": f"{entry:.8f}", "markPrice": f"{mark:.8f}", "unRealizedProfit": f"{upnl:.8f}",
            "liquidationPrice": f"{self._liq_price(side, qty, entry, margin) if qty else 0.0:.8f}",
            "isolatedMargin": f"{margin + upnl:.8f}", "notional": f"{sign * qty * mark:.8f}", "marginAsset": "USDT",
            "isolatedWallet": f"{margin:.8f}", "initialMargin": f"{margin:.8f}",
            "maintMargin": f"{qty * mark * MMR:.8f}", "positionInitialMargin": f"{margin:.8f}",
            "openOrderInitialMargin": "0", "adl": 0, "bidNotional": "0", "askNotional": "0",
            "updateTime": self._now(),
        }

    def _position_risk(self, q) -> web.Response:
        sym = q.get("symbol")
        return web.json_response([self._position_json(s, side) for (s, side), p in self.pos.items()
                                  if (sym is None or s == sym) and p[0] > 0])

    def _account(self, q) -> web.Response:
        upnl = sum(float(self._position_json(s, side)["unRealizedProfit"]) for (s, side) in self.pos)
        avail = self._available()
        w = self.wallet
        asset = {"asset": "USDT", "walletBalance": f"{w:.8f}", "unrealizedProfit": f"{upnl:.8f}",
                 "marginBalance": f"{w + upnl:.8f}", "maintMargin": "0", "initialMargin": "0",
                 "positionInitialMargin": "0", "openOrderInitialMargin": "0", "crossWalletBalance": f"{w:.8f}",
                 "crossUnPnl": "0", "availableBalance": f"{avail:.8f}", "maxWithdrawAmount": f"{avail:.8f}",
                 "updateTime": self._now()}
        return web.json_response({
            "totalInitialMargin": "0", "totalMaintMargin": "0", "totalWalletBalance": f"{w:.8f}",
            "totalUnrealizedProfit": f"{upnl:.8f}", "totalMarginBalance": f"{w + upnl:.8f}",
            "totalPositionInitialMargin": "0", "totalOpenOrderInitialMargin": "0",
            "totalCrossWalletBalance": f"{w:.8f}", "totalCrossUnPnl": "0", "availableBalance": f"{avail:.8f}",
            "maxWithdrawAmount": f"{avail:.8f}",
            "assets": [asset], "positions": [],
        })

    def _leverage_bracket(self, q) -> web.Response:
        brackets = [{"bracket": 1, "initialLeverage": 125, "notionalCap": 300_000, "notionalFloor": 0,
                     "maintMarginRatio": MMR, "cum": 0.0}]
        return web.json_response([{"symbol": s, "notionalCoef": 1.0, "brackets": brackets} for s in self.candles])

    def _get_dual(self, q) -> web.Response:
        return web.json_response({"dualSidePosition": self.hedge})

    def _set_dual(self, q) -> web.Response:
        want = q.get("dualSidePosition") == "true"
        if want == self.hedge:
            return _err(-4059, "No need to change position side.")
        busy = [x for x in [*self.orders.values(), *self.algos.values()] if x["status"] == "NEW"]
        if busy or any(p[0] > 0 for p in self.pos.values()):
            return _err(-4068, "Position side cannot be changed if there exists position.")
        self.hedge = want
        self.account_changes.append("position mode")
        return web.json_response({"code": 200, "msg": "success"})

    def _set_margin_type(self, q) -> web.Response:
        sym, want = q.get("symbol", ""), q.get("marginType", "")
        if sym not in self.candles:
            return _err(-1121, "Invalid symbol.")
        if self.margin_type[sym] == want:
            return _err(-4046, "No need to change margin type.")
        self.margin_type[sym] = want
        self.account_changes.append("margin type")
        return web.json_response({"code": 200, "msg": "success"})

    def _set_leverage(self, q) -> web.Response:
        sym = q.get("symbol", "")
        if sym not in self.candles:
            return _err(-1121, "Invalid symbol.")
        self.leverage[sym] = int(q["leverage"])
        self.account_changes.append("leverage")
        return web.json_response({"leverage": self.leverage[sym], "maxNotionalValue": "1000000", "symbol": sym})

    # -- market data ---------------------------------------------------------------------------
    def _exchange_info(self, q) -> web.Response:
        symbols = [_contract_info(s, s[:-4], s[-4:], self.order_types) for s in self.candles]
        return web.json_response({"timezone": "UTC", "serverTime": self._now(), "futuresType": "U_MARGINED",
                                  "rateLimits": [], "exchangeFilters": [],
                                  "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
                                  "symbols": symbols})

    def _user_trades(self, q) -> web.Response:
        """GET /fapi/v1/userTrades (Account Trade List, USER_DATA): the trades of one ``orderId``,
        each with its commission (in USDT) and whether the order was the maker."""
        symbol, oid = q.get("symbol", ""), int(q.get("orderId", -1))
        o = self.orders.get(oid)
        rows = [f for f in self.fills if f.get("order") == oid] if o is not None and o["symbol"] == symbol else []
        return web.json_response([
            {"buyer": f["side"] == "BUY", "commission": f"{f['fee']:.8f}", "commissionAsset": "USDT", "id": f["id"],
             "maker": f["maker"], "orderId": oid, "price": f"{f['price']:.8f}", "qty": f"{f['qty']:.8f}",
             "quoteQty": f"{f['price'] * f['qty']:.8f}", "realizedPnl": "0", "side": f["side"],
             "positionSide": f["position"], "symbol": symbol, "time": f["time"]} for f in rows])

    def _income(self, q) -> web.Response:
        """GET /fapi/v1/income (Get Income History, USER_DATA): the account's entries of one
        ``symbol`` and ``incomeType``, ``startTime`` and ``endTime`` inclusive, oldest first,
        at most ``limit`` (default 100, max 1000) counted from ``startTime``; without either
        time, the last 7 days."""
        hi = int(q.get("endTime", self._now()))
        lo = int(q.get("startTime", hi - 7 * 86_400_000 if "endTime" in q else self._now() - 7 * 86_400_000))
        limit = min(int(q.get("limit", 100)), 1000)
        with self._lock:
            rows = [e for e in self.income if lo <= e["time"] <= hi
                    and q.get("symbol", e["symbol"]) == e["symbol"]
                    and q.get("incomeType", e["incomeType"]) == e["incomeType"]]
        return web.json_response(rows[:limit])

    def _funding_rate(self, q) -> web.Response:
        lo = int(q.get("startTime", 0))
        hi = int(q.get("endTime", self._now()))
        limit = min(int(q.get("limit", 100)), 1000)
        rows = [(t, r) for t, r in self.funding if lo <= t <= min(hi, self._now())][:limit]
        return web.json_response([{"symbol": q.get("symbol", ""), "fundingTime": t, "fundingRate": f"{r:.8f}",
                                   "markPrice": ""} for t, r in rows])

    def _order_update(self, o: dict) -> dict:
        """Binance futures' ORDER_TRADE_UPDATE, as the listenKey user-data stream sends it."""
        execution = {"NEW": "NEW", "FILLED": "TRADE", "CANCELED": "CANCELED"}.get(o["status"], o["status"])
        done = o["executed"] if execution == "TRADE" else 0.0
        fee = o["quote_qty"] * (self.maker_fee if o["type"] == "LIMIT" else self.taker_fee) if done else 0.0
        return {"e": "ORDER_TRADE_UPDATE", "E": o["update"], "T": o["update"], "o": {
            "s": o["symbol"], "c": o["cid"], "S": o["side"], "o": o["type"], "f": "GTC", "q": f"{o['qty']:.3f}",
            "p": f"{o['price']:.2f}", "ap": f"{o.get('avg', 0.0):.8f}", "sp": f"{o.get('stop', 0.0):.2f}",
            "x": execution, "X": o["status"], "i": o["id"], "l": f"{done:.3f}", "z": f"{o['executed']:.3f}",
            "L": f"{o.get('avg', 0.0) if done else 0.0:.8f}", "N": "USDT", "n": f"{fee:.8f}", "T": o["update"],
            "t": 0, "b": "0", "a": "0", "m": o["type"] == "LIMIT", "R": not self._opens(o), "wt": "CONTRACT_PRICE",
            "ot": o.get("orig_type", o["type"]), "ps": o["position"], "cp": False, "rp": "0", "pP": False,
            "si": 0, "ss": 0, "V": "NONE", "pm": "NONE", "gtd": 0}}

    def _new_listen_key(self, q) -> web.Response:
        key = secrets.token_hex(16)
        self.listen_keys.add(key)
        return web.json_response({"listenKey": key})

    def _keep_listen_key(self, q) -> web.Response:
        return web.json_response({})

    async def _ws_user(self, request: web.Request) -> web.WebSocketResponse:
        """The user-data stream of a listenKey."""
        if request.query.get("listenKey") not in self.listen_keys:
            return web.json_response({"code": -1125, "msg": "This listenKey does not exist."}, status=400)

        async def on_text(message, queue):
            if message is None:
                self._subscribe_user(queue)
        return await self._socket(request, on_text)

    def stream_routes(self) -> list[tuple]:
        return [("/market/ws/{stream}", self._ws_market), ("/private/ws", self._ws_user)]

    def routes(self) -> list[tuple]:
        return [
            ("POST", "/fapi/v1/listenKey", self._new_listen_key, False),
            ("PUT", "/fapi/v1/listenKey", self._keep_listen_key, False),
            ("GET", "/fapi/v1/exchangeInfo", self._exchange_info, False),
            ("GET", "/fapi/v1/klines", self._klines, False),
            ("GET", "/fapi/v1/time", self._time, False),
            ("GET", "/fapi/v1/fundingRate", self._funding_rate, False),
            ("GET", "/fapi/v1/leverageBracket", self._leverage_bracket, True),
            ("GET", "/fapi/v1/positionSide/dual", self._get_dual, True),
            ("POST", "/fapi/v1/positionSide/dual", self._set_dual, True),
            ("POST", "/fapi/v1/marginType", self._set_margin_type, True),
            ("POST", "/fapi/v1/leverage", self._set_leverage, True),
            ("POST", "/fapi/v1/order", self._place, True),
            ("GET", "/fapi/v1/order", self._query, True),
            ("DELETE", "/fapi/v1/order", self._cancel, True),
            ("GET", "/fapi/v1/openOrders", self._open_orders, True),
            ("GET", "/fapi/v1/userTrades", self._user_trades, True),
            ("GET", "/fapi/v1/income", self._income, True),
            ("POST", "/fapi/v1/algoOrder", self._place_algo, True),
            ("GET", "/fapi/v1/algoOrder", self._query_algo, True),
            ("DELETE", "/fapi/v1/algoOrder", self._cancel_algo, True),
            ("GET", "/fapi/v1/openAlgoOrders", self._open_algos, True),
            ("GET", "/fapi/v3/positionRisk", self._position_risk, True),
            ("GET", "/fapi/v3/account", self._account, True),
        ]
