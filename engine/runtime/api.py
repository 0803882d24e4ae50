"""The control API: the Desk's controls over HTTP, for the owner away from the desk.

FastAPI served by uvicorn in a thread of its own, bound to 127.0.0.1 unless told otherwise;
every request carries the bearer token (kept in the OS keyring by app.secrets.api_token; the
OpenAPI page at /docs shows the schema only, no figure). A request's work is handed to the
runtime's loop (the app's qasync loop, or ``griddesk serve``'s) and done there by the Desk:
starting, stopping, the kill switch and cancel all are the app's own methods, so the API can do
nothing the app's Risk and Market tabs could not; a live system (live, not dry-run) starts only
with its symbol given in ``confirm``, as the app has it typed.
"""


import asyncio
import hmac
import inspect
import math
import os
import socket
import threading
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from engine.runtime.desk import Desk

LOG_TAIL_BYTES = 4 << 20  # the logs endpoint reads at most the last 4 MB of the current log


class Start(BaseModel):
    confirm: str = ""  # a live system's symbol, as the app has it typed


def _plain(x):
    """JSON as the standard has it: NaN and infinities as null (a figure not known yet)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return x


def tail_jsonl(path: Path, limit: int, keep=lambda r: True) -> list[dict]:
    """The last ``limit`` records of a JSON-lines file that ``keep`` takes, oldest first (read
    from the end, at most LOG_TAIL_BYTES; a torn line is skipped)."""
    import json

    if not path.exists():
        return []
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - LOG_TAIL_BYTES))
        lines = fh.read().splitlines()
    if size > LOG_TAIL_BYTES:
        lines = lines[1:]  # (the first may be cut)
    out: list[dict] = []
    for line in reversed(lines):
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if isinstance(r, dict) and keep(r):
            out.append(r)
            if len(out) >= limit:
                break
    return out[::-1]


def build_app(desk: Desk, loop: asyncio.AbstractEventLoop, token: str) -> FastAPI:
    """The API over ``desk``, whose work is done on ``loop``."""
    bearer = HTTPBearer(auto_error=False, description="the token `griddesk serve` showed when it made it")

    def authorized(cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if cred is None or not hmac.compare_digest(cred.credentials.encode(), token.encode()):
            raise HTTPException(401, "a valid bearer token is needed (Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="GridDesk control API", version="1", dependencies=[Depends(authorized)],
                  description="The systems of one GridDesk data folder: summaries, start and stop, the kill "
                              "switch, cancel all, orders, fills, equity and logs. The same controls as the app.")

    async def on_loop(fn, *args):
        """``fn(*args)`` on the runtime's loop (awaited there when it is a coroutine); a system
        the desk does not have is a 404, a refused control a 409, with the desk's words."""
        async def call():
            r = fn(*args)
            return await r if inspect.isawaitable(r) else r

        try:
            return _plain(await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call(), loop)))
        except KeyError as exc:
            raise HTTPException(404, exc.args[0] if exc.args else str(exc)) from None
        except (ValueError, RuntimeError) as exc:
            raise HTTPException(409, str(exc)) from None

    def row(name: str) -> dict:
        desk.system(name)
        return next(r for r in desk.system_rows() if r["name"] == name)

    @app.get("/systems", summary="every system with its status and summary (the Market tab's rows)")
    async def systems() -> list[dict]:
        return await on_loop(desk.system_rows)

    @app.get("/systems/{name}", summary="one system")
    async def system(name: str) -> dict:
        return await on_loop(row, name)

    def start(name: str, confirm: str) -> dict:
        cfg = desk.system(name)
        if desk.needs_confirmation(cfg) and not desk.is_on(name) and confirm.strip().upper() != cfg.symbol.upper():
            raise PermissionError(f"{name} sends real orders to {cfg.exchange}: give its symbol ({cfg.symbol}) "
                                  "in confirm to start it")
        desk.set_on(name, True)
        return row(name)

    @app.post("/systems/{name}/start", summary="switch a system ON (lifts its pause, as the app's ON does)")
    async def start_system(name: str, body: Start | None = None) -> dict:
        try:
            return await on_loop(start, name, (body or Start()).confirm)
        except PermissionError as exc:
            raise HTTPException(403, str(exc)) from None

    async def stop(name: str) -> dict:
        await desk.switch_off(name)
        return row(name)

    @app.post("/systems/{name}/stop", summary="switch a system OFF, answering once it has stopped (its resting "
                                              "orders stay)")
    async def stop_system(name: str) -> dict:
        return await on_loop(stop, name)

    def sparkline(name: str, points: int) -> dict:
        series = desk.equity_series(name, points)
        return {"system": name, "time": [t for t, _ in series], "equity": [e for _, e in series]}

    @app.get("/systems/{name}/sparkline", summary="equity at each candle close since the system started here")
    async def equity(name: str, points: Annotated[int, Query(ge=0, le=10_000)] = 100) -> dict:
        return await on_loop(sparkline, name, points)

    def fills_of(name: str, limit: int) -> list[dict]:
        desk.system(name)
        return desk.journal(name)[1][-limit:]

    @app.get("/systems/{name}/fills", summary="the system's last fills, from its journal")
    async def fills(name: str, limit: Annotated[int, Query(ge=1, le=5_000)] = 100) -> list[dict]:
        return await on_loop(fills_of, name, limit)

    def orders_of(system: str | None, working: bool) -> list[dict]:
        if system is not None:
            desk.system(system)
        return [r for r in desk.order_rows() if system in (None, r["system"]) and (r["working"] or not working)]

    @app.get("/orders", summary="orders across systems: working ones (on the exchange, or may be) by default")
    async def orders(system: str | None = None, working: bool = True) -> list[dict]:
        return await on_loop(orders_of, system, working)

    def risk_view() -> dict:
        r = desk.risk
        return {"kill_all": r.kill_all, "killed": r.killed_systems(), "dry_run_all": r.dry_run_all,
                "paused": r.paused_systems(), "open_orders": desk.open_order_count(),
                "limits": {k: None if v == float("inf") else v for k, v in vars(r.limits).items()}}

    @app.get("/risk", summary="the kill switch, dry-run, pauses and limits")
    async def risk() -> dict:
        return await on_loop(risk_view)

    def kill(on: bool, system: str | None) -> dict:
        desk.set_kill(on, system)
        return risk_view()

    @app.post("/kill", summary="engage the kill switch: of every system, or of one (no order opens anything)")
    async def engage(system: str | None = None) -> dict:
        return await on_loop(kill, True, system)

    @app.post("/kill/release", summary="release the kill switch: of every system, or of one")
    async def release(system: str | None = None) -> dict:
        return await on_loop(kill, False, system)

    @app.post("/cancel-all", summary="pause every system (or one), then cancel every order of theirs; "
                                     "ON again resumes a system")
    async def cancel_all(system: str | None = None) -> dict:
        return {"cancelled": await on_loop(desk.cancel_all, system)}

    def log_tail(limit: int, system: str | None, event: str | None) -> list[dict]:
        if system is not None:
            desk.system(system)
        return tail_jsonl(desk.events.path, limit, lambda r: system in (None, r.get("system"))
                          and event in (None, r.get("event")))

    @app.get("/logs", summary="the last events of this run's log (orders, fills, risk decisions, errors)")
    async def logs(limit: Annotated[int, Query(ge=1, le=10_000)] = 200, system: str | None = None,
                   event: str | None = None) -> list[dict]:
        return await on_loop(log_tail, limit, system, event)

    return app


class ControlServer:
    """The API served on ``host:port`` (0: a free port) in a thread of its own until ``shutdown``."""

    def __init__(self, desk: Desk, loop: asyncio.AbstractEventLoop, token: str, port: int, host: str = "127.0.0.1"):
        import uvicorn

        if not token:
            raise ValueError("the control API needs a token")
        try:
            self.socket = socket.create_server((host, port))
        except OSError as exc:
            raise ValueError(f"the control API cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.host, self.port = host, self.socket.getsockname()[1]
        config = uvicorn.Config(build_app(desk, loop, token), log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=3)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                       name="griddesk-api", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def warning(self) -> str:
        """What a user serving beyond this machine should know ('' on a loopback address)."""
        import ipaddress

        try:
            local = ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            local = self.host == "localhost"
        return "" if local else (f"the control API listens on {self.host}, beyond this machine, in plain HTTP: the "
                                 "token crosses the network readable; put it behind TLS (a reverse proxy, an SSH "
                                 "tunnel) or serve on 127.0.0.1")

    def shutdown(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()
