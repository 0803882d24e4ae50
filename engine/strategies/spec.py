"""What a strategy is to the rest of GridDesk: one ``StrategySpec`` per strategy, declared in
its own module (``SPEC``) and listed in ``engine.strategies.registry``. The CLI, the app, the
optimizer and the runtime ask the spec, never the strategy's name; adding a strategy is one
module (its settings, its backtest, its spec) and its tests, plus its line in the registry.

``StrategyRunner`` is what the paper and live runtime drive (``engine.runtime.trader``): the
strategy's kernels held with their state, decisions at each close, the exchange's fills in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields

from engine.risk import OPEN_GATE, Gate
from engine.strategies.errors import ParamError


@dataclass(frozen=True)
class StrategySpec:
    name: str  # as the user types it: --strategy, cryptos.json's "strategy"
    config: type  # its settings (a dataclass with from_dict / to_dict)
    backtest: Callable  # (candles, cfg, funding, *, replay, progress, risk) -> its result
    search_space: dict  # what the optimizer varies by default
    presets: dict[str, dict] = field(default_factory=dict)  # starting points: changes from the defaults
    check: Callable | None = None  # (cfg, first price or None): ParamError names the setting at fault
    funded: bool = False  # it holds a perpetual and pays funding (--funding)
    perpetual: bool = False  # it trades a perpetual alone (leverage, liquidation; its report and replay)
    hedged: bool = False  # a spot grid with a perpetual hedge (its report and replay lines)
    market: str = ""  # the market the runtime trades it in ("spot", "perpetual"); "": backtest only
    runner: type | None = None  # the runtime's StrategyRunner (market given)
    risk_gate: bool = False  # its backtest applies the runtime's risk gate (``risk``), its kernel told it
    sweep: Callable | None = None  # (candles, cfgs) -> metrics of each, side by side (the optimizer's batches)
    fixed: tuple[str, ...] = ()  # settings it holds at their default (its config refuses another): forms hide them


_KINDS = {"float": "a number", "int": "a whole number", "str": "a text", "bool": "true or false"}

MAX_CAPITAL = 1e12  # no account holds more: a larger capital is a typo (or Infinity)


def trigger_reached(trigger: float, low: float, high: float) -> bool:
    """A grid with a trigger price (> 0) is laid at the close of the first candle (after its
    warm-up) whose range reaches that price, from above or below, as the exchanges' "trigger
    price" grids start; with none (0) at once. The backtests and the runtime both ask here."""
    return trigger <= 0 or low <= trigger <= high


def check_trigger(trigger: float) -> None:
    import math

    if not math.isfinite(trigger) or trigger < 0:
        raise ParamError("trigger_price", f"must be >= 0 (0: none), got {trigger}")


def not_laid_before(start: int, not_before: int, n: int) -> int:
    """The bar a backtest may lay its grid at: after its warm-up (``start``) and no earlier
    than ``not_before`` (a running system's own start, for its parity report), within the
    ``n`` bars."""
    if not 0 <= not_before < n - 1:
        raise ParamError("not_before", f"bar {not_before} leaves no data to trade in {n} bars")
    return max(start, not_before)


def trigger_start(low, high, start: int, trigger: float) -> int:
    """The bar a backtest's grid is laid at: ``start`` (the first after the warm-up), or the
    first from there whose range reaches ``trigger``; ParamError when no bar does."""
    import numpy as np

    check_trigger(trigger)
    if trigger <= 0:
        return start
    hit = np.flatnonzero((low[start:] <= trigger) & (high[start:] >= trigger))
    if not len(hit):
        raise ParamError("trigger_price", f"the price never reaches {trigger:,.8g} in the data after the warm-up "
                                          f"(from bar {start} it spans {float(np.min(low[start:])):,.8g} to "
                                          f"{float(np.max(high[start:])):,.8g}): the grid would never be laid")
    return start + int(hit[0])


def checked_settings(cls, data: dict, label: str):
    """``cls(**data)`` for a settings dataclass, a name it does not have or a value of the wrong
    kind (text for a number, a fraction for a count) refused by the setting's name; numbers
    in range are the strategy's own checks."""
    by_name = {f.name: f for f in fields(cls)}
    out = {}
    for name in sorted(data):
        if name not in by_name:
            raise ParamError(name, f"unknown {label} setting")
        v = data[name]
        kinds = str(by_name[name].type).replace(" ", "").split("|")
        if v is None and "None" in kinds:
            out[name] = v
            continue
        if "bool" in kinds:
            ok = isinstance(v, bool)
        elif "int" in kinds:
            ok = (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
            v = int(v) if ok else v
        elif "float" in kinds:
            ok = isinstance(v, int | float) and not isinstance(v, bool)
        elif "str" in kinds:
            ok = isinstance(v, str)
        else:
            ok = True
        if not ok:
            raise ParamError(name, f"must be {_KINDS.get(kinds[0], kinds[0])}, got {v!r}")
        out[name] = v
    return cls(**out)


@dataclass(frozen=True)
class DesiredOrder:
    """An order the strategy wants resting. ``key`` is its row in the strategy's order log
    (unique for the life of the system, so it goes into the client order id); the market sell
    of leftover inventory has key -n for the system's n-th such sell. ``type`` "stop" is a
    stop-market order triggered at ``price``."""

    key: int
    side: str  # buy | sell
    type: str  # limit | market
    price: float  # limit price; the last close for a market order
    qty: float
    level: int
    role: str
    reduces: bool
    position: str = ""  # perpetuals in hedge mode: the position it opens or reduces (long | short)


class StrategyRunner:
    """The runtime's side of a strategy, every call with its explicit default."""

    strategy = ""
    perpetual = False
    last_events: tuple | list = ()  # labels the last decision recorded (a circuit-breaker halt)
    note = ""  # what the strategy says of its state, for the system's status ("" : nothing)

    def start(self, bar: int, close: float, ind: dict, gate: Gate = OPEN_GATE) -> None:
        raise NotImplementedError

    def decide(self, bar: int, close: float, ind: dict, gate: Gate = OPEN_GATE) -> None:
        raise NotImplementedError

    def on_stray_fill(self, position: str, role: str, otype: str, reduces: bool, qty: float, bar: int, t: int,
                      price: float):
        """A fill of an order whose level the state no longer has (filled while being
        cancelled): booked apart from the levels where the strategy can (returns what it did),
        else None (kept outside its books)."""
        return None


CHUNK_BARS = 1 << 16  # bars per kernel call when a run reports its progress


class Cancelled(Exception):
    """A run stopped by its progress callback."""


def drive(kernel, n: int, grow, progress=None, what: str = "kernel") -> None:
    """Run a resumable kernel over ``n`` bars: ``kernel(end, first)`` runs bars ``[first, end)``
    and returns the bar to go on from (``end`` when done, earlier when a log is full: then
    ``grow()`` makes room, negative on a bug). With ``progress``, bars go in chunks and
    ``progress(done, n)`` is called after each; it stops the run by raising (``Cancelled``)."""
    bar = 0
    while True:
        end = n if progress is None else min(n, (bar // CHUNK_BARS + 1) * CHUNK_BARS)
        nxt = kernel(end, bar)
        if nxt < 0:
            raise RuntimeError(f"{what}: a record log overflowed (a bug: please report it)")
        if nxt >= n:
            break
        if nxt != end:
            grow()
        elif progress is not None:
            progress(nxt, n)
        bar = nxt
    if progress is not None:
        progress(n, n)
