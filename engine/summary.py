"""A grid bot's summary, as the exchanges' grid bots show it (Binance's and Pionex's bot cards):
what was put in, what it made in all and how (grid profit, floating, funding, fees), how long it
has run, its annualized return, and how busy it is (completed grids and fills a day).

One rule for a running system (the runtime's books) and for a backtest (its result), so the two
read the same. Annualized as the exchanges do it, simply: ROI / days x 365 (Pionex: "total
profit / investment / running days x 365"), not compounded; not given for less than a day (nor
the rates a day for less than an hour)."""

from __future__ import annotations

DAY_MS = 86_400_000
BOT_FIELDS = ("investment", "total_pnl", "roi", "fees", "running_ms", "apr", "round_trips", "round_trips_per_day",
              "fills", "fills_per_day")
MIN_RATE_MS = 3_600_000  # fills and grids a day: from an hour on
MIN_ANNUALIZED_MS = 86_400_000  # a return annualized from less than a day says nothing


def bot_summary(capital: float, books: dict, start_ms: int, now_ms: int) -> dict:
    """``books``: equity, grid_profit, floating, funding, fees, fills, round_trips (as the
    strategy runners' ``books`` and a backtest's totals give them); ``start_ms`` and ``now_ms``:
    the times of the first and the last candle traded."""
    equity = float(books.get("equity", capital))
    pnl = equity - capital
    roi = pnl / capital if capital > 0 else 0.0
    running = max(0, int(now_ms) - int(start_ms)) if start_ms >= 0 and now_ms >= 0 else 0
    days = running / DAY_MS
    fills, trips = int(books.get("fills", 0)), int(books.get("round_trips", 0))
    busy = running >= MIN_RATE_MS
    return {
        "investment": float(capital), "equity": equity, "total_pnl": pnl, "roi": roi,
        "grid_profit": float(books.get("grid_profit", 0.0)), "floating": float(books.get("floating", 0.0)),
        "funding": float(books.get("funding", 0.0)), "fees": float(books.get("fees", 0.0)),
        "running_ms": running, "apr": roi / days * 365 if running >= MIN_ANNUALIZED_MS else None,
        "round_trips": trips, "round_trips_per_day": trips / days if busy else None,
        "fills": fills, "fills_per_day": fills / days if busy else None,
    }


def backtest_summary(result, capital: float) -> dict:
    """The same summary of a backtest (a spot or perpetual result), from its first bar traded
    (after a perpetual's indicator warm-up) to its last."""
    m = result.metrics
    books = {"equity": m["final_equity"], "grid_profit": m["grid_profit"],
             "floating": m.get("unrealized_pnl", m["floating_pnl"]),
             "funding": m.get("funding_pnl", 0.0), "fees": m["fees_paid"], "fills": m["fills"],
             "round_trips": result.counters.get("round_trips", 0)}
    first = int(result.start_bar if hasattr(result, "start_bar") else result.params.start_bar)
    return bot_summary(capital, books, int(result.time[first]), int(result.time[-1]))


def running_text(ms: int) -> str:
    """6d 4h, 3h 20m, 12m."""
    minutes = ms // 60_000
    d, h, m = minutes // 1440, minutes // 60 % 24, minutes % 60
    return f"{d}d {h}h" if d else f"{h}h {m}m" if h else f"{m}m"


def qty_text(q: float) -> str:
    """A quantity to one width down a column: 8 decimals (a satoshi) under 10, 4 above."""
    return f"{q:.8f}" if abs(q) < 10 else f"{q:,.4f}"
