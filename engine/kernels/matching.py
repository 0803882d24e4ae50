"""How a candle fills resting orders (GRID_SEMANTICS.md): the one place of the rule.

A candle is walked as two legs from its open: to the low and to the high, the one nearer
the open first (the low first when the candle closes at or above its open). On the leg to
the low, buy limits and sell stops are reached, in falling price order; on the leg to the
high, sell limits and buy stops, in rising price order. A limit at P is reached when the
leg's extreme reaches P (``low <= P``), or with the through model trades through it by more
than a tick (``low < P - tick``), and fills at P or at the open when the candle opens beyond
it (``min(open, P)`` for a buy). With the queue model a reached limit fills only with a
probability that rises with how far the leg went through it (``queue_fill_nb``), drawn from a
hash of a seed, the candle's time and the price, so a run is the same each time; a stop fills
at its trigger or the open beyond it, with adverse slippage; a market order at the open, with
adverse slippage, before both legs.
At a price two orders share, an opening fills before a reduction, and a stop last.

The spot and perpetual kernels walk their grids, which are kept in price order, with these
functions; the paper exchanges, whose orders are a book of any shape, ask ``match_bar_nb``
for the order of a candle's fills. A perpetual caller looks for its side's liquidation
before each fill of the side's leg and at the leg's extreme (its price moves with each fill).
"""

from __future__ import annotations

import numpy as np
from numba import njit

LIMIT, STOP, MARKET = 0, 1, 2
FILL_TOUCH, FILL_THROUGH, FILL_QUEUE = 0, 1, 2
FILL_MODELS = ("touch", "through", "queue")  # the settings' words for them
KIND_NAMES = ("limit", "stop", "market")


@njit(cache=True, nogil=True, inline="always")
def down_first_nb(open_, close):
    """True when the leg to the low comes first: the candle closed at or above its open."""
    return close >= open_


@njit(cache=True, nogil=True, inline="always")
def reached_nb(down, price, extreme, tick):
    """Whether a leg to ``extreme`` (the low when ``down``, else the high) reaches an order
    at ``price``; with ``tick`` > 0 it must trade through it by more than a tick."""
    if down:
        return extreme < price - tick if tick > 0.0 else extreme <= price
    return extreme > price + tick if tick > 0.0 else extreme >= price


@njit(cache=True, nogil=True, inline="always")
def limit_fill_nb(down, open_, price):
    """The price a reached limit fills at: its own, or the open when the candle opened beyond it."""
    return min(open_, price) if down else max(open_, price)


@njit(cache=True, nogil=True, inline="always")
def stop_fill_nb(down, open_, price, slippage):
    """The price a triggered stop fills at: its trigger or the open beyond it, slipped against it."""
    return min(open_, price) * (1.0 - slippage) if down else max(open_, price) * (1.0 + slippage)


@njit(cache=True, nogil=True, inline="always")
def market_fill_nb(buy, open_, slippage):
    """The price a market order fills at: the open, slipped against it."""
    return open_ * (1.0 + slippage) if buy else open_ * (1.0 - slippage)


@njit(cache=True, nogil=True, inline="always")
def _mix_nb(x):
    """splitmix64's finaliser: a uint64 to a well-spread uint64."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(cache=True, nogil=True)
def queue_draw_nb(seed, t, price):
    """A uniform number in [0, 1) fixed by (``seed``, the candle's open time ``t`` in ms, the
    order's ``price`` to 1e-8): the same order on the same candle draws the same number in a
    backtest and on the paper exchange."""
    key = np.uint64(np.int64(round(price * 1e8)))
    x = _mix_nb(np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(t))
    x = _mix_nb(x ^ key)
    return float(x >> np.uint64(11)) / 9007199254740992.0  # 2**53


@njit(cache=True, nogil=True)
def queue_fill_nb(seed, t, price, through, depth):
    """Queue model: a limit at ``price`` that the candle went ``through`` beyond (``P - low``
    for a buy, ``high - P`` for a sell; 0 at a bare touch) fills with probability
    ``min(1, through / (depth x price))``: never at a bare touch, surely once the price went
    ``depth`` (a fraction of the price) beyond it, in between in proportion."""
    if through <= 0.0:
        return False
    return queue_draw_nb(seed, t, price) < through / (depth * price)


@njit(cache=True, nogil=True)
def falls_nb(buy, kind):
    """Whether an order is reached on the leg to the low: a buy limit or a sell stop."""
    return buy != (kind == STOP)


@njit(cache=True, nogil=True)
def match_bar_nb(open_, high, low, close, tick, price, buy, kind, opens, out):
    """The orders (``price``, ``buy``, ``kind``: LIMIT/STOP/MARKET, ``opens``: opens a
    position) that this candle reaches, in the order it reaches them: indices written to
    ``out``, their count returned. Market orders first (in the given order), then each leg's
    reached orders from the open outwards; at one price an opening, then a reduction, then a
    stop, and orders alike in the given order. A stop triggers when the price touches it
    (``tick`` is for limits)."""
    n = len(price)
    m = 0
    for x in range(n):
        if kind[x] == MARKET:
            out[m] = x
            m += 1
    down_first = down_first_nb(open_, close)
    key = np.empty(n)
    rank = np.empty(n, np.int64)
    idx = np.empty(n, np.int64)
    for leg in range(2):
        down = (leg == 0) == down_first
        extreme = low if down else high
        k = 0
        for x in range(n):
            if kind[x] == MARKET or falls_nb(buy[x], kind[x]) != down:
                continue
            if not reached_nb(down, price[x], extreme, tick if kind[x] == LIMIT else 0.0):
                continue
            key[k] = -price[x] if down else price[x]  # along the leg: from the open outwards
            rank[k] = 2 if kind[x] == STOP else (0 if opens[x] else 1)
            idx[k] = x
            k += 1
        by_rank = np.argsort(rank[:k], kind="mergesort")  # stable sorts: the price first, then
        by_key = np.argsort(key[:k][by_rank], kind="mergesort")  # the rank, then the given order
        for a in range(k):
            out[m] = idx[by_rank[by_key[a]]]
            m += 1
    return m


def match_bar(open_: float, high: float, low: float, close: float, tick: float, orders: list, opens) -> list:
    """``match_bar_nb`` over resting orders (with ``price``, ``side`` and ``type``; ``opens(o)``
    says whether one opens a position): those the candle reaches, in the order it reaches them."""
    if not orders:
        return []
    price = np.array([o.price for o in orders], float)
    buy = np.array([o.side == "buy" for o in orders])
    kind = np.array([KIND_NAMES.index(o.type) for o in orders], np.int64)
    is_opening = np.array([bool(opens(o)) for o in orders])
    out = np.empty(len(orders), np.int64)
    m = match_bar_nb(open_, high, low, close, tick, price, buy, kind, is_opening, out)
    return [orders[i] for i in out[:m]]
