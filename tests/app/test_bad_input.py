"""Every bad input a user can give gets one line that names the file, row, field or argument,
exit code 2, and nothing written or lost: the folder the command was pointed at holds, byte
for byte, what it held before."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from engine.risk import RiskGate
from engine.runtime.config import ConfigError, SystemConfig, load_systems
from engine.runtime.runner import Runner
from engine.runtime.trader import StateUnreadable, Trader


def griddesk(*args, cwd):
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "QT_QPA_PLATFORM": "offscreen"})


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(folder.rglob("*"))}


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    (tmp_path / "unknown.json").write_text(json.dumps({"strategy": "nosuch", "params": {}}))
    (tmp_path / "fee.json").write_text(json.dumps({"fee": "x"}))
    return tmp_path


SAMPLE = ["--data", "sample"]
CASES = [
    (["backtest", "--data", "adir"], "adir: is a folder, not a data file"),
    (["backtest", *SAMPLE, "--json", "adir"], "argument --json: adir: is a folder; give a file name"),
    (["backtest", *SAMPLE, "--trades", "no/such/dir/x.csv"], "argument --trades: no/such/dir/x.csv: its folder "
                                                            "no/such/dir does not exist"),
    (["indicators", *SAMPLE, "--out", "adir"], "argument --out: adir: is a folder"),
    (["sample", "--out", "adir"], "argument --out: adir: is a folder"),
    (["screenshot", "--out", "afile"], "argument --out: afile: is a file; give a folder"),
    (["optimize", *SAMPLE, "--storage", "nosuch://x", "--trials", "2"],
     "--storage nosuch://x: not a storage Optuna can open"),
    (["optimize", *SAMPLE, "--trials", "0"], "argument --trials: 0 is out of range: from 1 to 1,000,000"),
    (["optimize", *SAMPLE, "--batch", "0"], "argument --batch: 0 is out of range: from 1 to 4,096"),
    (["run", "--poll", "-1"], "argument --poll: -1 is out of range: above 0 to 3,600"),
    (["backtest", *SAMPLE, "--params", "unknown.json"], "unknown.json: strategy: unknown strategy 'nosuch'"),
    (["backtest", *SAMPLE, "--params", "fee.json"], "--fee: must be a number, got 'x'"),
    (["backtest", *SAMPLE, "--strategy", "adaptive-grid", "--sigma-window", "0"],
     "--sigma-window: must be a whole number from 2 to 525,600, got 0"),
    (["stress", *SAMPLE, "--paths", "2", "--block", "100000"], "--block: must be 1 to 8,760 bars"),
    (["stress", *SAMPLE, "--paths", "2", "--sigma-window", "5"], "--sigma-window: is not a setting of spot-grid"),
    (["stress", *SAMPLE, "--json", "adir"], "argument --json: adir: is a folder; give a file name"),
    (["fetch", "--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "1h", "--since", "2024-01-01",
      "--until", "2024-01-02", "--exchange-url", "http://127.0.0.1:9", "--cache-dir", "cache"],
     "binance: the exchange could not be reached (ExchangeNotAvailable)"),
]


@pytest.mark.parametrize("args,needle", CASES, ids=[" ".join(a[:1] + a[-2:]) for a, _ in CASES])
def test_a_bad_argument_or_path_is_one_line_exit_2_and_writes_nothing(folder, args, needle):
    before = snapshot(folder)
    out = griddesk(*args, cwd=folder)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and needle in lines[0], out.stderr[-2000:]
    assert snapshot(folder) == before


def test_debug_shows_the_traceback(folder):
    out = griddesk("--debug", "backtest", "--data", "adir", cwd=folder)
    assert out.returncode == 1 and "Traceback" in out.stderr and "is a folder" in out.stderr


@pytest.mark.parametrize("system,needle", [
    ({"name": 5}, "name: must be a non-empty text, got 5"),
    ({"name": "s", "symbol": 5}, "system 's': symbol: 5 is not a BASE/QUOTE pair"),
    ({"name": "s", "replay_seconds": "x"}, "replay_seconds: must be a number of seconds from 0 to 3600, got 'x'"),
    ({"name": "s", "params": {"fee": "x"}}, "system 's': params.fee: must be a number, got 'x'"),
    ({"name": "s", "params": {"levels": 1, "fee": 0.5}}, "params.levels: must be a whole number from 2 to 5000"),
    ({"name": "s", "params": {"fee": 0.5}}, "params.fee: 0.5 is a fraction of the notional"),
    ({"name": "s", "params": {"levels": 200, "range_pct": 0.03}}, "params.levels: 200 levels over the range leave "
                                                                  "-0.171% a grid after the fees of its round trip"),
    ({"name": "s", "capital": 100, "params": {"levels": 50, "min_notional": 5}},
     "capital: 100 over 50 levels is 2.00 an order, below the minimum order value 5"),
    ({"name": "s", "params": {"levels": 2.5}}, "params.levels: must be a whole number, got 2.5"),
    ({"name": "s", "params": {"nosuch": 1}}, "params.nosuch: unknown spot-grid setting"),
    ({"name": "p", "market": "perpetual", "strategy": "adaptive-grid", "params": {"sigma_window": 0}},
     "params.sigma_window: must be a whole number from 2 to 525,600, got 0"),
    ({"name": "p", "market": "perpetual", "strategy": "adaptive-grid", "params": {"no_short": "yes"}},
     "params.no_short: must be true or false, got 'yes'"),
])
def test_a_systems_settings_are_checked_when_cryptos_json_is_read(tmp_path, system, needle):
    path = tmp_path / "cryptos.json"
    path.write_text(json.dumps({"schema_version": 1, "systems": [system]}))
    before = path.read_bytes()
    with pytest.raises(ConfigError) as e:
        load_systems(path)
    assert str(e.value).startswith(str(path)) and needle in str(e.value), str(e.value)
    assert path.read_bytes() == before


@pytest.mark.parametrize("state,needle", [
    ({}, "epoch: missing"),
    ({"epoch": "x", "last_time": 0}, "invalid literal for int()"),
    ({"epoch": 0, "last_time": 0, "orders": 5}, "not iterable"),
])
def test_a_state_file_that_is_not_a_state_is_named_and_left_untouched(tmp_path, state, needle):
    cfg = SystemConfig(name="s")
    trader = Trader(cfg, object(), RiskGate(), tmp_path, paper=True)
    trader.state_path.parent.mkdir(parents=True)
    trader.state_path.write_text(json.dumps({"schema_version": 1, **state}))
    before = trader.state_path.read_bytes()
    with pytest.raises(StateUnreadable) as e:
        trader._load()
    assert str(trader.state_path) in str(e.value) and needle in str(e.value), str(e.value)
    assert trader.state_path.read_bytes() == before


@pytest.mark.parametrize("bot,needle", [
    ({"limits": 5}, "limits: must map each risk limit to a number, got 5"),
    ({"limits": {"max_spread": "x"}}, "limits.max_spread: must be a number (or null: none), got 'x'"),
    ({"killed": 5}, "killed: must be a list of system names, got 5"),
])
def test_bot_state_of_a_wrong_kind_is_named(tmp_path, bot, needle):
    path = tmp_path / "state" / "bot_state.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"schema_version": 1, **bot}))
    with pytest.raises(ConfigError) as e:
        Runner([], tmp_path)
    assert str(e.value).startswith(str(path)) and needle in str(e.value), str(e.value)


def test_status_names_each_bad_state_file_shows_the_others_and_writes_nothing(tmp_path):
    systems = tmp_path / "state" / "systems"
    systems.mkdir(parents=True)
    (systems / "empty.json").write_text(json.dumps({"schema_version": 1}))
    (systems / "torn.json").write_text('{"system":')
    (systems / "good.json").write_text(json.dumps({"schema_version": 1, "system": "good", "last_time": -1,
                                                   "orders": []}))
    (tmp_path / "state" / "bot_state.json").write_text(json.dumps({"schema_version": 1, "systems": 3}))
    before = snapshot(tmp_path)
    out = griddesk("status", "--data-dir", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "empty.json: not a system state GridDesk can read (system: missing); left untouched" in out.stdout
    assert "torn.json: unreadable" in out.stdout and "is not valid JSON" in out.stdout
    assert "good: OFF, last candle -" in out.stdout
    assert snapshot(tmp_path) == before  # (no corrupt copy kept aside by a command that only reads)


HEADER = "time,open,high,low,close,volume\n"


@pytest.mark.parametrize("body,needle", [
    ("1600000000000,1,2,0.5,1.5,10\n1600000300000,1,1e400,0.5,1.5,10\n",
     "row 2 (line 3): value '1e400' out of range in column high"),
    ("1600000000000,1,2,0.5,1.5,10\n1600000300000,1,inf,0.5,1.5,10\n",
     "row 2 (line 3): infinite or out-of-range value in column high"),
    ("1600000000000,1,2,0.5,1.5,10\n1600000300000,1,,0.5,1.5,10\n",
     "row 2 (line 3): missing value (NaN) in column high"),
    ("1600000000000,1,2,0.5,1.5,10\n,1,2,0.5,1.5,10\n",
     "row 2 (line 3): unparsable time ''"),
    ("2020-09-13T12:26:40Z,1,2,0.5,1.5,10\n2020-09-13T12:31:40Z,1,1e400,0.5,1.5,10\n",
     "row 2 (line 3): value '1e400' out of range in column high"),
    ("1600000000,1,2,0.5,1.5,10\n1600000300,1,2,0.5,1.5,10\n1600000600000,1,2,0.5,1.5,10\n",
     "row 3 (line 4): time 1600000600000 is in milliseconds, the rows before it in seconds: one unit per file"),
    ("x" * 70_000, "the first 64 KiB hold no line break: not a CSV file"),
])
def test_bad_candle_values_are_named(tmp_path, body, needle):
    from engine.data import DataError, load_candles

    path = tmp_path / "c.csv"
    path.write_text(body if body.startswith("x") else HEADER + body)
    with pytest.raises(DataError) as e:
        load_candles(path)
    assert str(e.value).startswith(str(path)) and needle in str(e.value), str(e.value)


def test_a_full_disk_while_running_is_said_once_and_the_status_files_follow_when_it_frees(tmp_path, capsys):
    import asyncio
    import errno

    runner = Runner([], tmp_path)
    written = []

    def full(views):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "state" / "bot_state.json"))

    async def go():
        stop = asyncio.Event()
        runner._write = full
        task = asyncio.ensure_future(runner.keep_views(stop))
        await asyncio.sleep(0.1)
        runner.risk.kill()  # a change while the disk is full: tried again, said once
        await asyncio.sleep(2.3)
        assert not task.done()  # the runner goes on
        runner._write = written.append  # space again: the views follow
        runner.risk.release()
        await asyncio.sleep(2.3)
        stop.set()
        await task

    asyncio.run(go())
    err = capsys.readouterr().err
    assert err.count("cannot write the status files") == 1 and "No space left on device" in err
    assert written and runner.write_problem == ""
    runner.events.close()
