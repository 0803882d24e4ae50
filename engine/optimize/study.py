"""Walk-forward parameter search over Optuna studies.

A trial takes parameters from the strategy's search space, backtests them on each window's
training part of every data set (the in-sample score Optuna maximizes, reported window by
window so hopeless trials are pruned early), then on the window's test part (the
out-of-sample score, kept beside it and never used to choose). The best trial's settings are
finally scored on the held-out tail that no trial read.

Trials are asked and told in batches (Optuna's ask-and-tell interface): a batch of spot grids
runs as one parallel numba sweep per data part; other strategies run one backtest per thread
(their kernels release the GIL). Any Optuna storage works: SQLite for one machine, PostgreSQL
for many (every worker that opens the same study name on the same storage joins it).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import socket
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from engine.optimize.walkforward import DataSet, Fitness, walk_forward
from engine.strategies.errors import ParamError
from engine.strategies.registry import SPACES, config_from, spec
from engine.strategies.space import Choice, Dimension, FloatRange, IntRange

DAY_MS = 86_400_000
MEMORY = ":memory:"  # a study kept in memory only (Suggest's: nothing written)
HEARTBEAT_S = 30  # a running trial's heartbeat; one silent for GRACE_S is failed by any worker
GRACE_S = 300
ORPHAN_S = 60  # a running trial that never got its worker's name (killed between ask and naming)


@dataclass
class Setup:
    """What a study searches: it is stored with the study, and a worker that joins or resumes
    it must bring the same."""

    strategy: str
    data: list[DataSet]
    base: dict = field(default_factory=dict)  # the user's settings; trials change only the space's names
    space: dict[str, Dimension] | None = None  # None: the strategy's SEARCH_SPACE
    windows: int = 3
    train_frac: float = 0.7
    tail_frac: float = 0.15
    fitness: Fitness = field(default_factory=Fitness)
    min_bars: int = 200  # the fewest bars a part of the data may have

    def __post_init__(self):
        if self.space is None:
            self.space = dict(SPACES[self.strategy])
        config_from(self.strategy, self.base)  # unknown names or bad values refused by name
        for name, dim in self.space.items():
            dim.check(name)
            config_from(self.strategy, {**self.base, name: _sample_value(dim)})  # a name the strategy has
        self.fitness.check()
        names = [d.name for d in self.data]
        if len(set(names)) != len(names):
            raise ValueError(f"--data: the same data set given twice ({', '.join(names)})")
        for d in self.data:
            d.split = walk_forward(len(d.candles), self.windows, self.train_frac, self.tail_frac, self.min_bars,
                                   source=d.name)

    def describe(self) -> dict:
        return {
            "strategy": self.strategy, "base": self.base,
            "space": {k: v.describe() for k, v in self.space.items()},
            "windows": self.windows, "train_frac": self.train_frac, "tail_frac": self.tail_frac,
            "fitness": asdict(self.fitness),
            "data": [{"name": d.name, "bars": len(d.candles), "first": int(d.candles.time[0]),
                      "last": int(d.candles.time[-1]), "funding": d.funding is not None} for d in self.data],
        }

    def default_study_name(self) -> str:
        digest = hashlib.sha1(json.dumps(self.describe(), sort_keys=True, default=str).encode()).hexdigest()[:8]
        return f"{self.strategy}-{digest}"


def _sample_value(dim: Dimension):
    return dim.options[0] if isinstance(dim, Choice) else dim.low


def suggest(trial, space: dict[str, Dimension]) -> dict:
    out = {}
    for name, dim in space.items():
        if isinstance(dim, IntRange):
            out[name] = trial.suggest_int(name, dim.low, dim.high, step=dim.step, log=dim.log)
        elif isinstance(dim, FloatRange):
            out[name] = trial.suggest_float(name, dim.low, dim.high, log=dim.log)
        else:
            out[name] = trial.suggest_categorical(name, list(dim.options))
    return out


def default_storage(data_dir: Path | None = None) -> str:
    """SQLite in the data folder (``data_dir``, else the app's)."""
    from engine.runtime.runner import default_data_dir

    folder = Path(data_dir) if data_dir else default_data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'optuna.db'}"


def _open_study(url: str, name: str, attempts: int = 6):
    """(storage, study), created if new. Workers started together on an empty database race
    to create Optuna's tables; the loser retries once the winner is done."""
    import optuna
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    shown = re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url)  # (never a password in a message)
    attempt = 0
    while True:
        try:
            storage = None if url == MEMORY else url  # (None: Optuna's in-memory storage)
            if url.startswith(("sqlite", "postgresql", "mysql")):
                storage = optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
            study = optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True)
            return storage, study
        except ArgumentError as exc:  # no such database kind, a malformed URL
            raise ValueError(f"--storage {shown}: not a storage Optuna can open: {exc}") from None
        except SQLAlchemyError as exc:
            attempt += 1
            if attempt >= attempts:
                why = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
                raise ValueError(f"--storage {shown}: cannot open it: {why}") from None
            time.sleep(0.5 * attempt)


@dataclass
class Progress:
    done: int  # finished trials in the study (complete or pruned), every worker's
    target: int
    best: float
    eta_s: float
    ran: int  # trials this worker finished


class Search:
    """One worker of a study: ``run`` adds trials until the study has ``target`` finished ones
    (complete or pruned, by all workers together), the time is up, or ``stop`` is set."""

    def __init__(self, setup: Setup, *, storage: str | None = None, study: str | None = None,
                 seed: int | None = None, batch: int | None = None, threads: int | None = None):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # Heartbeats are how a worker's crash is noticed: Optuna calls them experimental and
        # meant for study.optimize; ask-and-tell records them itself (_heartbeat).
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        self.setup = setup
        self.storage_url = storage or default_storage()
        self.study_name = study or setup.default_study_name()
        self.threads = threads or os.cpu_count() or 1
        self.spec = spec(setup.strategy)
        self.batch = batch or (16 if self.spec.sweep else self.threads)
        self.storage, self.study = _open_study(self.storage_url, self.study_name)
        wanted = json.loads(json.dumps(setup.describe(), default=str))
        have = self.study.user_attrs.get("setup")
        if have is None:
            self.study.set_user_attr("setup", wanted)
        elif have != wanted:
            diff = sorted(k for k in wanted if wanted.get(k) != have.get(k))
            raise ValueError(f"--study {self.study_name}: the study in {self.storage_url} was set up with other "
                             f"{', '.join(diff)}; give the same settings to resume or join it, or another --study")
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._fail_dead_workers()
        # Each worker, and each resume, draws its own stream: a fixed seed makes a fresh study
        # repeatable without two workers ever asking for the same parameters. The stream is
        # the seed plus the number of the worker's first trial, which the storage hands out
        # once (two workers started together both see an empty study, never the same number).
        self._seed = seed
        self.study.sampler = self._sampler(None)
        self.study.pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
        self._pool = ThreadPoolExecutor(self.threads) if not self.spec.sweep else None

    @staticmethod
    def _sampler(seed: int | None):
        import optuna

        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=10)

    # -- bookkeeping -------------------------------------------------------------------------

    def _fail_dead_workers(self) -> None:
        """Running trials left by a killed worker: those of this machine whose process is gone
        now, the others once their heartbeat is older than the grace period, and any that never
        got its worker's name (killed between asking for the trial and naming itself) once it
        is ORPHAN_S old: without it, no heartbeat would ever make it stale, and the study would
        wait for it for ever."""
        import datetime as dt

        import optuna
        from optuna.trial import TrialState

        host = socket.gethostname()
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            who = t.user_attrs.get("worker", "")
            name, _, pid = who.rpartition(":")
            orphan = not who and t.datetime_start is not None \
                and (dt.datetime.now() - t.datetime_start).total_seconds() >= ORPHAN_S
            if orphan or (name == host and pid.isdigit() and not _alive(int(pid))):
                self.storage.set_trial_user_attr(t._trial_id, "error", "its worker died")
                self.storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        if isinstance(self.storage, optuna.storages.RDBStorage):
            optuna.storages.fail_stale_trials(self.study)

    def counts(self) -> tuple[int, int]:
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        return done, running

    def best_value(self) -> float:
        from optuna.trial import TrialState

        values = [t.value for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        return max(values) if values else math.nan

    # -- running -----------------------------------------------------------------------------

    def run(self, target: int, *, timeout: float | None = None, stop: threading.Event | None = None,
            progress: Callable[[Progress], None] | None = None) -> int:
        """Add trials until the study has ``target`` finished ones; returns how many this worker
        finished. ``stop`` (set from Ctrl-C or a Cancel button) ends it after the current part
        of the data: finished trials are kept, the batch's unfinished ones are failed as stopped."""
        t0 = time.monotonic()
        ran = 0
        failed_in_a_row = 0
        while not (stop and stop.is_set()):
            if timeout is not None and time.monotonic() - t0 >= timeout:
                break
            done, running = self.counts()
            if done >= target:
                break
            n = min(self.batch, target - done - running)
            if n <= 0:  # the others' running trials will finish the study, or time out as stale
                self._fail_dead_workers()
                time.sleep(0.5)
                continue
            finished, failed = self._run_batch(n, stop)
            ran += finished
            failed_in_a_row = failed_in_a_row + failed if finished == 0 else 0
            if failed_in_a_row >= max(20, 2 * self.batch):
                last = self.study.get_trials(deepcopy=False)[-1].user_attrs.get("error", "?")
                raise ValueError(f"every trial failed; the last one: {last}")
            if progress:
                done, _ = self.counts()
                rate = ran / max(time.monotonic() - t0, 1e-9)
                eta = (target - done) / rate if rate > 0 else math.inf
                progress(Progress(done, target, self.best_value(), max(eta, 0.0), ran))
        return ran

    def _run_batch(self, n: int, stop: threading.Event | None) -> tuple[int, int]:
        from optuna.trial import TrialState

        s = self.setup
        trials, cfgs = [], []
        failed = 0
        for _ in range(n):
            trial = self.study.ask()
            if self._seed is not None:  # (before any parameter is drawn: they are drawn as suggested)
                self.study.sampler = self._sampler(self._seed + trial.number)
                self._seed = None
            trial.set_user_attr("worker", self.worker)
            params = suggest(trial, s.space)
            try:
                cfg = config_from(s.strategy, {**s.base, **params})
                self._check(cfg)
            except (ParamError, ValueError) as exc:
                trial.set_user_attr("error", str(exc))
                self.study.tell(trial, state=TrialState.FAIL)
                failed += 1
                continue
            trials.append(trial)
            cfgs.append(cfg)
        n_sets, k = len(s.data), s.windows
        ins = np.full((len(trials), n_sets, k), np.nan)
        oos = np.full((len(trials), n_sets, k), np.nan)
        alive = list(range(len(trials)))
        finished = 0
        for w in range(k):
            for part, scores in (("train", ins), ("test", oos)):
                for d, ds in enumerate(s.data):
                    a, b = getattr(ds.split.windows[w], part)
                    got = self.score(ds, a, b, f"{part} {w}", [cfgs[i] for i in alive])
                    scores[alive, d, w] = got
                    if stop and stop.is_set():
                        for i in alive:
                            trials[i].set_user_attr("error", "stopped")
                            self.study.tell(trials[i], state=TrialState.FAIL)
                        return finished, failed
                    self._heartbeat([trials[i] for i in alive])
                if part == "train":
                    for i in list(alive):
                        value = s.fitness.combine(ins[i, :, : w + 1])
                        if not math.isfinite(value):
                            self._finish(trials[i], ins[i], oos[i], TrialState.FAIL, "a backtest failed")
                            alive.remove(i)
                            failed += 1
                            continue
                        trials[i].report(value, w)
                        if w < k - 1 and trials[i].should_prune():
                            self._finish(trials[i], ins[i], oos[i], TrialState.PRUNED)
                            alive.remove(i)
                            finished += 1
            if not alive:
                break
        for i in alive:
            self._finish(trials[i], ins[i], oos[i], TrialState.COMPLETE)
        return finished + len(alive), failed

    def _heartbeat(self, trials) -> None:
        import optuna

        if isinstance(self.storage, optuna.storages.RDBStorage):
            for t in trials:
                self.storage.record_heartbeat(t._trial_id)

    def _check(self, cfg) -> None:
        """Settings refused before any backtest (against the first data set's first price)."""
        self.spec.check(cfg, float(self.setup.data[0].candles.close[0]))

    def _finish(self, trial, ins, oos, state, error: str | None = None) -> None:
        s = self.setup
        trial.set_user_attr("in_sample", _listed(ins))
        trial.set_user_attr("out_of_sample", _listed(oos))
        done = ~np.isnan(oos).any(axis=0)
        oos_value = s.fitness.combine(oos[:, done]) if done.any() else math.nan
        trial.set_user_attr("oos", None if math.isnan(oos_value) else oos_value)
        if error:
            trial.set_user_attr("error", error)
        from optuna.trial import TrialState

        if state == TrialState.COMPLETE:
            self.study.tell(trial, s.fitness.combine(ins))
        else:
            self.study.tell(trial, state=state)

    def measure(self, candles, ds: DataSet, cfgs: list) -> list[dict | None]:
        """What the fitness reads (return, drawdown, fills) of each config on ``candles``; None
        where its backtest failed. A strategy with a sweep runs them side by side, others a thread each."""
        if self.spec.sweep:
            m = self.spec.sweep(candles, cfgs)
            return [{k: float(v[j]) for k, v in m.items()} for j in range(len(cfgs))]
        from engine.strategies.registry import run_backtest

        def one(cfg):
            try:
                r = run_backtest(self.setup.strategy, candles, cfg, ds.funding)
            except (ParamError, ValueError):
                return None
            return {"total_return": r.metrics["total_return"], "max_drawdown": r.metrics["max_drawdown"],
                    "fills": float(len(r.trades))}

        return list(self._pool.map(one, cfgs))

    def _part_score(self, m: dict | None, candles) -> float:
        days = len(candles) * candles.timeframe_ms / DAY_MS
        return math.nan if m is None else self.setup.fitness.part(m["total_return"], m["max_drawdown"], m["fills"],
                                                                  days)

    def score(self, ds: DataSet, a: int, b: int, purpose: str, cfgs: list) -> np.ndarray:
        """The fitness of each config on bars a..b of ``ds`` (NaN where its backtest failed)."""
        if not cfgs:
            return np.zeros(0)
        candles = ds.segment(a, b, purpose)
        return np.array([self._part_score(m, candles) for m in self.measure(candles, ds, cfgs)])

    # -- results -----------------------------------------------------------------------------

    def best_trial(self):
        from optuna.trial import TrialState

        done = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not done:
            raise ValueError(f"study {self.study_name} has no complete trial yet")
        return max(done, key=lambda t: t.value)

    def best_config(self):
        return config_from(self.setup.strategy, {**self.setup.base, **self.best_trial().params})

    def holdout(self) -> dict:
        """The best settings on each data set's held-out tail (read here for the first time)."""
        cfg = self.best_config()
        per_set, scores = {}, []
        for ds in self.setup.data:
            a, b = ds.split.tail
            candles = ds.segment(a, b, "holdout")
            m = self.measure(candles, ds, [cfg])[0]
            scores.append(self._part_score(m, candles))
            per_set[ds.name] = {"period": ds.period(a, b), "score": scores[-1], **(m or {})}
        return {"score": float(np.mean(scores)), "sets": per_set}

    def table(self, trials=None):
        """Every trial (of ``trials`` when already read): state, in-sample score (what is
        maximized), out-of-sample score, the per-window scores (mean over data sets), parameters,
        worker and time taken."""
        import pandas as pd

        rows = []
        for t in self.study.get_trials(deepcopy=False) if trials is None else trials:
            row = {"trial": t.number, "state": t.state.name, "in_sample": t.value, "oos": t.user_attrs.get("oos")}
            for key, label in (("in_sample", "is"), ("out_of_sample", "oos")):
                scores = np.array(t.user_attrs.get(key, []), dtype=float)  # [data set][window], None: not run
                for w in range(scores.shape[1] if scores.ndim == 2 else 0):
                    ran = scores[:, w][~np.isnan(scores[:, w])]
                    row[f"{label}_w{w}"] = float(ran.mean()) if len(ran) else None
            row.update(t.params)
            row["seconds"] = t.duration.total_seconds() if t.duration else None
            row["worker"] = t.user_attrs.get("worker")
            row["error"] = t.user_attrs.get("error")
            rows.append(row)
        return pd.DataFrame(rows)

    def importances(self) -> dict[str, float]:
        import optuna
        from optuna.trial import TrialState

        if len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
            return {}
        return optuna.importance.get_param_importances(self.study)

    def best_json(self) -> dict:
        """The best settings as a file Add System, the Backtest tab and ``griddesk backtest
        --params`` accept, with where they came from."""
        t = self.best_trial()
        return {"strategy": self.setup.strategy, "params": self.best_config().to_dict(),
                "optimized": {"study": self.study_name, "trial": t.number, "in_sample": t.value,
                              "out_of_sample": t.user_attrs.get("oos"), "searched": sorted(self.setup.space)}}

    def close(self) -> None:
        if self._pool:
            self._pool.shutdown()


def _listed(a: np.ndarray) -> list:
    return [[None if math.isnan(v) else float(v) for v in row] for row in a]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
