"""Notifications and commands on Telegram, against a fake of the Bot API (tests/fake_telegram.py,
its rules from core.telegram.org/bots/api) and a running runtime with the control API's desk:
what the owner is told, what they may do from there, and that no one else may."""

from __future__ import annotations

import asyncio

import pytest
from fake_telegram import FakeTelegram

from engine.runtime.notify import DAY_MS, KILL_REPLY, MAX_TEXT, Telegram
from tests.engine.runtime.test_api import Runtime, paper

TOKEN = "123456:ABC-test-token"
OWNER, STRANGER = 4242, 777


@pytest.fixture
def bot():
    fake = FakeTelegram(TOKEN)
    fake.start()
    yield fake
    fake.stop()


def watch(rt, fake, **kw):
    """A notifier on the runtime's loop, as griddesk serve --telegram-chat has it."""
    stop = asyncio.Event()
    box = {}

    async def make():
        box["t"] = Telegram(rt.desk, TOKEN, OWNER, base_url=fake.url, flush_seconds=0.2, poll_seconds=1, **kw)
        return asyncio.ensure_future(box["t"].run(stop))

    task = rt.on_loop(make())
    return box["t"], stop, task


def ended(rt, stop, task):
    async def end():
        stop.set()
        await task

    rt.on_loop(end())


def test_the_owner_hears_of_fills_pauses_and_the_kill_switch_and_may_only_engage_it(bot, tmp_path):
    rt = Runtime(tmp_path, [paper("grid a")], keys=lambda exchange: ("", ""))
    try:
        tg, stop, task = watch(rt, bot)
        rt.wait(lambda: any("GridDesk is watching 1 system(s)" in t for t in bot.texts(OWNER)))
        rt.post("/systems/grid a/start")
        rt.wait(lambda: any(line.startswith("fill: grid a ") for t in bot.texts(OWNER) for line in t.split("\n")))
        # /status and /profit answer from the desk's rows
        bot.say(OWNER, "/status")
        rt.wait(lambda: any(t.startswith("grid a: ON") for t in bot.texts(OWNER)))
        bot.say(OWNER, "/profit")
        rt.wait(lambda: any(t.startswith("grid a: total ") and "\nall: " in t for t in bot.texts(OWNER)))
        # the daily summary, at the first check of a new UTC day
        rt.loop.call_soon_threadsafe(tg.daily, (tg._last_day + 1) * DAY_MS + 5)
        rt.wait(lambda: any("Daily summary (" in t and "grid a: total " in t for t in bot.texts(OWNER)))
        # someone else is ignored (and logged), whatever they send
        bot.say(STRANGER, "/kill")
        rt.wait(lambda: rt.get("/logs", event="telegram_ignored"))
        assert not rt.desk.risk.kill_all and bot.texts(STRANGER) == []
        # the owner's /kill engages it, as the Risk tab's button does
        bot.say(OWNER, "/kill")
        rt.wait(lambda: KILL_REPLY in bot.texts(OWNER))
        assert rt.desk.risk.kill_all and rt.get("/risk")["kill_all"] is True
        rt.wait(lambda: any("kill switch ON for every system" in t for t in bot.texts(OWNER)))
        bot.say(OWNER, "/release")  # releasing is the desk's
        rt.wait(lambda: any(t.startswith("Not from Telegram") for t in bot.texts(OWNER)))
        assert rt.desk.risk.kill_all
        rt.post("/cancel-all")
        rt.wait(lambda: any("grid a paused: orders cancelled by you" in t for t in bot.texts(OWNER)))
        rt.wait(lambda: any("cancel all (every system): " in t for t in bot.texts(OWNER)))
        ended(rt, stop, task)
        assert task.done() and not task.exception()
    finally:
        rt.close()


def test_flood_control_loses_nothing_and_the_queue_is_bounded(bot, tmp_path):
    rt = Runtime(tmp_path, [paper("grid a")], keys=lambda exchange: ("", ""))
    try:
        tg, stop, task = watch(rt, bot)
        rt.wait(lambda: bot.texts(OWNER))
        bot.flood, bot.retry_after = 2, 1  # 429 twice: the API says to wait a second
        for i in range(30):
            rt.loop.call_soon_threadsafe(tg.say, f"line {i}")
        rt.wait(lambda: sum(t.count("line ") for t in bot.texts(OWNER)) == 30)
        said = [line for t in bot.texts(OWNER) for line in t.split("\n") if line.startswith("line ")]
        assert said == [f"line {i}" for i in range(30)]  # each once, in order
        assert bot.calls.count("sendmessage") >= 3
        # a flood of fills: what does not fit is counted, and every message fits Telegram's limit
        for i in range(5000):
            rt.loop.call_soon_threadsafe(tg.on_event, "order_filled",
                                         {"system": "grid a", "side": "buy", "qty": 0.001, "price": 30_000 + i})
        rt.wait(lambda: any("more fills)" in t for t in bot.texts(OWNER)))
        assert all(len(t) <= MAX_TEXT for t in bot.texts())
        ended(rt, stop, task)
    finally:
        rt.close()


def test_a_position_near_its_liquidation_price_is_warned_of_once(bot, tmp_path):
    from engine.runtime.config import SystemConfig

    perp = SystemConfig(name="perp", symbol="BTC/USDT:USDT", market="perpetual", strategy="adaptive-grid",
                        data="sample", replay_seconds=0.02, params={"leverage": 10.0, "levels": 10})
    rt = Runtime(tmp_path, [perp], keys=lambda exchange: ("", ""))
    try:
        tg, stop, task = watch(rt, bot, liq_warn=0.5)  # (a half of the price: any position at 10x is that near)
        rt.post("/systems/perp/start")
        rt.wait(lambda: any("liquidation price" in t for t in bot.texts(OWNER)), 60)
        said = [line for t in bot.texts(OWNER) for line in t.split("\n") if "liquidation price" in line]
        assert said[0].startswith("‼ perp: the ") and "% from the price" in said[0]

        def check(warn) -> list[str]:
            """The warnings one check queues."""
            n = len(tg.lines)
            tg.liq_warn = warn
            tg.check_liquidation()
            return [line for line in list(tg.lines)[n:] if "liquidation price" in line]

        async def checks():
            """Checks in one step of the loop, where the books stand still (the system trades on
            between steps): None while no position is held."""
            t = rt.runner.traders["perp"]
            books = t.strategy.books(float(t.hist[-1, 3]))
            held = {side for side in ("long", "short") if books.get(f"liq_{side}")}
            if not held:
                return None
            check(0.5)  # (a side opened since the notifier last checked: warned now)
            return held, [check(0.5), check(1e-4), check(0.5)]

        held, (twice, far, again) = rt.wait(lambda: rt.on_loop(checks()), 60)
        assert twice == []  # not again while it stays near
        assert far == []  # now far, as this threshold goes: the warning is re-armed
        assert sorted(line.split("the ")[1].split(" ")[0] for line in again) == sorted(held)  # once a side
        rt.wait(lambda: all(any(line in t for t in bot.texts(OWNER)) for line in again))  # (and they are sent)
        ended(rt, stop, task)
    finally:
        rt.close()


def test_a_token_telegram_refuses_is_said_in_the_log_and_trading_goes_on(tmp_path, bot):
    rt = Runtime(tmp_path, [paper("grid a")], keys=lambda exchange: ("", ""))
    try:
        stop = asyncio.Event()

        async def make():
            t = Telegram(rt.desk, "999:wrong", OWNER, base_url=bot.url, flush_seconds=0.2)
            return asyncio.ensure_future(t.run(stop))

        task = rt.on_loop(make())
        problems = rt.wait(lambda: rt.get("/logs", event="telegram_problem"))
        assert "InvalidToken" in problems[0]["error"] or "Unauthorized" in problems[0]["error"]
        rt.post("/systems/grid a/start")
        rt.wait(lambda: rt.get("/orders", system="grid a"))
        ended(rt, stop, task)
    finally:
        rt.close()
