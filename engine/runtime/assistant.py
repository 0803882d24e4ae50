"""The portfolio assistant: questions about the systems answered by a Claude model (the official
``anthropic`` SDK) that sees the portfolio only through read-only tools.

The tools read the desk's snapshots (the rows the Market, Orders and Risk tabs show, a system's
settings and last fills) and may run a backtest of a system's settings on its recorded candles
(or the bundled sample). None of them places, changes or cancels an order, switches a system or
the kill switch: the model is told so, and a tool it names that is not one of these is refused
with that reason. Everything here runs on the runtime's loop; a backtest runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path

from engine.runtime.desk import Desk

DEFAULT_MODEL = "claude-sonnet-5-5"
MAX_ROUNDS = 6  # model calls for one question (each tool round is one)
MAX_TURNS = 20  # questions kept in the conversation the model sees
READ_ONLY = ("I can only read: I never place, change or cancel an order, switch a system on or off, or touch the "
             "kill switch. Use the Market and Risk tabs (or the control API) for that.")
SYSTEM = f"""You are the portfolio assistant of GridDesk, a desktop workstation for crypto grid trading.
You answer the user's questions about their trading systems (grid bots), their results, their risk and
their backtests, from what your tools return, with the figures. {READ_ONLY} If asked to act, say so.
Money is in the systems' quote currency. Be brief and exact; say when a figure is not known yet."""

TOOLS = [
    {"name": "list_systems",
     "description": "Every trading system with its venue, strategy, mode (paper/live, dry-run), status (ON, OFF, "
                    "PAUSED, KILLED, ERROR...) and why, and once its grid has started: equity, total PnL, ROI, grid "
                    "profit, floating PnL, funding, fees, fills and round trips.",
     "input_schema": {"type": "object", "properties": {}}},
    {"name": "system_detail",
     "description": "One system's settings (strategy parameters, capital), its working orders and its last fills.",
     "input_schema": {"type": "object", "properties": {
         "name": {"type": "string", "description": "the system's name"},
         "fills": {"type": "integer", "description": "how many of the last fills (default 10, at most 100)"}},
         "required": ["name"]}},
    {"name": "risk_state",
     "description": "The kill switch (global and per system), dry-run, paused systems with their reasons, the risk "
                    "limits and the number of working orders.",
     "input_schema": {"type": "object", "properties": {}}},
    {"name": "run_backtest",
     "description": "Backtest a system's strategy and settings on its recorded candles (or the bundled sample when "
                    "it trades the exchange's live candles): total return, max drawdown, fills, round trips, grid "
                    "profit, fees, buy-and-hold return. Read-only; takes a few seconds.",
     "input_schema": {"type": "object", "properties": {"name": {"type": "string", "description": "the system"}},
                      "required": ["name"]}},
]
SUMMARY_FIELDS = ("name", "exchange", "symbol", "market", "strategy", "mode", "dry_run", "status", "reason", "equity",
                  "total_pnl", "roi", "grid_profit", "floating", "funding", "fees", "fills", "round_trips",
                  "running_ms", "capital")


@dataclass
class Reply:
    text: str
    tools: list[str] = field(default_factory=list)  # the tools it used, in order
    error: bool = False  # the text says why there is no answer


class Assistant:
    def __init__(self, desk: Desk, api_key: str, *, model: str = DEFAULT_MODEL, base_url: str | None = None,
                 pool=None, sample_path: Path | None = None, prepare=None):
        import anthropic

        self.desk = desk
        self.model = model
        self.client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url or None, max_retries=2,
                                               timeout=120.0)
        self.pool = pool  # where a backtest runs (an executor; None: the loop's default)
        self.prepare = prepare  # awaited before a backtest (the app's kernels loaded off its thread)
        self.sample_path = sample_path
        self.history: list[dict] = []

    # -- the tools -------------------------------------------------------------------------------
    def _list_systems(self) -> list[dict]:
        return [{k: r.get(k) for k in SUMMARY_FIELDS} for r in self.desk.system_rows()]

    def _system_detail(self, name: str, fills: int = 10) -> dict:
        cfg = self.desk.system(name)
        n = max(1, min(int(fills or 10), 100))
        orders = [{k: o[k] for k in ("side", "price", "qty", "filled", "state", "role")}
                  for o in self.desk.order_rows() if o["system"] == name and o["working"]]
        last = [{k: f.get(k) for k in ("time", "side", "price", "qty", "fee", "role")}
                for f in self.desk.journal(name)[1][-n:]]
        return {"settings": cfg.params, "capital": cfg.capital, "timeframe": cfg.timeframe, "data": cfg.data or "live",
                "working_orders": orders, "last_fills": last}

    def _risk_state(self) -> dict:
        r = self.desk.risk
        return {"kill_all": r.kill_all, "killed": r.killed_systems(), "dry_run_all": r.dry_run_all,
                "paused": r.paused_systems(), "working_orders": self.desk.open_order_count(),
                "limits": {k: None if v == float("inf") else v for k, v in vars(r.limits).items()}}

    async def _run_backtest(self, name: str) -> dict:
        from engine.data import load_candles
        from engine.sample import SAMPLE_PATH
        from engine.strategies.registry import RUNTIME, run_backtest

        cfg = self.desk.system(name)
        if self.prepare is not None:
            await self.prepare()
        path = Path(cfg.data) if cfg.data and cfg.data != "sample" else (self.sample_path or SAMPLE_PATH)
        settings = RUNTIME[cfg.strategy].config.from_dict(dict(cfg.params, capital=cfg.capital))

        def work() -> dict:
            candles = load_candles(path)
            m = run_backtest(cfg.strategy, candles, settings).metrics
            return {"candles": f"{path.name}: {len(candles):,} bars", "total_return": m["total_return"],
                    "max_drawdown": m["max_drawdown"], "fills": m["fills"], "round_trips": m.get("round_trips"),
                    "grid_profit": m["grid_profit"], "fees_paid": m["fees_paid"], "final_equity": m["final_equity"],
                    "buy_hold_return": m.get("buy_hold_return")}

        return await asyncio.get_running_loop().run_in_executor(self.pool, work)

    async def use(self, name: str, args: dict) -> tuple[str, bool]:
        """A tool's answer as JSON text, and whether it is an error (said to the model as such)."""
        try:
            if name == "list_systems":
                out = self._list_systems()
            elif name == "system_detail":
                out = self._system_detail(args["name"], args.get("fills", 10))
            elif name == "risk_state":
                out = self._risk_state()
            elif name == "run_backtest":
                out = await self._run_backtest(args["name"])
            else:
                return f"there is no tool {name!r}. {READ_ONLY}", True
        except KeyError as exc:
            return f"{exc.args[0] if exc.args else exc}", True
        except Exception as exc:  # (a file that cannot be read, a setting the kernel refuses: said, not raised)
            return f"{type(exc).__name__}: {exc}", True
        return json.dumps(out, default=str), False

    # -- the conversation -----------------------------------------------------------------------
    async def ask(self, question: str) -> Reply:
        import anthropic

        turn = [{"role": "user", "content": question}]
        used: list[str] = []
        try:
            for _ in range(MAX_ROUNDS):
                msg = await self.client.messages.create(model=self.model, max_tokens=1500, system=SYSTEM, tools=TOOLS,
                                                        messages=self.history + turn)
                content = [b.model_dump(exclude_none=True) for b in msg.content]
                turn.append({"role": "assistant", "content": content})
                calls = [b for b in msg.content if b.type == "tool_use"]
                if msg.stop_reason != "tool_use" or not calls:
                    break
                results = []
                for b in calls:
                    used.append(b.name)
                    text, error = await self.use(b.name, dict(b.input or {}))
                    results.append({"type": "tool_result", "tool_use_id": b.id, "content": text,
                                    **({"is_error": True} if error else {})})
                turn.append({"role": "user", "content": results})
            else:
                return Reply(f"no answer after {MAX_ROUNDS} rounds of looking things up; ask a narrower question",
                             used, error=True)
        except anthropic.AuthenticationError:
            return Reply("the Anthropic API refused the key (401): check it, or add another", used, error=True)
        except anthropic.APIConnectionError as exc:
            return Reply(f"cannot reach the Anthropic API: {exc}", used, error=True)
        except anthropic.APIStatusError as exc:
            return Reply(f"the Anthropic API answered {exc.status_code}: {exc.message}", used, error=True)
        self.history = (self.history + turn)[-4 * MAX_TURNS:]
        while self.history and not (self.history[0]["role"] == "user" and isinstance(self.history[0]["content"], str)):
            self.history.pop(0)  # (it starts at a question, never at a tool's answer)
        text = "\n".join(b.get("text", "") for b in turn[-1]["content"] if b.get("type") == "text").strip()
        return Reply(text or "(no text in the answer)", used)
