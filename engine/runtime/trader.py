"""One trader per system: closed candle -> on_fill for the fills -> decide -> diff against our
orders -> risk gate -> adapter; the strategy code is the backtest's (its spec's runner).

Crash safety rests on three things:
- client order ids are a function of the decision (system id, level, the order's row in the
  strategy's log), so a decision made again after a restart carries the same id;
- an order is marked SUBMITTED in the state file before it is sent (write-ahead); on start
  every SUBMITTED order is looked up by its id, adopted if the exchange has it, sent again if
  it does not;
- the strategy's state and the order book are saved together in one atomic file, and each
  fill is journaled once (by client order id) before the state that applied it is saved.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import replace
from pathlib import Path

import numpy as np

from engine.data import TIMEFRAMES_MS
from engine.exchange import base
from engine.kernels import adaptive_grid as perp_kernel
from engine.kernels import indicators
from engine.kernels.perp import funding_settlements, tier_file
from engine.risk import PAPER, RiskGate
from engine.runtime import lifecycle
from engine.runtime.config import SystemConfig
from engine.runtime.feed import Feed
from engine.runtime.sending import OrderSending, _breathe
from engine.store import JsonLines, read_json, read_jsonl, write_json_atomic
from engine.strategies.registry import RUNTIME
from engine.strategies.spec import StrategyRunner, trigger_reached
from engine.summary import bot_summary

HISTORY = 2_000  # candles kept for indicators
EQUITY_KEPT = 10_000  # the equity at the last closes, for the control API's sparkline
HOUR_MS = 3_600_000  # funding settlements fall on whole hours
FUNDING_GRACE_MS = 15 * 60_000  # a settlement the exchange's history lacks this long after was not charged
NEVER_REACHED = "never reached the exchange"
ENDED = "ended"  # an order that ended (cancelled, expired) with part of it filled
CATCH_UP_SAVE_SECONDS = 1.0  # a catch-up saves its progress this often (else repeated crashes never catch up)


class StateNotOurs(RuntimeError):
    """A state file that names another system: never resumed, never overwritten."""


class StateUnreadable(StateNotOurs):
    """A state file that is not a system's state GridDesk wrote (a field missing or of the
    wrong kind): never resumed, never overwritten."""


def _as_dict(trade) -> dict:
    """A trade record (a kernel's TRADE_DTYPE row, or a dict) as a dict."""
    return {n: trade[n] for n in trade.dtype.names} if hasattr(trade, "dtype") else dict(trade)


class Trader(OrderSending, Feed):
    """A system's trading: its state, boot, each candle's poll and the fills it brings in here;
    what it sends (engine/runtime/sending.py) and when it works (engine/runtime/feed.py) in its
    parts."""

    def __init__(self, cfg: SystemConfig, adapter, risk: RiskGate, data_dir: str | Path, *, event_log=None,
                 paper: bool | None = None):
        self.cfg = cfg
        self.adapter = adapter
        self.paper = adapter.paper if paper is None else paper
        self.risk = risk
        self.data_dir = Path(data_dir)
        self.state_path = self.data_dir / "state" / "systems" / f"{cfg.slug}.json"
        self.journal_path = self.data_dir / "journal" / f"{cfg.slug}.jsonl"
        self.journal = JsonLines(self.journal_path, fsync=False)  # synced before each state save
        self.events = event_log
        self.book = lifecycle.OrderBook(self.journal, cfg.name)
        self.tf = TIMEFRAMES_MS[cfg.timeframe]
        self.rules: base.MarketRules | None = None
        self.strategy: StrategyRunner | None = None
        self.perpetual = cfg.market == "perpetual"
        self.epoch = -1  # time of bar 0
        self.last_time = -1  # the last candle processed
        self.started_at = -1  # the candle the grid started at
        self.hist = np.zeros((0, 5))  # time, high, low, close, open of recent candles
        self.journaled: set[str] = set()
        self.attempts: dict[int, int] = {}  # order key -> its next attempt: an id once sent is never sent again
        self.refusals: dict[int, list] = {}  # order key -> [refused in a row, the bar it may go again, reason, stop]
        self._not_ours: float | None = None  # live spot: the account's coins that are not this system's
        self.funding_due: dict[int, list[float]] = {}  # settlement ms -> [rate, books' long pay, short pay], live
        self.report: dict = {}  # what the hot boot adopted / found missing / does not own
        self.last_candle_wall = time.monotonic()
        self.status_note = ""
        self.latency: list[float] = []  # seconds from a candle's arrival to its orders sent
        self.equity: deque[tuple[int, float]] = deque(maxlen=EQUITY_KEPT)  # (candle ms, equity) at each close
        self.streaming: dict[str, bool] = {}  # "candles" / "orders": the stream has delivered since it (re)opened
        self._stream_seen: dict[str, str] = {}  # client order id -> the last update its stream reported
        self._streamed: list | None = None  # candles from the stream, a closed one not yet processed
        self._stream_from = 0  # the stream's candles from this time on came on its current connection
        self._wake = asyncio.Event()
        self.feed = "polling"  # how the run loop waits for candles: "stream" or "polling" (REST)
        self._save_lock = asyncio.Lock()
        self._orders_lock = asyncio.Lock()  # converge and cancel-all, one at a time
        self._saved = (-1, 0.0)  # the book's changes and the time at the last save
        risk.set_dry_run(cfg.name, cfg.dry_run)
        # the account the portfolio shares are of: one paper account, or this exchange's (testnet) wallet
        self.account = PAPER if self.paper else " ".join(
            x for x in (cfg.exchange, cfg.market, "testnet" if cfg.sandbox else "", cfg.exchange_url) if x)
        risk.set_account(cfg.name, self.account)

    # -- journal and state -----------------------------------------------------------------------
    def _log(self, event: str, **fields) -> None:
        if self.events is not None:
            self.events.log(event, system=self.cfg.name, **fields)

    async def _save(self) -> None:
        """Write the state file. The snapshot is taken here, on the loop; the write and its
        fsync run in a worker thread (a slow disk must not stall the loop, or the GUI on it),
        one at a time, and the caller waits for them: the write-ahead order is kept."""
        state = self._state()
        self._saved = (self.book.changes, time.monotonic())
        async with self._save_lock:
            await asyncio.get_running_loop().run_in_executor(None, self._write_state, state)

    def _write_state(self, state: dict) -> None:
        # Live, the fills this state has applied are on disk before it is, and it is on disk
        # before an order goes out (a power cut loses nothing). Paper skips the fsyncs: a killed
        # process still loses nothing, and twenty paper systems would spend most of their time
        # waiting on the disk.
        if not self.paper:
            self.journal.sync()
        write_json_atomic(self.state_path, state, durable=not self.paper)

    def _state(self) -> dict:
        return {
            "system": self.cfg.name, "id": self.cfg.id, "epoch": self.epoch, "last_time": self.last_time,
            "started_at": self.started_at,
            "strategy": self.strategy.state() if self.strategy and self.strategy.started else None,
            "orders": [o.to_dict() for o in self.book.live()],
            "attempts": {str(k): v for k, v in self.attempts.items()},
            "refusals": {str(k): v for k, v in self.refusals.items()},
            "funding_due": {str(k): v for k, v in self.funding_due.items()},
            "paper": self.adapter.state() if self.paper else None,
            "summary": self.summary(),
        }

    def _load(self) -> bool:
        loaded = read_json(self.state_path, default={})
        if loaded.problem:
            self._log("state_problem", problem=loaded.problem)
            self.report["problem"] = loaded.problem
        d = loaded.data
        if not self.state_path.exists():
            return False
        if d.get("system", self.cfg.name) != self.cfg.name or d.get("id", self.cfg.id) != self.cfg.id:
            raise StateNotOurs(f"{self.state_path}: the state of system {d.get('system')!r} (id {d.get('id')!r}), "
                               f"not of {self.cfg.name!r} (id {self.cfg.id!r}): left untouched")
        try:
            return self._restore(d)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            field = f"{exc.args[0]}: missing" if isinstance(exc, KeyError) else str(exc)
            raise StateUnreadable(f"{self.state_path}: not a state GridDesk can resume ({field}); left untouched: "
                                  "move it away to start the system afresh (its orders on the exchange are "
                                  "adopted or left alone, never lost)") from None

    def _restore(self, d: dict) -> bool:
        self.epoch = int(d["epoch"])
        self.last_time = int(d["last_time"])
        if d.get("strategy"):
            # (a state from before the start was kept: the first candle of its history)
            self.started_at = int(d.get("started_at", self.epoch))
            self.strategy = RUNTIME[self.cfg.strategy].runner.from_state(self._strategy_config(), d["strategy"])
        for od in d.get("orders", []):
            o = lifecycle.TrackedOrder.from_dict(od)
            self.book.orders[o.cid] = o
        self.attempts = {int(k): int(v) for k, v in d.get("attempts", {}).items()}
        self.refusals = {int(k): list(v) for k, v in d.get("refusals", {}).items()}
        self.funding_due = {int(k): [float(x) for x in v] for k, v in d.get("funding_due", {}).items()}
        if self.paper and d.get("paper"):
            self.adapter.restore(d["paper"])
        return True

    def _strategy_config(self):
        params = dict(self.cfg.params)
        params["capital"] = float(self.cfg.capital)
        if self.rules is not None:  # the exchange's rules, not the user's guess
            params.update(tick=self.rules.tick, lot=self.rules.lot, min_notional=self.rules.min_notional)
        if self.cfg.market == "perpetual":  # margined by its symbol's tiers (SystemConfig checked there are)
            params["tiers"] = tier_file(params.get("tiers", ""), self.cfg.symbol)
        return RUNTIME[self.cfg.strategy].config.from_dict(params)

    def _read_journal(self) -> None:
        records, problems = read_jsonl(self.journal_path)
        for p in problems:
            self._log("journal_problem", problem=p)
        self.journaled = {r["cid"] for r in records if r.get("type") == "fill"}

    # -- start (hot boot) ------------------------------------------------------------------------
    async def boot(self) -> dict:
        """Rebuild from the state file and the exchange, cancelling nothing. Returns a report:
        orders adopted, found missing, and ours-by-prefix but unknown (left alone)."""
        self.rules = await self.adapter.market(self.cfg.symbol)
        if self.perpetual:  # hedge mode, isolated margin, leverage
            await self.adapter.prepare(self.cfg.symbol, self._strategy_config().leverage)
        self.risk.system(self.cfg.name).on = True
        self._read_journal()
        resumed = self._load()
        if self.strategy is None:
            self.strategy = RUNTIME[self.cfg.strategy].runner(self._strategy_config())
        if self.last_time >= 0:  # indicators need the candles before the last one processed
            need = 1000  # one page; Wilder's ATR forgets its start after that to the last bit
            rows = await self.adapter.candles(self.cfg.symbol, self.cfg.timeframe,
                                              self.last_time - (need - 1) * self.tf, need)
            self._extend([r for r in rows if r[0] <= self.last_time])
        prefix = f"gd{self.cfg.id}-"
        adopted, unknown = [], []
        # Ours on the exchange but not in the book (the state file came from its backup):
        # adopt what the strategy wants resting, leave the rest alone.
        for r in await self.adapter.open_orders(self.cfg.symbol):
            if not r.client_order_id.startswith(prefix) or r.client_order_id in self.book.orders:
                continue
            parsed = lifecycle.parse_client_order_id(r.client_order_id)
            d = None
            if parsed and self.strategy.started and self.strategy.is_live_key(parsed[1]):
                d = next((x for x in self.strategy.desired(r.price) if x.key == parsed[1]), None)
            if d is None:
                unknown.append(r.client_order_id)
                continue
            self.book.add(lifecycle.TrackedOrder(r.client_order_id, d.key, d.side, d.type, d.price, d.qty, d.level,
                                                 d.role, lifecycle.SUBMITTED, note="adopted on start",
                                                 position=d.position, reduces=d.reduces))
            adopted.append(r.client_order_id)
        # Everything in the book (orders sent just before a crash included) against the
        # exchange: fills since the last save go to the strategy; orders that never arrived
        # go back to NEW and are sent with the next decision.
        fills = await self.sync(self.strategy.bar) if self.strategy.started else 0
        missing = [cid for cid, o in self.book.orders.items() if o.note == NEVER_REACHED]
        lost = [cid for cid, o in self.book.orders.items() if o.note.startswith("gone from the exchange")]
        self.book.prune()
        self.report.update(resumed=resumed, adopted=adopted, missing=missing, unknown=unknown, lost=lost,
                           fills_since_last_run=fills)
        self._log("hot_boot", **{k: v for k, v in self.report.items()})
        await self._save()
        return self.report

    # -- one poll ------------------------------------------------------------------------------
    async def poll(self, streamed: list | None = None) -> int:
        """Process every candle closed since the last one; returns how many. The candles come
        from ``streamed`` (a stream's, the last one forming) when they follow on from the last
        processed without a gap, else from the exchange's REST history."""
        rows = None
        if streamed is not None and self.last_time >= 0:
            rows = [r for r in streamed[:-1] if r[0] > self.last_time]
            steps = np.diff([self.last_time] + [r[0] for r in rows])
            if rows and (rows[0][0] < self._stream_from or (steps != self.tf).any()):
                # candles the stream missed, or held from before it was last opened (their final
                # update may have been lost with the connection): refetched, never skipped
                self._log("stream_gap", after=self.last_time, held=[int(r[0]) for r in rows])
                rows = None
        if rows is None:
            since = self.last_time + self.tf if self.last_time >= 0 else None
            limit = 1000 if since is not None else max(self.strategy.warmup_bars() + 1, 50)
            rows = await self.adapter.candles(self.cfg.symbol, self.cfg.timeframe, since, limit)
            rows = [r for r in rows[:-1] if r[0] > self.last_time]  # the last row is still forming
        if self.last_time < 0 and rows:
            self.epoch = int(rows[0][0])
            self._extend(rows[:-1])  # history; the newest closed candle starts the grid
            rows = rows[-1:]
        # A live system that is behind (after a restart, a stalled feed) replays the candles it
        # missed through the strategy but sends orders only on the newest: the exchange cannot
        # trade the past, and an order priced for an old candle would cross the market of now.
        # The fills made meanwhile are read first. A paper exchange replays each candle in full.
        replay = not self.paper and len(rows) > 1
        if replay:
            self._log("catch_up", candles=len(rows), since=int(rows[0][0]))
        done = 0
        for k, r in enumerate(rows):
            if self.last_time >= 0 and r[0] > self.last_time + self.tf:
                self._log("feed_gap", after=self.last_time, next=int(r[0]))  # the exchange has no candles there
            newest = k == len(rows) - 1
            await self.on_candle(r, send=newest or not replay, sync=k == 0 or newest or not replay)
            done += 1
            if replay and not newest and time.monotonic() - self._saved[1] > CATCH_UP_SAVE_SECONDS:
                await self._save()  # a long catch-up keeps its progress: a crash in it starts from here
        if done:
            self.last_candle_wall = time.monotonic()
        return done

    def _extend(self, rows) -> None:
        if not rows:
            return
        a = np.array([[r[0], r[2], r[3], r[4], r[1]] for r in rows], dtype=float)
        self.hist = np.concatenate([self.hist, a])[-HISTORY:]

    async def on_candle(self, row, send: bool = True, sync: bool = True) -> None:
        """One closed candle: fills in (``sync``), the strategy decides, orders out (``send``)."""
        t0 = time.perf_counter()
        t, o, h, lo, c = int(row[0]), float(row[1]), float(row[2]), float(row[3]), float(row[4])
        prev = self.last_time
        self._extend([row])
        bar = (t - self.epoch) // self.tf
        if self.perpetual:
            rate, count = await self._funding(prev, t, o)
            self.strategy.on_open(bar, t, o, rate, count)
            if self.paper:
                self.adapter.on_candle(t, o, h, lo, c, rate, count)
        elif self.paper:
            self.adapter.on_candle(t, o, h, lo, c)
        if sync:
            await self.sync(bar)
            if self.funding_due:
                await self._settle_funding(t + self.tf)
        now = self.strategy.indicators(self.hist)
        atr = now["atr"]
        self.risk.on_candle(self.cfg.name, 0.0 if math.isnan(atr) else atr, self._trend())
        if not self.strategy.started:
            trigger = float(self.strategy.cfg.trigger_price)
            if not now["ready"] or not trigger_reached(trigger, lo, h):
                if now["ready"]:  # (waiting for its trigger price, as the backtest does: engine.strategies.spec)
                    self.status_note = f"waiting for the price to reach {trigger:,.8g} (its trigger) to lay the grid"
                self.last_time = t
                return
            self.status_note = ""
            self.strategy.start(bar, c, now, self.risk.gate(self.cfg.name, self.cfg.symbol))
            self.started_at = t
            self._log("grid_generated", bar=bar, price=c, levels=self.strategy.levels().tolist())
        else:
            self.strategy.decide(bar, c, now, self.risk.gate(self.cfg.name, self.cfg.symbol))
        for event in self.strategy.last_events:
            self._log("strategy_event", bar=bar, label=event, price=c)
        if self.strategy.note:
            self.status_note = self.strategy.note
        self.last_time = t
        self.equity.append((t, float(self.strategy.books(c)["equity"])))
        if send:
            await self.converge(bar, c, t0)
        else:
            await _breathe(bar, 4)

    async def _funding(self, prev: int, t: int, open_: float) -> tuple[float, int]:
        """The funding rate summed over the settlements in (prev, t] and how many there were:
        the exchange's (or the paper source's) rates, each at its slot (the exchange stamps them
        a few ms late, so a minute either side is asked for), the strategy's default where a
        settlement has none (logged). Settlements fall on whole hours (8h, 4h or 1h apart):
        the exchange is asked only when the bars crossed one. Live, what the books pay for each
        (on the position they hold, at the bar's ``open_``) awaits the exchange's own figure
        (``_settle_funding``)."""
        if prev < 0 or (prev // HOUR_MS + 1) * HOUR_MS > t:
            return 0.0, 0
        rates = await self.adapter.funding_rates(self.cfg.symbol, prev + 1 - 60_000, t + 60_000)
        rt = np.array([r[0] for r in rates], dtype=np.int64)
        rv = np.array([r[1] for r in rates], dtype=float)
        default = float(self.strategy.cfg.funding_rate)
        times, values, defaulted = funding_settlements(prev, t, rt, rv, default)
        for s in times[defaulted]:
            self._log("funding_defaulted", settlement=int(s), rate=default,
                      note="the exchange gave no rate for this settlement: the strategy's default was paid")
        if not self.paper and self.strategy.started:
            q_long, q_short = self.strategy.positions()
            for s, r in zip(times.tolist(), values.tolist(), strict=True):
                self.funding_due[int(s)] = [r, r * q_long * open_, -r * q_short * open_]
        return float(values.sum()), len(times)

    async def _settle_funding(self, now: int) -> None:
        """Book each settlement the books paid (``funding_due``) at what the exchange charged,
        from the account's funding history. The exchange settles on the positions it held at
        the settlement; the books, on theirs when the bar opened, which differ when a fill is
        booked late (one made while the process was down is read after the settlements it
        replays). Each entry goes to the side its sign belongs to (the rate's payer pays); a
        settlement with no entry ``FUNDING_GRACE_MS`` after it was charged nothing."""
        due = self.funding_due
        rows = await self.adapter.funding_paid(self.cfg.symbol, min(due) - 60_000, now)
        by_slot: dict[int, list[float]] = {}
        for when, amount in rows:
            by_slot.setdefault((when + 30_000) // 60_000 * 60_000, []).append(amount)
        for slot in sorted(due):
            got = by_slot.get(slot)
            if got is None and now < slot + FUNDING_GRACE_MS:
                continue
            rate, *booked = due.pop(slot)
            paid = [0.0, 0.0]
            for amount in got or ():
                paid[0 if (amount < 0) == (rate > 0) else 1] -= amount
            for side in (0, 1):
                if abs(paid[side] - booked[side]) > 1e-9:
                    self.strategy.correct_funding(side, paid[side] - booked[side])
            self._log("funding_settled", settlement=slot, rate=rate, paid=sum(paid), booked=sum(booked),
                      correction=sum(paid) - sum(booked))

    def _trend(self) -> str:
        """UP / DOWN when the close is more than one ATR(14) away from its EMA(50)."""
        if len(self.hist) < 51:
            return "NEUTRAL"
        h, lo, c = self.hist[-200:, 1], self.hist[-200:, 2], self.hist[-200:, 3]
        gap = c[-1] - indicators.ema_nb(c, 50)[-1]
        atr = indicators.atr_nb(h, lo, c, 14)[-1]
        return "UP" if gap > atr else "DOWN" if gap < -atr else "NEUTRAL"

    # -- fills ---------------------------------------------------------------------------------
    def _apply_report(self, o: lifecycle.TrackedOrder, r: base.OrderReport) -> str:
        """Move ``o`` along what the exchange reports. Returns FILLED when it is now filled in
        full, ENDED when it ended (cancelled, expired, rejected) with part of it filled, else ''.
        The caller books either through ``_book``."""
        if r.id and not o.exchange_id:
            o.exchange_id = r.id
        if r.status == base.CLOSED or (r.status == base.OPEN and r.filled >= o.qty * (1 - 1e-9) and r.filled > 0):
            self.book.move(o.cid, lifecycle.FILLED, "", filled=r.filled, average=r.average, fee=r.fee)
            return lifecycle.FILLED
        if r.status == base.OPEN:
            if o.state == lifecycle.SUBMITTED:
                self.book.move(o.cid, lifecycle.OPEN, "accepted")
            if r.filled > o.filled:  # (an order being cancelled stays so, with its reason: booked at the end)
                pending = o.state == lifecycle.PENDING_CANCEL
                self.book.move(o.cid, lifecycle.PENDING_CANCEL if pending else lifecycle.PARTIAL,
                               o.note if pending else f"{r.filled:g} of {o.qty:g}", filled=r.filled,
                               average=r.average, fee=r.fee)
            return ""
        state = {base.CANCELED: lifecycle.CANCELLED, base.EXPIRED: lifecycle.EXPIRED,
                 base.REJECTED: lifecycle.REJECTED}[r.status]
        if o.state == lifecycle.NEW:
            self.book.move(o.cid, lifecycle.SUBMITTED, "")
        note = o.note if o.state == lifecycle.PENDING_CANCEL else f"{r.status} by the exchange"
        if r.filled > 0:
            note += f"; {r.filled:g} of {o.qty:g} filled before (booked apart from the grid's levels)"
        self.book.move(o.cid, state, note, filled=r.filled, average=r.average, fee=r.fee)
        return ENDED if r.filled > 0 else ""

    def _book(self, o: lifecycle.TrackedOrder, r: base.OrderReport, bar: int, why: str) -> bool:
        """The one place a report of the exchange is booked, whatever path brought it (the
        answer to a placement, a sync, a cancel, a lookup after a lost response): the order's
        state moves, and what it filled goes to the strategy and the journal, once. True when
        it filled (in full or in part before it ended)."""
        kind = self._apply_report(o, r)
        if kind:
            self._apply_fill(o, r, bar, why, full=kind == lifecycle.FILLED)
        return bool(kind)

    def _apply_fill(self, o: lifecycle.TrackedOrder, r: base.OrderReport, bar: int, why: str,
                    full: bool = True) -> None:
        """A fill to the strategy's books, then the journal. A full fill goes to the grid's
        level; one the grid cannot place (it has moved on from the order), or the part filled of
        an order that then ended, is still the exchange's: the strategy books it apart from its
        levels; a strategy that cannot is told in the log (kept outside its books)."""
        ts = r.timestamp
        t = ts - ts % self.tf if ts else self.last_time + self.tf
        trade = self.strategy.on_fill(o.key, bar, t, r.average) if self.strategy is not None and full else None
        booked = (0.0, 0.0)  # (quantity, fee) the strategy booked
        if trade is not None:
            extra = self.strategy.as_taker(r.filled * r.average) if o.taker else 0.0  # (booked as a maker's)
            booked = (float(trade["qty"]), float(trade["fee"]) + extra)
        if trade is None:
            trade = self.strategy.on_stray_fill(o.position, o.role, "market" if o.taker else o.type, o.reduces,
                                                r.filled, bar, t, r.average)
            if trade is not None:
                booked = (r.filled, float(trade["fee"]))
                self._log("fill_apart_from_grid", cid=o.cid, note=f"{why}; booked apart from its levels")
        if trade is None:
            self._log("fill_outside_grid", cid=o.cid, note=f"{why}; kept outside its books")
        else:  # the books follow what the exchange charged, and where it took it
            value = booked[0] * r.average
            rate = booked[1] / value if value else 0.0  # (the books' fee rate: maker, or taker)
            if r.fee_told:
                fee, fee_base = r.fee, r.fee_base
            elif o.side == "buy" and self.rules.fee_in_received:
                fee, fee_base = 0.0, r.filled * rate
            else:
                fee, fee_base = r.filled * r.average * rate, 0.0
            trade = _as_dict(trade)
            trade.update(self.strategy.settle(o.side, *booked, trade["pnl"], r.filled, r.average, fee, fee_base))
            r = replace(r, fee=fee, fee_base=fee_base)
        self._journal_fill(o, r, bar, trade, partial=not full)

    def _journal_fill(self, o, r: base.OrderReport, bar: int, trade, partial: bool = False) -> None:
        if o.cid in self.journaled:  # (a fill journaled before a crash, booked again into the older state)
            return
        rec = {"type": "fill", "system": self.cfg.name, "cid": o.cid, "side": o.side, "role": o.role,
               "level": o.level, "price": r.average, "qty": r.filled, "fee": r.fee, "bar": bar,
               "time": r.timestamp, "partial": partial}
        if r.fee_base:
            rec["fee_base"] = r.fee_base
        if trade is not None:
            rec.update(pnl=float(trade["pnl"]), cash=float(trade["cash"]), position=float(trade["position"]),
                       grid_fee=float(trade["fee"]))
            if "trades" in trade:  # perpetual: the lots it closed (a stop closes several), by label
                rec["label"] = trade["label"]
                rec["trades"] = [[perp_kernel.LABELS[x["label"]], float(x["price"]), float(x["qty"]), float(x["fee"]),
                                  float(x["pnl"])] for x in trade["trades"]]
        self.journal.append(rec)
        self.journaled.add(o.cid)
        self._log("order_filled", cid=o.cid, side=o.side, price=r.average, qty=r.filled)

    async def sync(self, bar: int) -> int:
        """Ask the exchange about every order we have out; feed full fills to the strategy in
        the order they happened. A perpetual's positions are asked first: a side the exchange
        holds nothing of after every fill is applied was liquidated. Returns the number of fills."""
        live = self.book.in_state(*lifecycle.WORKING)
        held = await self.adapter.positions(self.cfg.symbol) if self.perpetual and self.strategy.started else None
        fills = []
        if live:
            on_book = {r.client_order_id: r for r in await self.adapter.open_orders(self.cfg.symbol)}
            for i, o in enumerate(live):
                await _breathe(i)
                r = on_book.get(o.cid)
                if r is None:
                    try:
                        r = await self.adapter.order(self.cfg.symbol, o.cid)
                    except base.OrderNotFound:
                        if o.state == lifecycle.SUBMITTED:  # (its id is spent: a new one goes out if still wanted)
                            self.book.move(o.cid, lifecycle.REJECTED, NEVER_REACHED)
                        else:
                            self.book.move(o.cid, lifecycle.CANCELLED, "gone from the exchange (not found)")
                            self._log("order_missing", cid=o.cid)
                        continue
                kind = self._apply_report(o, r)
                if kind:
                    fills.append((r.timestamp, o, r, kind))
        fills.sort(key=lambda f: f[0])
        for i, (_, o, r, kind) in enumerate(fills):  # in the order they happened
            await _breathe(i)
            self._apply_fill(o, r, bar, "the grid had moved on", full=kind == lifecycle.FILLED)
        if held is not None and len(self.hist) and self._differs(held):
            # the positions were read before the orders: a fill in between (the exchange does not
            # wait) shows in the orders but not in them. Only positions that stood still while the
            # orders were read are compared; moving ones are compared at the next candle
            again = await self.adapter.positions(self.cfg.symbol)
            if again == held:
                self._check_positions(held, bar)
            else:
                self._log("positions_moving", note="the exchange's positions changed while its orders were read: "
                                                   "compared at the next candle")
        return len(fills)

    def _lot_tolerance(self) -> float:
        return 0.5 * self.rules.lot if self.rules.lot else 1e-12

    def _differs(self, held: dict) -> bool:
        """The exchange's positions differ from the books' by more than half a lot."""
        tolerance = self._lot_tolerance()
        return any(abs(held.get(side, 0.0) - q) > tolerance
                   for side, q in zip(("long", "short"), self.strategy.positions(), strict=True))

    def _check_positions(self, held: dict, bar: int) -> None:
        """After the fills: a side the exchange holds nothing of, whose liquidation price the
        last candle reached, was liquidated. Any other difference (a fill the trader never saw)
        is reported, and the strategy's books follow the exchange at the last close."""
        tolerance = self._lot_tolerance()
        for s, (side, q) in enumerate(zip(("long", "short"), self.strategy.positions(), strict=True)):
            there = held.get(side, 0.0)
            if abs(there - q) <= tolerance:
                continue  # (every candle, both sides: nothing more is worked out unless they differ)
            t = self.last_time + self.tf
            high, low, close = (float(x) for x in self.hist[-1, 1:4])
            liq = self.strategy.books(close)[f"liq_{side}"]
            reached = liq is not None and (low <= liq if side == "long" else high >= liq)
            if there <= 0 and reached:
                trade = self.strategy.liquidated(s, bar, t)
                self.journal.append({"type": "liquidation", "system": self.cfg.name, "position": side,
                                     "qty": q, "bar": bar, "time": t, "pnl": trade["pnl"] if trade else 0.0,
                                     "price": float(trade["trades"]["price"][0]) if trade else None})
                self._log("liquidation", position=side, qty=q, lost=-(trade["pnl"] if trade else 0.0))
                self.status_note = f"the {side} position was liquidated"
                continue
            more = there > q  # the exchange holds more: an opening fill; less: a closing one
            trade = self.strategy.on_stray_fill(side, "", "market", not more, abs(there - q), bar, t, close)
            self._log("position_mismatch", position=side, exchange=there, books=q, price=close,
                      note="the books follow the exchange at the last close")
            self.journal.append({"type": "position_sync", "system": self.cfg.name, "position": side,
                                 "exchange": there, "books": q, "price": close, "bar": bar, "time": t,
                                 "pnl": trade["pnl"] if trade else 0.0})

    def summary(self) -> dict:
        s = self.strategy
        close = float(self.hist[-1, 3]) if len(self.hist) else 0.0
        books = s.books(close) if s and s.started else {}
        return {"system": self.cfg.name, "last_time": self.last_time, "price": close, **books,
                "bot": bot_summary(self.cfg.capital, books, self.started_at, self.last_time) if books else None,
                "open_orders": len(self.book.in_state(lifecycle.OPEN, lifecycle.PARTIAL, lifecycle.PENDING_CANCEL)),
                "feed": self.feed, "refused": len(self.refusals),
                "latency_s": float(np.median(self.latency[-100:])) if self.latency else None,
                "status": self.risk.status(self.cfg.name).label, "note": self.status_note}
