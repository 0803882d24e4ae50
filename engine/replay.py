"""A backtest result laid out for the visual replay: everything the replay shows at a bar is
read from what the backtest produced (per-bar equity, position and cost, the trade log, the
order log); nothing is simulated again. No Qt here: the Backtest tab draws what this gives.

Also the exports of a run: trades as CSV, the full result as JSON, a one-page HTML report.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.data import Candles
from engine.kernels import adaptive_grid as perp_kernel
from engine.kernels import spot_grid as spot_kernel
from engine.strategies.registry import spec
from engine.trips import round_trips

# How a fill is drawn: each kind has its own marker in the chart.
MARKER_KINDS = ("buy_open", "sell_close", "sell_open", "buy_close", "stop", "prune", "liquidation", "hedge", "halt")
(BUY_OPEN, SELL_CLOSE, SELL_OPEN, BUY_CLOSE, STOP, PRUNE, LIQUIDATION, HEDGE, HALT) = range(len(MARKER_KINDS))

_SPOT_MARKERS = {
    spot_kernel.GRID_BUY: BUY_OPEN, spot_kernel.GRID_SELL: SELL_CLOSE, spot_kernel.REBUY: BUY_OPEN,
    spot_kernel.REBALANCE_SELL: SELL_CLOSE, spot_kernel.STOP_LOSS: STOP, spot_kernel.TAKE_PROFIT: STOP,
    spot_kernel.HEDGE_OPEN_SHORT: HEDGE, spot_kernel.HEDGE_CLOSE_SHORT: HEDGE,
    spot_kernel.HEDGE_LIQUIDATION: LIQUIDATION, spot_kernel.BAG_REDUCE: PRUNE, spot_kernel.RESERVE_BUY: BUY_OPEN,
}
_PERP_MARKERS = {
    perp_kernel.BUY_OPEN_LONG: BUY_OPEN, perp_kernel.SELL_CLOSE_LONG: SELL_CLOSE,
    perp_kernel.SELL_OPEN_SHORT: SELL_OPEN, perp_kernel.BUY_CLOSE_SHORT: BUY_CLOSE,
    perp_kernel.STOP_LONG: STOP, perp_kernel.STOP_SHORT: STOP, perp_kernel.PRUNE_DEVIANCE: PRUNE,
    perp_kernel.PRUNE_OLDEST: PRUNE, perp_kernel.PRUNE_GAP: PRUNE, perp_kernel.PRUNE_FUNDING: PRUNE,
    perp_kernel.PRUNE_OFFSET: PRUNE, perp_kernel.CIRCUIT_BREAKER_HALT: HALT, perp_kernel.LIQUIDATION: LIQUIDATION,
}

TRADE_DTYPE = np.dtype([
    ("bar", np.int64), ("time", np.int64), ("side", np.int8), ("price", np.float64), ("qty", np.float64),
    ("fee", np.float64), ("pnl", np.float64), ("label", np.int16), ("marker", np.int8), ("position", np.float64),
])

# Metrics shown up to the current bar, in display order (the full run shows the same at its last bar).
BAR_METRICS = ("equity", "return", "drawdown", "max_drawdown", "grid_profit", "floating_pnl", "funding", "fees",
               "fills", "position")
# Full-run metrics shown under them.
RUN_METRICS = ("cagr", "sharpe", "sortino", "calmar", "win_rate", "profit_factor", "buy_hold_return")
_PYRAMID = 4  # each downsampling level merges this many candles of the level below
# Indicator overlays the chart can draw over the candles, with what each is called there.
OVERLAYS = {"ema": "EMA", "kama": "KAMA", "atr_bands": "ATR bands", "regime": "Regime"}
ATR_BAND_K = 2.0  # ATR bands: EMA +- this many ATRs


def _minmax_levels(y: np.ndarray):
    """(k, min, max) of ``y`` over bins of 4, 16, 64, ... bars (full bins only)."""
    out = []
    lo = hi = y
    k = 1
    while len(lo) >= 4 * _PYRAMID:
        m = len(lo) // _PYRAMID
        e = m * _PYRAMID
        with np.errstate(invalid="ignore"):
            lo = np.fmin.reduce(lo[:e].reshape(m, _PYRAMID), axis=1)
            hi = np.fmax.reduce(hi[:e].reshape(m, _PYRAMID), axis=1)
        k *= _PYRAMID
        out.append((k, lo, hi))
    return out or [(1, y, y)]


def _split(i0: int, i1: int, k: int):
    """Bars ``[i0, i1)`` as the whole bins ``[b0, b1)`` of ``k`` bars, and the part bins the
    range starts and ends in as bar ranges (None when the range starts or ends on a bin edge)."""
    b0 = -(-i0 // k)
    b1 = max(b0, i1 // k)
    head = (i0, min(b0 * k, i1)) if b0 * k > i0 else None
    tail = (b1 * k, i1) if b1 * k < i1 else None
    return b0, b1, head, tail


@dataclass
class Replay:
    """One backtest run, ready to seek. Bars are indices into the candles; ``bar`` in the trade
    log is the bar a fill happened on; orders rest during the bars after the close that placed
    them (GRID_SEMANTICS.md)."""

    name: str
    strategy: str
    config: dict
    result: object
    candles: Candles
    capital: float
    start_bar: int
    labels: tuple[str, ...]
    trades: np.ndarray
    position: np.ndarray
    long_qty: np.ndarray | None
    short_qty: np.ndarray | None
    avg_entry: np.ndarray | None
    funding_cum: np.ndarray | None
    run_seconds: float = 0.0
    source: str = ""  # the data as the user named it ('sample', a file, a download)
    _series: dict = field(default_factory=dict, repr=False)
    _pyramids: dict = field(default_factory=dict, repr=False)
    trips: np.ndarray | None = field(default=None, repr=False)  # the round trips (engine/trips.py)
    # the same settings under each fill model (registry.under_each_fill_model), when computed
    fill_models: list = field(default_factory=list, repr=False)

    # -- building -----------------------------------------------------------------------------
    @classmethod
    def from_result(cls, candles: Candles, result, name: str = "", run_seconds: float | None = None) -> Replay:
        if len(result.equity) != len(candles):
            raise ValueError(f"{name or result.strategy}: the result has {len(result.equity)} bars, "
                             f"the candles {len(candles)}")
        t = result.trades
        perp = spec(result.strategy).perpetual
        out = np.empty(len(t), dtype=TRADE_DTYPE)
        for f in ("bar", "time", "side", "price", "qty", "fee", "pnl"):
            out[f] = t[f]
        if perp:
            out["label"] = t["label"]
            out["marker"] = np.array([_PERP_MARKERS[int(x)] for x in range(len(perp_kernel.LABELS))],
                                     np.int8)[t["label"]]
            out["position"] = t["long_qty"] - t["short_qty"]
            labels = perp_kernel.LABELS
            position = result.long_qty - result.short_qty
            rate = result.funding_rate if result.funding_rate is not None else np.zeros(len(candles))
            held = np.r_[0.0, position[:-1]]  # funding at a bar's open is on what was held into it
            funding_cum = np.cumsum(-rate * held * candles.open)
            capital = float(result.config["capital"])
            long_qty, short_qty = result.long_qty, result.short_qty
            avg_entry = None if result.marks is None else result.marks[:, perp_kernel.MARK_NAMES.index("avg_long")]
        else:
            out["label"] = t["role"]
            out["marker"] = np.array([_SPOT_MARKERS[int(x)] for x in range(len(spot_kernel.ROLE_NAMES))],
                                     np.int8)[t["role"]]
            out["position"] = t["position"]
            labels = spot_kernel.ROLE_NAMES
            position = result.position
            funding_cum, long_qty, short_qty = None, None, None
            avg_entry = result.avg_entry
            capital = float(result.params.capital)
        timings = getattr(result, "timings", {}) or {}
        r = cls(name=name or result.strategy, strategy=result.strategy, config=dict(result.config), result=result,
                candles=candles, capital=capital, start_bar=int(getattr(result, "start_bar", 0)), labels=labels,
                trades=out, position=position, long_qty=long_qty, short_qty=short_qty, avg_entry=avg_entry,
                funding_cum=funding_cum,
                run_seconds=float(run_seconds if run_seconds is not None else sum(timings.values())))
        r._prepare()
        return r

    def _prepare(self) -> None:
        c = self.candles
        self.x = c.time / 1000.0  # chart x: seconds since the epoch
        self.timeframe_s = c.timeframe_ms / 1000.0
        eq = self.result.equity
        self.equity = eq
        self.peak = np.maximum.accumulate(eq)
        self.drawdown = np.where(self.peak > 0, eq / self.peak - 1.0, 0.0)
        self.worst_drawdown = np.minimum.accumulate(self.drawdown)
        self._series = {"equity": eq, "peak": self.peak, "position": self.position, "avg_entry": self.avg_entry,
                        "long_qty": self.long_qty, "short_qty": self.short_qty,
                        "short_down": None if self.short_qty is None else -self.short_qty,
                        "high": c.high, "low": c.low}
        self._with_values: dict[str, bool] = {}
        marks = getattr(self.result, "marks", None)  # the perpetual grid's, when its run kept them
        for j, name in enumerate(perp_kernel.MARK_NAMES[1:], start=1):
            self._series[name] = None if marks is None else marks[:, j]
        t = self.trades
        grid_labels = (perp_kernel.SELL_CLOSE_LONG,
                       perp_kernel.BUY_CLOSE_SHORT) if spec(self.strategy).perpetual else (spot_kernel.GRID_SELL,)
        grid_close = np.isin(t["label"], grid_labels)
        self._fees_cum = np.cumsum(t["fee"])
        self._grid_cum = np.cumsum(np.where(grid_close, t["pnl"], 0.0))
        self._pnl_cum = np.cumsum(t["pnl"])
        self._trade_bars = t["bar"]
        self._trade_bar_list = np.unique(t["bar"])
        # the round trips and min/max pyramids built here, in the worker thread, not on the GUI's
        self.trips = round_trips(self.result.trades, spec(self.strategy).perpetual)
        self._pyramids = {name: _minmax_levels(y) for name, y in self._series.items()
                          if y is not None and name != "short_qty"}

    # -- seeking ------------------------------------------------------------------------------
    @property
    def n_bars(self) -> int:
        return len(self.candles)

    def clamp(self, bar: int) -> int:
        return int(min(max(int(bar), 0), self.n_bars - 1))

    def trades_through(self, bar: int) -> int:
        """How many fills happened on or before ``bar``."""
        return int(np.searchsorted(self._trade_bars, bar, side="right"))

    def trades_on(self, bar: int) -> tuple[int, int]:
        """The trade-log rows ``[a, b)`` of the fills on ``bar``."""
        return int(np.searchsorted(self._trade_bars, bar, side="left")), self.trades_through(bar)

    def next_trade_bar(self, bar: int) -> int | None:
        i = np.searchsorted(self._trade_bar_list, bar, side="right")
        return int(self._trade_bar_list[i]) if i < len(self._trade_bar_list) else None

    def prev_trade_bar(self, bar: int) -> int | None:
        i = np.searchsorted(self._trade_bar_list, bar, side="left")
        return int(self._trade_bar_list[i - 1]) if i > 0 else None

    def bar_at(self, time_ms: int) -> int:
        """The last bar that opened at or before ``time_ms`` (the first bar before the data)."""
        return self.clamp(int(np.searchsorted(self.candles.time, time_ms, side="right")) - 1)

    def orders_at(self, bar: int) -> np.ndarray | None:
        """The orders resting during ``bar`` (price, side, placed bar, role), or None when the
        strategy keeps no order log (the perpetual grid shows its fills and positions only)."""
        orders_at = getattr(self.result, "orders_at", None)
        return orders_at(bar) if orders_at is not None else None

    def metrics_at(self, bar: int) -> dict[str, float]:
        """What the run stood at by the close of ``bar``."""
        bar = self.clamp(bar)
        k = self.trades_through(bar)
        eq = float(self.equity[bar])
        if self.funding_cum is not None:
            funding = float(self.funding_cum[bar])
        else:  # the hedged grid's short pays funding, but its run keeps only the total
            funding = math.nan if spec(self.strategy).hedged else 0.0
        if spec(self.strategy).perpetual:
            realized = float(self._pnl_cum[k - 1]) if k else 0.0
            floating = eq - self.capital - realized - funding
        else:
            floating = float(self.position[bar] * self.candles.close[bar] - self.result.cost[bar])
        return {
            "equity": eq,
            "return": eq / self.capital - 1.0,
            "drawdown": float(self.drawdown[bar]),
            "max_drawdown": float(-self.worst_drawdown[bar]),
            "grid_profit": float(self._grid_cum[k - 1]) if k else 0.0,
            "floating_pnl": floating,
            "funding": funding,
            "fees": float(self._fees_cum[k - 1]) if k else 0.0,
            "fills": k,
            "position": float(self.position[bar]),
        }

    def run_metrics(self) -> dict[str, float]:
        m = self.result.metrics
        out = {**self.metrics_at(self.n_bars - 1), **{k: float(m[k]) for k in RUN_METRICS if k in m}}
        if spec(self.strategy).hedged:
            out["funding"] = float(self.result.money["hedge_funding"])
        return out

    # -- drawing data -------------------------------------------------------------------------
    def candles_in(self, i0: int, i1: int, max_bars: int = 1500):
        """Candles of bars ``[i0, i1)`` merged so that at most about ``max_bars`` are drawn:
        (x, open, high, low, close, width in seconds)."""
        cd = self.candles
        i0, i1 = max(0, int(i0)), min(self.n_bars, int(i1))
        if i1 - i0 <= max_bars:
            return self.x[i0:i1], cd.open[i0:i1], cd.high[i0:i1], cd.low[i0:i1], cd.close[i0:i1], self.timeframe_s
        j = self._level(i1 - i0, max_bars)
        k, _, highs = self._pyramids["high"][j]
        _, lows, _ = self._pyramids["low"][j]
        b0, b1, head, tail = _split(i0, i1, k)

        def merged(a: int, b: int):  # bars [a, b) as one candle
            return (self.x[a:a + 1], cd.open[a:a + 1], cd.high[a:b].max(keepdims=True),
                    cd.low[a:b].min(keepdims=True), cd.close[b - 1:b])

        whole = (self.x[b0 * k:b1 * k:k], cd.open[b0 * k:b1 * k:k], highs[b0:b1], lows[b0:b1],
                 cd.close[b0 * k + k - 1:b1 * k:k])
        parts = ([merged(*head)] if head else []) + [whole] + ([merged(*tail)] if tail else [])
        cols = [np.concatenate(col) for col in zip(*parts, strict=True)]
        return (*cols, self.timeframe_s * k)

    def has_values(self, name: str) -> bool:
        """Whether the series ``name`` has a value at some bar (a side that never opened has
        no average entry, liquidation or stop to draw, nor to name in a legend)."""
        if name not in self._with_values:
            s = self._series.get(name)
            self._with_values[name] = s is not None and not bool(np.isnan(s).all())
        return self._with_values[name]

    def series(self, name: str) -> np.ndarray | None:
        """A per-bar series by name: equity, peak, position, avg_entry, long_qty, short_qty,
        short_down (the short drawn below zero), high, low; for the perpetual grid avg_short,
        liq_long, liq_short, stop_long, stop_short (NaN while a side is flat); after
        ``indicators()``, ema, kama, atr_upper, atr_lower. None when the run has no such series."""
        return self._series.get(name)

    # -- indicator overlays -------------------------------------------------------------------
    def indicators(self) -> dict[str, str]:
        """Compute the overlays once (with the run's own periods where it has them) and return
        how each is labelled; the lines become series, the regime ``regime_runs``."""
        if "ema" not in self._series:
            from engine.indicators import IndicatorParams, compute_indicators
            from engine.kernels.indicators import REGIME_NAMES

            cfg = self.config
            atr_n, ema_n, kama_n = (int(cfg.get(k, d)) for k, d in (("atr_period", 14), ("ema_period", 50),
                                                                     ("kama_period", 10)))
            theta, er = float(cfg.get("theta", 0.15)), float(cfg.get("er_threshold", 0.5))
            ind = compute_indicators(self.candles, IndicatorParams(
                atr_periods=(atr_n,), ema_periods=(ema_n,), kama_period=kama_n, zscore_atr=atr_n,
                regime_theta=theta, regime_er=er, regime_atr=atr_n))
            ema, atr = ind[f"ema{ema_n}"], ind[f"atr{atr_n}"]
            lines = {"ema": ema, "kama": ind[f"kama{kama_n}"], "atr_upper": ema + ATR_BAND_K * atr,
                     "atr_lower": ema - ATR_BAND_K * atr}
            for name, y in lines.items():
                self._pyramids[name] = _minmax_levels(y)
            self._series.update(lines)
            self._regime = ind["regime"].astype(np.int8)
            self.regime_names = REGIME_NAMES
            self._indicator_labels = {
                "ema": f"EMA {ema_n}", "kama": f"KAMA {kama_n}",
                "atr_bands": f"EMA {ema_n} ± {ATR_BAND_K:g} × ATR {atr_n}",
                "regime": f"regime (KAMA {kama_n}, θ {theta:g}, ER {er:g})"}
        return self._indicator_labels

    def regime_runs(self, i0: int, i1: int, max_runs: int = 1500):
        """The regime over bars ``[i0, i1)`` as runs of one state: (x start, x end, state), at
        most about ``max_runs`` (zoomed out, the state is read every k-th bar)."""
        self.indicators()
        i0, i1 = max(0, int(i0)), min(self.n_bars, int(i1))
        if i1 <= i0:
            return np.zeros(0), np.zeros(0), np.zeros(0, np.int8)
        k = max(1, -(-(i1 - i0) // (2 * max_runs)))
        bars = np.arange(i0, i1, k)
        states = self._regime[bars]
        starts = np.r_[0, np.flatnonzero(np.diff(states)) + 1]
        ends = np.r_[bars[starts[1:]], i1]
        return self.x[bars[starts]], self.x[ends - 1] + self.timeframe_s, states[starts]

    def series_in(self, name: str, i0: int, i1: int, max_points: int = 2000):
        """Series ``name`` over bars ``[i0, i1)`` as (x, y); with more than ``max_points`` bars,
        the min and max of each bin (from a pyramid built with the run), so peaks and troughs
        stay visible and a zoomed-out view costs no more than a close one."""
        y = self._series[name]
        i0, i1 = max(0, int(i0)), min(self.n_bars, int(i1))
        if i1 - i0 <= max_points:
            return self.x[i0:i1], y[i0:i1]
        k, lo, hi = self._pyramids[name][self._level(i1 - i0, max_points // 2)]
        b0, b1, head, tail = _split(i0, i1, k)
        xs, ys = [], []
        if head:
            part = y[head[0]:head[1]]
            xs.append(self.x[[i0, i0]])
            ys.append(np.array([np.fmin.reduce(part), np.fmax.reduce(part)]))
        xs.append(np.repeat(self.x[b0 * k:b1 * k:k], 2))
        ys.append(np.column_stack((lo[b0:b1], hi[b0:b1])).ravel())
        if tail:  # its extremes, then the last value
            part = y[tail[0]:tail[1]]
            xs.append(self.x[[tail[0], tail[0], i1 - 1]])
            ys.append(np.array([np.fmin.reduce(part), np.fmax.reduce(part), y[i1 - 1]]))
        return np.concatenate(xs), np.concatenate(ys)

    def _level(self, bars: int, most: int) -> int:
        """The pyramid level whose bins bring ``bars`` down to at most ``most`` (or the top)."""
        ks = [k for k, _, _ in self._pyramids["high"]]
        return next((j for j, k in enumerate(ks) if bars / k <= most), len(ks) - 1)

    # -- exports ------------------------------------------------------------------------------
    def trades_csv(self, path: str | Path) -> Path:
        path = Path(path)
        self.result.trades_frame().to_csv(path, index=False)
        return path

    def to_json_dict(self) -> dict:
        c = self.candles
        return {
            **self.result.to_json_dict(),
            "name": self.name,
            "source": c.source,
            "timeframe_ms": int(c.timeframe_ms),
            "run_seconds": self.run_seconds,
            "bars": {"time": c.time.tolist(), "close": c.close.tolist(), "equity": self.equity.tolist(),
                     "position": self.position.tolist()},
            "trades": [{"bar": int(r["bar"]), "time": int(r["time"]), "side": int(r["side"]),
                        "price": float(r["price"]), "qty": float(r["qty"]), "fee": float(r["fee"]),
                        "pnl": float(r["pnl"]), "kind": self.labels[int(r["label"])]} for r in self.trades],
        }

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json_dict(), default=_json_default))
        return path

    def save_html(self, path: str | Path, compare: Replay | None = None, stress: tuple | None = None) -> Path:
        """A one-page report: the equity curve (inline SVG) and the metrics; ``stress``: (title,
        each scenario's summary) of a stress test of the same settings on the same data."""
        path = Path(path)
        path.write_text(html_report(self, compare, stress))
        return path


def _json_default(v):
    if isinstance(v, float | np.floating) and not math.isfinite(v):
        return str(v)
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


def format_metric(name: str, v: float) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "—"
    v = v + 0.0  # (-0.0, a sum of nothing paid, shows as 0: "-0.00%" read as a loss)
    if name in ("return", "drawdown", "max_drawdown", "cagr", "win_rate", "buy_hold_return"):
        return f"{v * 100:+.2f}%" if name in ("return", "cagr", "buy_hold_return") else f"{v * 100:.2f}%"
    if name == "fills":
        return f"{int(v):,}"
    if name in ("sharpe", "sortino", "calmar", "profit_factor"):
        return f"{v:.2f}" if math.isfinite(v) else "∞"
    if name == "position":
        return f"{v:,.6g}"
    return f"{v:,.2f}"


def _svg_curve(runs: list[Replay], width: int = 900, height: int = 280) -> str:
    colors = ("#1565c0", "#ef6c00")
    lo = min(float(np.min(r.equity)) for r in runs)
    hi = max(float(np.max(r.equity)) for r in runs)
    t0 = min(float(r.x[0]) for r in runs)
    t1 = max(float(r.x[-1]) for r in runs)
    span_y, span_x = (hi - lo) or 1.0, (t1 - t0) or 1.0
    lines = []
    for r, color in zip(runs, colors, strict=False):
        xs, ys = r.series_in("equity", 0, r.n_bars, 1200)
        pts = " ".join(f"{(x - t0) / span_x * width:.1f},{height - (y - lo) / span_y * height:.1f}"
                       for x, y in zip(xs, ys, strict=True))
        lines.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.3" points="{pts}"/>'
                     f'<text x="6" y="{16 + 16 * len(lines)}" fill="{color}">{html.escape(r.name)}</text>')
    return (f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'style="background:#fafafa;border:1px solid #ddd">{"".join(lines)}'
            f'<text x="{width - 6}" y="14" text-anchor="end">{hi:,.0f}</text>'
            f'<text x="{width - 6}" y="{height - 4}" text-anchor="end">{lo:,.0f}</text></svg>')


def _table_html(heading: str, intro: str, columns, rows, note: str) -> str:
    """A section of the report: a table of ``rows`` (dicts) by ``columns`` (key, label, format)."""
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt.format(r[key]))}</td>" for key, _, fmt in columns)
                   + "</tr>" for r in rows)
    return (f"<h2>{html.escape(heading)}</h2><p>{html.escape(intro)}</p><table><tr>{head}</tr>{body}</table>"
            f"<p style=\"color:#666\">{html.escape(note)}</p>")


def _stress_html(stress: tuple | None) -> str:
    if not stress:
        return ""
    from engine.stress import EXPLAINED, SUMMARY_COLUMNS

    title, rows = stress
    return _table_html("Stress test", title, SUMMARY_COLUMNS, rows, EXPLAINED)


def _fill_models_html(rows: list) -> str:
    if not rows:
        return ""
    from engine.strategies.registry import FILL_MODEL_COLUMNS, FILL_MODELS_EXPLAINED

    return _table_html("Under each fill model", "The same settings on the same data, filled three ways.",
                       FILL_MODEL_COLUMNS, rows, FILL_MODELS_EXPLAINED)


def html_report(run: Replay, compare: Replay | None = None, stress: tuple | None = None) -> str:
    runs = [run] + ([compare] if compare is not None else [])
    metrics = [r.run_metrics() for r in runs]
    head = "".join(f"<th>{html.escape(r.name)}</th>" for r in runs)
    rows = "".join(f"<tr><td>{k.replace('_', ' ')}</td>"
                   + "".join(f"<td>{format_metric(k, m[k])}</td>" if k in m else "<td></td>" for m in metrics)
                   + "</tr>" for k in (*BAR_METRICS, *RUN_METRICS))
    c = run.candles
    span = f"{_date(c.time[0])} to {_date(c.time[-1])}, {run.n_bars:,} bars"
    cfg = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
                  for k, v in run.config.items())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>GridDesk backtest: {html.escape(run.name)}</title>
<style>body{{font-family:sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse}}
td,th{{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}}td:first-child{{text-align:left}}
.cols{{display:flex;gap:40px;align-items:flex-start}}</style></head><body>
<h1>{html.escape(run.name)}</h1>
<p>{html.escape(run.strategy)} on {html.escape(c.source)}: {span}. Run time {run.run_seconds:.2f} s.</p>
{_svg_curve(runs)}
<div class="cols"><div><h2>Metrics</h2><table><tr><th></th>{head}</tr>{rows}</table></div>
<div><h2>Settings</h2><table>{cfg}</table></div></div>
{_fill_models_html(run.fill_models)}
{_stress_html(stress)}
<p style="color:#888">GridDesk backtest report. Past results on historical data do not predict live results.</p>
</body></html>
"""


def _date(ms) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(int(ms) / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M")
