"""The griddesk command line, run as a user would."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import BTC_5M, ROOT, shared_file

from app.cli import main


def griddesk(*args):
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, capture_output=True, text=True)


def test_backtest_on_the_sample_prints_a_report(capsys):
    assert main(["backtest", "--data", "sample", "--levels", "30", "--spacing", "geometric", "--trailing", "both"]) == 0
    out = capsys.readouterr().out
    for text in ("final equity", "grid profit", "max drawdown", "Sharpe", "fills", "profit/grid after fees",
                 "trail up", "timings"):
        assert text in out


def test_backtest_reports_the_grid_under_each_fill_model_as_the_oracle_fills_it(capsys):
    """The report's table: touch, through by the data's price step (0.01), and queue, each
    return the pure-Python oracle's under that rule (levels every 2,000, exact in cents)."""
    from oracle import reference_grid

    from engine.data import load_candles
    from engine.sample import SAMPLE_PATH

    assert main(["backtest", "--data", "sample", "--lower", "40000", "--upper", "100000", "--levels", "31",
                 "--capital", "100000", "--fee", "0.001", "--lot", "1e-8", "--queue-depth", "0.002"]) == 0
    out = capsys.readouterr().out.split("under each fill model")[1].splitlines()
    table = {line.strip().split("  ")[0]: line.split()[-5] for line in out[2:5]}
    c = load_candles(SAMPLE_PATH)
    want = {}
    for label, rule in (("touch", "touch"), ("through by 0.01", "through"), ("queue, sure at 0.20% beyond", "queue")):
        _, equity = reference_grid(c.open, c.high, c.low, c.close, 40_000.0, 100_000.0, 31, 100_000.0, 0.001, 1e-8,
                                   rule=rule, t=c.time, tick=0.01, depth=0.002)
        want[label] = f"{equity[-1] / 100_000.0 - 1:+.2%}"
    assert table == want
    assert want["touch"] != want["queue, sure at 0.20% beyond"]


def test_reference_grid_from_the_command_line_writes_json_and_trades(tmp_path, btc5m):
    o0 = float(btc5m.open[0])
    out_json, out_csv = tmp_path / "r.json", tmp_path / "t.csv"
    rc = main(["backtest", "--data", str(shared_file(BTC_5M)), "--strategy", "spot-grid", "--mode", "range",
               "--spacing", "arithmetic", "--lower", str(0.8 * o0), "--upper", str(1.2 * o0), "--levels", "20",
               "--capital", "100000", "--fee", "0.001", "--lot", "1e-8",
               "--json", str(out_json), "--trades", str(out_csv)])
    assert rc == 0
    from oracle import reference_grid

    fills, equity = reference_grid(btc5m.open, btc5m.high, btc5m.low, btc5m.close, 0.8 * o0, 1.2 * o0, 20,
                                   100000.0, 0.001, 1e-8)
    data = json.loads(out_json.read_text())
    assert abs(data["metrics"]["final_equity"] - equity[-1]) < 1e-6
    assert data["metrics"]["fills"] == len(fills)
    for key in ("total_return", "buy_hold_return", "max_drawdown", "sharpe", "sortino", "calmar", "win_rate",
                "profit_factor", "grid_profit", "floating_pnl", "fees_paid", "orders_refused_min_notional",
                "orders_refused_balance"):
        assert key in data["metrics"]
    assert set(data["timings"]) >= {"load", "indicators", "kernel"}
    trades = pd.read_csv(out_csv)
    assert len(trades) == len(fills)
    assert set(trades.columns) >= {"time", "side", "price", "qty", "fee", "level", "role"}


@pytest.mark.parametrize("args,needle", [
    (["--levels", "x"], "argument --levels: invalid int value: 'x'"),
    (["--levels", "1"], "--levels: must be a whole number from 2 to 5000"),
    (["--fee", "abc"], "argument --fee: 'abc' is not a number"),
    (["--lower", "100", "--upper", "50"], "--upper: upper 50.0 must be above lower 100.0"),
    (["--mode", "sideways"], "argument --mode: invalid choice"),
    (["--data", "no/such.csv"], "no/such.csv: no such file"),
])
def test_bad_arguments_get_one_line_naming_the_argument(args, needle):
    base = ["backtest", "--data", "sample"]
    out = griddesk(*base, *args) if "--data" not in args else griddesk("backtest", *args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], out.stderr


def test_params_file_is_read_and_flags_override_it(tmp_path, capsys):
    p = tmp_path / "grid.json"
    p.write_text(json.dumps({"mode": "lower-only", "levels": 12, "spacing": "geometric"}))
    assert main(["backtest", "--data", "sample", "--params", str(p), "--levels", "15"]) == 0
    assert "lower-only geometric, 15 levels" in capsys.readouterr().out
    p.write_text(json.dumps({"levls": 3}))
    assert main(["backtest", "--data", "sample", "--params", str(p)]) == 2


def test_indicators_command_writes_every_column(tmp_path):
    out = tmp_path / "ind.csv"
    assert main(["indicators", "--data", str(shared_file(BTC_5M)), "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    expected = ["time", "atr14", "atr28", "ema14", "ema28", "ema50", "ema100", "ema200", "sma20", "std20",
                "kama10", "er10", "zscore20", "regime"]
    assert list(frame.columns) == expected
    assert len(frame) == 65_741
    assert set(frame["regime"].unique()) <= {0, 1, 2, 3, 4} and frame["regime"].nunique() == 5
    import talib

    from engine.data import load_candles

    c = load_candles(shared_file(BTC_5M))
    ref = talib.ATR(c.high, c.low, c.close, 14)
    assert np.allclose(frame["atr14"].to_numpy()[14:], ref[14:], rtol=1e-9)


def test_gap_policy_refuse_is_an_error_with_the_gaps_listed():
    out = griddesk("backtest", "--data", str(shared_file(BTC_5M)), "--gaps", "refuse")
    assert out.returncode == 2
    assert "6 gap(s), 177 missing bars" in out.stderr


def test_adaptive_grid_from_the_command_line(tmp_path, capsys):
    from conftest import BTC_1H, FUNDING

    out_json = tmp_path / "a.json"
    rc = main(["backtest", "--data", str(shared_file(BTC_1H)), "--strategy", "adaptive-grid", "--funding",
               str(shared_file(FUNDING)), "--levels", "8", "--no-short", "--json", str(out_json)])
    assert rc == 0
    text = capsys.readouterr().out
    for needle in ("adaptive-grid", "funding", "prunes", "circuit-breaker halts", "liquidations"):
        assert needle in text
    m = json.loads(out_json.read_text())["metrics"]
    assert m["shorts_opened"] == 0 and m["longs_opened"] > 100 and m["liquidations"] == 0
    assert m["funding_events"] > 600 and m["funding_pnl"] != 0


def test_a_backtest_with_the_runtimes_risk_gate_reads_the_limits_the_systems_run_with(tmp_path, capsys):
    """--risk: the volatility breaker and exposure limits of the data folder's bot_state.json
    (the defaults without one), read only; the report says what they held back."""
    args = ["backtest", "--data", str(shared_file(BTC_5M)), "--strategy", "adaptive-grid", "--leverage", "3",
            "--risk", "--data-dir", str(tmp_path)]
    assert main([*args, "--json", str(tmp_path / "d.json")]) == 0
    text = capsys.readouterr().out
    assert f"the default limits (none in {tmp_path / 'state' / 'bot_state.json'})" in text
    default = json.loads((tmp_path / "d.json").read_text())["counters"]
    assert default["risk_paused_bars"] > 0 and default["risk_waits"] > 0
    state = tmp_path / "state"
    state.mkdir()
    (state / "bot_state.json").write_text(json.dumps({"schema_version": 1, "limits": {
        "atr_jump": 10.0, "max_symbol_share": None, "max_total_share": None}}))
    before = sorted(p.name for p in state.iterdir())
    assert main([*args, "--json", str(tmp_path / "s.json")]) == 0
    assert "the limits of" in capsys.readouterr().out and sorted(p.name for p in state.iterdir()) == before
    saved = json.loads((tmp_path / "s.json").read_text())["counters"]
    assert saved["risk_paused_bars"] == 0 and saved["risk_waits"] == 0  # nothing binds at these limits
    assert main([*args[:3], "--risk", "--data-dir", str(tmp_path)]) == 2  # a spot grid: refused, by name
    assert "--risk: applies to adaptive-grid, long-grid, futures-grid backtests" in capsys.readouterr().err


def test_a_futures_grid_from_the_command_line(tmp_path, capsys):
    """The report says the grid, how it ended and where its PnL came from; its figures are the
    backtest's."""
    from conftest import FUNDING

    from engine.data import load_candles, load_funding
    from engine.strategies.registry import config_from, run_backtest

    args = ["--direction", "short", "--leverage", "5", "--range-pct", "0.2", "--levels", "21"]
    assert main(["backtest", "--data", str(shared_file(BTC_5M)), "--strategy", "futures-grid", "--funding",
                 str(shared_file(FUNDING)), *args, "--json", str(tmp_path / "f.json")]) == 0
    text = capsys.readouterr().out
    r = run_backtest("futures-grid", load_candles(shared_file(BTC_5M)),
                     config_from("futures-grid", {"direction": "short", "leverage": 5.0, "range_pct": 0.2,
                                                  "levels": 21}), load_funding(shared_file(FUNDING)))
    lo, hi = r.metrics["lines"]
    assert f"futures grid, short: 21 arithmetic lines {lo:,.2f} .. {hi:,.2f}, 5x isolated" in text
    assert "  end               liquidation at " in text and r.metrics["ended"] == "LIQUIDATION"
    assert f"final equity      {r.metrics['final_equity']:>16,.2f}" in text
    assert "its end's market closes and liquidations" in text and "prunes" not in text
    m = json.loads((tmp_path / "f.json").read_text())["metrics"]
    assert m["ended"] == "LIQUIDATION" and m["liquidations"] == 1 and m["final_equity"] == r.metrics["final_equity"]


@pytest.mark.parametrize("args,needle", [
    (["--strategy", "adaptive-grid", "--trailing", "up"], "--trailing: is not a setting of adaptive-grid"),
    (["--strategy", "adaptive-grid", "--leverage", "500"], "--leverage: must be > 0 and at most 125"),
    (["--strategy", "spot-grid", "--funding", "f.csv"], "--funding: spot grids pay no funding"),
    (["--strategy", "adaptive-grid", "--z-resume", "-5"], "--z-resume: must be above --z-halt"),
    (["--strategy", "adaptive-grid", "--levels", "10000000"], "--levels: must be a whole number from 1 to 500"),
    (["--strategy", "adaptive-grid", "--capital", "Infinity"], "--capital: must be > 0 and at most 1e+12"),
    (["--strategy", "spot-grid", "--capital", "1e308"], "--capital: must be at most 1e+12"),
])
def test_strategy_settings_are_checked_by_name(args, needle):
    out = griddesk("backtest", "--data", "sample", *args)
    assert out.returncode == 2 and needle in out.stderr, out.stderr


def _folder_with(tmp_path: Path, systems: list[dict]) -> tuple[Path, Path]:
    config = tmp_path / "cryptos.json"
    config.write_text(json.dumps({"schema_version": 1, "systems": systems}))
    return config, tmp_path / "data"


SAMPLE_SYSTEM = {"name": "paper sample", "data": "sample", "replay_seconds": 0.05, "enabled": True,
                 "params": {"levels": 10, "spacing": "geometric"}}


def test_two_processes_cannot_trade_one_folder(tmp_path):
    """A second ``griddesk run`` (or the app) on a folder being traded exits at once, naming the
    folder and the process that holds it; ``griddesk status`` still reads it. (Before: both
    traded the same systems, each fill journaled twice, each cancelling the other's orders.)"""
    import subprocess as sp
    import time

    config, data = _folder_with(tmp_path, [SAMPLE_SYSTEM])
    first = sp.Popen([sys.executable, "-m", "app.cli", "run", "--config", str(config), "--data-dir", str(data)],
                     cwd=ROOT, stdout=sp.PIPE, stderr=sp.STDOUT, text=True)
    try:
        lock = data / "griddesk.lock"
        for _ in range(300):
            if lock.exists() and f"pid {first.pid}" in lock.read_text() and (data / "state" / "systems").exists():
                break
            time.sleep(0.05)
        second = griddesk("run", "--config", str(config), "--data-dir", str(data))
        assert second.returncode == 2
        assert str(data) in second.stderr and f"pid {first.pid} (griddesk run)" in second.stderr, second.stderr
        gui = griddesk("gui", "--data-dir", str(data), "--quit-after", "0.1")
        assert gui.returncode == 2 and f"pid {first.pid}" in gui.stderr, gui.stderr
        status = griddesk("status", "--data-dir", str(data))
        assert status.returncode == 0 and "paper sample" in status.stdout, status.stderr
    finally:
        first.terminate()
        first.wait(30)
    assert first.returncode == 0
    again = griddesk("status", "--data-dir", str(data))  # the lock is gone with its process
    assert again.returncode == 0


def test_screenshot_of_a_users_folder_touches_none_of_its_systems(tmp_path):
    """``screenshot --data-dir`` renders from a throwaway copy holding the folder's paper
    systems on recorded candles only: a live system is never booted, and nothing in the folder
    changes. (Before: it switched the folder's first system ON, booted it live against the
    exchange, and wrote ``enabled: true`` into its cryptos.json.)"""
    live = {"name": "my live grid", "mode": "live", "dry_run": False, "exchange_url": "http://127.0.0.1:9"}
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "cryptos.json").write_text(json.dumps({"schema_version": 1,
                                                  "systems": [live, dict(SAMPLE_SYSTEM, enabled=False)]}))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    out = griddesk("screenshot", "--out", str(tmp_path / "shots"), "--data-dir", str(folder), "--warmup", "1")
    assert out.returncode == 0, out.stderr
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no state, no log, no edit
    names = [Path(p).name for p in out.stdout.split()]
    assert names == ["01-market.png", "02-risk.png", "03-orders.png", "04-grid.png", "05-logs.png", "06-backtest.png",
                     "07-optimizer.png", "08-assistant.png"]
    for name in names:
        assert (tmp_path / "shots" / name).stat().st_size > 10_000


def test_a_perpetual_backtest_is_margined_by_its_symbols_tiers_and_refused_without_them(tmp_path, capsys):
    """ETH candles take Binance's ETHUSDT brackets (not BTC's: its first tier is 10,000 at 0.5%
    against BTC's 300,000 at 0.4%); a symbol GridDesk has none for is refused by name unless a
    table is given."""
    from conftest import ETH_5M

    eth = shared_file(ETH_5M)
    assert main(["backtest", "--data", str(eth), "--strategy", "adaptive-grid", "--leverage", "20"]) == 0
    assert "binance-usdm-ethusdt.json" in capsys.readouterr().out
    sol = tmp_path / "SOLUSDT-5m-2021.csv"
    sol.write_text(eth.read_text()[:200_000].rsplit("\n", 1)[0] + "\n")
    assert main(["backtest", "--data", str(sol), "--strategy", "adaptive-grid"]) == 2
    err = capsys.readouterr().err
    assert "tiers: GridDesk ships no maintenance-margin tiers for SOL/USDT (only for BTCUSDT, ETHUSDT)" in err
    assert main(["backtest", "--data", str(sol), "--strategy", "adaptive-grid", "--tiers",
                 str(ROOT / "resources" / "tiers" / "binance-usdm-ethusdt.json")]) == 0
    from engine.runtime.config import ConfigError, SystemConfig

    with pytest.raises(ConfigError, match=r"params.tiers: GridDesk ships no maintenance-margin tiers for SOL/USDT"):
        SystemConfig(name="sol", symbol="SOL/USDT:USDT", market="perpetual", strategy="adaptive-grid").validate()
    SystemConfig(name="eth", symbol="ETH/USDT:USDT", market="perpetual", strategy="adaptive-grid").validate()
