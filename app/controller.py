"""The one door between the widgets and the engine: Qt signals out, plain method calls in.

It owns the systems (cryptos.json in the data folder), the risk gate and a Runner whose
traders run as tasks on the qasync loop. Widgets read snapshots (``system_rows``,
``order_rows``, ``chart``) and never see ccxt or an adapter.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from app.secrets import load_keys, store_keys
from engine.risk import RiskGate
from engine.runtime.config import RUNTIME_STRATEGIES as RUNTIME_STRATEGIES  # (the widgets build systems
from engine.runtime.config import ConfigError as ConfigError  # with these three: they reach the engine here)
from engine.runtime.config import SystemConfig
from engine.runtime.desk import RISK, Desk
from engine.runtime.runner import Runner, default_data_dir
from engine.store import EventLog, private_folder
from engine.summary import qty_text as qty_text  # (the widgets' words for a quantity)
from engine.summary import running_text as running_text  # (the widgets' words for a running time)

ROOT = Path(__file__).resolve().parents[1]


class Controller(QObject):
    systemsChanged = Signal()
    riskChanged = Signal()
    logEvent = Signal(str, dict)  # event, fields
    tick = Signal()  # a refresh of everything that moves (orders, chart, statuses)
    engineProgress = Signal(str)  # preparing the engine: its progress lines; "" once ready

    def __init__(self, data_dir: str | Path | None = None, *, keys=load_keys, refresh_ms: int = 500,
                 exchange_url: str | None = None):
        super().__init__()
        self.data_dir = Path(data_dir) if data_dir else default_data_dir()
        self.keys = keys
        self.exchange_url = exchange_url or None  # every exchange request to this host (testnet, simulator)
        self.assistant_url = None  # the Anthropic API's (None: the SDK's default, or ANTHROPIC_BASE_URL)
        self.metrics_server = self.api_server = None  # serving while the app runs (--metrics-port, --api-port)
        self._assistant = None  # made at the first question
        self._notifying: asyncio.Task | None = None  # the Telegram notifier (--telegram-chat), told to end by _told
        self._told = asyncio.Event()
        self._symbols: dict[tuple[str, str], list[str]] = {}
        config_path = self.data_dir / "cryptos.json"
        if not config_path.exists():  # first launch: the bundled default systems
            private_folder(config_path.parent)
            shutil.copy2(ROOT / "cryptos.json", config_path)
            os.chmod(config_path, 0o600)
        self.events = EventLog(self.data_dir / "logs")
        self.events.listeners.append(self.logEvent.emit)  # (the Logs tab shows them live)
        self.risk = RiskGate(event_log=self.events)
        self.runner = Runner([], self.data_dir, keys=keys, risk=self.risk, poll_seconds=0.25, event_log=self.events,
                             exchange_url=self.exchange_url)
        self.runner.prepare = self.prepare_engine
        self.desk = Desk(config_path, self.runner)
        self.desk.listeners.append(lambda what: (self.riskChanged if what == RISK else self.systemsChanged).emit())
        self._engine: asyncio.Future | None = None
        self._pool = ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 2) - 1),
                                        thread_name_prefix="griddesk-numba")
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.tick.emit)
        self._timer.start(refresh_ms)

    def start(self) -> None:
        """On the running loop: write the state views as they change, start the systems that
        were ON when the app closed."""
        # Everything loaded so far (Qt, numba, ccxt, pandas...) lives as long as the app: out of
        # the garbage collector's sight, a full collection takes ~1 ms instead of ~100 ms (a
        # visible stall). Again once the systems have booted.
        gc.freeze()
        QTimer.singleShot(10_000, gc.freeze)
        self.prepare_engine()  # at once: the first backtest or system need not wait for it
        self._views_stop = asyncio.Event()
        self._views_task = asyncio.ensure_future(self.runner.keep_views(self._views_stop))
        # live accounts measured every minute: the solvency haircut and the portfolio shares
        self._solvency_task = asyncio.ensure_future(self.runner.watch_solvency(self._views_stop))
        for s in self.systems:
            if s.enabled:
                self.runner.start(s)

    @property
    def engine_note(self) -> str:
        """The last line of the engine's preparing, while it lasts."""
        return self.desk.preparing

    @engine_note.setter
    def engine_note(self, text: str) -> None:
        self.desk.preparing = text

    def prepare_engine(self) -> asyncio.Future:
        """Ready when every kernel is in numba's cache: at once when ``griddesk warmup`` has run
        on these sources, else after it has run in a process of its own (a minute or two, its
        progress on ``engineProgress``). Systems start and backtests run after it, so no kernel
        ever compiles on the GUI thread (a first perpetual froze the window for 20 s); the
        kernels are then loaded from the cache in a worker thread, so none loads there either."""
        if self._engine is None:
            self._engine = asyncio.ensure_future(self._prepare())
        return asyncio.shield(self._engine)

    async def _prepare(self) -> None:
        from engine.kernels import kernels_warm
        from engine.warmup import load

        if not kernels_warm():
            await self._compile()
        self.engine_note = "preparing the engine: loading its kernels"
        self.engineProgress.emit(self.engine_note)
        try:
            await asyncio.get_running_loop().run_in_executor(None, load)  # (see engine.warmup.load)
        except Exception as e:  # (each kernel then loads where first used: slower, never wrong)
            self.events.log("error", error=f"loading the engine failed: {type(e).__name__}: {e}")
        self.engine_note = ""
        self.engineProgress.emit("")

    async def _compile(self) -> None:
        self.engine_note = "preparing the engine: compiling its kernels once (a minute or two)"
        self.engineProgress.emit(self.engine_note)
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "app.cli", "warmup",
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        async for raw in proc.stdout:
            self.engine_note = raw.decode(errors="replace").strip()
            self.engineProgress.emit(self.engine_note)
        if await proc.wait() != 0:  # (the kernels then compile where first used: slow, never wrong)
            self.events.log("error", error=f"preparing the engine failed: {self.engine_note}")

    def spawn(self, coro) -> asyncio.Task:
        """Run a coroutine on the loop; its failure is logged, never lost."""
        return self.runner.spawn(coro)

    # -- the user's controls: the Desk's (engine/runtime/desk.py), the same as the control API's --
    @property
    def systems(self) -> list[SystemConfig]:
        return self.desk.systems

    @property
    def config_path(self) -> Path:
        return self.desk.config_path

    def system(self, name: str) -> SystemConfig:
        return self.desk.system(name)

    def add_system(self, cfg: SystemConfig) -> None:
        self.desk.add_system(cfg)

    def replace_system(self, name: str, cfg: SystemConfig) -> None:
        self.desk.replace_system(name, cfg)

    async def remove_system(self, name: str, cancel_orders: bool) -> int:
        return await self.desk.remove_system(name, cancel_orders)

    def set_on(self, name: str, on: bool) -> None:
        self.desk.set_on(name, on)

    def is_on(self, name: str) -> bool:
        return self.desk.is_on(name)

    def store_keys(self, exchange: str, api_key: str, secret: str) -> None:
        """Into the OS keyring (app.secrets); raises SecretsError with what to do."""
        store_keys(exchange, api_key, secret)
        self.events.log("keys_stored", exchange=exchange)  # never the keys themselves

    def has_keys(self, exchange: str) -> bool:
        return all(self.keys(exchange))

    # -- the exchange, for the dialogs (widgets never hold a client) ---------------------------------
    async def _client(self, exchange: str, market: str = "spot", api_key: str = "", secret: str = ""):
        # ccxt takes half a second to import: not on the GUI thread (a name it lacks is refused by
        # make_exchange)
        await asyncio.get_running_loop().run_in_executor(self._pool, importlib.import_module, "ccxt.async_support")
        from engine.exchange.live import CcxtExchange

        return CcxtExchange(exchange, market=market, base_url=self.exchange_url, api_key=api_key, secret=secret,
                            retries=1, timeout_ms=8_000)

    @staticmethod
    def exchanges() -> list[str]:
        """The exchanges ccxt knows, by id."""
        from engine.exchange.ccxt_factory import exchange_ids

        return exchange_ids()

    async def symbols(self, exchange: str, market: str) -> list[str]:
        """The exchange's active markets of that kind (asked once per app run)."""
        key = (exchange, market)
        if key not in self._symbols:
            client = await self._client(exchange, market)
            try:
                self._symbols[key] = await client.symbols()
            finally:
                await client.close()
        return self._symbols[key]

    async def last_price(self, exchange: str, market: str, symbol: str, data: str = "") -> tuple[float, str]:
        """The symbol's last price and where it came from: the last close of the candles a paper
        system trades (``data``: a file or the sample), else of the exchange's last minute."""
        if data:
            candles = await self.load_candles(data)
            return float(candles.close[-1]), f"the last close of {Path(data).name}"
        client = await self._client(exchange, market)
        try:
            rows = await client.candles(symbol, "1m", None, 2)
        finally:
            await client.close()
        if not rows:
            raise ValueError(f"{exchange} has no candles of {symbol}")
        return float(rows[-1][4]), f"{exchange}'s last price"

    async def test_connection(self, exchange: str, market: str = "spot", api_key: str = "", secret: str = "") -> str:
        """Fetch the balance with these keys (the stored ones when none are given): what the
        account holds, or raises with the exchange's answer (never the keys)."""
        if not (api_key and secret):
            api_key, secret = self.keys(exchange)
        if not (api_key and secret):
            raise ValueError(f"no API keys for {exchange}: enter them, or store them first")
        client = await self._client(exchange, market, api_key, secret)
        try:
            bal = await client.balance()
        finally:
            await client.close()
        held = sorted(((v, k) for k, v in bal.total.items() if v > 0), reverse=True)
        top = ", ".join(f"{k} {v:,.8g}" for v, k in held[:4]) or "nothing yet"
        return f"connected to {exchange} {market}: the account holds {top}"

    # -- risk ----------------------------------------------------------------------------------
    def set_kill(self, on: bool, system: str | None = None) -> None:
        self.desk.set_kill(on, system)

    def set_dry_run(self, on: bool, system: str | None = None) -> None:
        self.desk.set_dry_run(on, system)

    def open_order_count(self, system: str | None = None) -> int:
        return self.desk.open_order_count(system)

    async def cancel_all(self, system: str | None = None) -> int:
        return await self.desk.cancel_all(system)

    # -- backtests: loading, downloading and numba work off the GUI thread ----------------------
    async def in_pool(self, fn, *args):
        """``fn(*args)`` in the worker pool (numba kernels release the GIL); the GUI thread
        stays free while it runs."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def load_candles(self, path: str | Path):
        from engine.data import load_candles
        from engine.sample import SAMPLE_PATH

        return await self.in_pool(load_candles, SAMPLE_PATH if str(path) == "sample" else Path(path))

    async def load_funding(self, path: str | Path):
        from engine.data import load_funding

        return await self.in_pool(load_funding, Path(path))

    async def download_candles(self, exchange: str, symbol: str, timeframe: str, since, until, progress=None):
        """Candles through ccxt into the cache (engine/fetch.py); ``progress(done, total)``."""
        from engine.fetch import fetch_candles, parse_when

        return await fetch_candles(exchange, symbol, timeframe, parse_when(since), parse_when(until),
                                   progress=progress, cache_dir=self.data_dir / "candles")

    async def open_search(self, strategy: str, sources: list[str], *, space: dict, windows: int, resample: str = "",
                          funding_path: str = "", storage: str | None = None, study: str | None = None,
                          seed: int | None = None):
        """A worker of a walk-forward study (engine/optimize) on the candle files ``sources``,
        each made into ``resample`` bars when given; data loaded and the study opened in the
        worker pool."""
        from engine.optimize.study import Search, Setup, default_storage
        from engine.optimize.walkforward import open_data_sets
        from engine.strategies.registry import check_funding

        check_funding(strategy, bool(funding_path))

        def work():
            sets = open_data_sets(sources, resample=resample, funding=[funding_path] if funding_path else [])
            return Search(Setup(strategy, sets, space=space, windows=windows), study=study, seed=seed,
                          storage=storage or default_storage(self.data_dir))  # the app's folder (--data-dir)

        return await self.in_pool(work)

    async def stress(self, candles, strategy: str, cfg, *, paths: int, block: int) -> list[dict]:
        """The stress test (engine/stress.py) of a spot grid's settings on ``candles``, in the worker
        pool once the engine is prepared: each scenario's figures."""
        from engine.strategies.errors import ParamError
        from engine.stress import STRESSED, stress

        if strategy not in STRESSED:
            raise ParamError("strategy", f"the stress test runs spot grids ({', '.join(STRESSED)}), not {strategy}")
        await self.prepare_engine()
        results = await self.in_pool(lambda: stress(candles, cfg, paths=paths, block=block))
        return [r.summary() for r in results]

    async def suggest(self, exchange: str, market: str, symbol: str, timeframe: str, data: str, strategy: str,
                      days: int, params: dict):
        """Settings for a new system (engine/optimize/suggest.py) from the last ``days`` of its
        candles: the file a paper system trades (``data``), else the exchange's, downloaded
        into the candle cache; the search in the worker pool."""
        import time

        from engine.data import TIMEFRAMES_MS
        from engine.fetch import fetch_candles
        from engine.optimize.suggest import suggest_settings
        from engine.strategies.registry import config_from

        config_from(strategy, params)  # (the form's settings, refused by name before any download)
        if data:
            candles = await self.load_candles(data)
        else:
            tf = TIMEFRAMES_MS[timeframe]
            now = int(time.time() * 1000) // tf * tf
            candles = await fetch_candles(exchange, symbol, timeframe, now - (days + 1) * 86_400_000, now,
                                          base_url=self.exchange_url, cache_dir=self.data_dir / "candles")
        await self.prepare_engine()
        return await self.in_pool(lambda: suggest_settings(strategy, candles, days, params))

    async def parity(self, name: str):
        """The parity report of system ``name`` (engine/parity.py): its candles from where it
        reads them (its file, or the exchange's history), the backtest in the worker pool."""
        from engine.parity import parity, system_candles, system_funding

        cfg = next((s for s in self.systems if s.name == name), None)
        if cfg is None:
            raise ValueError(f"no system {name!r}")
        await self.prepare_engine()
        candles, where = await system_candles(cfg, self.data_dir, base_url=self.exchange_url)
        funding = await system_funding(cfg, self.data_dir, base_url=self.exchange_url)
        return await self.in_pool(lambda: parity(cfg, self.data_dir, candles, funding, candles_from=where))

    async def backtest(self, candles, strategy: str, cfg, funding=None, name: str = "", progress=None):
        """Run a backtest and lay it out for the replay (engine/replay.py), in the worker pool,
        once the engine is prepared; ``progress(done, total)`` is called on this loop as bars are
        done. Cancelling the await stops the run at its next chunk of bars."""
        import threading

        from engine.replay import Replay
        from engine.strategies.registry import run_backtest, under_each_fill_model
        from engine.strategies.spec import Cancelled

        await self.prepare_engine()
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def report(done: int, total: int) -> None:  # in the worker thread
            if stop.is_set():
                raise Cancelled
            if progress is not None:
                loop.call_soon_threadsafe(progress, done, total)

        def work():
            import time

            t = time.perf_counter()
            result = run_backtest(strategy, candles, cfg, funding, replay=True, progress=report)
            run = Replay.from_result(candles, result, name=name, run_seconds=time.perf_counter() - t)
            run.fill_models = under_each_fill_model(strategy, candles, cfg, funding, done=result)
            return run

        try:
            return await self.in_pool(work)
        except asyncio.CancelledError:
            stop.set()
            raise

    # -- snapshots for the widgets ---------------------------------------------------------------
    def system_rows(self) -> list[dict]:
        return self.desk.system_rows()

    def order_rows(self) -> list[dict]:
        return self.desk.order_rows()

    def order_history(self, system: str, cid: str) -> list[dict]:
        return self.desk.order_history(system, cid)

    def chart(self, name: str) -> dict | None:
        """What the Grid tab draws for one system: candles, levels, resting orders, fills."""
        t = self.runner.traders.get(name)
        if t is None or not len(t.hist):
            return None
        h = t.hist
        _, fills = self.desk.journal(name)
        fills = [r for r in fills if r.get("time")]
        summary = t.summary()
        books = summary if t.strategy.started else {}
        return {
            "time": h[:, 0] / 1000.0, "open": h[:, 4], "high": h[:, 1], "low": h[:, 2], "close": h[:, 3],
            "levels": t.strategy.levels() if t.strategy.started else [],
            "orders": [(o.side, o.price) for o in t.book.live()],
            # the order ladder: each resting order with its level, role and state
            "ladder": [{"level": o.level, "side": o.side, "price": o.price, "qty": o.qty - o.filled, "role": o.role,
                        "state": o.state, "position": o.position} for o in t.book.live()],
            "bot": summary.get("bot"), "levels_count": len(t.strategy.levels()) if t.strategy.started else 0,
            "fills": [(r["time"] / 1000.0, r["price"], r["side"]) for r in fills],
            "marks": {"avg_entry": books.get("avg_long"), "avg_short": books.get("avg_short"),
                      **{k: books.get(k) for k in ("liq_long", "liq_short", "stop_long", "stop_short")}},
            "timeframe_s": t.tf / 1000.0,
        }

    def serve_metrics(self, port: int, addr: str = "127.0.0.1"):
        """Prometheus metrics of the systems (engine.runtime.exporter) on ``addr:port`` (0: a free
        one) until ``shutdown``; the server (``server_port``). ValueError when it cannot (the port taken)."""
        from engine.runtime.exporter import serve

        self.metrics_server = serve(lambda: self.runner.status, port, addr)
        return self.metrics_server

    def serve_api(self, port: int, addr: str = "127.0.0.1"):
        """The control API (engine.runtime.api) over this app's desk on ``addr:port`` (0: a free
        one) until ``shutdown``: (the server, its token when it was made now, else ''). ValueError
        when it cannot (the port taken, no keyring for its token)."""
        from app.secrets import SecretsError, api_token
        from engine.runtime.api import ControlServer

        try:
            token, new = api_token()
        except SecretsError as exc:
            raise ValueError(str(exc)) from None
        self.api_server = ControlServer(self.desk, asyncio.get_event_loop(), token, port, addr)
        self.events.log("api_serving", url=self.api_server.url)  # (never the token)
        return self.api_server, token if new else ""

    async def stop_api(self) -> None:
        """The control API stops serving (in a worker thread: a request may be waiting on this loop)."""
        server, self.api_server = self.api_server, None
        if server is not None:
            await asyncio.get_running_loop().run_in_executor(None, server.shutdown)
            self.events.log("api_stopped", url=server.url)

    def notify(self, token: str, chat: str, base_url: str = "", liq_warn: float = 0.05) -> None:
        """Notifications to a Telegram chat, and its commands (engine.runtime.notify), until ``shutdown``."""
        from engine.runtime.notify import Telegram

        self.notifier = Telegram(self.desk, token, chat, base_url=base_url, liq_warn=liq_warn)
        self._notifying = self.spawn(self.notifier.run(self._told))

    # -- the portfolio assistant (engine/runtime/assistant.py) -----------------------------------------
    def has_assistant_key(self) -> bool:
        from app.secrets import ASSISTANT_KEY, load_secret

        return bool(load_secret(ASSISTANT_KEY))

    def store_assistant_key(self, key: str) -> None:
        """Into the OS keyring; raises SecretsError with what to do."""
        from app.secrets import ASSISTANT_KEY, store_secret

        store_secret(ASSISTANT_KEY, key)
        self._assistant = None  # (the next question uses it)
        self.events.log("keys_stored", exchange="anthropic")

    async def ask(self, question: str):
        """The assistant's Reply (text, tools used, error) to a question about the portfolio."""
        from app.secrets import ASSISTANT_KEY, load_secret
        from engine.runtime.assistant import DEFAULT_MODEL, Assistant

        if self._assistant is None:
            model = os.environ.get("GRIDDESK_ASSISTANT_MODEL", DEFAULT_MODEL)
            self._assistant = Assistant(self.desk, load_secret(ASSISTANT_KEY), base_url=self.assistant_url,
                                        model=model, pool=self._pool, prepare=self.prepare_engine)
        return await self._assistant.ask(question)

    def close_servers(self) -> None:
        """The metrics and the control API stop serving (they are let go of before the systems stop)."""
        for server in (self.metrics_server, self.api_server):
            if server is not None:
                server.shutdown()
        self.metrics_server = self.api_server = None

    async def shutdown(self) -> None:
        """Stop every system cleanly (resting orders stay), remembering which were ON."""
        await asyncio.get_running_loop().run_in_executor(None, self.close_servers)  # (a request may wait on this loop)
        for name in list(self.runner.traders):
            await self.runner.stop(name)
        if getattr(self, "_views_stop", None) is not None:
            self._views_stop.set()
            await self._views_task
            await self._solvency_task
        if self._notifying is not None:  # (after the systems: their last words are sent)
            self._told.set()
            await self._notifying
            self._notifying = None
        self.runner.write_views()
