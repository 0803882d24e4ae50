"""Which opening fill each closing fill closes (engine/trips.py says what a round trip is):
a kernel, without the GIL, so that a replay's round trips of a busy year (80,000 fills) are
made in the worker thread without holding the GUI thread (the Python loop held it for over
100 ms at a time)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def pair_closes_nb(group, is_open, qty):
    """For each fill of a trade log (in order): -2 when it is not a close (an opening, or
    ``qty`` 0: a decision, not a fill), else the row of the opening it closes, -1 for none.

    ``group``: the (side, cost or entry) each opening and close belongs to, -1 for a close
    that no single opening can have made. A close takes from its group's openings not yet
    closed: the first of its very size (within 1e-9 of it), else the one with the most left
    (the oldest of those); a lot closed in parts is named by each part."""
    n = len(group)
    groups = 0
    for k in range(n):
        groups = max(groups, group[k] + 1)
    # each group's openings in row order: members[start[g]:start[g + 1]]
    start = np.zeros(groups + 1, np.int64)
    for k in range(n):
        if is_open[k] and qty[k] > 0.0 and group[k] >= 0:
            start[group[k] + 1] += 1
    for g in range(groups):
        start[g + 1] += start[g]
    members = np.empty(start[groups], np.int64)
    arrived = start[:groups].copy()  # the openings seen so far end here
    head = start[:groups].copy()  # those before it are all closed
    rest = np.zeros(n)  # what an opening has not closed yet (0: closed)
    out = np.full(n, -2, np.int64)
    for k in range(n):
        q = qty[k]
        if q <= 0.0:
            continue
        g = group[k]
        if is_open[k]:
            if g >= 0:
                members[arrived[g]] = k
                arrived[g] += 1
                rest[k] = q
            continue
        out[k] = -1
        if g < 0:
            continue
        tol = 1e-9 * max(q, 1e-12)
        while head[g] < arrived[g] and rest[members[head[g]]] <= 0.0:
            head[g] += 1
        best = -1
        for i in range(head[g], arrived[g]):
            r = members[i]
            if rest[r] <= 0.0:
                continue
            if abs(rest[r] - q) <= tol:
                best = r
                break
            if best < 0 or rest[r] > rest[best]:
                best = r
        if best >= 0:
            out[k] = best
            rest[best] -= q
            if rest[best] <= tol:
                rest[best] = 0.0
    return out
