"""Run several systems on one asyncio loop (a plain loop headless, the qasync loop in the app).

Files in the data folder: ``state/systems/<name>.json`` (each system's strategy and orders,
the authority on restart), ``state/bot_state.json`` (kill switch, dry-run, each system's status:
restored on start), ``state/open_orders.json`` and ``state/grid_config.json`` (views for people
and the GUI), ``journal/<name>.jsonl`` (append-only fills and order transitions) and
``logs/trading_*.jsonl`` (the event log).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from engine.data import load_candles
from engine.exchange.base import MarketRules
from engine.exchange.live import CcxtExchange
from engine.exchange.paper import PaperExchange, PaperPerpExchange
from engine.exchange.replay import ReplaySource
from engine.kernels.perp import tiers_for
from engine.risk import RiskGate, RiskLimits
from engine.runtime.config import ConfigError, SystemConfig
from engine.runtime.sending import account_value
from engine.runtime.trader import Trader
from engine.store import EventLog, read_json, write_json_atomic
from engine.strategies.registry import RUNTIME

Keys = Callable[[str], tuple[str, str]]


def default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("griddesk", appauthor=False))


def env_keys(exchange: str) -> tuple[str, str]:
    """Headless keys: GRIDDESK_<EXCHANGE>_API_KEY and GRIDDESK_<EXCHANGE>_SECRET."""
    name = exchange.upper()
    return os.environ.get(f"GRIDDESK_{name}_API_KEY", ""), os.environ.get(f"GRIDDESK_{name}_SECRET", "")


REPLAY_WARMUP = 200  # candles of history before a replay's first, unless it is given (replay_from)


def _replay(cfg: SystemConfig, sample_path: Path) -> ReplaySource:
    """Recorded candles served as if live, from the candle after the warm-up, or from the one
    at ``replay_from`` (the candles before it are the history): the same run every time."""
    path = sample_path if cfg.data == "sample" else Path(cfg.data)
    candles = load_candles(path)
    first = REPLAY_WARMUP
    if cfg.replay_from:
        from engine.fetch import parse_when

        first = int(candles.time.searchsorted(parse_when(cfg.replay_from)))
        if not 1 <= first < len(candles) - 1:
            raise ConfigError(f"system {cfg.name!r}: replay_from: {cfg.replay_from} leaves no candle before or "
                              f"after it in {path}")
    return ReplaySource(candles, seconds_per_candle=cfg.replay_seconds, warmup=first)


def build_adapter(cfg: SystemConfig, *, keys: Keys = env_keys, sample_path: Path | None = None):
    """The adapter a system trades through: a PaperExchange (PaperPerpExchange for perpetuals)
    for paper and dry-run systems (on a replay of recorded candles, or on the exchange's live
    candles), else a CcxtExchange."""
    url = cfg.exchange_url or None
    perp = cfg.market == "perpetual"
    sc = RUNTIME[cfg.strategy].config.from_dict(dict(cfg.params, capital=cfg.capital))
    if cfg.mode == "paper" or cfg.dry_run:
        if cfg.data:
            from engine.sample import SAMPLE_PATH

            source = _replay(cfg, sample_path or SAMPLE_PATH)
            base, quote = cfg.symbol.split(":")[0].split("/")
            rules = MarketRules(cfg.symbol, sc.tick, sc.lot, 0.0, sc.min_notional, base, quote)
        else:
            source = CcxtExchange(cfg.exchange, market=cfg.market, base_url=url, sandbox=cfg.sandbox,
                                  websocket=cfg.streams)
            rules = None
        if perp:
            return PaperPerpExchange(source, rules, quote=cfg.capital, leverage=sc.leverage,
                                     tiers=tiers_for(sc.tiers, cfg.symbol), maker_fee=sc.maker_fee,
                                     taker_fee=sc.taker_fee, slippage=sc.slippage, fill_rule=sc.fill_rule,
                                     queue_depth=sc.queue_depth, fill_seed=sc.fill_seed)
        taker = sc.fee if sc.taker_fee is None else sc.taker_fee
        return PaperExchange(source, rules, quote=cfg.capital, maker_fee=sc.fee, taker_fee=taker,
                             slippage=sc.slippage, fill_rule=sc.fill_rule, queue_depth=sc.queue_depth,
                             fill_seed=sc.fill_seed)
    if perp and sc.leverage != int(sc.leverage):
        raise ConfigError(f"system {cfg.name!r}: params.leverage: {sc.leverage:g}: live perpetual leverage is a "
                          "whole number (the exchange's setting)")
    key, secret = keys(cfg.exchange)
    if not key or not secret:
        n = cfg.exchange.upper()
        raise ConfigError(f"system {cfg.name!r}: live trading needs API keys for {cfg.exchange}: store them in "
                          f"the app (OS keyring) or set GRIDDESK_{n}_API_KEY and GRIDDESK_{n}_SECRET")
    if perp:
        return CcxtExchange(cfg.exchange, market=cfg.market, base_url=url, api_key=key, secret=secret,
                            sandbox=cfg.sandbox, fee_rate=sc.maker_fee, taker_rate=sc.taker_fee,
                            websocket=cfg.streams)
    return CcxtExchange(cfg.exchange, base_url=url, api_key=key, secret=secret, sandbox=cfg.sandbox, fee_rate=sc.fee,
                        websocket=cfg.streams)


def set_limits(limits: RiskLimits, saved, where) -> None:
    """Set the risk limits bot_state.json keeps (``saved``, its "limits"; null: none) on
    ``limits``; ConfigError naming the file and the limit at fault."""
    saved = saved or {}
    if not isinstance(saved, dict):
        raise ConfigError(f"{where}: limits: must map each risk limit to a number, got {saved!r}")
    for name, value in saved.items():
        if not hasattr(limits, name):
            raise ConfigError(f"{where}: limits.{name}: unknown risk limit")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigError(f"{where}: limits.{name}: must be a number (or null: none), got {value!r}")
        setattr(limits, name, float("inf") if value is None else value)  # null: none
    try:
        limits.validate()
    except ValueError as exc:
        raise ConfigError(f"{where}: limits.{exc}") from None


def saved_limits(data_dir: Path) -> tuple[RiskLimits, str]:
    """The risk limits the running systems of ``data_dir`` use (bot_state.json's; the defaults
    where it has none) and where they came from, in words; read only: nothing is written, a
    corrupt file is reported."""
    path = Path(data_dir) / "state" / "bot_state.json"
    limits = RiskLimits()
    saved = read_json(path, default={}, keep=False).data.get("limits")
    set_limits(limits, saved, path)
    return limits, f"the limits of {path}" if saved else f"the default limits (none in {path})"


class Runner:
    def __init__(self, systems: list[SystemConfig], data_dir: str | Path, *, keys: Keys = env_keys,
                 exchange_url: str | None = None, poll_seconds: float = 1.0, risk: RiskGate | None = None,
                 sample_path: Path | None = None, event_log: EventLog | None = None, replay_from: str = ""):
        self.data_dir = Path(data_dir)
        self.events = event_log if event_log is not None else EventLog(self.data_dir / "logs")
        self.risk = risk or RiskGate(event_log=self.events)
        if risk is not None and risk.event_log is None:
            risk.event_log = self.events
        self.poll_seconds = poll_seconds
        self.keys = keys
        self.sample_path = sample_path
        # what the command line sets for every system it starts (the app's too: --exchange-url)
        self._over = {**({"exchange_url": exchange_url} if exchange_url else {}),
                      **({"replay_from": replay_from} if replay_from else {})}
        self.systems = [self._as_run(s) for s in systems]
        self.traders: dict[str, Trader] = {}
        self.errors: dict[str, str] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self._stops: dict[str, asyncio.Event] = {}
        self._spawned: set[asyncio.Task] = set()  # (the loop holds tasks weakly)
        self.write_problem = ""  # why the views could not be written, as last seen
        self.status: dict | None = None  # bot_state.json as last made on the loop (engine.runtime.exporter)
        # awaited before a system starts: the app's preparing of the engine (its kernels compiled
        # out of its process, so that no first decision compiles on its one thread)
        self.prepare: Callable[[], Awaitable] | None = None
        self._outside: dict[str, tuple] = {}  # account -> (its systems, what is not theirs, moved at the last check)
        self._restore_switches()

    @property
    def bot_state_path(self) -> Path:
        return self.data_dir / "state" / "bot_state.json"

    def _restore_switches(self) -> None:
        """The kill switch and the global dry-run survive a restart."""
        loaded = read_json(self.bot_state_path, default={})
        if loaded.problem:
            self.events.log("state_problem", file=str(self.bot_state_path), problem=loaded.problem)
        d = loaded.data
        where = self.bot_state_path
        set_limits(self.risk.limits, d.get("limits"), where)
        if d.get("kill_all"):
            self.risk.kill()
        if d.get("dry_run_all"):
            self.risk.set_dry_run(None, True)
        killed = d.get("killed", [])
        if not isinstance(killed, list) or not all(isinstance(n, str) for n in killed):
            raise ConfigError(f"{where}: killed: must be a list of system names, got {killed!r}")
        for name in killed:
            self.risk.kill(name)
        paused = d.get("paused") or {}
        if not isinstance(paused, dict) or not all(isinstance(v, list) and len(v) == 2 for v in paused.values()):
            raise ConfigError(f"{where}: paused: must map each system to [reason, held]")
        for name, (reason, held) in paused.items():  # a pause is the user's to lift, restart or not
            self.risk.pause(name, str(reason), hold=bool(held))

    def views(self) -> dict[str, dict]:
        """bot_state.json, open_orders.json and grid_config.json as of now (a snapshot)."""
        return {
            "bot_state.json": {
                "kill_all": self.risk.kill_all, "dry_run_all": self.risk.dry_run_all,
                "killed": self.risk.killed_systems(),
                "paused": self.risk.paused_systems(),
                "limits": {k: None if v == float("inf") else v for k, v in vars(self.risk.limits).items()},
                "systems": {name: t.summary() for name, t in self.traders.items()},
                "errors": dict(self.errors),
            },
            "open_orders.json": {name: [o.to_dict() for o in t.book.live()] for name, t in self.traders.items()},
            "grid_config.json": {
                name: {"config": t.cfg.to_dict(), "params": t.strategy.params._asdict() if t.strategy.params else None}
                for name, t in self.traders.items() if t.strategy is not None},
        }

    def _write(self, views: dict[str, dict]) -> None:
        for name, data in views.items():
            write_json_atomic(self.data_dir / "state" / name, data, backup=name == "bot_state.json")

    def write_views(self) -> None:
        self._write(self.views())

    def _as_run(self, cfg: SystemConfig) -> SystemConfig:
        return SystemConfig(**{**cfg.to_dict(), **self._over}).validate(f"system {cfg.name!r}") if self._over else cfg

    # -- one system at a time (the GUI's ON/OFF) ---------------------------------------------------
    def start(self, cfg: SystemConfig) -> asyncio.Task:
        """Start trading one system on the running loop (no-op when it already runs)."""
        cfg = self._as_run(cfg)
        task = self._tasks.get(cfg.name)
        if task is not None and not task.done():
            return task
        self.errors.pop(cfg.name, None)
        stop = asyncio.Event()
        self._stops[cfg.name] = stop
        self._tasks[cfg.name] = task = asyncio.ensure_future(self._run_one(cfg, stop))
        return task

    async def stop(self, name: str) -> None:
        """Stop one system cleanly (its resting orders stay)."""
        if name in self._stops:
            self._stops[name].set()
        task = self._tasks.pop(name, None)
        if task is not None:
            await task
        self._stops.pop(name, None)

    def spawn(self, coro, what: str = "") -> asyncio.Task:
        """Run a coroutine on the loop without waiting for it; its failure is logged, never lost."""
        task = asyncio.ensure_future(coro)
        self._spawned.add(task)

        def done(t: asyncio.Task) -> None:
            self._spawned.discard(t)
            if not t.cancelled() and t.exception() is not None:
                self.events.log("error", error=f"{what}{type(t.exception()).__name__}: {t.exception()}")
        task.add_done_callback(done)
        return task

    def stop_soon(self, name: str) -> asyncio.Task:
        """Stop one system without waiting for it (the user's OFF)."""
        return self.spawn(self.stop(name), f"stopping {name}: ")

    def running(self, name: str) -> bool:
        task = self._tasks.get(name)
        return task is not None and not task.done()

    async def _run_one(self, cfg: SystemConfig, stop: asyncio.Event) -> None:
        adapter = None
        try:
            if self.prepare is not None:  # (an OFF meanwhile ends the wait)
                ready, stopped = asyncio.ensure_future(self.prepare()), asyncio.ensure_future(stop.wait())
                await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
                stopped.cancel()
                if stop.is_set():
                    return
            build = functools.partial(build_adapter, cfg, keys=self.keys, sample_path=self.sample_path)
            # recorded candles are read from their file in a worker thread (a year of 1m bars
            # takes most of a second), not on the loop the app's window runs on
            adapter = await asyncio.get_running_loop().run_in_executor(None, build) if cfg.data else build()
            trader = Trader(cfg, adapter, self.risk, self.data_dir, event_log=self.events)
            self.traders[cfg.name] = trader
            await trader.run(stop, self.poll_seconds)
        except Exception as exc:
            text = str(exc)  # (our exchange errors already start with the exchange's error kind)
            self.errors[cfg.name] = text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"
            self.events.log("system_error", system=cfg.name, error=self.errors[cfg.name])
        finally:
            if adapter is not None:
                await adapter.close()

    def _signature(self) -> tuple:
        return (self.risk.kill_all, self.risk.dry_run_all, tuple(sorted(self.errors)),
                tuple((n, t.last_time, len(t.book.orders), t.risk.status(n).label) for n, t in self.traders.items()))

    async def keep_views(self, stop: asyncio.Event) -> None:
        """Rewrite the views when something changed, at most every 2 s."""
        seen = None
        while not stop.is_set():
            sig = self._signature()
            if sig != seen:
                # snapshot on the loop, write (fsync) in a worker thread
                try:
                    views = self.views()
                    self.status = views["bot_state.json"]  # (what the metrics endpoint serves)
                    await asyncio.get_running_loop().run_in_executor(None, self._write, views)
                    seen = sig
                    self.write_problem = ""
                except OSError as exc:  # a full disk, a folder made read-only: said once, tried again
                    problem = f"{exc.filename or self.data_dir}: {exc.strerror or exc}"
                    if problem != self.write_problem:
                        self.write_problem = problem
                        print(f"griddesk: cannot write the status files: {problem} (the systems that cannot "
                              "write their state stop; free space or fix the folder, then start them again)",
                              file=sys.stderr)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)

    async def check_solvency(self) -> str:
        """Live systems per account: what the exchange holds (quote plus each traded base at
        its last price; also the portfolio the risk gate's shares are of) against the equity
        of the systems trading there. On a deficit (a withdrawal, a loss elsewhere) the gate
        cuts every allocation in proportion; a grid cannot shrink safely mid-run, so each cut
        system is paused with the reason, for the user to decide. Returns the message ('' when
        the account covers the systems)."""
        groups: dict[str, list[Trader]] = {}
        for t in self.traders.values():
            if not t.paper and t.strategy is not None and t.strategy.started and len(t.hist):
                groups.setdefault(t.account, []).append(t)
        messages = []
        for account, traders in groups.items():
            balance = await traders[0].adapter.balance()
            prices = {t.rules.base: float(t.hist[-1, 3]) for t in traders}
            held = account_value(balance, traders[0].rules.quote, prices)
            self.risk.set_portfolio(account, held)  # what the exposure shares are of
            books_msg = self._check_books(account, [t for t in traders if not t.perpetual], balance)
            if books_msg:
                messages.append(books_msg)
            equity = {t.cfg.name: t.strategy.books(float(t.hist[-1, 3]))["equity"] for t in traders}
            _, msg = self.risk.solvency(held, equity)
            if msg:
                for name in equity:
                    self.risk.pause(name, f"solvency: {msg}")
                messages.append(msg)
        return "; ".join(messages)

    def _check_books(self, account: str, traders: list[Trader], balance) -> str:
        """The books against the exchange (spot accounts; a perpetual's positions are checked
        after every sync by its trader): what the account holds of each asset, less what the
        systems trading there hold by their books, is what is not theirs. It is measured when
        the account's set of systems starts (or is resumed) and must stay put; a change beyond a
        cent (quote) or a lot (a coin) seen at two checks in a row (at the first it may be a fill
        the books apply at the next close) is an error, and pauses the systems' openings until
        the user switches them off and on. Returns the message ('' when the books agree)."""
        if not traders:
            return ""
        names = tuple(sorted(t.cfg.name for t in traders))
        if any(self.risk.status(n).paused for n in names):
            self._outside.pop(account, None)  # measured again once the user resumes them
            return ""
        quote = traders[0].rules.quote
        step = {quote: 0.01}
        ours = {quote: 0.0}
        for t in traders:
            books = t.strategy.books(0.0)
            ours[quote] += books["cash"]
            ours[t.rules.base] = ours.get(t.rules.base, 0.0) + books["position"]
            step[t.rules.base] = max(step.get(t.rules.base, 0.0), t.rules.lot or 1e-8)
        outside = {a: balance.total.get(a, 0.0) - q for a, q in ours.items()}
        known = self._outside.get(account)
        if known is None or known[0] != names:
            self._outside[account] = (names, outside, {})
            return ""
        moved = {a: v - known[1][a] for a, v in outside.items() if a in known[1] and abs(v - known[1][a]) > step[a]}
        seen_before = dict(known[2])
        known[2].clear()
        known[2].update(moved)
        if not moved or not seen_before.keys() & moved.keys():
            return ""
        diff = ", ".join(f"{a} {d:+,.8g}" for a, d in sorted(moved.items()))
        msg = (f"the books of {', '.join(names)} differ from the exchange: it holds {diff} more than the journal "
               "says since they started (a fill not booked, or a deposit, withdrawal or trade outside GridDesk)")
        self.events.log("books_mismatch", account=account, systems=list(names), difference=moved)
        for n in names:
            self.risk.pause(n, f"{msg}; switch the system off and on once explained")
        self._outside.pop(account, None)
        return msg

    async def watch_solvency(self, stop: asyncio.Event, every: float = 60.0) -> None:
        while not stop.is_set():
            try:
                await self.check_solvency()
            except Exception as exc:
                self.events.log("solvency_check_failed", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

    async def run(self, stop: asyncio.Event, *, until_stopped: bool = False) -> None:
        """Headless: every system until ``stop`` is set (or all of them have ended, unless
        ``until_stopped``: ``griddesk serve``, whose systems come and go by the control API)."""
        self.events.log("runner_started", systems=[s.name for s in self.systems])
        for s in self.systems:
            self.start(s)
        views = asyncio.create_task(self.keep_views(stop))
        solvency = asyncio.create_task(self.watch_solvency(stop))
        waits = [asyncio.ensure_future(stop.wait())]
        if not until_stopped:
            waits.append(asyncio.ensure_future(asyncio.gather(*self._tasks.values())))
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for name in list(self._tasks):
            await self.stop(name)
        stop.set()
        await views
        await solvency
        self.write_views()
        self.events.log("runner_stopped")
        self.events.close()
