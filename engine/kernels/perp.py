"""USDT-margined linear perpetuals: maintenance-margin tiers, isolated liquidation price,
funding settlements. Numba kernels plus the loader of a tier table kept as data."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import numpy as np

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


def tiers_for(tiers: str, symbol: str) -> np.ndarray:
    """The tier table of ``tier_file``."""
    return load_tiers(tier_file(tiers, symbol))


def tier_file(tiers: str, symbol: str) -> str:
    """The tier table a perpetual of ``symbol`` (e.g. "ETH/USDT:USDT", "ETHUSDT") is margined by:
    the file ``tiers`` when given, else the Binance USDT-M brackets GridDesk ships for the symbol
    (resources/tiers/binance-usdm-<symbol>.json). A symbol without a table, or none known, is
    refused by name (ValueError): another symbol's brackets would misplace every liquidation
    price."""
    if tiers:
        return tiers
    shipped = sorted(p.stem.removeprefix("binance-usdm-").upper() for p in TIERS_DIR.glob("binance-usdm-*.json"))
    market = symbol.split(":")[0].replace("/", "").replace("_", "").upper()
    if not market:
        raise ValueError("tiers: the symbol of the data is not known (its file name does not say it): name the "
                         f"symbol, or give a tier table (GridDesk ships Binance's for {', '.join(shipped)})")
    if market not in shipped:
        raise ValueError(f"tiers: GridDesk ships no maintenance-margin tiers for {symbol} (only for "
                         f"{', '.join(shipped)}): give its Binance leverage brackets as a tier table")
    return str(TIERS_DIR / f"binance-usdm-{market.lower()}.json")


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


def funding_settlements(start: int, end: int, rate_time: np.ndarray, rate: np.ndarray,
                        default_rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The funding settlements in (start, end] (epoch ms): (times, rates, defaulted).

    A rate is paid at its settlement slot: its time to the nearest minute (Binance stamps
    ``fundingTime`` a few milliseconds after the slot on much of its history, e.g.
    1606809600003). The settlements are the file's; its own spacing is the symbol's interval
    (8h, or 4h and 1h where Binance moved a symbol), so a gap in it (a spacing more than 1.5x
    both neighbours') and the time before and after it hold settlements at that interval,
    paid at ``default_rate`` and marked ``defaulted``. Without a file: every 8h, 00:00 UTC on."""
    slots = (np.asarray(rate_time, dtype=np.int64) + 30_000) // 60_000 * 60_000
    rate = np.asarray(rate, dtype=float)
    if len(slots) > 1:
        keep = np.r_[True, np.diff(slots) > 0]  # (two stamps of one slot: the first)
        slots, rate = slots[keep], rate[keep]
    times: list[int] = []
    rates: list[float] = []
    defaulted: list[bool] = []

    def fill(first: int, stop: int, step: int) -> None:  # defaulted settlements first, first+step... < stop
        s = first
        while s < stop:
            if start < s <= end:
                times.append(s)
                rates.append(default_rate)
                defaulted.append(True)
            s += step

    m = len(slots)
    if m == 0:
        fill((start // FUNDING_PERIOD_MS + 1) * FUNDING_PERIOD_MS, end + 1, FUNDING_PERIOD_MS)
    else:
        gaps = np.diff(slots)
        first_step = int(gaps[0]) if m > 1 else FUNDING_PERIOD_MS
        fill(int(slots[0]) - max((int(slots[0]) - start) // first_step, 0) * first_step, int(slots[0]), first_step)
        for j in range(m):
            if j > 0:
                d = int(gaps[j - 1])
                near = [int(gaps[k]) for k in (j - 2, j) if 0 <= k < m - 1]
                if near and d > 1.5 * max(near):
                    step = max(near)
                    fill(int(slots[j - 1]) + step, int(slots[j]) - step // 2, step)
            if start < slots[j] <= end:
                times.append(int(slots[j]))
                rates.append(float(rate[j]))
                defaulted.append(False)
        last_step = int(gaps[-1]) if m > 1 else FUNDING_PERIOD_MS
        fill(int(slots[-1]) + last_step, end + 1, last_step)
    order = np.argsort(np.asarray(times, dtype=np.int64), kind="stable")
    return (np.asarray(times, dtype=np.int64)[order], np.asarray(rates, dtype=float)[order],
            np.asarray(defaulted, dtype=bool)[order])


def funding_on_bars(bar_time: np.ndarray, rate_time: np.ndarray, rate: np.ndarray,
                    default_rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each bar, the summed funding rate of the settlements in (previous bar open, this bar
    open], how many there were, and how many of them took ``default_rate`` (no rate in the
    file: ``funding_settlements``). A settlement at 08:00 is paid at the open of the bar
    starting at 08:00, with the position held into it; settlements inside a data gap are paid
    at the first bar after it."""
    n = len(bar_time)
    out, count, defaulted = np.zeros(n), np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    if n < 2:
        return out, count, defaulted
    times, rates, missing = funding_settlements(int(bar_time[0]), int(bar_time[-1]), rate_time, rate, default_rate)
    at = np.searchsorted(bar_time, times, side="left")  # the first bar opening at or after it
    np.add.at(out, at, rates)
    np.add.at(count, at, 1)
    np.add.at(defaulted, at, missing.astype(np.int64))
    return out, count, defaulted


def funding_counts(count: np.ndarray, defaulted: np.ndarray, start: int, from_file: bool) -> dict:
    """The settlements of the bars traded (from ``start``) and how many had no rate in the
    funding file (all of them without one), for the report."""
    n = int(count[start:].sum())
    return {"funding_settlements": n, "funding_defaulted": int(defaulted[start:].sum()) if from_file else n}
