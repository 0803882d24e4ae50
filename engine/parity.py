"""The parity report of a running system (``griddesk parity SYSTEM``, the Grid tab's "Parity…"):
the backtest of the system's own settings on the same candles, from the candle it laid its grid
at to the last it traded, beside the system's journal, fill by fill. Each difference is named
(a fill the system made that the backtest did not, one the backtest made that the system did
not, the same fill candles apart, at another price, quantity or fee; the orders refused) with
the money it accounts for, so that a paper or live system's drift from its backtest is read,
not guessed.

The money: each fill changes the equity at the last close ``L`` by ``effect = side x qty x
(L - price) - fee`` (side +1 a buy, -1 a sell; a fee paid in the coin is worth it at ``L``).
The system's equity is the capital plus its fills' effects, the backtest's likewise, and each
difference is the system's effect minus the backtest's for the fills it names: they add up to
the gap between the two equities, exactly.

A perpetual grid's fills are paired by what they did (BUY_OPEN_LONG, SELL_CLOSE_LONG, ... the
label of the lots they opened or closed, and LIQUIDATION), those of one candle, side and label
taken together (a stop or an end closes several lots in one order; the backtest books a trade
per lot). Its equities are its books' (the system's state, the backtest's last bar), which also
hold funding and what a liquidation lost beyond its price: two more lines, "funding" (the
system's minus the backtest's) and "the rest" (of the gap), so that the differences still add
up to it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.data import TIMEFRAMES_MS, Candles, utc_text
from engine.store import read_json, read_jsonl

NEAR_CANDLES = 3  # a fill the other side made this many candles apart, same side and level: "timing"
KINDS = {
    "system only": "the system filled it, the backtest did not",
    "backtest only": "the backtest filled it, the system did not",
    "timing": "both filled it, candles apart",
    "quantity": "both filled it, another quantity",
    "price": "both filled it, at another price",
    "fee": "both filled it, another fee",
    "funding": "the funding the system's books paid, less the backtest's",
    "the rest": "the rest of the gap between the books: what liquidations lost beyond their price, the books "
                "set to the exchange's positions, what the journal does not hold",
}  # a fill both made may differ in several ways: its kind is them all ("quantity, fee")


class ParityError(ValueError):
    """The report cannot be made (no state yet, no fills, no candles): the line says why."""


@dataclass
class Fill:
    time: int  # the candle it filled in (open time, ms)
    side: int  # +1 buy, -1 sell
    level: int
    price: float
    qty: float
    fee: float  # in quote
    fee_base: float = 0.0  # paid in the coin (live spot, without BNB)
    label: str = ""  # a perpetual's: what it did (its level is the label's number)

    def effect(self, last: float) -> float:
        return self.side * self.qty * (last - self.price) - self.fee - self.fee_base * last

    def text(self) -> str:
        if self.label:
            return f"{self.label} {self.qty:.8g} at {self.price:,.8g} (fee {self.fee:.6g})"
        fee = f"fee {self.fee:.6g}" + (f" + {self.fee_base:.6g} in the coin" if self.fee_base else "")
        return f"{'buy' if self.side > 0 else 'sell'} {self.qty:.8g} at {self.price:,.8g} ({fee})"


@dataclass
class Difference:
    kind: str  # a key of KINDS, or what a fill both made differs in ("quantity, price, fee")
    time: int  # the candle (the system's, where it has the fill)
    side: int
    level: int
    system: Fill | None
    backtest: Fill | None
    money: float  # the system's effect minus the backtest's, in quote

    def text(self) -> str:
        s, b = self.system, self.backtest
        if s is None and b is None:  # (an account's line: funding, the rest)
            return f"{utc_text(self.time)}  {'':>10}  {self.kind:<20}  {self.money:>+10,.2f}  {KINDS[self.kind]}"
        if s is None or b is None:
            what = (s or b).text()
        elif self.kind == "timing":
            what = f"{s.text()}; the backtest's {b.text()} in the candle of {utc_text(b.time)}"
        else:
            what = f"{s.text()}; the backtest's {b.text()}"
        return f"{utc_text(self.time)}  {self.where:>10}  {self.kind:<20}  {self.money:>+10,.2f}  {what}"

    @property
    def where(self) -> str:
        """The level (a spot grid's), or nothing (a perpetual's fills say what they did)."""
        f = self.system or self.backtest
        return "" if f is None or f.label else f"level {self.level:>4}"


@dataclass
class ParityReport:
    system: str
    strategy: str
    mode: str
    timeframe: str
    first: int  # the candle the grid was laid at
    last: int  # the last candle the system traded
    bars: int
    capital: float
    last_close: float
    system_equity: float
    backtest_equity: float
    system_fills: int
    backtest_fills: int
    matched: int  # fills equal on both sides (time, side, level, price, quantity, fee)
    differences: list[Difference] = field(default_factory=list)
    refusals: list[dict] = field(default_factory=list)  # the system's refused orders (its event logs)
    candles_from: str = ""

    @property
    def gap(self) -> float:
        return self.system_equity - self.backtest_equity

    def by_kind(self) -> dict[str, tuple[int, float]]:
        out: dict[str, tuple[int, float]] = {}
        for d in self.differences:
            n, m = out.get(d.kind, (0, 0.0))
            out[d.kind] = (n + 1, m + d.money)
        return out

    def text(self, limit: int = 50) -> str:
        span = f"{utc_text(self.first)} .. {utc_text(self.last)}, {self.bars:,} candles of {self.timeframe}"
        lines = [
            f"GridDesk parity: {self.system} ({self.strategy}, {self.mode}) against its backtest",
            f"  span        {span} ({self.candles_from})",
            f"  fills       system {self.system_fills:,}, backtest {self.backtest_fills:,}, "
            f"the same {self.matched:,}",
            f"  equity      system {self.system_equity:,.2f}, backtest {self.backtest_equity:,.2f} at the last "
            f"close {self.last_close:,.8g}: {self.gap:+,.2f}",
        ]
        if not self.differences:
            lines.append("  no difference: every fill of the system is the backtest's")
        for kind, (n, money) in self.by_kind().items():
            told = KINDS.get(kind) or "both filled it, another " + " and ".join(kind.split(", "))
            lines.append(f"  {kind:<20} {n:>6,}  {money:>+12,.2f}  {told}")
        if self.refusals:
            reasons: dict[str, int] = defaultdict(int)
            for r in self.refusals:
                reasons[str(r.get("reason", "?"))] += 1
            lines.append(f"  refused     {len(self.refusals):,} order(s): "
                         + "; ".join(f"{n} {why}" for why, n in sorted(reasons.items(), key=lambda x: -x[1])))
        if self.differences and limit > 0:
            lines += ["", f"  each difference (the first {min(limit, len(self.differences))} of "
                          f"{len(self.differences):,}; money: the system's minus the backtest's)"]
            lines += ["  " + d.text() for d in self.differences[:limit]]
        return "\n".join(lines)


def compare(system_fills: list[Fill], backtest_fills: list[Fill], tf: int, last_close: float) -> tuple[int, list]:
    """Pair the two sides' fills: the same candle, side and level first (then compared for price,
    quantity and fee), then the same side and level up to NEAR_CANDLES apart ("timing"); the
    rest are one side's only. Returns (fills equal on both sides, the differences by time)."""
    left = defaultdict(list)
    for f in backtest_fills:
        left[(f.time, f.side, f.level)].append(f)
    matched = 0
    diffs: list[Difference] = []
    alone: list[Fill] = []
    for s in system_fills:
        same = left.get((s.time, s.side, s.level))
        if not same:
            alone.append(s)
            continue
        b = same.pop(0)
        kind = ", ".join(name for name, differs in (
            ("quantity", not math.isclose(s.qty, b.qty, rel_tol=1e-9, abs_tol=1e-12)),
            ("price", not math.isclose(s.price, b.price, rel_tol=1e-9)),
            ("fee", not math.isclose(s.fee + s.fee_base * s.price, b.fee, rel_tol=1e-6, abs_tol=1e-9))) if differs)
        if kind:
            diffs.append(Difference(kind, s.time, s.side, s.level, s, b, s.effect(last_close) - b.effect(last_close)))
        else:
            matched += 1
    rest = sorted((f for fs in left.values() for f in fs), key=lambda f: f.time)
    near = defaultdict(list)
    for b in rest:
        near[(b.side, b.level)].append(b)
    for s in alone:
        pool = near.get((s.side, s.level), [])
        b = min(pool, key=lambda f: abs(f.time - s.time), default=None)
        if b is not None and abs(b.time - s.time) <= NEAR_CANDLES * tf:
            pool.remove(b)
            money = s.effect(last_close) - b.effect(last_close)
            diffs.append(Difference("timing", s.time, s.side, s.level, s, b, money))
        else:
            diffs.append(Difference("system only", s.time, s.side, s.level, s, None, s.effect(last_close)))
    for pool in near.values():
        for b in pool:
            diffs.append(Difference("backtest only", b.time, b.side, b.level, None, b, -b.effect(last_close)))
    diffs.sort(key=lambda d: (d.time, d.level))
    return matched, diffs


def journal_fills(path: Path, epoch: int, tf: int, perpetual: bool = False) -> list[Fill]:
    """The system's fills from its journal (each candle's by ``bar`` from ``epoch``); a
    perpetual's by what they did (``by_label``), its liquidations with them."""
    records, problems = read_jsonl(path) if path.exists() else ([], [])
    if problems:
        raise ParityError(f"{path}: {problems[0]}")
    out = []
    for r in records:
        t = epoch + int(r.get("bar", 0)) * tf
        if perpetual and r.get("type") == "liquidation" and r.get("price") is not None:
            out.append(_labelled(t, 1 if r["position"] == "short" else -1, "LIQUIDATION", float(r["price"]),
                                 float(r["qty"]), 0.0))
        if r.get("type") != "fill":
            continue
        side = 1 if r["side"] == "buy" else -1
        if perpetual:
            parts = r.get("trades") or [["FILL_OUTSIDE_GRID", r["price"], r["qty"], r.get("fee") or 0.0, 0.0]]
            qty = sum(float(x[2]) for x in parts) or 1.0
            for label, _, q, _, _ in parts:  # (the exchange's fee, shared by what each label took)
                out.append(_labelled(t, side, label, float(r["price"]), float(q),
                                     float(r.get("fee") or 0.0) * float(q) / qty))
            continue
        out.append(Fill(t, side, int(r.get("level", -1)), float(r["price"]), float(r["qty"]),
                        float(r.get("fee") or 0.0), float(r.get("fee_base") or 0.0)))
    return by_label(out) if perpetual else out


def _labelled(t: int, side: int, label: str, price: float, qty: float, fee: float) -> Fill:
    from engine.kernels import adaptive_grid as perp_kernel

    level = perp_kernel.LABELS.index(label) if label in perp_kernel.LABELS else -1
    return Fill(t, side, level, price, qty, fee, label=label)


def by_label(fills: list[Fill]) -> list[Fill]:
    """A perpetual's fills of one candle, side and label as one (its quantity, its average price,
    its fees): an order closing several lots is one fill on the exchange, a trade per lot in
    the books."""
    groups: dict[tuple, list[Fill]] = defaultdict(list)
    for f in fills:
        groups[(f.time, f.side, f.label)].append(f)
    out = []
    for (t, side, label), fs in groups.items():
        qty = sum(f.qty for f in fs)
        price = sum(f.qty * f.price for f in fs) / qty if qty else fs[0].price
        out.append(Fill(t, side, fs[0].level, price, qty, sum(f.fee for f in fs), label=label))
    return sorted(out, key=lambda f: (f.time, f.level))


def backtest_fills(result, perpetual: bool = False) -> list[Fill]:
    t = result.trades
    if perpetual:
        from engine.kernels import adaptive_grid as perp_kernel

        return by_label([_labelled(int(x["time"]), int(x["side"]), perp_kernel.LABELS[x["label"]], float(x["price"]),
                                   float(x["qty"]), float(x["fee"])) for x in t[t["qty"] > 0]])  # (not a halt)
    return [Fill(int(x["time"]), int(x["side"]), int(x["level"]), float(x["price"]), float(x["qty"]), float(x["fee"]))
            for x in t]


def refusals(log_dir: Path, system: str) -> list[dict]:
    """The system's ``order_refused`` events in the event logs (a backtest refuses none of the
    exchange's reasons: they are the system's alone)."""
    out = []
    for path in sorted(log_dir.glob("trading_*.jsonl")) if log_dir.exists() else []:
        records, _ = read_jsonl(path)
        out += [r for r in records if r.get("event") == "order_refused" and r.get("system") == system]
    return out


def system_state(cfg, data_dir: Path) -> dict:
    """What the system saved (read only): its first candle, the one its grid was laid at, its
    last, and its kernel's settings."""
    path = Path(data_dir) / "state" / "systems" / f"{cfg.slug}.json"
    if not path.exists():
        raise ParityError(f"system {cfg.name!r} has not traded yet (no state in {path})")
    d = read_json(path, keep=False).data
    if int(d.get("started_at", -1)) < 0 or not d.get("strategy"):
        raise ParityError(f"system {cfg.name!r} has not laid its grid yet ({path})")
    return d


def settings(cfg, state: dict):
    """The system's settings as it trades them: its own, with the exchange's tick, lot and
    minimum order from the kernel settings it saved (the runtime takes those from the market)."""
    from engine.strategies.registry import config_from

    params = dict(cfg.params, capital=float(cfg.capital))
    kernel = state["strategy"].get("params") or {}
    for name in ("tick", "lot", "min_notional"):
        if name in kernel:
            params[name] = float(kernel[name])
    if cfg.market == "perpetual":
        from engine.kernels.perp import tier_file

        params["tiers"] = tier_file(params.get("tiers", ""), cfg.symbol)
    return config_from(cfg.strategy, params)


def parity(cfg, data_dir: Path, candles: Candles, funding=None, *, candles_from: str = "") -> ParityReport:
    """The report of system ``cfg`` (its state and journal in ``data_dir``) on ``candles``,
    which must cover its span: from its first candle (``epoch``) to its last."""
    from engine.strategies.registry import run_backtest

    perpetual = cfg.market == "perpetual"
    state = system_state(cfg, data_dir)
    tf = TIMEFRAMES_MS[cfg.timeframe]
    epoch, started, last = int(state["epoch"]), int(state["started_at"]), int(state["last_time"])
    i0, i1 = np.searchsorted(candles.time, [epoch, last])
    if i0 >= len(candles) or candles.time[i0] != epoch or i1 >= len(candles) or candles.time[i1] != last:
        raise ParityError(f"the candles ({candles.source}: {utc_text(int(candles.time[0]))} .. "
                          f"{utc_text(int(candles.time[-1]))}) do not cover the system's span "
                          f"{utc_text(epoch)} .. {utc_text(last)}")
    window = candles.slice(int(i0), int(i1) + 1)
    start = int(np.searchsorted(window.time, started))
    result = run_backtest(cfg.strategy, window, settings(cfg, state), funding, not_before=start)
    close = float(window.close[-1])
    # (a running system journals a candle's fills before it saves the state that says it traded
    # that candle: fills past the state's last candle are the next one's, not yet in the span)
    journal = Path(data_dir) / "journal" / f"{cfg.slug}.jsonl"
    ours = [f for f in journal_fills(journal, epoch, tf, perpetual) if f.time <= last]
    theirs = backtest_fills(result, perpetual)
    matched, diffs = compare(ours, theirs, tf, close)
    capital = float(cfg.capital)
    system_equity = capital + sum(f.effect(close) for f in ours)
    backtest_equity = capital + sum(f.effect(close) for f in theirs)
    if perpetual:  # its books' equities: funding and liquidations are in them, and in two more lines
        from engine.strategies.registry import RUNTIME

        books = RUNTIME[cfg.strategy].runner.from_state(settings(cfg, state), state["strategy"]).books(close)
        system_equity, backtest_equity = float(books["equity"]), float(result.equity[-1])
        funding = float(books["funding"]) - float(result.money["funding"])
        rest = system_equity - backtest_equity - funding - sum(d.money for d in diffs)
        diffs += [Difference(kind, last, 0, -1, None, None, money)
                  for kind, money in (("funding", funding), ("the rest", rest))
                  if abs(money) > 1e-6 * capital]
    return ParityReport(
        system=cfg.name, strategy=cfg.strategy, mode=cfg.mode, timeframe=cfg.timeframe, first=started, last=last,
        bars=len(window) - start, capital=capital, last_close=close,
        system_equity=system_equity, backtest_equity=backtest_equity,
        system_fills=len(ours), backtest_fills=len(theirs), matched=matched, differences=diffs,
        refusals=refusals(Path(data_dir) / "logs", cfg.name), candles_from=candles_from)


async def system_candles(cfg, data_dir: Path, *, base_url: str | None = None, sample_path: Path | None = None):
    """The candles of the system's span, from where it read them: its recorded file (a paper
    system on recorded candles) or the exchange's history (paged). Returns (candles, where)."""
    state = system_state(cfg, data_dir)
    epoch, last = int(state["epoch"]), int(state["last_time"])
    if cfg.data:
        from engine.data import load_candles
        from engine.sample import SAMPLE_PATH

        path = (sample_path or SAMPLE_PATH) if cfg.data == "sample" else Path(cfg.data)
        return load_candles(path), str(path)
    from engine.exchange.live import CcxtExchange

    tf = TIMEFRAMES_MS[cfg.timeframe]
    ex = CcxtExchange(cfg.exchange, market=cfg.market, base_url=base_url or cfg.exchange_url or None,
                      sandbox=cfg.sandbox)
    rows: list = []
    try:
        since = epoch
        while since <= last:
            page = [r for r in await ex.candles(cfg.symbol, cfg.timeframe, since, 1000) if r[0] >= since]
            if not page:
                break
            rows += page
            since = int(page[-1][0]) + tf
    finally:
        await ex.close()
    a = np.array([r[:6] for r in rows if r[0] <= last], dtype=float).reshape(-1, 6)
    candles = Candles(time=a[:, 0].astype(np.int64), open=a[:, 1], high=a[:, 2], low=a[:, 3], close=a[:, 4],
                      volume=a[:, 5], timeframe_ms=tf, source=f"{cfg.exchange} {cfg.symbol} {cfg.timeframe}")
    return candles, f"{cfg.exchange}'s {cfg.symbol} {cfg.timeframe} candles"


async def system_funding(cfg, data_dir: Path, *, base_url: str | None = None):
    """The funding rates a perpetual system paid at: the exchange's over its span (a system on
    the exchange's candles, paper or live), None for a spot system or one on recorded candles
    (which pays its strategy's default rate at each settlement, as the backtest does without a
    file)."""
    if cfg.market != "perpetual" or cfg.data:
        return None
    from engine.data import FundingRates
    from engine.exchange.live import CcxtExchange

    state = system_state(cfg, data_dir)
    epoch, last = int(state["epoch"]), int(state["last_time"])
    ex = CcxtExchange(cfg.exchange, market=cfg.market, base_url=base_url or cfg.exchange_url or None,
                      sandbox=cfg.sandbox)
    rows: list = []
    since = epoch - 3_600_000
    try:
        while True:  # (a page holds 1,000 settlements: 333 days at 8 h)
            page = await ex.funding_rates(cfg.symbol, since, last + 3_600_000)
            rows += page
            if len(page) < 1000:
                break
            since = page[-1][0] + 1
    finally:
        await ex.close()
    return FundingRates(np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=float),
                        f"{cfg.exchange}'s {cfg.symbol} funding")
