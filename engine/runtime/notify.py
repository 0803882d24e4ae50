"""Notifications on Telegram, and three commands back.

What is sent (to one chat, the owner's): fills (gathered into one message every few seconds), a
system paused or refused, the kill switch, the circuit breaker, errors and liquidations, a
warning when a position's liquidation price comes within ``liq_warn`` of the price (once, then
again only after it has gone twice as far away), and a daily summary at 00:00 UTC. Commands
from that chat only (anyone else is ignored and logged): /status, /profit, and /kill, which
engages the kill switch; releasing it needs the desktop or the control API.

python-telegram-bot's ``Bot`` does the HTTP (its base URL is settable: the tests run a fake of
the Bot API on 127.0.0.1). Everything here runs on the runtime's loop; the events come from the
event log's listeners, and the commands go through the desk, as the app's buttons do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque

from engine.runtime.desk import Desk

# python-telegram-bot 22 gives durations as numbers and warns that they will be timedeltas: take
# the timedeltas now (its documented opt-in), before it is first imported
os.environ.setdefault("PTB_TIMEDELTA", "1")
MAX_TEXT = 4096  # characters of one message (Bot API sendMessage: text, 1-4096 characters)
MAX_QUEUED = 400  # lines waiting to go; beyond it the oldest fills are counted, not kept
DAY_MS = 86_400_000
KILL_REPLY = ("Kill switch ON: no system opens anything (closing orders still go). Release it at the desk or "
              "through the control API.")
HELP = "Commands: /status (each system), /profit (PnL), /kill (engage the kill switch)."


def _money(x) -> str:
    return "—" if x is None else f"{x:+,.2f}"


class Telegram:
    def __init__(self, desk: Desk, token: str, chat_id: int | str, *, base_url: str = "", liq_warn: float = 0.05,
                 flush_seconds: float = 2.0, poll_seconds: int = 20):
        from telegram import Bot

        self.desk = desk
        self.chat_id = str(chat_id)
        self.bot = Bot(token, **({"base_url": base_url} if base_url else {}))
        self.liq_warn = liq_warn
        self.flush_seconds = flush_seconds
        self.poll_seconds = poll_seconds
        self.lines: deque[str] = deque()
        self.dropped = 0  # fills not kept while the queue was full (said in the next message)
        self.sent = 0
        self.problem = ""  # the last failure to reach Telegram, as said in the event log
        self._warned: set[tuple[str, str]] = set()  # (system, side) warned of its liquidation distance
        self._wake = asyncio.Event()
        self._last_day = int(time.time() * 1000) // DAY_MS
        desk.events.listeners.append(self.on_event)

    # -- what is said ----------------------------------------------------------------------------
    def on_event(self, event: str, f: dict) -> None:
        """An event of the log, as one line to send (or none)."""
        who = f.get("system", "")
        if event == "order_filled":
            line = f"fill: {who} {f.get('side')} {f.get('qty', 0):,.8g} at {f.get('price', 0):,.8g}"
        elif event == "paused":
            line = f"⏸ {who} paused: {f.get('reason')}"
        elif event == "resumed":
            line = f"▶ {who} resumed"
        elif event == "order_refused" and f.get("times") == 1:  # (the first of a run: a pause follows many)
            line = f"⚠ {who}: an order refused: {f.get('reason')}"
        elif event == "kill_switch":
            scope = "every system" if who == "*" else who
            line = f"🛑 kill switch ON for {scope}" if f.get("on") else f"kill switch released for {scope}"
        elif event == "circuit_breaker" and f.get("on"):
            line = f"⚠ {who}: circuit breaker: {f.get('reason')}"
        elif event == "liquidation":
            line = f"‼ {who}: the {f.get('position')} position was liquidated (lost {f.get('lost', 0):,.2f})"
        elif event in ("system_error", "books_mismatch", "position_mismatch"):
            line = f"‼ {who or ', '.join(f.get('systems', []))}: {f.get('error') or event.replace('_', ' ')}"
        elif event == "cancel_all":
            line = f"cancel all ({'every system' if who == '*' else who}): {f.get('cancelled')} order(s) cancelled"
        else:
            return
        self.say(line, fill=event == "order_filled")

    def say(self, line: str, fill: bool = False) -> None:
        if fill and len(self.lines) >= MAX_QUEUED:
            self.dropped += 1
            return
        self.lines.append(line)
        if not fill:
            self._wake.set()  # (fills wait for the next round; the rest goes at once)

    def status_text(self) -> str:
        rows = self.desk.system_rows()
        if not rows:
            return "No systems."
        return "\n".join(f"{r['name']}: {r['status']}" + (f" ({r['reason']})" if r["reason"] else "")
                         + (f"; equity {r['equity']:,.2f}, total {_money(r['total_pnl'])}" if r["bot"] else "")
                         for r in rows)

    def profit_text(self) -> str:
        rows = [r for r in self.desk.system_rows() if r["bot"]]
        if not rows:
            return "No system has started its grid yet."
        lines = [f"{r['name']}: total {_money(r['total_pnl'])} ({r['roi']:+.2%}), grid {_money(r['grid_profit'])}, "
                 f"floating {_money(r['floating'])}, {r['fills']:,} fills" for r in rows]
        total = sum(r["total_pnl"] for r in rows)
        return "\n".join([*lines, f"all: {_money(total)}"])

    def check_liquidation(self) -> None:
        """Warn of a position whose liquidation price is within ``liq_warn`` of the price."""
        for name, t in self.desk.runner.traders.items():
            if t.strategy is None or not t.strategy.started or not len(t.hist):
                continue
            price = float(t.hist[-1, 3])
            books = t.strategy.books(price)
            for side in ("long", "short"):
                liq = books.get(f"liq_{side}")
                key = (name, side)
                if not liq or not price:
                    self._warned.discard(key)
                    continue
                distance = abs(price - liq) / price
                if distance < self.liq_warn and key not in self._warned:
                    self._warned.add(key)
                    self.say(f"‼ {name}: the {side} position's liquidation price {liq:,.2f} is {distance:.1%} from "
                             f"the price {price:,.2f}")
                elif distance > 2 * self.liq_warn:
                    self._warned.discard(key)

    def daily(self, now_ms: int) -> None:
        day = now_ms // DAY_MS
        if day != self._last_day:
            self._last_day = day
            self.say(f"Daily summary ({time.strftime('%Y-%m-%d', time.gmtime(now_ms / 1000))} 00:00 UTC)\n"
                     + self.profit_text())

    # -- the work on the loop --------------------------------------------------------------------
    def _message(self) -> str:
        """The next message: as many waiting lines as fit."""
        if self.dropped:
            self.lines.append(f"(and {self.dropped:,} more fills)")
            self.dropped = 0
        parts: list[str] = []
        size = 0
        while self.lines and size + len(self.lines[0]) + 1 <= MAX_TEXT:
            size += len(self.lines[0]) + 1
            parts.append(self.lines.popleft())
        if not parts and self.lines:  # (one line longer than a message)
            parts.append(self.lines.popleft()[: MAX_TEXT - 1] + "…")
        return "\n".join(parts)

    async def _send(self, text: str) -> bool:
        from telegram.error import RetryAfter

        try:
            await self.bot.send_message(self.chat_id, text)
        except RetryAfter as exc:  # (429: the Bot API says when to come back: parameters.retry_after)
            wait = exc.retry_after  # (a timedelta: PTB_TIMEDELTA, set below)
            await asyncio.sleep(min(wait.total_seconds() if hasattr(wait, "total_seconds") else float(wait), 60))
            return False
        except Exception as exc:  # (TelegramError, OSError, anything: the notifier never dies of a message)
            self._problem(exc)
            return False
        self.sent += 1
        self.problem = ""
        return True

    def _problem(self, exc: Exception) -> None:
        text = f"{type(exc).__name__}: {exc}"
        if text != self.problem:  # (said once, not at every retry)
            self.problem = text
            self.desk.events.log("telegram_problem", error=text)

    async def _sender(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_seconds)
            self._wake.clear()
            self.check_liquidation()
            self.daily(int(time.time() * 1000))
            while self.lines or self.dropped:
                text = self._message()
                if not await self._send(text):
                    self.lines.extendleft(reversed(text.split("\n")))  # (kept, in order, for the next try)
                    await asyncio.sleep(self.flush_seconds)
                    break

    async def _commands(self, stop: asyncio.Event) -> None:
        offset = None
        while not stop.is_set():
            try:
                updates = await self.bot.get_updates(offset=offset, timeout=self.poll_seconds,
                                                     allowed_updates=["message"])
            except Exception as exc:  # (the bot answers again once Telegram does)
                self._problem(exc)
                await asyncio.sleep(self.flush_seconds)
                continue
            for u in updates:
                offset = u.update_id + 1  # (confirmed at the next call: never handled twice)
                m = u.message
                if m is None or not m.text:
                    continue
                if str(m.chat.id) != self.chat_id:
                    self.desk.events.log("telegram_ignored", chat=m.chat.id, text=m.text[:40])
                    continue
                await self._send(self.answer(m.text))

    def answer(self, text: str) -> str:
        command = text.strip().split()[0].split("@")[0].lower() if text.strip() else ""
        if command == "/status":
            return self.status_text()
        if command == "/profit":
            return self.profit_text()
        if command == "/kill":
            self.desk.set_kill(True)
            self.desk.events.log("telegram_kill", chat=self.chat_id)
            return KILL_REPLY
        if command in ("/release", "/resume", "/start_system"):
            return ("Not from Telegram: release the kill switch or start a system at the desk or through the "
                    "control API.")
        return HELP

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: messages out, commands in; what is waiting is sent before it ends. The
        bot's token is checked first (getMe), and again every minute while it is refused or
        Telegram cannot be reached (trading goes on meanwhile; the problem is in the event log)."""
        from telegram.error import TelegramError

        while not stop.is_set():
            try:
                await self.bot.initialize()
                break
            except (TelegramError, OSError) as exc:
                self._problem(exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 60)
        if stop.is_set():
            return
        self.say(f"GridDesk is watching {len(self.desk.systems)} system(s). {HELP}")
        sender = asyncio.ensure_future(self._sender(stop))
        commands = asyncio.ensure_future(self._commands(stop))
        await stop.wait()
        commands.cancel()  # (a long poll would hold the stop for its whole timeout)
        with contextlib.suppress(asyncio.CancelledError):
            await commands
        self._wake.set()
        await sender
        while self.lines and await self._send(self._message()):  # (the last words: a kill, a stop)
            pass
        with contextlib.suppress(TelegramError, OSError):
            await self.bot.shutdown()
