"""USDT-margined linear perpetuals: maintenance-margin tiers, isolated liquidation price,
funding settlements. Numba kernels plus the loader of a tier table kept as data."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import numpy as np
from numba import njit

from engine.kernels.jit import hot_njit

TIERS_DIR = Path(__file__).resolve().parents[2] / "resources" / "tiers"
DEFAULT_TIERS = TIERS_DIR / "binance-usdm-btcusdt.json"
FUNDING_PERIOD_MS = 8 * 3600 * 1000  # settlements at 00:00, 08:00 and 16:00 UTC
LONG, SHORT = 1, -1


def load_tiers(path: str | Path = DEFAULT_TIERS) -> np.ndarray:
    """Tier table as an (n, 3) array of (notional floor, maintenance margin rate, maintenance
    amount), the amount of tier i being amount(i-1) + floor(i) x (MMR(i) - MMR(i-1))."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        rows = data["tiers"]
        floors = [float(t["floor"]) for t in rows]
        rates = [float(t["mmr"]) for t in rows]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a tier table ({exc})") from None
    if not floors or floors[0] != 0 or any(b <= a for a, b in pairwise(floors)):
        raise ValueError(f"{path}: tier floors must start at 0 and increase")
    if any(not 0 < r < 1 for r in rates) or any(b < a for a, b in pairwise(rates)):
        raise ValueError(f"{path}: maintenance margin rates must be in (0, 1) and not decrease")
    out = np.zeros((len(floors), 3))
    out[:, 0] = floors
    out[:, 1] = rates
    for i in range(1, len(floors)):
        out[i, 2] = out[i - 1, 2] + floors[i] * (rates[i] - rates[i - 1])
    return out


@hot_njit
def tier_of_nb(tiers, notional):
    """Index of the tier whose notional bracket holds ``notional``."""
    t = 0
    while t + 1 < len(tiers) and notional > tiers[t + 1, 0]:
        t += 1
    return t


@hot_njit
def liquidation_price_nb(tiers, side, qty, entry, wallet):
    """Isolated liquidation price of one position: long ``(Q*EP - WB - cum) / (Q*(1 - MMR))``,
    short ``(Q*EP + WB + cum) / (Q*(1 + MMR))``, with the tier taken at the notional the price
    itself implies, iterated until that tier is stable. 0 (long) or inf (short) when none."""
    if qty <= 0.0:
        return 0.0 if side == LONG else np.inf
    t = tier_of_nb(tiers, qty * entry)
    price = 0.0
    for _ in range(len(tiers) + 2):
        mmr = tiers[t, 1]
        cum = tiers[t, 2]
        if side == LONG:
            price = (qty * entry - wallet - cum) / (qty * (1.0 - mmr))
        else:
            price = (qty * entry + wallet + cum) / (qty * (1.0 + mmr))
        if price <= 0.0:
            return 0.0 if side == LONG else np.inf
        t_new = tier_of_nb(tiers, qty * price)
        if t_new == t:
            break
        t = t_new
    return price


@njit(cache=True, nogil=True)
def funding_rates_on_bars_nb(bar_time, timeframe_ms, rate_time, rate, default_rate):
    """For each bar, the summed funding rate of the settlements in (previous bar open, this bar
    open]: a settlement at 08:00 is paid at the open of the bar starting at 08:00, with the
    position held into it; settlements inside a data gap are paid at the first bar after it.
    Settlements missing from the rate file use ``default_rate``. Also returns the count."""
    n = len(bar_time)
    out = np.zeros(n)
    count = np.zeros(n, dtype=np.int64)
    j = 0
    m = len(rate_time)
    for i in range(1, n):
        lo = bar_time[i - 1]
        hi = bar_time[i]
        s = (lo // FUNDING_PERIOD_MS + 1) * FUNDING_PERIOD_MS
        while s <= hi:
            while j < m and rate_time[j] < s:
                j += 1
            if j < m and rate_time[j] == s:
                out[i] += rate[j]
            else:
                out[i] += default_rate
            count[i] += 1
            s += FUNDING_PERIOD_MS
    return out, count
