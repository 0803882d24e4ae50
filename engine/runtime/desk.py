"""The controls a user has over the trading systems, one set for every door: the desktop app
(app/controller.py), the control API (engine/runtime/api.py) and whatever comes next. The
systems of cryptos.json, ON / OFF, the kill switch, dry-run, cancel all, and the snapshots of
systems, orders and fills they show. A door adds no rule of its own: the app's Cancel All and
the API's are this one method.

Everything here runs on the runtime's loop (the app's qasync loop, or ``griddesk serve``'s);
the API's server thread hands its calls over to it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from engine.runtime import lifecycle
from engine.runtime.config import SystemConfig, check_unique, load_systems, save_systems
from engine.runtime.runner import Runner
from engine.store import read_jsonl
from engine.strategies.registry import CONFIGS
from engine.summary import BOT_FIELDS

PAUSED_BY_CANCEL_ALL = "orders cancelled by you (switch the system off and on to resume)"
SYSTEMS, RISK = "systems", "risk"  # what changed, as told to the listeners


class Desk:
    def __init__(self, config_path: str | Path, runner: Runner):
        self.config_path = Path(config_path)
        self.runner = runner
        self.risk = runner.risk
        self.events = runner.events
        self.systems, problem = load_systems(self.config_path)
        if problem:
            self.events.log("state_problem", file=str(self.config_path), problem=problem)
        self.listeners: list[Callable[[str], None]] = []  # told SYSTEMS or RISK after each change
        self.preparing = ""  # while the engine is being prepared: what it is doing (systems wait for it)
        self._journals: dict[str, dict] = {}

    def _changed(self, what: str) -> None:
        for listen in self.listeners:
            listen(what)

    # -- systems ---------------------------------------------------------------------------------
    def system(self, name: str) -> SystemConfig:
        for s in self.systems:
            if s.name == name:
                return s
        raise KeyError(f"no system called {name!r} (there are: {', '.join(s.name for s in self.systems) or 'none'})")

    def add_system(self, cfg: SystemConfig) -> None:
        cfg.validate(f"system {cfg.name!r}")
        if any(s.name == cfg.name for s in self.systems):
            raise ValueError(f"name: a system called {cfg.name!r} exists already")
        check_unique([*self.systems, cfg], "name")
        self.systems.append(cfg)
        self._save()

    def replace_system(self, name: str, cfg: SystemConfig) -> None:
        if self.runner.running(name):
            raise RuntimeError(f"{name} is running: switch it off before editing it")
        cfg.validate(f"system {cfg.name!r}")
        systems = [cfg if s.name == name else s for s in self.systems]
        check_unique(systems, "name")
        self.systems = systems
        self._save()

    async def remove_system(self, name: str, cancel_orders: bool) -> int:
        """Stop and forget a system; with ``cancel_orders`` its resting orders are cancelled
        first (otherwise they stay on the exchange). Returns the orders cancelled."""
        n = await self.cancel_all(name) if cancel_orders else 0
        await self.runner.stop(name)
        self.runner.traders.pop(name, None)
        self.systems = [s for s in self.systems if s.name != name]
        self._save()
        return n

    def _save(self) -> None:
        save_systems(self.config_path, self.systems)
        self._changed(SYSTEMS)

    @staticmethod
    def needs_confirmation(cfg: SystemConfig) -> bool:
        """A system that sends real orders (live, not dry-run): the user types its symbol to
        let it (the app when it is made so, the API when it is started)."""
        return cfg.mode == "live" and not cfg.dry_run

    def set_on(self, name: str, on: bool) -> None:
        """The user's ON / OFF. ON also lifts a pause (cancel all, refusals, solvency): turning
        a system on is the user's decision to let it trade."""
        cfg = self.system(name)
        if on:
            if self.risk.status(name).paused:
                self.risk.resume(name)
                self._changed(RISK)
            self.runner.start(cfg)
        else:
            self.runner.stop_soon(name)
        cfg.enabled = on
        self._save()

    async def switch_off(self, name: str) -> None:
        """OFF, returning once the system has stopped (its resting orders stay)."""
        self.system(name).enabled = False
        self._save()
        await self.runner.stop(name)

    def is_on(self, name: str) -> bool:
        return self.runner.running(name)

    # -- risk ----------------------------------------------------------------------------------
    def set_kill(self, on: bool, system: str | None = None) -> None:
        """The kill switch, of every system (``system`` None) or one: engaged, no order opens
        anything (closing orders still go); released, the systems trade again."""
        if system is not None:
            self.system(system)  # (a name that is not a system's is refused, not switched)
        (self.risk.kill if on else self.risk.release)(system)
        self.runner.write_views()  # (it survives a restart)
        self._changed(RISK)

    def set_dry_run(self, on: bool, system: str | None = None) -> None:
        """Global dry-run, or one system's (a running system picks it up when restarted)."""
        if system is None:
            self.risk.set_dry_run(None, on)
        else:
            cfg = self.system(system)
            cfg.dry_run = on
            self.risk.set_dry_run(system, on)
            self._save()
        self._changed(RISK)

    def open_order_count(self, system: str | None = None) -> int:
        """Our orders working on the exchange now (one system, or all): what cancel all cancels."""
        return sum(len(t.book.in_state(*lifecycle.WORKING))
                   for name, t in self.runner.traders.items() if system in (None, name))

    async def cancel_all(self, system: str | None = None) -> int:
        """First pause every system concerned (no order at all, closing ones included, until
        the user switches it on again: a grid would lay its orders again at the next candle),
        then cancel every order of ours. Returns the orders cancelled."""
        names = [s.name for s in self.systems if system in (None, s.name)]
        if system is not None and not names:
            self.system(system)  # (raises, naming the systems there are)
        for name in names:
            self.risk.pause(name, PAUSED_BY_CANCEL_ALL, hold=True)
        self.runner.write_views()  # (the pause survives a restart)
        self._changed(RISK)
        n = 0
        for name, t in list(self.runner.traders.items()):
            if name in names:
                n += await t.cancel_all()
        self.events.log("cancel_all", system=system or "*", cancelled=n)
        return n

    # -- snapshots -------------------------------------------------------------------------------
    def system_rows(self) -> list[dict]:
        """Each system as the Market tab and the API show it: its settings, its status (OFF,
        PREPARING, RUNNING, PAUSED, KILLED, ERROR...) and why, its books once its grid started."""
        rows = []
        for s in self.systems:
            t = self.runner.traders.get(s.name)
            summary = t.summary() if t is not None else {}
            bot = summary.get("bot")
            status = self.risk.status(s.name)
            on = self.is_on(s.name)
            err = self.runner.errors.get(s.name, "")
            preparing = on and bool(self.preparing)  # (every system waits for the engine)
            label = "ERROR" if err else ("PREPARING" if preparing else status.label if on else "OFF")
            if on and label == "OFF":  # (switched on, its trader not yet booted)
                label = "STARTING"
            rows.append({
                "name": s.name, "exchange": s.exchange, "symbol": s.symbol, "market": s.market,
                "strategy": s.strategy, "levels": s.params.get("levels", CONFIGS[s.strategy].levels), "mode": s.mode,
                "dry_run": s.dry_run, "status": label, "trend": status.trend if on and not err else "",
                "reason": err or (self.preparing if preparing else status.reason or summary.get("note", "")),
                # None (shown as a dash) until the system's grid has started
                **{k: summary.get(k) for k in ("position", "grid_profit", "floating", "funding", "equity")},
                "on": on, "capital": s.capital,
                # the bot's summary (engine/summary.py) once its grid has started, else None each
                **{k: (bot or {}).get(k) for k in BOT_FIELDS}, "bot": bot,
            })
        return rows

    def journal(self, name: str) -> tuple[dict[str, dict], list[dict]]:
        """The finished orders (last record per id) and the fills (the last 5,000) of a running
        system's journal, read incrementally: only what was appended since the last call."""
        t = self.runner.traders.get(name)
        cache = self._journals.setdefault(name, {"offset": 0, "done": {}, "fills": []})
        if t is not None and t.journal_path.exists():
            with open(t.journal_path, "rb") as fh:
                fh.seek(cache["offset"])
                chunk = fh.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            cache["offset"] += len(complete)
            for line in complete.splitlines():
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if r.get("type") == "order" and r.get("state") in lifecycle.TERMINAL:
                    cache["done"][r["cid"]] = r
                elif r.get("type") == "fill":
                    cache["fills"].append(r)
            if len(cache["done"]) > 4000:
                cache["done"] = dict(list(cache["done"].items())[-2000:])
            del cache["fills"][:-5000]
        return cache["done"], cache["fills"]

    def order_rows(self) -> list[dict]:
        """Open orders, then the recent finished ones, across systems; ``working``: on the
        exchange, or may be (what cancel all cancels)."""
        rows = []
        for name, t in self.runner.traders.items():
            for o in t.book.orders.values():
                rows.append({"system": name, **o.to_dict(), "working": o.state in lifecycle.WORKING})
            done, _ = self.journal(name)
            for r in done.values():
                if r["cid"] not in t.book.orders:
                    rows.append({"system": name, "cid": r["cid"], "side": r["side"], "price": r["price"],
                                 "qty": r["qty"], "filled": r.get("filled", 0.0), "state": r["state"],
                                 "note": r.get("note", ""), "ts": r.get("ts", 0), "working": False})
        return rows

    def order_history(self, system: str, cid: str) -> list[dict]:
        t = self.runner.traders.get(system)
        if t is None:
            return []
        recs, _ = read_jsonl(t.journal_path)
        return [r for r in recs if r.get("cid") == cid]

    def equity_series(self, name: str, points: int = 0) -> list[tuple[int, float]]:
        """(candle time in ms, equity) at each candle the system has closed since it started
        in this process (the last 10,000: trader.EQUITY_KEPT), thinned to about ``points`` (0: all)."""
        self.system(name)
        t = self.runner.traders.get(name)
        series = list(t.equity) if t is not None else []
        if points and len(series) > points:
            step = -(-len(series) // points)
            series = series[::-1][::step][::-1]  # (the last point always kept)
        return series

