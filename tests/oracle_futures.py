"""A pure-Python reference of the futures grid (long / short / neutral), written from the rules
in engine/kernels/futures_grid.py's docstring, GRID_SEMANTICS.md and Binance's USDT-M
documentation, with the exchange's own books: each side (hedge mode) one position with its
average entry, its isolated margin and its liquidation price; the wallet apart.

Binance's rules it follows: a position's entry price is the quantity-weighted average of its
openings and a reduction leaves it; a reduction realizes ``(exit - entry) x qty`` (short:
mirrored) into the wallet and releases its share of the isolated margin; an opening moves
``notional / leverage`` from the wallet to the isolated margin and is refused when the wallet
cannot pay it and its fee; funding ``rate x qty x price`` is paid by longs to shorts (a
negative rate the other way), from the isolated margin; the isolated liquidation price is
``(WB + cum - Q x EP) / (Q x MMR - Q)`` for a long and ``(WB + cum + Q x EP) / (Q x MMR + Q)``
for a short, with the tier (MMR, maintenance amount ``cum``) whose notional bracket holds the
position's notional at that price; liquidation loses the isolated margin.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

TIERS = Path(__file__).resolve().parents[1] / "resources" / "tiers" / "binance-usdm-btcusdt.json"


def tier_table(path=TIERS):
    """[(floor, mmr, cum)], cum(i) = cum(i-1) + floor(i) x (mmr(i) - mmr(i-1)) (Binance's
    maintenance amount)."""
    rows = json.loads(Path(path).read_text())["tiers"]
    out, cum = [], 0.0
    for i, r in enumerate(rows):
        if i:
            cum += r["floor"] * (r["mmr"] - rows[i - 1]["mmr"])
        out.append((float(r["floor"]), float(r["mmr"]), cum))
    return out


def liquidation_price(tiers, long, q, entry, wallet):
    """The isolated liquidation price: the tier whose bracket holds the notional at the price it
    gives (the first from the top that does: a price in two brackets' reach takes the higher
    notional's); None when the side would not be liquidated above 0 (long) or at all (short)."""
    if q <= 0:
        return None
    for i in range(len(tiers) - 1, -1, -1):
        floor, mmr, cum = tiers[i]
        cap = tiers[i + 1][0] if i + 1 < len(tiers) else math.inf
        price = (q * entry - wallet - cum) / (q * (1 - mmr)) if long else (q * entry + wallet + cum) / (q * (1 + mmr))
        if price > 0 and floor <= q * price <= cap:
            return price
    price = (q * entry - wallet) / (q * (1 - tiers[0][1])) if long else (q * entry + wallet) / (q * (1 + tiers[0][1]))
    return price if price > 0 else None


class Side:
    def __init__(self, long):
        self.long = long
        self.q = 0.0
        self.entry = 0.0
        self.margin = 0.0


def reference_futures_grid(o, h, l, c, t, lines, direction, *, capital, leverage, maker, taker, slippage, lot,
                           min_notional, tiers, funding=None, start=0, stop_top=0.0, stop_bottom=0.0, stop_loss=0.0,
                           take_profit=0.0):
    """Returns (trades, equity per bar, ended): trades are (bar, label, price, qty, fee);
    ``funding[i]``: the summed rate settled at bar i's open (None: none)."""
    n = len(c)
    n_slots = len(lines) - 1
    price0 = c[start]
    m = min(range(len(lines)), key=lambda k: (abs(lines[k] - price0), k))  # the line nearest the price
    per_slot = capital * leverage * 0.99 / n_slots
    slots = []  # each: long?, opening line, take-profit line, qty, state (flat / resting / market / holding)
    for k in range(n_slots):
        is_long = direction == "long" or (direction == "neutral" and k < m)
        market = (is_long and k >= m) or (not is_long and k < m)
        opening, tp = (lines[k], lines[k + 1]) if is_long else (lines[k + 1], lines[k])
        at = price0 if market else opening
        q = math.floor(per_slot / at / lot) * lot
        ok = q > 0 and q * at >= min_notional
        slots.append({"long": is_long, "open": opening, "tp": tp, "q": q, "k": k,
                      "state": ("market" if market else "armed") if ok else "off", "opened_t": None})
    wallet = capital
    sides = {True: Side(True), False: Side(False)}
    trades, equity = [], [capital] * n
    ended = ""
    closing = False
    liquidated = False

    def eq(price):
        return wallet + sum(s.margin + (1 if s.long else -1) * (price - s.entry) * s.q for s in sides.values())

    def open_(slot, i, price, rate):
        nonlocal wallet
        s = sides[slot["long"]]
        value = price * slot["q"]
        fee = value * rate
        if wallet < value / leverage + max(fee, 0.0):
            slot["state"] = "off"
            return
        s.entry = (s.q * s.entry + slot["q"] * price) / (s.q + slot["q"])
        s.q += slot["q"]
        s.margin += value / leverage
        wallet -= value / leverage + fee
        slot["state"], slot["opened_t"] = "holding", t[i]
        trades.append((i, "BUY_OPEN_LONG" if slot["long"] else "SELL_OPEN_SHORT", price, slot["q"], fee))

    def reduce(s, q, i, price, rate, label):
        nonlocal wallet
        fee = price * q * rate
        released = s.margin * q / s.q
        wallet += released + (1 if s.long else -1) * (price - s.entry) * q - fee
        s.margin -= released
        s.q -= q
        if s.q <= 1e-12:
            wallet += s.margin
            s.q, s.entry, s.margin = 0.0, 0.0, 0.0
        trades.append((i, label, price, q, fee))

    def place():  # at a close: the armed levels rest while the wallet's free margin covers them
        free = wallet - sum(x["open"] * x["q"] * (1 / leverage + max(maker, 0)) for x in slots
                            if x["state"] == "resting")
        order = [x for x in reversed(slots) if x["long"]] + [x for x in slots if not x["long"]]
        for slot in order:  # long levels from the top down, then short ones from the bottom up
            if slot["state"] == "armed":
                need = slot["open"] * slot["q"] * (1 / leverage + max(maker, 0))
                if free >= need * (1 - 1e-12):
                    slot["state"] = "resting"
                    free -= need

    def liq(s):
        return liquidation_price(tiers, s.long, s.q, s.entry, s.margin) if s.q > 0 else None

    place()
    for i in range(start + 1, n):
        if funding is not None and funding[i] != 0:
            for s in sides.values():
                if s.q > 0:
                    s.margin -= funding[i] * s.q * o[i] * (1 if s.long else -1)
        if closing:
            for s in sides.values():
                if s.q > 0:
                    reduce(s, s.q, i, o[i] * (1 - slippage if s.long else 1 + slippage), taker,
                           "STOP_LONG" if s.long else "STOP_SHORT")
            for slot in slots:
                slot["state"] = "off"
            closing = False
        for is_long in (True, False):
            for slot in slots:
                if slot["long"] == is_long and slot["state"] == "market":
                    open_(slot, i, o[i] * (1 + slippage if is_long else 1 - slippage), taker)
        for down in ((True, False) if c[i] >= o[i] else (False, True)):
            extreme = l[i] if down else h[i]
            sign = 1 if down else -1  # events nearest the open first: falling prices, or rising
            gone = False  # this leg's side was liquidated: its openings are cancelled
            while True:
                events = []  # (sort key, kind, slot): liquidation 0, opening 1, take-profit 2 at one price
                s_open = sides[down]
                lp = liq(s_open)
                if lp is not None and (extreme <= lp if down else extreme >= lp):
                    events.append((-sign * lp, 0, None))
                for slot in slots:
                    if slot["long"] == down and slot["state"] == "resting" and not gone and \
                            (extreme <= slot["open"] if down else extreme >= slot["open"]):
                        events.append((-sign * slot["open"], 1, slot))
                    if slot["long"] != down and slot["state"] == "holding" and slot["opened_t"] != t[i] and \
                            (extreme <= slot["tp"] if down else extreme >= slot["tp"]):
                        events.append((-sign * slot["tp"], 2, slot))
                if not events:
                    break
                key, kind, slot = min(events, key=lambda e: (e[0], e[1]))
                price = -sign * key
                if kind == 0:
                    trades.append((i, "LIQUIDATION", lp, s_open.q, 0.0))
                    s_open.q, s_open.entry, s_open.margin = 0.0, 0.0, 0.0
                    for x in slots:
                        if x["long"] == down:
                            x["state"] = "off"
                    liquidated = gone = True
                elif kind == 1:
                    open_(slot, i, min(o[i], price) if down else max(o[i], price), maker)
                else:
                    s = sides[slot["long"]]
                    reduce(s, min(slot["q"], s.q), i, min(o[i], price) if down else max(o[i], price), maker,
                           "SELL_CLOSE_LONG" if slot["long"] else "BUY_CLOSE_SHORT")
                    slot["state"] = "armed"
        # the close
        if not ended:
            pnl = eq(c[i]) - capital
            if stop_top and h[i] >= stop_top:
                ended = "STOP_TOP"
            elif stop_bottom and l[i] <= stop_bottom:
                ended = "STOP_BOTTOM"
            elif liquidated:
                ended = "LIQUIDATION"
            elif stop_loss and pnl <= -stop_loss * capital:
                ended = "STOP_LOSS"
            elif take_profit and pnl >= take_profit * capital:
                ended = "TAKE_PROFIT"
            if ended:
                closing = any(s.q > 0 for s in sides.values())
                for slot in slots:
                    if slot["state"] != "holding":
                        slot["state"] = "off"
            else:
                place()
        equity[i] = eq(c[i])
    return trades, equity, ended
