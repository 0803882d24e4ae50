"""What a trader sends to the exchange: at each close, the orders its strategy wants and we have
not sent, through the risk gate, after cancelling ours it no longer wants (``converge``); the
backoff of a refused order; the risk gate told what the system holds and has resting; cancel
and cancel-all. A part of ``engine.runtime.trader.Trader``, on its state.
"""

from __future__ import annotations

import asyncio
import time

from engine.exchange import base
from engine.risk import DENY, SIMULATE, Market, OrderIntent
from engine.runtime import lifecycle

STOP_REFUSED = "a stop was refused: no new openings until it is placed"
BACKOFF_CAP = 64  # candles: the longest wait before a refused order is tried again
REFUSALS_TO_PAUSE = 4  # refusals in a row of one order that pause the system
SAVE_EVERY_SECONDS = 60.0  # a candle that changed no order is saved with the next that does, or after this


async def _breathe(i: int, every: int = 8) -> None:
    """Let the event loop run other work every few orders: a paper exchange answers without
    waiting, and a grid of 40 orders laid in one go would hold the loop (and the GUI on it)."""
    if i % every == every - 1:
        await asyncio.sleep(0)


def account_value(balance: base.Balance, quote: str, prices: dict[str, float]) -> float:
    """What an account holds, in quote: the quote plus each traded coin at its last price."""
    return balance.total.get(quote, 0.0) + sum(balance.total.get(b, 0.0) * p for b, p in prices.items())


class OrderSending:
    async def converge(self, bar: int, close: float, t0: float | None = None) -> None:
        """Make the exchange hold what the strategy wants: cancel ours it no longer wants,
        send (through the risk gate) what it wants and we have not sent. Cancels go first so
        that the funds they free are there for the new orders. One at a time with cancel-all:
        the user's cancel waits for orders already on their way, and cancels them too."""
        async with self._orders_lock:
            await self._converge(bar, close, t0)

    async def _converge(self, bar: int, close: float, t0: float | None) -> None:
        sym = self.cfg.symbol
        desired = self.strategy.desired(close)
        live = {o.key: o for o in self.book.live()}
        want = {}
        for d in desired:  # an order keeps its id while it works; a new one takes the key's next attempt
            o = live.get(d.key)
            if o is not None and o.state == lifecycle.PENDING_CANCEL:
                continue  # its cancel is not confirmed: nothing new for its key until it is (no double order)
            want[o.cid if o is not None else lifecycle.client_order_id(self.cfg.id, d.level, d.key,
                                                                self.attempts.get(d.key, 0))] = d
        keys = {d.key for d in desired}
        self.attempts = {k: v for k, v in self.attempts.items() if k in keys}
        self.refusals = {k: v for k, v in self.refusals.items() if k in keys}
        to_cancel = [o for o in self.book.live() if o.cid not in want and o.state in (lifecycle.OPEN, lifecycle.PARTIAL,
                                                                                      lifecycle.PENDING_CANCEL)]
        for o in self.book.in_state(lifecycle.NEW):
            if o.cid not in want:
                self.book.move(o.cid, lifecycle.REJECTED, "no longer wanted")
        for i, o in enumerate(to_cancel):  # first: what they hold is what the new orders need
            await _breathe(i)
            await self.cancel(o, "cancel: the grid no longer wants it")
        market = Market(last=close, min_notional=self.rules.min_notional)
        unsent = [d for cid,
                  d in want.items() if cid not in self.book.orders or self.book.orders[cid].state == lifecycle.NEW]
        opening = not self.paper and any(not d.reduces for d in unsent)  # (the capital rule measures only then)
        balance = None
        if self.risk.portfolio(self.account) is None or (opening and not self.perpetual):
            balance = await self.adapter.balance()  # one call for both measures
        if self.risk.portfolio(self.account) is None:  # the first orders in a live account: value it
            self.risk.set_portfolio(self.account, account_value(balance, self.rules.quote, {self.rules.base: close}))
        exposure = self._report_exposure(close)
        if opening:
            self._measure_capital(close, balance)
        batch: list[lifecycle.TrackedOrder] = []
        paused = False  # the gate pauses openings: ask once a candle, and send what reduces
        for i, (cid, d) in enumerate(want.items()):
            await _breathe(i)
            o = self.book.orders.get(cid)
            if (o is not None and o.state != lifecycle.NEW) or (paused and not d.reduces):
                continue
            refused = self.refusals.get(d.key)
            if refused and bar < refused[1]:
                continue  # refused before: waits out its backoff
            price = self.rules.round_price(d.price, d.side) if d.type in ("limit", "stop") else d.price
            taker = self._crosses(d.type, d.side, price, close)
            qty = self._order_qty(d, taker)
            intent = OrderIntent(self.cfg.name, sym, d.side, price, qty, reduces=d.reduces, client_order_id=cid,
                                 type=d.type)
            decision = self.risk.check(intent, market)
            if decision.action == DENY or (decision.action == SIMULATE and not self.paper):
                if decision.rule in ("kill_switch", "paused", "held", "dry_run"):
                    self.status_note = decision.reason
                    if decision.rule != "paused":
                        break  # the same answer for every order: ask once a candle
                    paused = True  # (a take-profit or a stop the grid wants still goes out)
                continue
            why = self.rules.check(price, qty)
            if why:
                self._refused(d.key, cid, f"not sent: {why}", bar, d.type == "stop")
                continue
            if not d.reduces:  # the next order is judged with this one counted
                exposure += intent.notional
                self.risk.set_exposure(sym, exposure, self.cfg.name)
                if not self.perpetual:
                    self.risk.commit(self.cfg.name, intent.notional)
            if o is None:
                o = self.book.add(lifecycle.TrackedOrder(cid, d.key, d.side, d.type, price, qty, d.level, d.role,
                                                         bar=bar, position=d.position, reduces=d.reduces,
                                                         taker=taker))
            batch.append(o)
        if batch:
            for o in batch:
                self.book.move(o.cid, lifecycle.SUBMITTED, "sending")
                self.attempts[o.key] = max(self.attempts.get(o.key, 0),
                                           lifecycle.attempt_of(o.cid) + 1)  # this id is spent
            if not self.paper:  # (a paper exchange's orders are saved in the same file as ours)
                await self._save()  # write-ahead: SUBMITTED is on disk before anything goes out
            reqs = [base.OrderRequest(sym, o.side, o.type, o.qty, o.price, o.cid, o.position) for o in batch]
            results = await self.adapter.place_many(reqs)
            if t0 is not None:
                self.latency.append(time.perf_counter() - t0)
            for i, (o, res) in enumerate(zip(batch, results, strict=True)):
                await _breathe(i)
                if isinstance(res, base.OrderRejected):
                    self.book.move(o.cid, lifecycle.REJECTED, str(res))
                    self._refused(o.key, o.cid, str(res), bar, o.type == "stop")
                elif isinstance(res, base.ExchangeError):
                    self._log("order_unknown", cid=o.cid, reason=str(res))  # resolved by the next sync
                else:
                    self.refusals.pop(o.key, None)
                    self._log("order_placed", cid=o.cid, side=o.side, price=o.price, qty=o.qty)
                    # an order that would immediately match trades at once (a buy above the market),
                    # as taker, and the answer says so; one that rests trades later as maker. Its
                    # fill is booked now, as of the candle forming
                    if o.type == "limit":
                        o.taker = res.filled > 0
                    self._book(o, res, bar + 1, "filled on arrival")
        status = self.risk.status(self.cfg.name)
        if status.reason.startswith(STOP_REFUSED) and not any(v[3] for v in self.refusals.values()):
            self.risk.resume(self.cfg.name)  # every stop the grid wants is placed again (or no longer wanted)
        self.book.prune()
        self._report_exposure(close)
        # A candle that changed no order (no fill, nothing sent or cancelled) is saved with the
        # next one that does, or within a minute: after a crash the candles since are replayed
        # through the strategy, which makes the same decisions on them.
        if self.book.changes != self._saved[0] or time.monotonic() - self._saved[1] > SAVE_EVERY_SECONDS:
            await self._save()

    def _order_qty(self, d, taker: bool) -> float:
        """The quantity to send for the strategy's order ``d``. Where the exchange takes a buy's
        commission from the coins bought (Binance spot), a spot buy asks for enough more (up to
        the next lot) that what it leaves in the account covers the level's sell; what it leaves
        beyond is booked as leftover inventory (``settle``)."""
        if d.side == "buy" and self.rules.fee_in_received and not self.perpetual and not d.reduces:
            p = self.strategy.params
            rate = p.taker_fee if taker or d.type != "limit" else p.fee
            return self.rules.round_qty(d.qty / (1.0 - rate), up=True)
        return self.rules.round_qty(d.qty)

    def _crosses(self, otype: str, side: str, price: float, close: float) -> bool:
        """A live limit order priced through the market (a buy at or above the last trade) trades
        at once as taker. (A paper exchange fills it at the next open at the maker fee, as the
        backtest does: GRID_SEMANTICS.md.)"""
        return not self.paper and otype == "limit" and (price >= close if side == "buy" else price <= close)

    def _refused(self, key: int, cid: str, reason: str, bar: int, stop: bool = False) -> None:
        """An order refused (by the exchange, or by the market's rules before sending) is not
        tried again at the next candle: it waits 1, 2, 4... candles (up to BACKOFF_CAP), the
        reason in the system's status; refused REFUSALS_TO_PAUSE times in a row, it pauses the
        system's openings, in red, until the user switches it off and on. A refused stop pauses
        them at once, until every stop the grid wants is placed: a position without its stop
        may not grow."""
        n = (self.refusals.get(key) or (0,))[0] + 1
        wait = min(2 ** (n - 1), BACKOFF_CAP)
        self.refusals[key] = [n, bar + wait, reason, stop]
        self._log("order_refused", cid=cid, reason=reason, times=n, retry_in_candles=wait)
        self.status_note = f"order refused ({reason}); tried again in {wait} candle(s)"
        status = self.risk.status(self.cfg.name)
        if n >= REFUSALS_TO_PAUSE and (not status.paused or status.reason.startswith(STOP_REFUSED)):
            self.risk.pause(self.cfg.name, f"orders refused {n} times in a row: {reason} (switch the system off "
                                           "and on to resume)")
            self._log("system_paused", reason=self.risk.status(self.cfg.name).reason)
        elif stop and not status.paused:
            self.risk.pause(self.cfg.name, f"{STOP_REFUSED}: {reason}")
            self._log("system_paused", reason=self.risk.status(self.cfg.name).reason)

    def _measure_capital(self, close: float, balance: base.Balance | None) -> None:
        """The capital rule's measure, from the exchange: a spot system holds the account's coins
        less what was not its own when this process first looked (its books' position then
        aside), plus its resting buys, against its equity; a perpetual, the positions the
        exchange reported at the last sync (the books follow them), against its equity times
        its leverage. Where the books hold more, the books count."""
        books = self.strategy.books(close)
        if self.perpetual:
            allowance = books["equity"] * float(self.strategy.cfg.leverage)
            committed = books["exposure"]
        else:
            coins = balance.total.get(self.rules.base, 0.0)
            if self._not_ours is None:
                self._not_ours = coins - books["position"]
            held = max(coins - self._not_ours, books["position"]) * close
            allowance, committed = books["equity"], held + self._resting()
        self.risk.set_capital(self.cfg.name, allowance, committed)

    def _resting(self) -> float:
        """What this system's resting openings would add to what it holds, in quote."""
        return sum(o.price * (o.qty - o.filled) for o in self.book.live() if not o.reduces)

    def _unbooked(self) -> float:
        """The part of its resting openings the exchange has filled, in quote: the books take it
        when the order ends (filled or cancelled), the exchange holds it now."""
        return sum(o.price * o.filled for o in self.book.live() if not o.reduces)

    def _report_exposure(self, close: float) -> float:
        """Tell the risk gate what this system holds and has resting to add to it, in quote:
        its books, what its resting openings filled that the books do not hold yet, and what
        they would still add."""
        held = self.strategy.books(close)["exposure"] if self.strategy.started else 0.0
        resting = self._resting() + self._unbooked()
        self.risk.set_exposure(self.cfg.symbol, held + resting, self.cfg.name)
        return held + resting

    async def cancel(self, o: lifecycle.TrackedOrder, note: str) -> None:
        """Ask the exchange to cancel ``o`` (PENDING_CANCEL until it answers; an order whose
        cancel failed stays so and is asked again at the next candle)."""
        if o.state != lifecycle.PENDING_CANCEL:
            self.book.move(o.cid, lifecycle.PENDING_CANCEL, note)
        try:
            r = await self.adapter.cancel(self.cfg.symbol, base.OrderReport(
                o.exchange_id, o.cid, self.cfg.symbol, o.side, o.type, o.price, o.qty, 0, 0, 0, base.OPEN,
                position=o.position))
        except base.OrderNotFound:
            self.book.move(o.cid, lifecycle.CANCELLED, "gone from the exchange (not found)")
            return
        except base.ExchangeError as e:
            self._log("cancel_failed", cid=o.cid, reason=str(e))
            return
        if self._book(o, r, self.strategy.bar if self.strategy is not None else -1, "filled while being cancelled"):
            return
        self._log("order_cancelled", cid=o.cid, reason=note)

    async def cancel_all(self) -> int:
        """The confirmed "cancel all our orders" action: every order of this system."""
        n = 0
        async with self._orders_lock:
            for o in self.book.in_state(*lifecycle.WORKING):
                await self.cancel(o, "cancel: cancel-all requested")
                n += 1
        self.book.prune()
        await self._save()
        return n
