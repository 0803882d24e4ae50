"""The desktop app offscreen: a first-time user's minute (the sample system switched ON, its
grid trading on paper, the kill switch), the Add System dialog's field-by-field refusals, and
screenshots of every tab."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
from PySide6.QtWidgets import QApplication, QDialogButtonBox

from app.controller import ROOT, Controller
from app.main_window import MainWindow
from widgets.market import COLUMNS
from widgets.params_editor import ParamsEditor
from widgets.replay_chart import LINES
from widgets.roles import FOREGROUND
from widgets.system_dialog import SystemDialog


@pytest.fixture
def data_dir(tmp_path):
    cfg = json.loads((ROOT / "cryptos.json").read_text())
    for s in cfg["systems"]:
        s["replay_seconds"] = 0.02
    (tmp_path / "cryptos.json").write_text(json.dumps(cfg))
    return tmp_path


def open_app(data_dir, qtbot):
    """The app's controller and main window on ``data_dir``, shown."""
    controller = Controller(data_dir, refresh_ms=100)
    window = MainWindow(controller)
    qtbot.addWidget(window)
    window.show()
    return controller, window


def fetch_text(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def shoot(widget, path: Path) -> None:
    img = widget.grab()
    assert img.save(str(path)) and path.stat().st_size > 5_000


def check_summary_and_ladder(window, d, row) -> None:
    """The bot's summary in the Market row and beside the Grid chart is the runtime's; the
    ladder lists every resting order from the highest price down, the price among them."""
    from widgets.market import COLUMNS

    bot = d["bot"]
    assert bot is not None and bot["fills"] > 3 and bot["investment"] == 10_000.0
    assert row["total_pnl"] == bot["total_pnl"] and row["roi"] == bot["roi"]
    model = window.market.model
    shown = {key: model.data(model.index(0, c)) for c, (key, _) in enumerate(COLUMNS)}
    assert shown["total_pnl"] == f"{bot['total_pnl']:+,.2f}" and shown["roi"] == f"{bot['roi']:+.2%}"
    assert shown["investment"] == "10,000.00" and shown["round_trips"] == f"{bot['round_trips']:,}"
    assert shown["running_ms"] != "—" and shown["venue"] == "binance spot" and shown["mode"] == "paper, dry-run"
    labels = window.grid.summary_labels
    assert labels["Total PnL"].text() == f"{bot['total_pnl']:+,.2f} ({bot['roi']:+.2%})"
    assert labels["Fills"].text().startswith(f"{bot['fills']:,}")
    assert labels["Levels / orders"].text() == f"{d['levels_count']} / {len(d['ladder'])}"
    ladder = window.grid.ladder_model
    assert ladder.rowCount() == len(d["ladder"]) + 1 > 10
    cells = [[ladder.data(ladder.index(r, c)) for c in range(ladder.columnCount())] for r in range(ladder.rowCount())]
    at = next(r for r, row_ in enumerate(cells) if row_[1] == "price")
    prices = [float(c[2].replace(",", "")) for c in cells]
    assert prices == sorted(prices, reverse=True)  # the price row stands where the price is
    assert all(c[1] == "sell" for c in cells[:at]) and all(c[1] == "buy" for c in cells[at + 1:])
    assert ladder.data(ladder.index(0, 1), FOREGROUND).name() == "#e53935"
    assert ladder.data(ladder.index(len(cells) - 1, 1), FOREGROUND).name() == "#43a047"
    close = float(d["close"][-1])
    assert cells[at + 1][3] == f"{prices[at + 1] / close - 1:+.2%}"


def test_first_minute_switch_on_watch_kill(loop, data_dir, tmp_path, qtbot):
    controller, window = open_app(data_dir, qtbot)
    name = controller.systems[0].name

    async def scenario():
        controller.start()
        metrics = controller.serve_metrics(0)  # (griddesk gui --metrics-port)
        window.market.table.selectRow(0)
        window.market.toggleSystemButton.click()
        for _ in range(200):
            await asyncio.sleep(0.05)
            t = controller.runner.traders.get(name)
            if t is not None and t.strategy.started and t.strategy.books(1.0)["fills"] > 3:
                break
        assert controller.is_on(name)
        row = window.market.model.rows[0]
        assert row["status"] == "ON" and row["trend"] in ("UP", "DOWN", "NEUTRAL") and row["dry_run"]
        window.tabs.setCurrentWidget(window.orders)
        await asyncio.sleep(0.3)
        assert window.orders.model.rowCount() > 10
        shoot(window, tmp_path / "orders.png")
        window.tabs.setCurrentWidget(window.grid)
        await asyncio.sleep(0.2)
        # (no await from here to the checks: the system trades on between awaits)
        window.grid.refresh(force=True)
        window.market.model.refresh()
        d = controller.chart(name)
        check_summary_and_ladder(window, d, window.market.model.rows[0])
        shoot(window, tmp_path / "grid.png")
        # the parity report of the running system: its fills are its backtest's, one for one
        assert window.grid.show_parity()
        for _ in range(200):
            await asyncio.sleep(0.05)
            if window.grid.parity_dialog is not None:
                break
        report = window.grid.parity_dialog.report
        assert report.system == name and report.system_fills == report.matched > 3 and report.differences == []
        assert "0 difference(s)" in window.grid.readout.text()
        shoot(window.grid.parity_dialog, tmp_path / "parity.png")
        window.grid.parity_dialog.close()
        # kill switch: everything stops sending at once
        window.kill_action.trigger()
        assert controller.risk.kill_all and "KILL SWITCH ON" in window.badge.text()
        placed = len(controller.runner.traders[name].book.orders)
        await asyncio.sleep(0.5)
        window.tabs.setCurrentWidget(window.risk)
        await asyncio.sleep(0.2)
        shoot(window, tmp_path / "risk.png")
        assert len(controller.runner.traders[name].book.live()) <= placed
        # the metrics endpoint says so too (the status snapshot is made every 2 s at most)
        url = f"http://127.0.0.1:{metrics.server_port}/metrics"
        for _ in range(60):
            text = await asyncio.get_running_loop().run_in_executor(None, fetch_text, url)
            if "griddesk_kill_switch 1.0" in text:
                break
            await asyncio.sleep(0.1)
        assert "griddesk_kill_switch 1.0" in text and f'griddesk_equity{{system="{name}"}}' in text
        window.tabs.setCurrentWidget(window.logs)
        shoot(window, tmp_path / "logs.png")
        assert "kill_switch" in window.logs.text()
        window.tabs.setCurrentWidget(window.market)
        shoot(window, tmp_path / "market.png")
        await controller.shutdown()

    loop.run_until_complete(scenario())
    shutil.copytree(tmp_path, Path(ROOT / "build" / "screenshots"), dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("logs", "state", "journal", "*.json*", "*.ini"))
    # ON is remembered for the next start; the kill switch too
    saved = json.loads((data_dir / "cryptos.json").read_text())
    assert saved["systems"][0]["enabled"] is True
    bot = json.loads((data_dir / "state" / "bot_state.json").read_text())
    assert bot["kill_all"] is True and bot["killed"] == []
    assert len(list((data_dir / "logs").glob("trading_*.jsonl"))) == 1  # one event log per run


def test_the_control_api_in_the_app_moves_the_apps_own_switches(loop, data_dir, qtbot, tmp_path, file_keyring):
    """griddesk gui --api-port: a request is done on the app's loop by the controller's desk, so
    the window shows it at once (the kill badge, the Market tab's ON) and the token is the
    keyring's (made once); --telegram-chat: the owner's /kill reaches the same switch."""
    import httpx
    from fake_telegram import FakeTelegram

    bot = FakeTelegram("5555:app-test")
    bot.start()
    controller, window = open_app(data_dir, qtbot)
    name = controller.systems[0].name

    async def scenario():
        controller.start()
        server, token = controller.serve_api(0)
        assert token and json.loads(file_keyring.read_text())["griddesk/api:token"] == token
        client = httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=20)
        # (the client on this loop: each answer waits for the loop, which must stay free meanwhile)
        assert (await client.post(f"/systems/{name}/start")).json()["on"] is True
        window.market.model.refresh()
        assert window.market.model.rows[0]["on"] and controller.is_on(name)
        for _ in range(200):
            await asyncio.sleep(0.05)
            if len((await client.get("/orders")).json()) > 10:
                break
        assert (await client.post("/kill")).json()["kill_all"] is True
        assert "KILL SWITCH ON" in window.badge.text()  # (told by the desk: riskChanged)
        assert (await client.post("/kill/release")).json()["kill_all"] is False
        assert "trading allowed" in window.badge.text()
        n = (await client.post("/cancel-all")).json()["cancelled"]
        assert n > 10 and controller.open_order_count() == 0
        window.market.model.refresh()
        assert window.market.model.rows[0]["status"] == "PAUSED"
        await client.aclose()
        # griddesk gui --telegram-chat: the owner's /kill from Telegram is the badge's too
        controller.notify(bot.token, "4242", bot.url)
        bot.say(4242, "/kill")
        for _ in range(200):
            await asyncio.sleep(0.05)
            if controller.risk.kill_all:
                break
        assert "KILL SWITCH ON" in window.badge.text()
        # the Remote menu's switch: off stops serving, on serves again (the token kept, not shown)
        assert not window.api_action.isChecked()  # (served by the controller here, not by the menu)
        window.api_port = 0
        await controller.stop_api()
        window.api_action.setChecked(True)
        assert controller.api_server is not None and not hasattr(window, "token_box")
        window._status()
        assert f"control API at {controller.api_server.url}" in window.statusBar().currentMessage()
        async with httpx.AsyncClient(base_url=controller.api_server.url) as again:
            r = await again.get("/risk", headers={"Authorization": f"Bearer {token}"})
            assert r.json()["kill_all"] is True
        window.api_action.setChecked(False)
        await asyncio.sleep(0.5)
        assert controller.api_server is None
        await controller.shutdown()
        assert controller.api_server is None
        said = bot.texts(4242)
        assert said[0].startswith("GridDesk is watching 2 system(s)") and any("kill switch ON" in t for t in said)
        from app.secrets import api_token

        assert api_token() == (token, False)  # (the next start serves the same one, not shown again)

    try:
        loop.run_until_complete(scenario())
    finally:
        bot.stop()


def test_the_remote_menu_serves_the_control_api_and_shows_a_new_token_once(loop, data_dir, qtbot, file_keyring):
    controller, window = open_app(data_dir, qtbot)
    window.api_port = 0

    async def scenario():
        controller.start()
        window.api_action.setChecked(True)
        token = json.loads(file_keyring.read_text())["griddesk/api:token"]
        assert token in window.token_box.text() and "shown this once" in window.token_box.text()
        assert window.settings.value("api/on", type=bool) is True  # (served again at the next start)
        window.token_box.close()
        await controller.shutdown()

    loop.run_until_complete(scenario())


def test_the_assistant_tab_says_how_to_add_a_key_then_answers_from_its_tools(loop, data_dir, qtbot, tmp_path,
                                                                             file_keyring, monkeypatch):
    from fake_anthropic import FakeAnthropic

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    fake = FakeAnthropic("sk-ant-app", lambda q, tools: [("tool", "list_systems", {}),
                                                         ("tool", "risk_state", {}),
                                                         ("text", "Both systems are OFF; the kill switch is off.")])
    fake.start()
    controller, window = open_app(data_dir, qtbot)
    controller.assistant_url = fake.url
    tab = window.assistant

    async def scenario():
        controller.start()
        window.tabs.setCurrentWidget(tab)
        await asyncio.sleep(0.1)
        assert tab.no_key.isVisible() and "needs an Anthropic API key" in tab.no_key.text()
        assert not tab.question.isEnabled() and tab.add_key.text() == "Add API key…"
        assert "never places, changes or cancels an order" in tab.note.text()
        shoot(window, tmp_path / "assistant-no-key.png")
        controller.store_assistant_key("sk-ant-app")  # (what Add API key… does with what is typed)
        tab.refresh()
        assert not tab.no_key.isVisible() and tab.question.isEnabled()
        tab.question.setText("How are my systems doing?")
        tab.send_button.click()
        assert not tab.question.isEnabled() and "looking it up" in tab.transcript.toPlainText()
        for _ in range(200):
            await asyncio.sleep(0.05)
            if not tab.busy:
                break
        text = tab.transcript.toPlainText()
        assert "You: How are my systems doing?" in text
        assert "Assistant: Both systems are OFF; the kill switch is off." in text
        assert "(looked at: list_systems, risk_state)" in text and "looking it up" not in text
        shoot(window, tmp_path / "assistant.png")
        await controller.shutdown()

    try:
        loop.run_until_complete(scenario())
    finally:
        fake.stop()
    assert len(fake.requests) == 3  # a question, two rounds of tools
    shots = ROOT / "build" / "screenshots"  # (looked at, and the README's)
    shots.mkdir(parents=True, exist_ok=True)
    for name in ("assistant-no-key.png", "assistant.png"):
        shutil.copy2(tmp_path / name, shots / name)


def test_the_sample_perpetual_trades_and_its_chart_shows_entries_and_liquidation(loop, data_dir, qtbot):
    controller, window = open_app(data_dir, qtbot)
    name = next(s.name for s in controller.systems if s.market == "perpetual")

    async def scenario():
        controller.start()
        controller.set_on(name, True)
        for _ in range(300):
            await asyncio.sleep(0.05)
            t = controller.runner.traders.get(name)
            if t is not None and t.strategy.started and max(t.strategy.positions()) > 0:
                break
        t = controller.runner.traders[name]
        window.tabs.setCurrentWidget(window.grid)
        window.grid.system.setCurrentText(name)
        window.grid.refresh(force=True)
        books = t.strategy.books(float(t.hist[-1, 3]))
        row = next(r for r in window.market.model.rows if r["name"] == name)
        assert row["market"] == "perpetual" and row["strategy"] == "adaptive-grid"
        shown = 0
        for side, avg, liq in (("long", "avg_entry", "liq_long"), ("short", "avg_short", "liq_short")):
            held = books[side] > 0
            assert window.grid.marks[avg].isVisible() == held and window.grid.marks[liq].isVisible() == held
            if held:
                shown += 1
                assert window.grid.marks[avg].value() == pytest.approx(books[f"avg_{side}"])
                assert window.grid.marks[liq].value() == pytest.approx(books[f"liq_{side}"])
                # in sight even when the chart's price range does not reach it
                close = float(t.hist[-1, 3])
                liq_at, entry = books[f"liq_{side}"], books[f"avg_{side}"]
                away = "below" if liq_at < close else "above"
                assert f"{LINES[liq][3]} {liq_at:,.2f} ({abs(liq_at / close - 1):.1%} {away} the price)" in \
                    window.grid.books.text()
                # what the position makes: + in profit, - under water (a long 2.6% under water read "+2.6%")
                made = close / entry - 1 if side == "long" else entry / close - 1
                assert f"{LINES[avg][3]} {entry:,.2f} ({side} {made:+.1%})" in window.grid.books.text()
                (_, _), (y0, y1) = window.grid.plot.getViewBox().viewRange()
                edge = window.grid.edges[liq]
                assert edge.isVisible() == (not y0 <= liq_at <= y1)
                if edge.isVisible():
                    assert f"{liq_at:,.2f}" in edge.toPlainText()
                # the side's next stop, on the chart or marked at its edge, beyond the entry
                stop, at = window.grid.marks[f"stop_{side}"], books[f"stop_{side}"]
                assert stop.isVisible() and stop.value() == pytest.approx(at)
                assert (at < entry) if side == "long" else (at > entry)
                assert window.grid.edges[f"stop_{side}"].isVisible() == (not y0 <= at <= y1)
                assert f"{LINES[f'stop_{side}'][3]} {at:,.2f}" in window.grid.books.text()
        assert shown, "no position yet: a weaker test"
        await controller.shutdown()

    loop.run_until_complete(scenario())


def test_logs_tab_filters_by_level_system_and_text_and_pauses(data_dir, qtbot, monkeypatch):
    import widgets.logs
    from widgets.logs import LogsTab

    controller = Controller(data_dir)
    tab = LogsTab(controller)
    qtbot.addWidget(tab)
    a, b = (s.name for s in controller.systems)
    controller.events.log("order_placed", system=a, cid="gd1-one")
    controller.events.log("order_rejected", system=b, cid="gd2-two", reason="Margin is insufficient.")
    controller.events.log("risk_denied", system=a, cid="gd1-three", rule="exposure_symbol")
    assert tab.text() == ""  # shown in batches
    tab.flush()
    shown = tab.text

    def cids():
        return [c for c in ("gd1-one", "gd2-two", "gd1-three") if c in shown()]

    assert cids() == ["gd1-one", "gd2-two", "gd1-three"] and "error    order_rejected" in shown()
    import re

    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  info     order_placed", shown())  # dated, in columns
    assert 'reason="Margin is insufficient."' in shown() and "cid=gd1-one" in shown()
    error = next(r for r in range(tab.lines.rowCount()) if "order_rejected" in tab.lines.lines[r][2])
    assert tab.lines.data(tab.lines.index(error), FOREGROUND).name() == "#e53935"  # the error in red
    assert tab.view.font().fixedPitch() or "mono" in tab.view.font().family().lower()
    controller.events.log("fill", system=a, cid="gd1-fill", price=41813.812345678901)
    tab.flush()
    assert "price=41813.81235 " in shown() + " " and "41813.812345678" not in shown()
    tab.level.setCurrentText("errors")
    assert cids() == ["gd2-two"]
    tab.level.setCurrentText("warnings and errors")
    tab.system.setCurrentText(a)
    assert cids() == ["gd1-three"]
    tab.level.setCurrentText("all levels")
    assert cids() == ["gd1-one", "gd1-three"]
    tab.filter.setText("THREE")
    assert cids() == ["gd1-three"]
    tab.filter.setText("")
    tab.pause.setChecked(True)
    assert tab.pause.text() == "Resume"
    controller.events.log("grid_generated", system=a, cid="gd1-four")
    tab.flush()
    assert "gd1-four" not in shown()  # paused: recorded, not shown
    tab.pause.setChecked(False)
    assert "gd1-four" in shown() and tab.pause.text() == "Pause"

    # the last KEEP kept, in the list and in the view; Ctrl+C copies the lines selected
    monkeypatch.setattr(widgets.logs, "KEEP", 5)
    for i in range(8):
        controller.events.log("order_placed", system=a, cid=f"gd1-n{i}")
    tab.flush()
    assert len(tab.records) == 5 and tab.lines.rowCount() == 5 and "gd1-n3" in shown() and "gd1-n2" not in shown()
    tab.view.selectAll()
    tab.copy()
    assert QApplication.clipboard().text() == shown()


def test_add_system_dialog_refuses_field_by_field(qtbot):
    dlg = SystemDialog(existing={"taken"})
    qtbot.addWidget(dlg)
    ok = dlg.buttons.button(QDialogButtonBox.Ok)
    assert not ok.isEnabled() and dlg.error.text() == "Name: is required" and dlg.preview.text() == ""
    dlg.name.setText("taken")
    assert "exists already" in dlg.error.text() and not ok.isEnabled()
    dlg.name.setText("ETH grid")
    dlg.symbol.setText("ETHUSDT")
    assert dlg.error.text() == "Symbol: 'ETHUSDT' is not a BASE/QUOTE pair" and not ok.isEnabled()
    dlg.symbol.setText("ETH/USDT")
    dlg.spacing.setCurrentText("arithmetic")
    dlg.lower.setValue(3000)
    dlg.upper.setValue(2000)
    # in the form's words, not a setting's or a command-line flag's name
    assert dlg.error.text() == "Upper (0: from the price): upper 2000.0 must be above lower 3000.0"
    assert not ok.isEnabled()
    assert "c62828" in dlg.fields["upper"].styleSheet()  # the field at fault, in red
    dlg.upper.setValue(4000)
    dlg.levels.setValue(11)
    assert ok.isEnabled() and dlg.error.text() == ""
    assert "net profit per grid after fees" in dlg.preview.text() and "to" in dlg.preview.text()
    assert "400.00 per level" not in dlg.preview.text()  # 10,000 / 11 levels
    assert "909.09 per level" in dlg.preview.text()
    assert dlg.preview.text().startswith("at 42,000.00 (assumed: the price of the symbol is not known yet)")
    dlg.capital.setValue(0)  # refused by name (it was clamped to 1 without a word)
    assert dlg.error.text() == "Capital (quote): must be an amount > 0 and at most 1e+12, got 0.0"
    assert not ok.isEnabled()
    assert "c62828" in dlg.fields["capital"].styleSheet()
    dlg.capital.setValue(10_000)
    dlg.levels.setValue(2_000)  # 0.5 a step, 0.0125% of the top level: less than the fees of a round trip
    assert dlg.error.text().startswith("Levels: 2000 levels over the range leave -0.188%") and not ok.isEnabled()
    assert "each trade would lose money" in dlg.error.text()
    dlg.levels.setValue(11)
    assert dlg.fee.suffix() == " %" and dlg.fee.value() == pytest.approx(0.1)  # Binance spot's 0.1 %
    dlg.fee.setValue(0.075)  # typed as a percent (0.1 typed into a fraction was 0.00000 shown, 10% meant)
    # a trigger price: the grid waits for it, and the preview is of the grid laid there
    assert dlg.trigger.text() == "none: lay the grid at once"
    dlg.upper.setValue(0)
    dlg.lower.setValue(0)
    dlg.trigger.setValue(40_000)
    assert dlg.preview.text().startswith("when the price reaches 40,000.00 (now 42,000.00, assumed: the price of "
                                         "the symbol is not known yet): net profit per grid")
    assert dlg.preview.text().endswith("32,000.00 to 48,000.00")  # (±20% of the trigger)
    dlg.lower.setValue(3000)
    dlg.upper.setValue(4000)
    ok.click()
    cfg = dlg.result_config
    assert cfg.name == "ETH grid" and cfg.params["lower"] == 3000 and cfg.dry_run is True
    assert cfg.params["fee"] == pytest.approx(0.00075) and cfg.params["trigger_price"] == 40_000


def test_add_system_dialog_makes_a_perpetual_system(qtbot):
    dlg = SystemDialog(existing=set())
    qtbot.addWidget(dlg)
    dlg.show()
    ok = dlg.buttons.button(QDialogButtonBox.Ok)
    dlg.name.setText("BTC perp")
    dlg.symbol.setText("BTC/USDT")
    dlg.market.setCurrentText("perpetual")
    # the perpetual's strategy, its settings on the form, the spot grid's hidden
    assert dlg.strategy.currentText() == "adaptive-grid" and dlg.symbol.text() == "BTC/USDT:USDT"
    assert dlg.leverage.isVisible() and dlg.order_frac.isVisible() and not dlg.spacing.isVisible()
    assert dlg.levels.value() == 10 and dlg.form.labelForField(dlg.levels).text() == "Levels a side"
    dlg.leverage.setValue(3)
    dlg.order_frac.setValue(0.02)
    assert ok.isEnabled(), dlg.error.text()
    assert "200.00 an order (10 a side), margin 66.67 at 3x" in dlg.preview.text()
    assert "net profit per grid after fees at least 0.510%" in dlg.preview.text()  # 0.5% + two maker rebates
    # at 3x with 10 lots of 200 margin a side at about 42,000 (the assumed price): isolated, BTC's first tier
    # (0.4%): long (Q x 42,000 - 2,000) / (Q x 0.996) with Q = 6,000 / 42,000
    q = 6_000 / 42_000
    liq = (q * 42_000 - 2_000) / (q * 0.996)
    assert f"liquidation near {liq:,.2f} ({liq / 42_000 - 1:+.1%}) with 10 lots long" in dlg.preview.text()
    assert dlg.maker_fee.value() == pytest.approx(-0.005) and dlg.maker_fee.isVisible()  # the rebate, shown
    dlg.stop_m.setValue(0.1)
    dlg.atr_k.setValue(0.0)
    assert ok.isEnabled()  # spacing falls back on its floor
    # the perpetual's other strategy: the long grid, which holds "long only" (not offered) and has its presets
    assert [dlg.strategy.itemText(i) for i in range(dlg.strategy.count())] == ["adaptive-grid", "long-grid",
                                                                               "futures-grid"]
    assert dlg.no_short.isVisible() and not dlg.no_short.isChecked()
    dlg.strategy.setCurrentText("long-grid")
    assert not dlg.no_short.isVisible() and dlg.leverage.isVisible() and "long only" in dlg.preview.text()
    assert dlg.form.labelForField(dlg.levels).text() == "Levels" and "(10 levels)" in dlg.preview.text()  # one side
    dlg.preset.setCurrentText("2x leverage")
    dlg._preset_chosen(dlg.preset.currentIndex())
    assert dlg.leverage.value() == 2 and dlg.stop_m.value() == 3.5  # a preset starts from the defaults
    ok.click()
    cfg = dlg.result_config
    assert (cfg.market, cfg.strategy, cfg.symbol) == ("perpetual", "long-grid", "BTC/USDT:USDT")
    assert cfg.params["no_short"] is True and "spacing" not in cfg.params
    # and back: the spot grid, its settings
    again = SystemDialog(None, cfg, existing=set())
    qtbot.addWidget(again)
    again.show()
    assert again.market.currentText() == "perpetual" and again.strategy.currentText() == "long-grid"
    assert not again.no_short.isVisible() and again.leverage.value() == 2
    again.market.setCurrentText("spot")
    assert again.strategy.currentText() == "spot-grid" and again.symbol.text() == "BTC/USDT"
    assert again.spacing.isVisible() and not again.leverage.isVisible() and "no_short" not in again.params()


def test_add_system_makes_a_futures_grid_with_its_range_stops_and_estimated_liquidation(qtbot, tmp_path):
    from engine.strategies.futures_grid import FuturesGridConfig, estimated_liquidation, grid_lines

    dlg = SystemDialog(existing=set(), reference_price=42_000.0)  # (a known price: the range is checked at it)
    qtbot.addWidget(dlg)
    dlg.show()
    ok = dlg.buttons.button(QDialogButtonBox.Ok)
    dlg.name.setText("BTC futures grid")
    dlg.symbol.setText("BTC/USDT")
    dlg.market.setCurrentText("perpetual")
    dlg.strategy.setCurrentText("futures-grid")
    # its rows: the range, its direction, leverage and stops; not the adaptive grid's nor the spot grid's
    for w in (dlg.direction, dlg.spacing, dlg.lower, dlg.upper, dlg.range_pct, dlg.leverage, dlg.maker_fee,
              dlg.stop_top, dlg.stop_bottom, dlg.stop_loss_pct, dlg.take_profit_pct):
        assert w.isVisible(), w.objectName()
    for w in (dlg.order_frac, dlg.atr_k, dlg.stop_m, dlg.no_short, dlg.trailing, dlg.grid_mode, dlg.fee, dlg.step):
        assert not w.isVisible(), w.objectName()
    dlg.levels.setValue(21)
    dlg.range_pct.setValue(0.1)
    dlg.leverage.setValue(5)
    dlg.direction.setCurrentText("long")
    assert ok.isEnabled(), dlg.error.text()
    f = FuturesGridConfig(direction="long", levels=21, range_pct=0.1, leverage=5.0, spacing=dlg.spacing.currentText())
    lines = grid_lines(f, 42_000.0)
    liq, none = estimated_liquidation(f, "BTC/USDT:USDT", 42_000.0)
    text = dlg.preview.text()
    assert f"long: 21 lines {lines[0]:,.2f} to {lines[-1]:,.2f}, 20 long slots, 0 short; opens 10 slots at market" \
        in text and none is None
    assert f"estimated liquidation long {liq:,.2f} ({liq / 42_000 - 1:+.1%})" in text and liq > lines[0] * 0.7
    assert "2,475.00 a slot, margin 495.00 at 5x" in text  # 10,000 x 5 x 0.99 over 20 slots
    # a stop top below the price: refused in red, by its label
    dlg.stop_top.setValue(41_000.0)
    assert not ok.isEnabled() and dlg.error.text().startswith("Stop top (price; 0: none): 41,000 is not above")
    dlg.stop_top.setValue(46_000.0)
    dlg.stop_loss_pct.setValue(0.2)
    assert ok.isEnabled(), dlg.error.text()
    assert dlg.maker_fee.value() == pytest.approx(0.02)  # its default (the adaptive grid's was never set)
    assert dlg.form.labelForField(dlg.levels).text() == "Levels"
    dlg.grab().save(str(tmp_path / "futures-grid.png"))
    ok.click()
    cfg = dlg.result_config
    assert (cfg.market, cfg.strategy) == ("perpetual", "futures-grid")
    assert {k: cfg.params[k] for k in ("direction", "levels", "range_pct", "leverage", "stop_top", "stop_loss_pct")} \
        == {"direction": "long", "levels": 21, "range_pct": 0.1, "leverage": 5.0, "stop_top": 46_000.0,
            "stop_loss_pct": 0.2}
    assert "order_frac" not in cfg.params and "trailing" not in cfg.params
    again = SystemDialog(None, cfg, existing=set())  # edited: the form shows it as it was made
    qtbot.addWidget(again)
    again.show()
    assert again.strategy.currentText() == "futures-grid" and again.direction.currentText() == "long"
    assert again.levels.value() == 21 and again.range_pct.value() == 0.1 and again.stop_top.value() == 46_000.0
    assert {k: again.params()[k] for k in cfg.params} == cfg.params


def test_app_window_uses_no_exchange_client():
    """Widgets talk to the controller only: nothing under widgets/ imports ccxt or an adapter."""
    for path in (ROOT / "widgets").glob("*.py"):
        text = path.read_text()
        assert "ccxt" not in text and "engine.exchange" not in text, path.name
    assert QApplication is not None


def test_going_live_needs_the_symbol_typed(qtbot, monkeypatch):
    from PySide6.QtWidgets import QInputDialog, QMessageBox

    from engine.runtime.config import SystemConfig

    dlg = SystemDialog(None, SystemConfig(name="s", params={"levels": 10}, data=""))
    qtbot.addWidget(dlg)
    dlg.mode.setCurrentText("live")
    dlg.dry_run.setChecked(False)
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: None)
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("ETH/USDT", True))
    dlg.accept()
    assert dlg.result_config is None and dlg.dry_run.isChecked()  # wrong symbol: stays dry-run
    dlg.dry_run.setChecked(False)
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("btc/usdt", True))
    dlg.accept()
    assert dlg.result_config.mode == "live" and dlg.result_config.dry_run is False


def test_layout_is_restored(data_dir, qtbot):
    """Splitters, column widths and the last tab come back as the user left them."""
    window = MainWindow(Controller(data_dir))
    qtbot.addWidget(window)
    window.resize(1400, 850)
    window.show()
    window.tabs.setCurrentWidget(window.backtest)
    window.backtest.splitter.setSizes([250, 650, 500])
    sizes = window.backtest.splitter.sizes()
    assert sizes[0] < sizes[2]
    window.market.table.horizontalHeader().resizeSection(0, 222)
    # columns the user does not want (the header's menu) stay hidden after a restart
    venue = [key for key, _ in COLUMNS].index("venue")
    window.market.column_actions[venue].setChecked(False)
    assert window.market.table.isColumnHidden(venue) and 0 not in window.market.column_actions
    window.close()
    again = MainWindow(Controller(data_dir))
    qtbot.addWidget(again)
    again.show()
    assert again.tabs.currentWidget() is again.backtest
    # (offscreen, restoreGeometry clamps the window to the 800-pixel virtual screen: the panes
    # after the first take the difference, down to their minimum widths)
    assert again.backtest.splitter.sizes()[0] == sizes[0]
    assert again.market.table.horizontalHeader().sectionSize(0) == 222
    assert again.market.table.isColumnHidden(venue)
    menu = again.market.column_actions[venue].parent()
    menu.aboutToShow.emit()  # (the menu shows what the header holds)
    assert not again.market.column_actions[venue].isChecked()


def test_add_system_imports_the_optimizers_best_settings(qtbot, tmp_path):
    from engine.strategies.errors import ParamError

    best = {"strategy": "spot-grid", "params": {"spacing": "arithmetic", "levels": 17, "range_pct": 0.227,
                                                "trailing": "up", "fee": 0.00075, "atr_period": 21},
            "optimized": {"study": "s", "trial": 3}}
    path = tmp_path / "best.json"
    path.write_text(json.dumps(best))
    dlg = SystemDialog(existing=set())
    qtbot.addWidget(dlg)
    dlg.import_settings(path)
    dlg.name.setText("from-optimizer")
    dlg.symbol.setText("BTC/USDT")
    cfg = dlg.build()
    for k, v in best["params"].items():
        assert cfg.params[k] == pytest.approx(v) if isinstance(v, float) else cfg.params[k] == v
    path.write_text(json.dumps({"strategy": "adaptive-grid", "params": {"levels": 5}}))
    with pytest.raises(ParamError, match="settings of adaptive-grid, not of spot-grid"):
        dlg.import_settings(path)
    assert dlg.levels.value() == 17  # nothing half-applied


def test_add_system_presets_and_every_setting_in_the_backtest_editor(qtbot):
    from PySide6.QtCore import QTimer

    dlg = SystemDialog(existing=set())
    qtbot.addWidget(dlg)
    dlg.name.setText("preset")
    dlg.symbol.setText("BTC/USDT")
    dlg.preset.setCurrentText("Lower-only, ATR")
    dlg.preset.activated.emit(dlg.preset.currentIndex())
    assert dlg.preset.currentText() == "Lower-only, ATR"
    cfg = dlg.build()
    assert cfg.params["mode"] == "lower-only" and cfg.params["spacing"] == "atr" and cfg.params["levels"] == 15
    dlg.levels.setValue(16)
    assert dlg.preset.currentIndex() == 0  # edited: no longer the preset

    seen = []

    def edit():  # "All settings…": a setting the form does not show, in the Backtest tab's editor
        editor = dlg.settings_dialog.findChild(ParamsEditor)
        ok = dlg.settings_dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.Ok)
        try:
            seen.append(editor.widgets["levels"].value())
            editor.widgets["atr_period"].setValue(21)
            editor.widgets["fee"].setText("oops")
            ok.click()
            seen.append((dlg.settings_dialog.isVisible(), editor.error.text()))  # refused by name, kept open
            editor.widgets["fee"].setText("0.00075")
        finally:  # (an error raised here must not leave the modal dialog open for ever)
            ok.click()
            if dlg.settings_dialog.isVisible():
                dlg.settings_dialog.reject()

    QTimer.singleShot(0, edit)
    assert dlg.edit_all()
    assert seen[0] == 16
    assert seen[1][0] and seen[1][1].startswith("Fee (fraction): ") and "not a number" in seen[1][1]
    cfg = dlg.build()
    assert cfg.params["atr_period"] == 21 and cfg.params["fee"] == 0.00075 and cfg.params["levels"] == 16


def test_themes_switch_everything_and_are_kept_with_a_proper_icon(qtbot, tmp_path):
    from PySide6.QtGui import QPalette

    from app.theme import THEMES

    data_dir = tmp_path / "data"
    window = MainWindow(Controller(data_dir))
    qtbot.addWidget(window)
    assert not window.windowIcon().isNull() and window.windowIcon().availableSizes() == []  # SVG: any size
    assert window.theme == "dark" and window.theme_actions["dark"].isChecked()
    app = QApplication.instance()
    assert app.palette().color(QPalette.Window).name() == THEMES["dark"]["window"]
    charts = (window.backtest.chart, window.grid.plot, window.optimizer.history, window.optimizer.scatter)
    for chart in charts:  # every chart built after the theme takes it
        assert chart.backgroundBrush().color().name() == THEMES["dark"]["chart_bg"]
    window.theme_actions["light"].trigger()
    assert window.theme == "light" and app.palette().color(QPalette.Window).name() == THEMES["light"]["window"]
    for chart in charts:
        assert chart.backgroundBrush().color().name() == THEMES["light"]["chart_bg"]
    legend = window.backtest.chart.legend  # readable on white: the chart's colours, not a grey box
    assert legend.brush().color().name() == THEMES["light"]["chart_bg"]
    assert legend.labelTextColor().name() == THEMES["light"]["chart_fg"]
    assert "QTabBar::tab" in app.styleSheet()
    window.close()
    again = MainWindow(Controller(data_dir))
    qtbot.addWidget(again)
    assert again.theme == "light" and again.theme_actions["light"].isChecked()
    again.set_theme("dark")  # leave the default for the tests after this one


def test_grid_chart_draws_the_candles_in_view_merged_when_too_many():
    from widgets.grid_chart import merged_candles

    rng = np.random.default_rng(3)
    n = 10_007
    c = np.cumsum(rng.normal(0, 1, n)) + 1000
    o = np.r_[c[0], c[:-1]]
    h, lo = np.maximum(o, c) + rng.random(n), np.minimum(o, c) - rng.random(n)
    t = np.arange(n, dtype=float) * 60
    x, mo, mh, ml, mc, w = merged_candles(t, o, h, lo, c, 60.0, 5, n, most=1000)
    k = 11  # ceil(10,002 / 1,000)
    assert w == 60.0 * k and len(x) == -(-(n - 5) // k)
    assert mo[0] == o[5] and mh[0] == h[5:5 + k].max() and ml[0] == lo[5:5 + k].min() and mc[0] == c[5 + k - 1]
    assert mc[-1] == c[-1] and mh.max() == h[5:].max() and ml.min() == lo[5:].min()  # no extreme lost
    same = merged_candles(t, o, h, lo, c, 60.0, 100, 300)
    assert np.array_equal(same[1], o[100:300]) and same[5] == 60.0


def test_risk_tab_edits_the_portfolio_shares_and_they_survive_a_restart(data_dir, qtbot):
    window = MainWindow(Controller(data_dir))
    qtbot.addWidget(window)
    tab = window.risk
    lim = window.controller.risk.limits
    assert (lim.max_symbol_share, lim.max_total_share, lim.paper_portfolio) == (0.2, 0.8, 100_000.0)
    tab.refresh_audit()
    assert tab.portfolio.text() == "paper: 100,000.00"
    for name, value in (("max_symbol_share", 0.0), ("max_total_share", 0.5), ("paper_portfolio", 25_000.0)):
        field = tab.limit_fields[name]
        field.setValue(value)
        field.editingFinished.emit()
    assert (lim.max_symbol_share, lim.max_total_share, lim.paper_portfolio) == (float("inf"), 0.5, 25_000.0)
    window.controller.runner.write_views()
    window.close()
    again = Controller(data_dir)  # "none" is kept as none, not the 20% default again
    lim = again.risk.limits
    assert (lim.max_symbol_share, lim.max_total_share, lim.paper_portfolio) == (float("inf"), 0.5, 25_000.0)


def test_add_system_offers_the_exchanges_markets_and_the_keys_dialog_tests_the_connection(loop, data_dir, btc5m,
                                                                                         qtbot):
    """Against the local fake Binance (the real ccxt client): the symbol completes from the
    exchange's markets and a symbol it does not list is refused with the nearest one; an
    exchange that cannot be asked leaves the symbol free. The keys dialog says whether a key is
    stored and tests the connection by the account's balance, never showing a secret."""
    from fake_exchange import FakeBinance

    from widgets.market import KeysDialog

    c = btc5m.slice(0, 100)
    rows = np.c_[c.time, c.open, c.high, c.low, c.close, c.volume]
    fake = FakeBinance({"BTCUSDT": rows, "ETHUSDT": rows}, c.timeframe_ms, keys={"k1": "s1"},
                       balances={"USDT": 1234.5, "BTC": 0.25})
    fake.start()
    stored: dict[str, tuple[str, str]] = {}
    controller = Controller(data_dir, exchange_url=fake.url, keys=lambda ex: stored.get(ex, ("", "")))

    async def until(cond):
        for _ in range(200):
            if cond():
                return True
            await asyncio.sleep(0.05)
        return False

    async def go():
        dlg = SystemDialog(None, symbols=controller.symbols, prices=controller.last_price)
        qtbot.addWidget(dlg)
        assert await until(lambda: dlg.known is not None), dlg.symbol_note.text()
        assert dlg.known == {"BTC/USDT", "ETH/USDT"}
        assert dlg.symbol_note.text() == "2 spot markets on binance: type to search"
        assert dlg.symbol.completer().model().stringList() == ["BTC/USDT", "ETH/USDT"]
        dlg.name.setText("eth grid")
        dlg.symbol.setText("BTC/USDX")
        assert not dlg.buttons.button(QDialogButtonBox.Ok).isEnabled()
        assert dlg.error.text() == "Symbol: binance has no spot market 'BTC/USDX': did you mean BTC/USDT?"
        dlg.symbol.setText("ETH/USDT")
        assert dlg.buttons.button(QDialogButtonBox.Ok).isEnabled()
        # the preview at the symbol's price: the candles the paper system trades, else the exchange's
        sample_close = float((await controller.load_candles("sample")).close[-1])
        assert await until(lambda: "the last close of sample" in dlg.preview.text()), dlg.preview.text()
        assert dlg.preview.text().startswith(f"at {sample_close:,.2f} (the last close of sample)")
        dlg.data.setCurrentText("")
        last = float(c.close[fake.cursor])
        assert await until(lambda: "binance's last price" in dlg.preview.text()), dlg.preview.text()
        assert dlg.preview.text().startswith(f"at {last:,.2f} (binance's last price)")
        dlg.exchange.setCurrentText("nosuchexchange")
        assert await until(lambda: "could not be read" in dlg.symbol_note.text())
        assert "any symbol is accepted" in dlg.symbol_note.text() and dlg.known is None
        dlg.symbol.setText("ANY/THING")  # (any symbol: the exchange is what is wrong)
        assert dlg.error.text().startswith("Exchange: 'nosuchexchange': ccxt has no such exchange")
        assert not dlg.buttons.button(QDialogButtonBox.Ok).isEnabled()

        keys = KeysDialog(controller)
        qtbot.addWidget(keys)
        assert keys.stored.text() == "no key stored for binance"
        keys.test_connection()
        assert await until(keys.test_button.isEnabled)
        assert keys.result.text() == "failed: no API keys for binance: enter them, or store them first"
        keys.key.setText("k1")
        keys.secret.setText("wrong-secret")
        keys.test_connection()
        assert await until(keys.test_button.isEnabled)
        assert keys.result.text().startswith("failed: AuthenticationError") and "not valid" in keys.result.text()
        assert "wrong-secret" not in keys.result.text()
        stored["binance"] = ("k1", "s1")
        keys.key.clear()
        keys.secret.clear()
        keys.show_stored()
        assert keys.stored.text().startswith("a key for binance is stored")
        keys.test_connection()  # with the stored keys
        assert await until(keys.test_button.isEnabled)
        assert keys.result.text() == "connected to binance spot: the account holds USDT 1,234.5, BTC 0.25"

    try:
        loop.run_until_complete(go())
    finally:
        fake.stop()


def test_add_system_suggests_settings_from_the_last_days(loop, data_dir, btc5m, qtbot, tmp_path):
    """Suggest fills the form with the best settings of a walk-forward search on the last days
    of the candles the system would trade: the sample's for a paper system on it, else the
    exchange's (the fake Binance, its real BTC candles moved to end now); the note shows how
    they did on the days no trial saw, and too little history is refused with the reason."""
    import time

    from fake_exchange import FakeBinance

    from engine.data import load_candles
    from engine.optimize.suggest import suggest_settings
    from engine.sample import SAMPLE_PATH

    c = btc5m.slice(0, 12 * 288)  # 12 days
    now = int(time.time() * 1000) // c.timeframe_ms * c.timeframe_ms
    rows = np.c_[c.time + (now - c.time[-1]), c.open, c.high, c.low, c.close, c.volume]
    fake = FakeBinance({"BTCUSDT": rows}, c.timeframe_ms)
    fake.start()
    controller = Controller(data_dir, exchange_url=fake.url)

    async def until(cond):
        for _ in range(600):
            if cond():
                return True
            await asyncio.sleep(0.05)
        return False

    async def go():
        dlg = SystemDialog(None, suggest=controller.suggest)
        qtbot.addWidget(dlg)
        dlg.show()
        dlg.name.setText("suggested")
        dlg.levels.setValue(20)
        assert dlg.data.currentText() == "sample" and dlg.suggest_days.currentText() == "last 30 days"
        assert dlg.suggest()
        assert await until(lambda: dlg.suggest_button.isEnabled()), dlg.suggest_note.text()
        want = suggest_settings("spot-grid", load_candles(SAMPLE_PATH), 30, dict(dlg.suggestion.params))
        s = dlg.suggestion
        assert s is not None and s.params == want.params and dlg.suggest_note.text() == s.text()
        assert dlg.levels.value() == s.params["levels"] and dlg.range_pct.value() == pytest.approx(
            s.params["range_pct"], abs=5e-5) and dlg.spacing.currentText() == s.params["spacing"]
        assert dlg.lower.value() == dlg.upper.value() == 0.0
        assert dlg.build().params["levels"] == s.params["levels"]
        shoot(dlg, tmp_path / "suggest.png")
        # the exchange's candles, 5m, the last 7 days
        dlg.data.setCurrentText("")
        dlg.timeframe.setCurrentText("5m")
        dlg.suggest_days.setCurrentIndex(0)
        assert dlg.suggest()
        assert await until(lambda: dlg.suggest_button.isEnabled()), dlg.suggest_note.text()
        assert dlg.suggestion.days == 7 and dlg.suggestion.bars == 7 * 288, dlg.suggest_note.text()
        assert "binance" in dlg.suggestion.text() and "BTC/USDT" in dlg.suggestion.text(), dlg.suggestion.text()
        # 180 days asked of 12
        dlg.suggest_days.setCurrentIndex(2)
        assert dlg.suggest()
        assert await until(lambda: dlg.suggest_button.isEnabled())
        assert dlg.suggest_note.text().startswith("No suggestion: ") and "180 needed" in dlg.suggest_note.text()
        assert dlg.suggestion.days == 7  # (the form keeps what it had)

    try:
        loop.run_until_complete(go())
    finally:
        fake.stop()
    assert (data_dir / "candles").is_dir()  # the download cached in the app's own folder


def test_ctrl_k_engages_the_kill_switch_from_every_tab(data_dir, qtbot):
    """Ctrl+K is the main window's: it works whatever tab is shown (before: only on the Risk
    tab, the shortcut being made on it before it had a window)."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    controller = Controller(data_dir)
    window = MainWindow(controller)
    qtbot.addWidget(window)
    window.show()
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
    for i in range(window.tabs.count()):
        window.tabs.setCurrentIndex(i)
        controller.set_kill(False)
        QTest.keyClick(window.tabs.currentWidget(), Qt.Key_K, Qt.ControlModifier)
        assert controller.risk.kill_all, f"Ctrl+K did nothing on the {window.tabs.tabText(i)} tab"
        assert "KILL SWITCH ON" in window.badge.text()


def test_cancel_all_pauses_the_running_grid_then_cancels_and_nothing_is_sent_again(loop, data_dir, qtbot,
                                                                                     monkeypatch):
    """Risk > Cancel all on the running sample grid: the confirmation says how many orders it
    will cancel; the system is paused first (no order at all, closing ones included), its orders
    cancelled, and it stays so: no order sent again, no client order id twice, the status says
    why. Switched off and on by the user, it lays its grid again with new ids. (Before: the
    grid sent its levels again at once with the ids it had used, 1,934 rejections in 10 s.)"""
    from PySide6.QtWidgets import QMessageBox

    controller = Controller(data_dir, refresh_ms=100)
    window = MainWindow(controller)
    qtbot.addWidget(window)
    name = controller.systems[0].name
    asked = []

    def confirm(parent, title, text, *args):
        asked.append(text)
        return QMessageBox.Yes

    monkeypatch.setattr(QMessageBox, "question", confirm)

    async def wait_for(cond, steps=200):
        for _ in range(steps):
            if cond():
                return True
            await asyncio.sleep(0.05)
        return False

    async def scenario():
        controller.start()
        controller.set_on(name, True)
        t = None
        assert await wait_for(lambda: (controller.runner.traders.get(name) is not None
                                       and controller.runner.traders[name].strategy.started
                                       and len(controller.runner.traders[name].book.live()) > 10))
        t = controller.runner.traders[name]
        working = controller.open_order_count()
        window.risk.cancel_all()
        assert f"cancel our {working:,} resting orders" in asked[0]
        assert await wait_for(lambda: not t.book.live())
        candle = t.last_time
        def sent_orders():
            return len(t.adapter.orders) + len(t.adapter.ended)

        sent = sent_orders()
        assert await wait_for(lambda: t.last_time > candle + 5 * t.tf)  # several candles later
        assert sent_orders() == sent and not t.book.live()  # nothing sent again
        status = controller.risk.status(name)
        assert status.paused and "orders cancelled by you" in status.reason
        row = next(r for r in window.market.model.rows if r["name"] == name)
        assert row["status"] == "PAUSED"
        # the user switches it off and on: it trades again, with new ids
        controller.set_on(name, False)
        assert await wait_for(lambda: not controller.is_on(name))
        controller.set_on(name, True)
        assert await wait_for(lambda: len(controller.runner.traders[name].book.live()) > 10)
        await controller.shutdown()

    loop.run_until_complete(scenario())
    records, _ = __import__("engine.store", fromlist=["read_jsonl"]).read_jsonl(
        data_dir / "journal" / f"{controller.system(name).slug}.jsonl")
    sent = [r["cid"] for r in records if r["type"] == "order" and r["state"] == "submitted"]
    assert len(sent) == len(set(sent)) and any("." in cid for cid in sent)  # re-laid under new ids
    logs = " ".join(p.read_text() for p in (data_dir / "logs").glob("*.jsonl"))
    assert "duplicate client order id" not in logs and '"order_refused"' not in logs


def _compiles() -> tuple[int, int]:
    """(loaded from numba's cache, compiled) signatures of every kernel in this process so far."""
    import sys

    from numba.core.registry import CPUDispatcher

    hits = misses = 0
    for name, module in list(sys.modules.items()):
        if name.startswith("engine.") and module is not None:
            for obj in vars(module).values():
                if isinstance(obj, CPUDispatcher):
                    hits += sum(obj.stats.cache_hits.values())
                    misses += sum(obj.stats.cache_misses.values())
    return hits, misses


def test_a_cold_engine_is_prepared_out_of_process_and_nothing_compiles_in_the_app(loop, data_dir, qtbot,
                                                                                   monkeypatch):
    """With the kernels not yet compiled for these sources, the app prepares them in a process
    of its own (griddesk warmup): a system switched ON meanwhile says PREPARING with the
    progress and starts once the engine is ready, its kernels loaded from the cache, none
    compiled in the app's process (a compile there froze the window for 20 s); the cache
    warm, nothing is prepared at all. (The event loop's stalls: bench/bench_gui_stalls.py.)"""
    import engine.kernels as kernels

    monkeypatch.setattr(kernels, "kernels_warm", lambda: False)
    controller, window = open_app(data_dir, qtbot)
    name = controller.systems[0].name
    lines: list[str] = []
    controller.engineProgress.connect(lines.append)
    before = _compiles()

    async def scenario():
        controller.start()
        controller.set_on(name, True)
        await asyncio.sleep(0.3)
        row = next(r for r in controller.system_rows() if r["name"] == name)
        assert row["status"] == "PREPARING" and "preparing the engine" in row["reason"]
        assert "preparing the engine" in window.statusBar().currentMessage()
        assert name not in controller.runner.traders  # nothing decided before the engine is ready
        await controller.prepare_engine()
        for _ in range(100):
            await asyncio.sleep(0.05)
            t = controller.runner.traders.get(name)
            if t is not None and t.strategy is not None and t.strategy.started:
                break
        await controller.shutdown()

    loop.run_until_complete(scenario())
    assert controller.runner.traders[name].strategy.started
    assert any(line.startswith("preparing the engine: ") and "s)" in line for line in lines) and lines[-1] == ""
    misses = _compiles()[1] - before[1]
    assert misses == 0, f"{misses} kernel signatures compiled in the app's process"

    monkeypatch.setattr(kernels, "kernels_warm", lambda: True)
    warm = Controller(data_dir)
    loop.run_until_complete(warm.prepare_engine())
    assert warm.engine_note == ""


def test_orders_sort_by_their_numbers_and_show_side_and_state_in_colour(data_dir, qtbot):
    from PySide6.QtCore import Qt

    from widgets.orders import OrdersTab

    tab = OrdersTab(Controller(data_dir))
    qtbot.addWidget(tab)
    rows = [{"ts": 1_000 * i, "system": "s", "side": side, "price": price, "qty": 0.1, "filled": 0.0, "state": state,
             "cid": f"c{i}", "working": state == "open"}
            for i, (side, price, state) in enumerate((("buy", 9_500.0, "open"), ("sell", 10_250.0, "open"),
                                                      ("buy", 100_000.0, "filled"), ("sell", 950.5, "rejected")))]
    tab.model.set_rows(rows)
    tab.table.sortByColumn(3, Qt.AscendingOrder)  # price: as numbers ("10,250.00" sorts after "950.50" as text)
    prices = [tab.proxy.data(tab.proxy.index(r, 3)) for r in range(tab.proxy.rowCount())]
    assert prices == ["950.50", "9,500.00", "10,250.00", "100,000.00"]
    by_cid = {tab.model.rows[i]["cid"]: i for i in range(len(rows))}
    side = tab.model.data(tab.model.index(by_cid["c0"], 2), Qt.ForegroundRole)
    assert side.name() == "#43a047" and tab.model.data(tab.model.index(by_cid["c1"], 2), Qt.ForegroundRole).name() \
        == "#e53935"
    assert tab.model.data(tab.model.index(by_cid["c0"], 0), Qt.BackgroundRole) is None  # a working order: no tint
    assert tab.model.data(tab.model.index(by_cid["c3"], 0), Qt.BackgroundRole) is not None


def test_the_ladder_puts_the_price_where_it_stands():
    from widgets.grid_chart import ladder_rows

    orders = [{"level": k, "side": "buy" if p < 100 else "sell", "price": p, "qty": 1.0, "state": "open"}
              for k, p in enumerate((96.0, 98.0, 102.0, 104.0))]
    rows = ladder_rows(orders, 100.0)
    assert [r and r[2] for r in rows] == [104.0, 102.0, None, 98.0, 96.0]
    assert rows[1][3] == pytest.approx(0.02) and rows[3][3] == pytest.approx(-0.02)
    assert ladder_rows(orders, 200.0)[0] is None and ladder_rows(orders, 50.0)[-1] is None
    hedge = ladder_rows([{"level": 1, "side": "sell", "price": 105.0, "qty": 1.0, "state": "open",
                          "position": "long"}], 100.0)
    assert hedge[0][1] == "sell long"  # a perpetual's order names its position side


def test_a_window_without_its_x11_libraries_says_what_to_install(monkeypatch, tmp_path):
    # (Qt aborts the process naming only xcb-cursor0, whatever is missing)
    from app.gui import missing_window_libraries, window_libraries_error

    def load(lib):
        if lib in ("libxcb-cursor.so.0", "libxcb-icccm.so.4"):
            raise OSError(f"{lib}: cannot open shared object file")

    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    assert missing_window_libraries(load) == ["libxcb-cursor0", "libxcb-icccm4"]
    text = window_libraries_error(["libxcb-cursor0", "libxcb-icccm4"])
    assert "sudo apt-get install libxcb-cursor0 libxcb-icccm4" in text and "QT_QPA_PLATFORM=offscreen" in text
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert missing_window_libraries(load) == []  # no window, no X11
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    missing = missing_window_libraries()  # (make test installs what offscreen needs, not these)
    if not missing:
        pytest.skip("this machine has every library of a window on X11")
    import subprocess
    import sys

    gui = subprocess.run([str(Path(sys.executable).with_name("griddesk")), "gui", "--data-dir", str(tmp_path / "d")],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "QT_QPA_PLATFORM": "xcb", "DISPLAY": ":99"})
    assert gui.returncode == 2, gui.stderr  # not Qt's abort (134)
    assert gui.stderr.count("\n") == 1 and f"sudo apt-get install {' '.join(missing)}" in gui.stderr
    assert not (tmp_path / "d").exists()  # nothing written
