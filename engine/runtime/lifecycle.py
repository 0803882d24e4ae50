"""The order lifecycle as an explicit state table, and the book of a system's orders.

Every transition is checked against the table and journaled; a transition the table does not
allow raises (it would mean we lost track of an order). Client order ids are
``gd<system id>-<level>-<key>``: the prefix proves an order is this system's, the key is the
order's row in the strategy's order log (unique for the system's life), so the same decision
always carries the same id and a retry or a restart can never place it twice. An order the
strategy still wants after its first id ended unfilled (cancelled by the user, refused,
expired) goes out again as ``...-<key>.<attempt>``: no client order id is ever sent twice.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

NEW, SUBMITTED, OPEN, PARTIAL, PENDING_CANCEL, FILLED, CANCELLED, REJECTED, EXPIRED = (
    "new", "submitted", "open", "partially_filled", "pending_cancel", "filled", "cancelled", "rejected", "expired")
STATES = (NEW, SUBMITTED, OPEN, PARTIAL, PENDING_CANCEL, FILLED, CANCELLED, REJECTED, EXPIRED)
TERMINAL = frozenset({FILLED, CANCELLED, REJECTED, EXPIRED})
WORKING = (SUBMITTED, OPEN, PARTIAL, PENDING_CANCEL)  # on the exchange, or may be: asked about, cancelled by cancel all
REPEATED = frozenset({PARTIAL, PENDING_CANCEL})  # states an order moves into again, journaled (a fill more)

# state -> the states it may move to. SUBMITTED may jump to FILLED or CANCELLED: a lost
# response is resolved by looking the order up, and by then it may have done anything.
# PENDING_CANCEL: we asked the exchange to cancel it and it has not said it did; it may still
# fill (in part, or whole) until it does, and nothing new goes out for its level meanwhile
# (nautilus_trader's order state table has the same state: model/orders/base.pyx).
TRANSITIONS: dict[str, frozenset[str]] = {
    NEW: frozenset({SUBMITTED, REJECTED}),
    SUBMITTED: frozenset({OPEN, PARTIAL, FILLED, CANCELLED, REJECTED, EXPIRED, NEW, PENDING_CANCEL}),
    OPEN: frozenset({PARTIAL, FILLED, CANCELLED, EXPIRED, PENDING_CANCEL}),
    PARTIAL: frozenset({PARTIAL, FILLED, CANCELLED, EXPIRED, PENDING_CANCEL}),
    PENDING_CANCEL: frozenset({PENDING_CANCEL, FILLED, CANCELLED, EXPIRED, REJECTED}),
    FILLED: frozenset(),
    CANCELLED: frozenset(),
    REJECTED: frozenset(),
    EXPIRED: frozenset(),
}

_CID = re.compile(r"^gd([a-z0-9]{1,12})-(m|-?\d+)-(-?\d+)(?:\.(\d+))?$")
MAX_CID = 36  # Binance's limit, the tightest of the exchanges we target


class LifecycleError(RuntimeError):
    pass


def client_order_id(system_id: str, level: int, key: int, attempt: int = 0) -> str:
    cid = f"gd{system_id}-{'m' if level < 0 and key < 0 else level}-{key}{f'.{attempt}' if attempt else ''}"
    if len(cid) > MAX_CID or not _CID.match(cid):
        raise ValueError(f"client order id {cid!r} is malformed or longer than {MAX_CID}")
    return cid


def attempt_of(cid: str) -> int:
    """Which attempt of its order a client order id of ours is (0: the first)."""
    m = _CID.match(cid or "")
    return int(m.group(4) or 0) if m else 0


def parse_client_order_id(cid: str) -> tuple[str, int] | None:
    """(system id, key) of one of our client order ids, None for anything else."""
    m = _CID.match(cid or "")
    return (m.group(1), int(m.group(3))) if m else None


@dataclass
class TrackedOrder:
    cid: str
    key: int
    side: str
    type: str
    price: float
    qty: float
    level: int
    role: str
    state: str = NEW
    exchange_id: str = ""
    filled: float = 0.0
    average: float = 0.0
    fee: float = 0.0
    bar: int = -1  # the bar whose close decided it
    note: str = ""  # why it is in its state (the journal holds the whole lifecycle)
    ts: int = 0  # when it entered the book (ms)
    position: str = ""  # perpetuals in hedge mode: long | short
    reduces: bool = False  # closes (part of) a position: adds no exposure
    taker: bool = False  # a limit that traded on arrival (its answer said so; else: crossed the market when sent)

    def to_dict(self) -> dict:
        return dict(self.__dict__)  # flat fields: dataclasses.asdict deep-copies each (60 us an order)

    @classmethod
    def from_dict(cls, d: dict) -> TrackedOrder:
        d = dict(d)
        d.setdefault("reduces", d.get("side") == "sell" and not d.get("position"))  # a spot sell (older states)
        return cls(**d)


class OrderBook:
    """A system's orders by client order id, with every transition checked and journaled."""

    def __init__(self, journal=None, system: str = ""):
        self.orders: dict[str, TrackedOrder] = {}
        self.journal = journal  # engine.store.JsonLines or None
        self.system = system
        self.changes = 0  # transitions so far (the trader saves its state when there were any)

    def add(self, order: TrackedOrder) -> TrackedOrder:
        if order.cid in self.orders:
            raise LifecycleError(f"{order.cid}: already in the book")
        order.ts = order.ts or _now()
        self.orders[order.cid] = order
        self._journal(order, order.state, order.note)
        return order

    def move(self, cid: str, state: str, note: str = "", **fields) -> TrackedOrder:
        o = self.orders[cid]
        if (state != o.state or state in REPEATED) and state not in TRANSITIONS[o.state]:
            raise LifecycleError(f"{cid}: {o.state} -> {state} is not a valid transition")
        for name, value in fields.items():
            setattr(o, name, value)
        if state == o.state and state not in REPEATED:
            return o
        o.state = state
        o.note = note
        self._journal(o, state, note)
        return o

    def _journal(self, o: TrackedOrder, state: str, note: str) -> None:
        self.changes += 1
        if self.journal is not None:
            self.journal.append({"type": "order", "system": self.system, "cid": o.cid, "state": state,
                                 "side": o.side, "price": o.price, "qty": o.qty, "filled": o.filled,
                                 "average": o.average, "bar": o.bar, "note": note, "ts": _now()})

    def live(self) -> list[TrackedOrder]:
        return [o for o in self.orders.values() if o.state not in TERMINAL]

    def in_state(self, *states: str) -> list[TrackedOrder]:
        return [o for o in self.orders.values() if o.state in states]

    def prune(self) -> None:
        """Forget finished orders (they are in the journal)."""
        self.orders = {cid: o for cid, o in self.orders.items() if o.state not in TERMINAL}


def _now() -> int:
    return int(time.time() * 1000)
