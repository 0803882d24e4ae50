"""The walk-forward optimizer: windows, the held-out tail, the sweep kernel, seeds, resume,
Ctrl-C, and the CLI, on the real candles in ../shared/data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import BTC_1H, BTC_5M, ETH_5M, shared_file
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.optimize.study import Search, Setup
from engine.optimize.walkforward import DataSet, Fitness, walk_forward
from engine.strategies.errors import ParamError
from engine.strategies.registry import read_settings
from engine.strategies.space import Choice, FloatRange, IntRange, parse_range
from engine.strategies.spot_grid import SpotGridConfig, run_spot_grid, sweep_spot_grid

GRIDDESK = str(Path(sys.executable).with_name("griddesk"))


# -- windows -------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(n=st.integers(2_000, 500_000), k=st.integers(1, 8), train=st.floats(0.5, 0.9), tail=st.floats(0.0, 0.3))
def test_windows_train_before_test_and_never_reach_the_tail(n, k, train, tail):
    try:
        split = walk_forward(n, k, train, tail, min_bars=50)
    except ValueError as exc:
        assert "too few" in str(exc)
        return
    tail_start = split.tail[0]
    assert split.tail[1] == n and n - tail_start == round(n * tail)
    for w in split.windows:
        assert 0 <= w.train[0] < w.train[1] == w.test[0] < w.test[1] <= tail_start  # test right after train
    # test parts tile the data after the first training part, up to the tail, without overlap
    assert split.windows[-1].test[1] == tail_start
    for a, b in zip(split.windows, split.windows[1:], strict=False):
        assert a.test[1] == b.test[0]
        assert b.train[0] > a.train[0]  # sliding
    lengths = [w.test[1] - w.train[0] for w in split.windows]
    assert max(lengths) - min(lengths) <= 2
    assert all(abs((w.train[1] - w.train[0]) / (w.test[1] - w.train[0]) - train) < 0.01 for w in split.windows)


def test_windows_refuse_too_little_data_by_name():
    with pytest.raises(ValueError, match=r"BTC.csv: 1,000 bars are too few for 5 walk-forward windows"):
        walk_forward(1_000, 5, source="BTC.csv")


def test_fitness():
    f = Fitness(dd_floor=0.05, max_fills_per_day=10, overtrade_weight=2.0, stability_weight=0.5)
    assert f.part(0.10, 0.20, 0, 1) == pytest.approx(0.5)
    assert f.part(0.10, 0.01, 0, 1) == pytest.approx(2.0)  # drawdown floored
    assert f.part(0.10, 0.20, 300, 10) == pytest.approx(0.5 - 2.0 * (30 - 10) / 10)  # 30 fills a day
    scores = np.array([[1.0, 3.0], [2.0, 2.0]])
    assert f.combine(scores) == pytest.approx(((2.0 - 0.5 * 1.0) + 2.0) / 2)
    assert np.isnan(f.combine(np.array([[1.0, np.nan]])))


def test_ranges_parse_and_refuse_by_name():
    assert parse_range("levels", "10..60", IntRange(5, 100)) == IntRange(10, 60)
    assert parse_range("range_pct", "1..2", FloatRange(0.1, 0.5)) == FloatRange(1.0, 2.0)  # float stays float
    assert parse_range("fee", "0.001..0.01:log", None) == FloatRange(0.001, 0.01, log=True)
    assert parse_range("spacing", "arithmetic|geometric", None) == Choice(("arithmetic", "geometric"))
    with pytest.raises(ParamError, match=r"--levels: range 60\.\.10"):
        parse_range("levels", "60..10", None)
    with pytest.raises(ParamError, match=r"--atr-k: 'a\.\.b' is not a range"):
        parse_range("atr_k", "a..b", None)


# -- the sweep kernel ------------------------------------------------------------------------

def test_sweep_equals_single_backtests_on_real_candles(btc5m):
    cfgs = [SpotGridConfig(levels=20), SpotGridConfig(spacing="geometric", levels=57, range_pct=0.35, trailing="both"),
            SpotGridConfig(spacing="atr", atr_k=1.5, levels=12, recenter=1.0),
            SpotGridConfig(mode="lower-only", spacing="atr", levels=15, atr_period=28),
            SpotGridConfig(levels=8, range_pct=0.05, stop_loss=15_000.0, fee=0.0005)]
    got = sweep_spot_grid(btc5m, cfgs)
    for j, cfg in enumerate(cfgs):
        r = run_spot_grid(btc5m, cfg)
        assert got["final_equity"][j] == r.equity[-1]
        assert got["total_return"][j] == r.metrics["total_return"]
        assert got["max_drawdown"][j] == r.metrics["max_drawdown"]
        assert got["fills"][j] == r.counters["fills"]
        assert got["fees"][j] == pytest.approx(r.money["fees"], rel=1e-12)
        assert got["grid_profit"][j] == pytest.approx(r.money["grid_profit"], rel=1e-12)
    assert len(set(got["final_equity"])) == len(cfgs)


def test_sweep_refuses_a_bad_setting_by_name(btc5m):
    with pytest.raises(ParamError, match="--levels"):
        sweep_spot_grid(btc5m, [SpotGridConfig(), SpotGridConfig(levels=1)])


# -- studies ---------------------------------------------------------------------------------

def _sets(btc5m, eth5m):
    return [DataSet("BTC", btc5m), DataSet("ETH", eth5m)]


def test_study_on_real_data_reports_out_of_sample_and_never_reads_the_tail(btc5m, eth5m, tmp_path):
    setup = Setup("spot-grid", _sets(btc5m, eth5m), windows=3)
    search = Search(setup, storage=f"sqlite:///{tmp_path / 's.db'}", seed=11, batch=8)
    assert search.run(24) == 24
    for ds in setup.data:
        tail = ds.split.tail[0]
        assert ds.reads and all(stop <= tail for _, stop, _ in ds.reads)  # every trial read stays before the tail
        purposes = {p for _, _, p in ds.reads}
        assert purposes <= {f"{part} {w}" for part in ("train", "test") for w in range(3)}
    table = search.table()
    assert len(table) == 24 and set(table["state"]) <= {"COMPLETE", "PRUNED"}
    done = table[table["state"] == "COMPLETE"]
    assert done["oos"].notna().all() and done["in_sample"].notna().all()
    # the maximized value is the in-sample score; the out-of-sample one is reported beside it
    best = search.best_trial()
    assert best.value == done["in_sample"].max()
    assert best.user_attrs["oos"] == pytest.approx(Fitness().combine(np.array(best.user_attrs["out_of_sample"])))
    hold = search.holdout()
    for ds in setup.data:
        assert ds.reads[-1] == (*ds.split.tail, "holdout")
        h = hold["sets"][ds.name]
        r = run_spot_grid(ds.candles.slice(*ds.split.tail), search.best_config())  # an independent run
        assert h["total_return"] == r.metrics["total_return"]
        days = (ds.split.tail[1] - ds.split.tail[0]) * ds.candles.timeframe_ms / 86_400_000
        assert h["score"] == pytest.approx(Fitness().part(r.metrics["total_return"], r.metrics["max_drawdown"],
                                                          r.counters["fills"], days))
    # the best settings file is what the backtest and the editor read
    path = tmp_path / "best.json"
    path.write_text(json.dumps(search.best_json()))
    strategy, params = read_settings(path, "spot-grid")
    assert strategy == "spot-grid" and {k: params[k] for k in best.params} == best.params
    assert search.importances()


def test_in_sample_scores_equal_independent_backtests(btc5m, tmp_path):
    setup = Setup("spot-grid", [DataSet("BTC", btc5m)], windows=2,
                  space={"levels": IntRange(10, 40), "range_pct": FloatRange(0.05, 0.3)})
    search = Search(setup, storage=f"sqlite:///{tmp_path / 's.db'}", seed=2, batch=4)
    search.run(4)
    t = search.study.trials[0]
    cfg = SpotGridConfig(**t.params)
    f, ds = Fitness(), setup.data[0]
    for w, window in enumerate(ds.split.windows):
        for part, key in (("train", "in_sample"), ("test", "out_of_sample")):
            a, b = getattr(window, part)
            r = run_spot_grid(btc5m.slice(a, b), cfg)
            days = (b - a) * btc5m.timeframe_ms / 86_400_000
            want = f.part(r.metrics["total_return"], r.metrics["max_drawdown"], r.counters["fills"], days)
            assert t.user_attrs[key][0][w] == pytest.approx(want, rel=1e-12)


def test_same_seed_same_study(btc5m, tmp_path):
    def study(name):
        setup = Setup("spot-grid", [DataSet("BTC", btc5m)], windows=2)
        s = Search(setup, storage=f"sqlite:///{tmp_path / name}", seed=5, batch=4)
        s.run(16)
        return [(t.params, t.value, t.state.name) for t in s.study.trials]

    a, b = study("a.db"), study("b.db")
    assert a == b
    assert len({json.dumps(p, sort_keys=True) for p, _, _ in a}) == 16


def test_two_workers_started_together_with_one_seed_never_ask_the_same_parameters(btc5m, tmp_path):
    """Both join the study before either has asked for a trial (as two workers started at the
    same instant do): each draws its own stream all the same. (Before: both seeded from the
    trials they saw at start, 0, and asked for the same parameters.)"""
    setup = Setup("spot-grid", [DataSet("BTC", btc5m)], windows=2)
    url = f"sqlite:///{tmp_path / 's.db'}"
    first, second = (Search(setup, storage=url, study="together", seed=7, batch=4) for _ in range(2))
    first.run(4)
    second.run(8)
    trials = optuna_trials(url, "together")
    assert len(trials) == 8 and len({json.dumps(t.params, sort_keys=True) for t in trials}) == 8


def optuna_trials(url, name):
    import optuna

    return optuna.load_study(study_name=name, storage=url).trials


def test_a_joining_worker_must_bring_the_same_setup(btc5m, eth5m, tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    Search(Setup("spot-grid", [DataSet("BTC", btc5m)], windows=2), storage=url, study="x")
    with pytest.raises(ValueError, match=r"--study x: .* other data"):
        Search(Setup("spot-grid", [DataSet("ETH", eth5m)], windows=2), storage=url, study="x")


def test_setup_refuses_unknown_names(btc5m):
    with pytest.raises(ParamError, match="--levles"):
        Setup("spot-grid", [DataSet("BTC", btc5m)], space={"levles": IntRange(2, 9)})


def test_invalid_trials_fail_with_their_reason(btc5m, tmp_path):
    # lower-only grids refuse to trail down: those trials fail, the others go on
    setup = Setup("spot-grid", [DataSet("BTC", btc5m)], base={"mode": "lower-only"}, windows=2,
                  space={"trailing": Choice(("none", "down")), "levels": IntRange(5, 30)})
    s = Search(setup, storage=f"sqlite:///{tmp_path / 's.db'}", seed=1, batch=4)
    s.run(6)
    table = s.table()
    failed = table[table["state"] == "FAIL"]
    assert len(failed) and failed["error"].str.contains("--trailing").all()
    assert (table[table["state"] != "FAIL"]["trailing"] == "none").all()


# -- the command line: progress, Ctrl-C, resume after kill -----------------------------------

def _cli(tmp_path, *extra, trials=40):
    return [GRIDDESK, "optimize", "--data", str(shared_file(BTC_5M)), str(shared_file(ETH_5M)),
            "--storage", f"sqlite:///{tmp_path / 'study.db'}", "--study", "cli", "--trials", str(trials),
            "--batch", "4", "--windows", "2", "--seed", "3", "--out", str(tmp_path / "best.json"), *extra]


def _trials(tmp_path):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name="cli", storage=f"sqlite:///{tmp_path / 'study.db'}").trials


def _wait_for(pred, proc, limit=120.0):
    t0 = time.monotonic()
    while not pred():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < limit, "timed out"
        time.sleep(0.2)


def _count(tmp_path, *states):
    try:
        return sum(t.state.name in states for t in _trials(tmp_path))
    except KeyError:  # the study is not created yet
        return 0


def test_cli_runs_a_study_and_writes_what_backtest_reads(tmp_path):
    out = subprocess.run(_cli(tmp_path, "--table", str(tmp_path / "t.csv"), trials=12), capture_output=True,
                         text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert out.returncode == 0, out.stderr
    assert "12/12 trials" in out.stderr and "ETA" in out.stderr
    assert "out-of-sample" in out.stdout and "held-out tail" in out.stdout
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["optimized"]["study"] == "cli" and "holdout" in best["optimized"]
    bt = subprocess.run([GRIDDESK, "backtest", "--data", str(shared_file(BTC_5M)), "--params",
                         str(tmp_path / "best.json")], capture_output=True, text=True, timeout=120)
    assert bt.returncode == 0 and f"{best['params']['levels']} levels" in bt.stdout, bt.stderr
    import pandas as pd

    assert len(pd.read_csv(tmp_path / "t.csv")) == 12


def test_cli_searches_a_strategy_without_a_sweep_to_the_end(tmp_path):
    """A strategy whose trials run one backtest each (the long perpetual grid): the study, the
    held-out tail's backtest and the best settings, which the backtest reads. (The held-out
    backtest was asked of workers already shut down: every such study ended in a traceback
    and no settings file.)"""
    cmd = [GRIDDESK, "optimize", "--strategy", "long-grid", "--data", str(shared_file(BTC_1H)),
           "--storage", f"sqlite:///{tmp_path / 'study.db'}", "--study", "long", "--trials", "4", "--batch", "2",
           "--windows", "2", "--seed", "3", "--out", str(tmp_path / "best.json")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "held-out tail" in out.stdout
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["strategy"] == "long-grid" and best["params"]["no_short"] is True
    assert set(best["optimized"]["searched"]) == {"levels", "order_frac", "atr_k", "gamma", "stop_m", "leverage"}
    assert isinstance(best["optimized"]["holdout"], float)
    bt = subprocess.run([GRIDDESK, "backtest", "--data", str(shared_file(BTC_1H)), "--params",
                         str(tmp_path / "best.json")], capture_output=True, text=True, timeout=120)
    assert bt.returncode == 0 and "long-grid" in bt.stdout and "long only" in bt.stdout, bt.stderr


def test_ctrl_c_stops_cleanly_keeping_finished_trials(tmp_path):
    proc = subprocess.Popen(_cli(tmp_path, trials=10_000), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _wait_for(lambda: _count(tmp_path, "COMPLETE") >= 4, proc)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err
    assert "stopping after the current part" in err
    states = [t.state.name for t in _trials(tmp_path)]
    assert "RUNNING" not in states and states.count("COMPLETE") >= 4
    assert json.loads((tmp_path / "best.json").read_text())["params"]


def test_a_trial_whose_worker_died_before_naming_itself_is_failed(btc5m, tmp_path, monkeypatch):
    """A worker killed between asking for a trial and naming itself leaves a running trial no
    heartbeat will ever make stale: it is failed once old enough, not waited for."""
    from engine.optimize import study as st

    search = Search(Setup("spot-grid", [DataSet("BTC", btc5m)], windows=2), storage=f"sqlite:///{tmp_path / 's.db'}")
    orphan = search.study.ask()  # and then the worker died
    search._fail_dead_workers()
    assert search.study.trials[orphan.number].state.name == "RUNNING"  # young: its worker may be naming it
    monkeypatch.setattr(st, "ORPHAN_S", 0)
    search._fail_dead_workers()
    t = search.study.trials[orphan.number]
    assert t.state.name == "FAIL" and t.user_attrs["error"] == "its worker died"
    assert search.run(4) == 4  # and the study goes on


def _kill_mid_batch(tmp_path, proc) -> None:
    """SIGKILL ``proc`` while trials of a batch are running, after 8 are done. It is stopped
    (SIGSTOP) when they seem to be and looked at again, still: a batch that ended between the
    look and the kill (under load) would leave none running."""
    while True:
        _wait_for(lambda: _count(tmp_path, "COMPLETE", "PRUNED") >= 8 and _count(tmp_path, "RUNNING"), proc)
        proc.send_signal(signal.SIGSTOP)
        try:
            if _count(tmp_path, "RUNNING"):
                break
        except Exception:  # (stopped inside a write: the database is busy; look again later)
            pass
        proc.send_signal(signal.SIGCONT)
    proc.kill()
    proc.wait()


def test_resume_after_kill(tmp_path):
    proc = subprocess.Popen(_cli(tmp_path, trials=32), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _kill_mid_batch(tmp_path, proc)  # SIGKILL in the middle of a batch
    before = {t.number: t.state.name for t in _trials(tmp_path)}
    assert "RUNNING" in before.values()
    out = subprocess.run(_cli(tmp_path, trials=32), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    after = _trials(tmp_path)
    states = [t.state.name for t in after]
    assert states.count("COMPLETE") + states.count("PRUNED") >= 32 and "RUNNING" not in states
    for t in after:  # what finished before the kill is kept as it was
        if before.get(t.number) in ("COMPLETE", "PRUNED"):
            assert t.state.name == before[t.number]
        elif before.get(t.number) == "RUNNING":
            assert t.state.name == "FAIL" and t.user_attrs["error"] == "its worker died"
    assert len({t.number for t in after}) == len(after)


# -- many machines: two workers on one PostgreSQL study ----------------------------------------

def _postgres_bin() -> Path | None:
    import glob
    import shutil

    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1:]), None)
    return Path(found).resolve().parent if found else None


@pytest.fixture
def postgres(tmp_path):
    """A real PostgreSQL server on 127.0.0.1, in a scratch folder, stopped afterwards.
    PostgreSQL refuses to run as root: as root it runs as the postgres user."""
    import socket
    import tempfile

    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (make test installs Debian's postgresql when run as root)")
    folder = Path(tempfile.mkdtemp(prefix="griddesk-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(folder, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = folder / "data"
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "griddesk", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
                    f"-c listen_addresses=127.0.0.1 -p {port} -k {folder}", "start"],
                   check=True, capture_output=True, timeout=120)
    try:
        subprocess.run([*as_user, str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "griddesk",
                        "optuna"], check=True, capture_output=True, timeout=60)
        yield f"postgresql+psycopg://griddesk@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=120)
        subprocess.run(["rm", "-rf", str(folder)], check=False)


def test_two_workers_share_one_postgresql_study(postgres, tmp_path):
    import optuna

    cmd = [GRIDDESK, "optimize", "--data", str(shared_file(BTC_5M)), str(shared_file(ETH_5M)), "--storage", postgres,
           "--study", "shared", "--trials", "40", "--batch", "4", "--windows", "2", "--seed", "9"]
    workers = [subprocess.Popen([*cmd, "--out", str(tmp_path / f"best{i}.json")], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for i in range(2)]
    for w in workers:
        err = w.communicate(timeout=600)[1]
        assert w.returncode == 0, err
    study = optuna.load_study(study_name="shared", storage=postgres)
    trials = study.trials
    states = [t.state.name for t in trials]
    finished = states.count("COMPLETE") + states.count("PRUNED")
    assert 40 <= finished <= 40 + 4 and "RUNNING" not in states  # the study completed, at most a batch over
    assert sorted(t.number for t in trials) == list(range(len(trials)))  # each trial once
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == len(trials)  # no parameters asked twice
    by_worker = {t.user_attrs["worker"] for t in trials}
    assert len(by_worker) == 2  # both took part
    # each reports the study's best when it stopped, whoever ran that trial
    complete = {t.number: t for t in trials if t.state.name == "COMPLETE"}
    for i in range(2):
        best = json.loads((tmp_path / f"best{i}.json").read_text())["optimized"]
        assert best["in_sample"] == complete[best["trial"]].value


def test_the_default_study_goes_to_the_data_folder_named(tmp_path):
    # (it went to the app's folder whatever --data-dir said)
    cmd = [GRIDDESK, "optimize", "--data", str(shared_file(BTC_5M)), "--data-dir", str(tmp_path / "desk"),
           "--study", "here", "--trials", "2", "--batch", "2", "--windows", "2", "--seed", "1",
           "--out", str(tmp_path / "best.json")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"study here in sqlite:///{tmp_path / 'desk' / 'optuna.db'}" in out.stderr
    import optuna

    assert len(optuna.load_study(study_name="here", storage=f"sqlite:///{tmp_path / 'desk' / 'optuna.db'}").trials) == 2
