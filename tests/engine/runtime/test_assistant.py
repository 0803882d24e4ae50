"""The portfolio assistant against a fake Messages endpoint (tests/fake_anthropic.py, its rules
from Anthropic's API reference) and a running runtime: its tools read the desk and run a
backtest, what they return reaches the model, and nothing it may call can trade."""

from __future__ import annotations

import json

import pytest
from fake_anthropic import FakeAnthropic

from engine.data import load_candles
from engine.runtime.assistant import READ_ONLY, TOOLS, Assistant
from engine.sample import SAMPLE_PATH
from engine.strategies.registry import RUNTIME, run_backtest
from tests.engine.runtime.test_api import Runtime, paper

KEY = "sk-ant-test-key"


def script(question, tools):
    if question.startswith("How"):
        return [("tool", "list_systems", {}), ("text", "Your systems: {results}")]
    if question.startswith("Backtest"):
        return [("tool", "run_backtest", {"name": "grid a"}), ("text", "The backtest: {results}")]
    if question.startswith("Cancel"):
        return [("tool", "cancel_all", {}), ("text", "{results}")]
    if question.startswith("Detail"):
        return [("tool", "system_detail", {"name": "nope"}), ("tool", "system_detail", {"name": "grid a", "fills": 3}),
                ("text", "{results}")]
    return [("text", "Hello.")]


@pytest.fixture
def setup(tmp_path):
    fake = FakeAnthropic(KEY, script)
    fake.start()
    rt = Runtime(tmp_path, [paper("grid a"), paper("grid b")], keys=lambda exchange: ("", ""))
    rt.post("/systems/grid a/start")
    rt.wait(lambda: rt.get("/systems/grid a")["bot"] and len(rt.get("/orders", system="grid a")) > 5)
    yield rt, fake
    rt.close()
    fake.stop()


def ask(rt, assistant, question):
    async def go():
        return await assistant.ask(question)

    return rt.on_loop(go())


def test_the_assistant_answers_from_its_tools_and_keeps_the_conversation(setup):
    rt, fake = setup
    a = Assistant(rt.desk, KEY, base_url=fake.url)
    r = ask(rt, a, "How are my systems doing?")
    assert not r.error and r.tools == ["list_systems"]
    listed = json.loads(r.text.removeprefix("Your systems: "))
    assert [s["name"] for s in listed] == ["grid a", "grid b"]
    assert listed[0]["status"] == "ON" and listed[0]["equity"] > 0 and listed[1]["status"] == "OFF"
    first = fake.requests[0]
    assert READ_ONLY in first["system"] and [t["name"] for t in first["tools"]] == [t["name"] for t in TOOLS]
    assert ask(rt, a, "Hi").text == "Hello."
    last = fake.requests[-1]["messages"]  # the conversation so far, then the new question
    assert last[0] == {"role": "user", "content": "How are my systems doing?"} and last[-1]["content"] == "Hi"
    assert [m["role"] for m in last] == ["user", "assistant", "user", "assistant", "user"]


def test_a_backtest_it_runs_is_the_engines_and_details_name_a_wrong_system(setup):
    rt, fake = setup
    a = Assistant(rt.desk, KEY, base_url=fake.url)
    r = ask(rt, a, "Backtest grid a please")
    got = json.loads(r.text.removeprefix("The backtest: "))
    cfg = rt.desk.system("grid a")
    m = run_backtest("spot-grid", load_candles(SAMPLE_PATH),
                     RUNTIME["spot-grid"].config.from_dict(dict(cfg.params, capital=cfg.capital))).metrics
    assert got["total_return"] == pytest.approx(m["total_return"]) and got["fills"] == m["fills"] > 0
    assert got["max_drawdown"] == pytest.approx(m["max_drawdown"])
    r = ask(rt, a, "Detail of my systems")
    assert r.tools == ["system_detail", "system_detail"]
    sent = fake.requests[-1]["messages"]
    wrong = next(c for m in sent if m["role"] == "user" and isinstance(m["content"], list) for c in m["content"]
                 if c.get("is_error"))
    assert wrong["content"] == "no system called 'nope' (there are: grid a, grid b)"
    detail = json.loads(r.text.split(" | ")[1])
    assert detail["capital"] == 10_000.0 and len(detail["last_fills"]) <= 3 and detail["working_orders"]


def test_it_cannot_trade_whatever_it_is_asked_and_a_bad_key_is_said(setup):
    rt, fake = setup
    a = Assistant(rt.desk, KEY, base_url=fake.url)
    r = ask(rt, a, "Cancel all my orders now")
    assert r.tools == ["cancel_all"] and "there is no tool 'cancel_all'" in r.text and READ_ONLY in r.text
    # nothing was cancelled at anyone's asking (the grid's own moves may cancel an order) and it
    # trades on (how many orders rest meanwhile is the market's doing)
    assert rt.get("/logs", event="cancel_all") == []
    assert not [e for e in rt.get("/logs", event="order_cancelled") if "cancel-all" in e["reason"]]
    assert rt.desk.open_order_count("grid a") > 0
    assert not rt.desk.risk.status("grid a").paused and not rt.desk.risk.kill_all
    r = ask(rt, Assistant(rt.desk, "sk-ant-wrong", base_url=fake.url), "How are my systems doing?")
    assert r.error and r.text == "the Anthropic API refused the key (401): check it, or add another"
