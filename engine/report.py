"""The text reports of a backtest and of an optimizer study (``griddesk backtest``,
``griddesk optimize``): each figure from the run's own metrics and counters."""

from __future__ import annotations

import time

from engine.kernels.grid import profit_range
from engine.kernels.perp import tier_file
from engine.strategies.registry import spec


def backtest_text(result, candles, load_s: float, funding=None, limits_from: str | None = None,
                  fill_models: list | None = None) -> str:
    """The report of a backtest: its data, its settings, the money (return, profit by source,
    drawdown, ratios), fills and refusals, and the time it took (``load_s`` to read the data);
    for a perpetual also where funding and the margin tiers came from, and the risk gate
    (``limits_from``: whose limits it applied); ``fill_models``: the same settings under each
    fill model (registry.under_each_fill_model)."""
    text = _perp_text(result, candles, load_s, funding, limits_from) if spec(result.strategy).perpetual else \
        _spot_text(result, candles, load_s)
    return text + _fill_models_text(fill_models or [])


def _fill_models_text(rows: list) -> str:
    if not rows:
        return ""
    from engine.strategies.registry import FILL_MODEL_COLUMNS

    cells = [[fmt.format(r[key]) for key, _, fmt in FILL_MODEL_COLUMNS] for r in rows]
    labels = [label for _, label, _ in FILL_MODEL_COLUMNS]
    widths = [max(len(x) for x in col) for col in zip(labels, *cells, strict=True)]
    line = lambda xs: "  " + "  ".join(x.ljust(w) if i == 0 else x.rjust(w)  # noqa: E731
                                       for i, (x, w) in enumerate(zip(xs, widths, strict=True)))
    return "\n\n  the same grid under each fill model (docs: README, Fill models)\n" + "\n".join(
        line(xs) for xs in (labels, *cells))


def _pct(x: float) -> str:
    return f"{x * 100:+.2f}%"


def _trigger_line(cfg: dict, candles, start: int) -> list[str]:
    if not cfg.get("trigger_price"):
        return []
    return [f"  trigger     the price reached {cfg['trigger_price']:,.8g} at {_ts(candles.time[start])} "
            f"(bar {start}): the grid was laid at its close"]


def _spot_text(result, candles, load_s: float) -> str:
    m, p, c = result.metrics, result.params, result.counters
    lines = [
        f"GridDesk backtest: {result.strategy} on {candles.source}",
        f"  data        {len(candles):,} bars of {candles.timeframe}, "
        f"{_ts(candles.time[0])} .. {_ts(candles.time[-1])}",
    ]
    if candles.gaps:
        longest = max(candles.gaps, key=lambda g: g.missing)
        lines.append(f"  gaps        {len(candles.gaps)} gap(s), {candles.missing_bars} missing bars "
                     f"(longest: {longest.describe(candles.timeframe_ms)}); kept as they are")
    cfg = result.config
    grid = f"{cfg['mode']} {cfg['spacing']}, {p.levels} levels"
    if cfg["mode"] == "infinity":
        grid = (f"infinity: {p.step:.2%} a level from {p.lower:,.2f} up without end, a window of {p.levels} levels "
                f"moved with the price; profit/grid after fees {profit_range([1.0, 1.0 + p.step], p.fee)[0]:.3%}")
    if result.levels is not None:
        lo, hi = profit_range(result.levels, p.fee)
        grid += f" {result.levels[0]:,.2f} .. {result.levels[-1]:,.2f}, profit/grid after fees "
        grid += f"{lo * 100:.3f}%" + ("" if abs(hi - lo) <= 1e-9 * abs(hi) else f" .. {hi * 100:.3f}%")
    if cfg["trailing"] != "none":
        grid += f", trailing {cfg['trailing']}"
    lines += [*_trigger_line(cfg, candles, p.start_bar),
        f"  grid        {grid}",
        f"  capital     {p.capital:,.2f}  fee {p.fee * 100:.3f}% maker / {p.taker_fee * 100:.3f}% taker",
        "",
        f"  final equity      {m['final_equity']:>16,.2f}   total return {_pct(m['total_return'])}"
        f"   buy & hold {_pct(m['buy_hold_return'])}",
        f"  grid profit       {m['grid_profit']:>16,.2f}   floating PnL {m['floating_pnl']:,.2f}"
        f"   fees {m['fees_paid']:,.2f}",
        f"  max drawdown      {m['max_drawdown'] * 100:>15.2f}%   Sharpe {m['sharpe']:.2f}"
        f"   Sortino {m['sortino']:.2f}   Calmar {m['calmar']:.2f}",
        f"  fills             {m['fills']:>16,}   round trips {m['round_trips']:,}"
        f"   win rate {m['win_rate'] * 100:.1f}%   profit factor {m['profit_factor']:.2f}",
        f"  position          {m['final_position']:>16,.8f}   cash {m['final_cash']:,.2f}",
        f"  orders refused    {c['refused_min_notional']:>16,} below min notional, "
        f"{c['refused_balance']:,} for balance",
    ]
    if spec(result.strategy).hedged:
        lines.append(f"  hedge funding     {c['funding_settlements']:,} settlements, {c['funding_defaulted']:,} "
                     "without a rate in a funding file (paid at the default)")
        lines.append(f"  hedge             PnL {m['hedge_pnl']:,.2f} (funding {m['hedge_funding']:,.2f}), "
                     f"{c['hedge_opens']} opened, {c['hedge_scales']} scaled, {c['hedge_closes']} closed, "
                     f"{c['hedge_liquidations']} liquidated")
        lines.append(f"  bag reduced       {c['bag_reductions']} lots sold with hedge profit, "
                     f"{m['loss_offset_by_hedge']:,.2f} of loss offset; {m['banked_profit']:,.2f} profit banked")
    events = [f"{c[k]} {k.replace('_', ' ')}" for k in ("recenters", "trail_up", "trail_down") if c[k]]
    if c["stop"]:
        events.append(f"{'stop-loss' if c['stop'] == 1 else 'take-profit'} hit at {_ts(candles.time[c['stop_bar']])}")
    if events:
        lines.append(f"  events            {', '.join(events)}")
    lines.append(_timings_line(load_s, result.timings))
    return "\n".join(lines)


def _ts(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(int(ms) // 1000))


def _perp_text(result, candles, load_s: float, funding, limits_from=None) -> str:
    m, c, cfg = result.metrics, result.counters, result.config
    if "risk_paused_bars" in c:
        gate = (f"the runtime's, with {limits_from or 'the given limits'}\n              "
                f"{c['risk_paused_bars']:,} bars paused by its volatility breaker, {c['risk_waits']:,} openings "
                "waited for it")
    else:
        gate = "none (--risk applies the runtime's)"
    lines = [
        f"GridDesk backtest: {result.strategy} on {candles.source}",
        f"  data        {len(candles):,} bars of {candles.timeframe}, "
        f"{_ts(candles.time[0])} .. {_ts(candles.time[-1])} (trading from bar {result.start_bar})",
        *_trigger_line(cfg, candles, result.start_bar),
        f"  grid        {_perp_grid(result)}",
        f"  margin      tiers of {tier_file(cfg['tiers'], candles.symbol)}",
        f"  funding     {_funding_source(funding, cfg, c)}",
        f"  risk gate   {gate}",
        "",
        f"  final equity      {m['final_equity']:>16,.2f}   total return {_pct(m['total_return'])}"
        f"   buy & hold {_pct(m['buy_hold_return'])}",
        _PNL_MARK,
        f"  max drawdown      {m['max_drawdown'] * 100:>15.2f}%   Sharpe {m['sharpe']:.2f}"
        f"   Sortino {m['sortino']:.2f}   Calmar {m['calmar']:.2f}",
    ]
    if "direction" in cfg:  # the futures grid: no stops nor prunes of its own; how it ended
        closes = "its end's market closes and liquidations"
        lines += [
            f"  longs             {c['longs_opened']:>7,} opened {c['longs_closed']:>7,} closed",
            f"  shorts            {c['shorts_opened']:>7,} opened {c['shorts_closed']:>7,} closed",
            f"  end               {_futures_end(result, candles)}"]
    else:
        closes = "stops, prunes and liquidations"
        lines += [
            f"  longs             {c['longs_opened']:>7,} opened {c['longs_closed']:>7,} closed"
            f"   stops {c['stops_long']:,}",
            f"  shorts            {c['shorts_opened']:>7,} opened {c['shorts_closed']:>7,} closed"
            f"   stops {c['stops_short']:,}",
            f"  prunes            deviance {c['prune_deviance']:,}, oldest {c['prune_oldest']:,}, gap "
            f"{c['prune_gap']:,}, funding {c['prune_funding']:,}, offset {c['prune_offset']:,}",
            f"  events            {c['circuit_breaker_halts']:,} circuit-breaker halts, {c['trailing_shifts']:,} "
            f"trailing shifts, {c['var_blocks']:,} VaR-blocked bars, {c['liquidations']:,} liquidations, "
            f"{c['regenerations']:,} regenerations"]
    lines[lines.index(_PNL_MARK)] = (
        f"  PnL               {m['final_equity'] - m['start_equity']:>16,.2f} = take-profits {m['grid_profit']:,.2f}"
        f" + {closes} {m['stops_prunes_pnl']:,.2f} + funding {m['funding_pnl']:,.2f}"
        f" + open positions {m['floating_pnl']:,.2f}   (fees {m['fees_paid']:,.2f}, included)")
    lines.append(_timings_line(load_s, result.timings))
    return "\n".join(lines)


_PNL_MARK = "(pnl)"  # where _perp_text puts its PnL line, worded for the strategy


def _perp_grid(result) -> str:
    cfg = result.config
    if "direction" not in cfg:
        return (f"{cfg['levels']} levels a side, {cfg['order_frac'] * 100:g}% of capital an order, "
                f"{cfg['leverage']:g}x isolated{', long only' if cfg['no_short'] else ''}")
    lo, hi = result.metrics["lines"]
    return (f"futures grid, {cfg['direction']}: {cfg['levels']} {cfg['spacing']} lines {lo:,.2f} .. {hi:,.2f}, "
            f"{cfg['leverage']:g}x isolated, capital {cfg['capital']:,.2f}")


def _futures_end(result, candles) -> str:
    m = result.metrics
    if not m["ended"]:
        return "ran to the end of the data"
    return f"{m['ended'].replace('_', ' ').lower()} at {_ts(candles.time[m['ended_bar']])} (bar {m['ended_bar']:,})"


def _funding_source(funding, cfg, c) -> str:
    """Where the funding came from, and how many settlements had a rate there."""
    n, missing = c["funding_settlements"], c["funding_defaulted"]
    if funding is not None:
        told = f"from {funding.source}: {n:,} settlements, {missing:,} defaulted"
        return told + (f" (paid at the default {cfg['funding_rate'] * 100:g}%: no rate in the file)" if missing else "")
    return f"synthetic {cfg['funding_rate'] * 100:g}% per 8h: {n:,} settlements"


def _timings_line(load_s: float, t: dict) -> str:
    return f"  timings           load {load_s:.3f}s, indicators {t['indicators']:.4f}s, kernel {t['kernel']:.4f}s"


def search_text(search, best, hold, table, out) -> str:
    """What ``griddesk optimize`` found: the best trial, its scores in and out of sample and on
    the held-out tail, the importances, and where the settings were written."""
    o = best["optimized"]
    counts = table["state"].value_counts().to_dict()
    lines = [
        f"GridDesk optimize: {search.setup.strategy}, study {search.study_name}",
        "  trials       " + ", ".join(f"{v} {k.lower()}" for k, v in counts.items()),
        f"  best         trial {o['trial']}: " + ", ".join(f"{k}={_short(best['params'][k])}" for k in o["searched"]),
        f"  score        in-sample {o['in_sample']:.4f}   out-of-sample {_num(o['out_of_sample'])}   "
        f"held-out tail {_num(hold['score'])}",
    ]
    for name, h in hold["sets"].items():
        lines.append(f"  tail {name:<8} {h['period']}: return {_pct(h['total_return'])}, max drawdown "
                     f"{h['max_drawdown'] * 100:.2f}%, {int(h['fills']):,} fills, score {_num(h['score'])}"
                     if "total_return" in h else f"  tail {name:<8} {h['period']}: the backtest failed")
    imp = search.importances()
    if imp:
        lines.append("  importance   " + ", ".join(f"{k} {v:.2f}" for k, v in imp.items()))
    lines.append(f"  written      {out} (griddesk backtest --params, Add System, the Backtest tab)")
    return "\n".join(lines)


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _num(v) -> str:
    return "n/a" if v is None or v != v else f"{v:.4f}"
