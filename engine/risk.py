"""The risk gate every order passes before it is sent.

It never raises for a refused order: it answers with a Decision that says whether to send,
simulate (dry-run) or deny, which rule decided and why. Every denial is kept in an audit trail
(and written to the event log when one is given).

Rules, in the order they are checked:
1. Kill switch, global then per system: no new order at all (resting orders are left alone;
   cancelling them is a separate, confirmed action of the runtime).
2. Paused systems (a circuit breaker, or a solvency cut to zero): no new order that adds exposure.
3. Pre-trade checks: the order's value against the market's minimum; the spread against
   ``max_spread``; a market order's expected price against the last trade (``max_deviation``:
   slippage). Limit orders rest where the grid designed them (their distance from the price is
   the point; the exchange's own price band bounds them).
4. Capital, live systems: what the system holds on the exchange (measured from it, or from
   its books when they hold more) and has resting to add to it, plus this order, may not pass
   what its capital allows (spot: its equity; a perpetual: its equity times its leverage,
   positions only) by more than ``CAPITAL_SLACK``. Past it the system is paused, in red: a
   grid never spends more than it was given, whatever a bug or a re-sent order did.
5. Exposure: per symbol and in total, position plus resting orders plus this order, in quote:
   against fixed amounts (over every system) and against shares of the portfolio of the
   account the system trades in (20% per symbol, 80% in total by default). A live account's
   portfolio is what the exchange holds (quote plus the traded coins at their last price),
   measured by the runtime; paper systems share one paper account of ``paper_portfolio``.
   An order that only reduces a position always passes 2, 4 and 5.
6. Dry-run, global or per system (the default for a new system): the order passes every check
   but is simulated, not sent.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from engine.kernels.breaker import CALM, LAST_ATR, ON, atr_breaker_nb

SEND, SIMULATE, DENY = "send", "simulate", "deny"
PAPER = "paper"  # the account of every paper system
CAPITAL_SLACK = 0.02  # the capital rule's margin over a system's allowance (rounding, fees in coins, price moves)


class Decision(NamedTuple):
    action: str  # send | simulate | deny
    rule: str  # which rule decided ("ok" when all passed)
    reason: str

    @property
    def allowed(self) -> bool:
        return self.action != DENY


@dataclass(frozen=True)
class OrderIntent:
    system: str
    symbol: str
    side: str  # buy | sell
    price: float  # limit price (the expected fill price for market orders)
    qty: float
    reduces: bool = False  # closes or reduces a position: never adds exposure
    client_order_id: str = ""
    type: str = "limit"  # limit | market

    @property
    def notional(self) -> float:
        return abs(self.price * self.qty)


class Gate(NamedTuple):
    """What the gate lets a system's strategy open at a close: nothing while ``paused``; up to
    ``room`` held and resting (quote, ``RiskGate.exposure_room``)."""
    paused: bool = False
    room: float = float("inf")


OPEN_GATE = Gate()


@dataclass(frozen=True)
class Market:
    bid: float = 0.0
    ask: float = 0.0
    last: float = 0.0
    min_notional: float = 0.0


@dataclass
class RiskLimits:
    max_symbol_notional: float = float("inf")  # per symbol, all systems together
    max_total_notional: float = float("inf")
    max_symbol_share: float = 0.20  # of the account's portfolio, per symbol, its systems together
    max_total_share: float = 0.80  # of the account's portfolio, everything its systems hold or bid
    paper_portfolio: float = 100_000.0  # the paper account, in quote
    max_spread: float = 0.005  # (ask - bid) / mid
    max_deviation: float = 0.05  # market orders: |expected price - last| / last
    atr_jump: float = 0.30  # ATR change in one candle that pauses a system
    calm_candles: int = 3  # candles with ATR changes under half the jump before resuming

    def validate(self) -> None:
        for name in ("max_symbol_notional", "max_total_notional", "max_symbol_share", "max_total_share",
                     "paper_portfolio", "max_spread", "max_deviation", "atr_jump"):
            v = getattr(self, name)
            if not v > 0:
                raise ValueError(f"{name}: must be > 0, got {v}")
        if int(self.calm_candles) != self.calm_candles or self.calm_candles < 1:
            raise ValueError(f"calm_candles: must be a whole number >= 1, got {self.calm_candles}")


@dataclass
class Denial:
    ts: int
    system: str
    symbol: str
    client_order_id: str
    rule: str
    reason: str


@dataclass
class SystemStatus:
    on: bool  # running
    killed: bool  # by its own or the global kill switch
    trend: str  # UP | DOWN | NEUTRAL
    vol_spike: bool
    paused: bool
    reason: str  # why paused / killed, for the tooltip

    @property
    def label(self) -> str:
        if not self.on:
            return "OFF"
        if self.killed:
            return "KILLED"
        if self.paused:
            return "PAUSED"
        return "VOL-SPIKE" if self.vol_spike else "ON"  # (the trend has its own column)


@dataclass
class _SystemRisk:
    killed: bool = False
    dry_run: bool = True  # every new system starts in dry-run
    paused_reason: str = ""
    held: bool = False  # paused by the user (cancel all): no order at all, closing ones included
    calm: int = 0
    last_atr: float = 0.0
    vol_spike: bool = False
    on: bool = False
    trend: str = "NEUTRAL"


class RiskGate:
    def __init__(self, limits: RiskLimits | None = None, *, event_log=None, audit_size: int = 10_000):
        self.limits = limits or RiskLimits()
        self.limits.validate()
        self.kill_all = False
        self.dry_run_all = False
        self.event_log = event_log
        self.audit: deque[Denial] = deque(maxlen=audit_size)
        self._systems: dict[str, _SystemRisk] = {}
        self._exposure: dict[tuple[str, str], float] = {}  # (system, symbol) -> notional
        self._capital: dict[str, list[float]] = {}  # live system -> [allowance, committed], in quote
        self._accounts: dict[str, str] = {}  # system -> the account it trades in (PAPER by default)
        self._portfolio: dict[str, float] = {}  # live account -> its value in quote, as last measured
        self._denied: dict[tuple[str, str], tuple[str, str]] = {}  # (system, order id) -> (rule, reason)
        self._one = np.zeros(1, dtype=np.bool_)

    # --- systems ------------------------------------------------------------------------------
    def system(self, name: str) -> _SystemRisk:
        return self._systems.setdefault(name, _SystemRisk())

    def set_dry_run(self, system: str | None, on: bool) -> None:
        """Dry-run for one system, or for all (system None)."""
        if system is None:
            self.dry_run_all = on
        else:
            self.system(system).dry_run = on

    def kill(self, system: str | None = None) -> None:
        """Stop new orders at once: everywhere (None) or for one system."""
        if system is None:
            self.kill_all = True
        else:
            self.system(system).killed = True
        self._log("kill_switch", system=system or "*", on=True)

    def release(self, system: str | None = None) -> None:
        """Turn a kill switch off (the GUI asks for confirmation first)."""
        if system is None:
            self.kill_all = False
        else:
            self.system(system).killed = False
        self._log("kill_switch", system=system or "*", on=False)

    def killed_systems(self) -> list[str]:
        return sorted(n for n, s in self._systems.items() if s.killed)

    def set_exposure(self, symbol: str, notional: float, system: str = "") -> None:
        """A system reports its exposure on a symbol: position plus resting buys, in quote.
        The limits apply to the sum over systems (per symbol) and over everything (total)."""
        self._exposure[(system, symbol)] = abs(notional)

    def exposure(self, symbol: str | None = None, account: str | None = None) -> float:
        return sum(v for (system, sym), v in self._exposure.items()
                   if (symbol is None or sym == symbol) and (account is None or self.account(system) == account))

    def set_capital(self, system: str, allowance: float, committed: float) -> None:
        """A live system's capital rule: the most it may hold on the exchange (quote), and what
        counts against it now, as measured from the exchange."""
        self._capital[system] = [float(allowance), float(committed)]

    def commit(self, system: str, notional: float) -> None:
        """An order sent counts against its system's allowance until the next measure."""
        if system in self._capital:
            self._capital[system][1] += notional

    def set_account(self, system: str, account: str) -> None:
        """The account a system trades in: PAPER, or a live one (exchange, market, URL)."""
        self._accounts[system] = account

    def account(self, system: str) -> str:
        return self._accounts.get(system, PAPER)

    def set_portfolio(self, account: str, value: float) -> None:
        """A live account's value in quote (what the exchange holds), as measured now."""
        self._portfolio[account] = float(value)

    def portfolio(self, account: str) -> float | None:
        """The value the shares are of: the paper account's setting, a live one's last measure
        (None before the first)."""
        return self.limits.paper_portfolio if account == PAPER else self._portfolio.get(account)

    # --- the gate -----------------------------------------------------------------------------
    def check(self, order: OrderIntent, market: Market) -> Decision:
        d = self._decide(order, market)
        key = (order.system, order.client_order_id)
        if d.action != DENY:
            self._denied.pop(key, None)
            return d
        if self._denied.get(key) == (d.rule, d.reason):
            return d  # asked again (a new candle, the same order, the same answer): recorded once
        if len(self._denied) > 10_000:
            self._denied.clear()
        self._denied[key] = (d.rule, d.reason)
        now = int(time.time() * 1000)
        self.audit.append(Denial(now, order.system, order.symbol, order.client_order_id, d.rule, d.reason))
        self._log("risk_denied", system=order.system, symbol=order.symbol, cid=order.client_order_id,
                  rule=d.rule, reason=d.reason)
        return d

    def _decide(self, o: OrderIntent, m: Market) -> Decision:
        lim = self.limits
        sysr = self.system(o.system)
        if self.kill_all:
            return Decision(DENY, "kill_switch", "the global kill switch is on")
        if sysr.killed:
            return Decision(DENY, "kill_switch", f"the kill switch of {o.system} is on")
        if not o.qty > 0 or not o.price > 0:
            return Decision(DENY, "invalid", f"price {o.price} and quantity {o.qty} must be > 0")
        if sysr.held:
            return Decision(DENY, "held", f"{o.system} is paused: {sysr.paused_reason}")
        if sysr.paused_reason and not o.reduces:
            return Decision(DENY, "paused", f"{o.system} is paused: {sysr.paused_reason}")
        if m.min_notional and o.notional < m.min_notional:
            return Decision(DENY, "min_notional",
                            f"order value {o.notional:.2f} is below the minimum {m.min_notional:g}")
        if m.bid > 0 and m.ask > 0:
            mid = (m.bid + m.ask) / 2
            spread = (m.ask - m.bid) / mid
            if spread > lim.max_spread:
                return Decision(DENY, "spread", f"spread {spread:.3%} is wider than {lim.max_spread:.3%}")
        if m.last > 0 and o.type == "market":
            dev = abs(o.price - m.last) / m.last
            if dev > lim.max_deviation:
                return Decision(DENY, "deviation", f"price {o.price:g} is {dev:.2%} from the last trade "
                                                   f"{m.last:g} (limit {lim.max_deviation:.2%})")
        if not o.reduces and o.system in self._capital:
            allowance, committed = self._capital[o.system]
            if committed + o.notional > allowance * (1 + CAPITAL_SLACK):
                reason = (f"capital guard: {o.system} would hold {committed + o.notional:,.2f} on the exchange, "
                          f"over what its capital allows ({allowance:,.2f})")
                if not sysr.paused_reason:
                    self.pause(o.system, f"{reason}; no new openings until explained (switch it off and on)")
                    self._log("capital_guard", system=o.system, committed=committed, order=o.notional,
                              allowance=allowance)
                return Decision(DENY, "capital", reason)
        if not o.reduces:
            limits = self._exposure_limits(o.system, o.symbol)
            if limits is None:
                return Decision(DENY, "exposure_unknown", f"the value of {self._where(o.system)} is not known yet")
            for rule, what, used, over, limit in limits:
                if used + o.notional > limit:
                    return Decision(DENY, rule, f"{what} would be {used + o.notional:,.2f}, over {over}")
        if self.dry_run_all or sysr.dry_run:
            return Decision(SIMULATE, "dry_run", "dry-run: checked, not sent")
        return Decision(SEND, "ok", "")

    def _where(self, system: str) -> str:
        account = self.account(system)
        return "the paper account" if account == PAPER else f"the account {account}"

    def _exposure_limits(self, system: str, symbol: str) -> list[tuple[str, str, float, str, float]] | None:
        """Rule 5 for an opening of ``system`` on ``symbol``: (rule, what, exposure now, the limit
        in words, the limit) of each limit; None while the account's value, which the shares are
        of, is not known."""
        lim = self.limits
        out = [("exposure_symbol", f"{symbol} exposure", self.exposure(symbol),
                f"its limit {lim.max_symbol_notional:,.2f}", lim.max_symbol_notional),
               ("exposure_total", "total exposure", self.exposure(), f"the limit {lim.max_total_notional:,.2f}",
                lim.max_total_notional)]
        if lim.max_symbol_share != float("inf") or lim.max_total_share != float("inf"):
            account = self.account(system)
            value = self.portfolio(account)
            if value is None:
                return None
            where = self._where(system)
            for rule, what, used, share in (
                    ("exposure_symbol", f"{symbol} exposure", self.exposure(symbol, account), lim.max_symbol_share),
                    ("exposure_total", "total exposure", self.exposure(None, account), lim.max_total_share)):
                out.append((rule, what, used, f"{share:.0%} of {where} ({share * value:,.2f} of {value:,.2f})",
                            share * value))
        return out

    def exposure_in_sight(self) -> list[tuple[str, float, float, str]]:
        """What each held symbol and the total stand at against their tightest limit of rule 5:
        (what, exposure now, the limit, the limit in words), for the Risk tab; a limit that is
        none (inf) is left out."""
        tightest: dict[str, tuple[str, float, float, str]] = {}
        for system, symbol in list(self._exposure):
            for _, what, used, words, limit in self._exposure_limits(system, symbol) or ():
                if limit != float("inf") and (what not in tightest or limit - used < tightest[what][2] -
                                              tightest[what][1]):
                    tightest[what] = (what, used, limit, words)
        return sorted(tightest.values(), key=lambda r: (r[0] == "total exposure", r[0]))

    # --- circuit breakers and solvency ---------------------------------------------------------
    def on_candle(self, system: str, atr: float, trend: str = "NEUTRAL") -> SystemStatus:
        """Feed each closed candle's ATR to the system's volatility breaker
        (``engine.kernels.breaker``, the backtest's too): a change of more than ``atr_jump``
        pauses the system's grid; ``calm_candles`` candles in a row with changes under half of
        it resume it."""
        s = self.system(system)
        s.trend = trend
        state = np.array([s.last_atr, float(s.vol_spike), float(s.calm)])
        was = s.vol_spike
        change = atr_breaker_nb(np.array([float(atr)]), self.limits.atr_jump, float(self.limits.calm_candles),
                                state, self._one)
        s.last_atr, s.vol_spike, s.calm = float(state[LAST_ATR]), bool(state[ON]), int(state[CALM])
        if s.vol_spike and change > self.limits.atr_jump and not s.paused_reason:
            s.paused_reason = f"volatility spike: ATR changed {change:.0%} in one candle"
            self._log("circuit_breaker", system=system, on=True, reason=s.paused_reason)
        elif was and not s.vol_spike and s.paused_reason.startswith("volatility spike"):
            s.paused_reason = ""
            self._log("circuit_breaker", system=system, on=False, reason="volatility normal again")
        return self.status(system)

    def gate(self, system: str, symbol: str) -> Gate:
        """What ``system``'s strategy may open now (``Gate``)."""
        s = self.system(system)
        closed = self.kill_all or s.killed or bool(s.paused_reason)
        return Gate(closed, self.exposure_room(system, symbol))

    def exposure_room(self, system: str, symbol: str) -> float:
        """The most ``system`` may hold on ``symbol`` and have resting to add to it (quote) before
        rule 5 refuses its next opening, beside what the other systems hold: what its strategy
        is told, so that it never wants an order the gate would refuse. While the account's value
        is not known (a live account before its first orders, which measure it) the strategy is
        not held back: the gate judges those orders itself."""
        limits = self._exposure_limits(system, symbol)
        if limits is None:
            return float("inf")
        mine = self._exposure.get((system, symbol), 0.0)
        return max(min(limit - used for _, _, used, _, limit in limits) + mine, 0.0)

    def pause(self, system: str, reason: str, *, hold: bool = False) -> None:
        """Pause from elsewhere (a strategy's own breaker, the solvency monitor, refusals):
        no new openings. ``hold`` (the user's cancel-all): no order at all, until resumed."""
        s = self.system(system)
        s.paused_reason = reason
        s.held = s.held or hold
        self._log("paused", system=system, reason=reason)

    def paused_systems(self) -> dict[str, list]:
        """[reason, held] of each paused system (what bot_state.json keeps across a restart)."""
        return {n: [s.paused_reason, s.held] for n, s in self._systems.items() if s.paused_reason and not
                s.paused_reason.startswith("volatility spike")}

    def resume(self, system: str) -> None:
        s = self.system(system)
        s.paused_reason = ""
        s.held = False
        s.vol_spike = False
        self._log("resumed", system=system)

    def solvency(self, free_quote: float, allocations: dict[str, float],
                 tolerance: float = 0.001) -> tuple[dict[str, float], str]:
        """Compare what the exchange holds with the capital given to the systems. On a deficit
        beyond ``tolerance`` (a withdrawal, a loss elsewhere; not the exchange's rounding of fees)
        every allocation is cut in the same proportion; returns the new allocations and a message
        for the user ('' when there is no deficit)."""
        need = sum(max(v, 0.0) for v in allocations.values())
        if need <= 0 or free_quote >= need * (1.0 - tolerance):
            return dict(allocations), ""
        factor = max(free_quote, 0.0) / need
        cut = {name: v * factor for name, v in allocations.items()}
        msg = (f"the account holds {free_quote:,.2f} but the systems were given {need:,.2f}: "
               f"every allocation is cut to {factor:.1%}")
        self._log("solvency_haircut", factor=factor, free=free_quote, allocated=need)
        return cut, msg

    def status(self, system: str) -> SystemStatus:
        s = self.system(system)
        reason = ("global kill switch" if self.kill_all else "kill switch" if s.killed else s.paused_reason)
        return SystemStatus(on=s.on, killed=self.kill_all or s.killed, trend=s.trend, vol_spike=s.vol_spike,
                            paused=bool(s.paused_reason), reason=reason)

    def _log(self, event: str, **fields) -> None:
        if self.event_log is not None:
            self.event_log.log(event, **fields)


@dataclass
class AuditTrail:
    """A view of the gate's denials for a table (newest first)."""

    gate: RiskGate
    columns: tuple[str, ...] = field(default=("time", "system", "symbol", "client order id", "rule", "reason"))

    def rows(self) -> list[tuple]:
        return [(d.ts, d.system, d.symbol, d.client_order_id, d.rule, d.reason) for d in reversed(self.gate.audit)]
