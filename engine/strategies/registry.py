"""Every strategy GridDesk knows, by its spec (engine.strategies.spec): a new strategy is its
module and one line here. The CLI, the app, the optimizer and the runtime read this."""

from __future__ import annotations

from engine.strategies import adaptive_grid, futures_grid, hedged_grid, infinity_grid, long_grid, spot_grid
from engine.strategies.errors import ParamError
from engine.strategies.spec import StrategySpec, check_trigger

SPECS: dict[str, StrategySpec] = {s.name: s for s in (spot_grid.SPEC, infinity_grid.SPEC, hedged_grid.SPEC,
                                                      adaptive_grid.SPEC, long_grid.SPEC, futures_grid.SPEC)}
STRATEGIES = tuple(SPECS)
CONFIGS = {n: s.config for n, s in SPECS.items()}
SPACES = {n: s.search_space for n, s in SPECS.items()}  # what the optimizer varies by default
PRESETS: dict[str, dict[str, dict]] = {n: s.presets for n, s in SPECS.items()}  # changes from the defaults
CHOICES = {**spot_grid.CHOICES, "direction": tuple(futures_grid.kernel.DIRECTIONS)}  # settings of a few words
RUNTIME = {n: s for n, s in SPECS.items() if s.market}  # what paper and live trading run


def spec(strategy: str) -> StrategySpec:
    if strategy not in SPECS:
        raise ParamError("strategy", f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    return SPECS[strategy]


def read_settings(path, strategy: str | None = None) -> tuple[str | None, dict]:
    """(strategy, settings) from a JSON file: ``{"strategy": ..., "params": {...}}`` (what the
    editor exports and the optimizer writes) or a bare object of settings (then the strategy is
    ``strategy``, None if not given). A file made for another strategy than the one asked for
    is refused."""
    import json
    from pathlib import Path

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ParamError("params", f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise ParamError("params", f"{path}: expected a JSON object")
    if isinstance(data.get("params"), dict):
        named = data.get("strategy", strategy)
    else:
        named = data.get("strategy", strategy)
        data = {"params": {k: v for k, v in data.items() if k != "strategy"}}
    if named is not None and named not in CONFIGS:
        raise ParamError("params", f"{path}: strategy: unknown strategy {named!r} (known: {', '.join(STRATEGIES)})")
    if strategy is not None and named != strategy:
        raise ParamError("params", f"{path}: settings of {named}, not of {strategy}")
    return named, dict(data["params"])


def config_from(strategy: str, data: dict):
    """The strategy's settings from a dict (unknown names refused by name)."""
    return spec(strategy).config.from_dict(dict(data))


def check_settings(strategy: str, data: dict) -> None:
    """A system's settings checked when they are read, before any candle: ParamError names
    the setting at fault."""
    cfg = config_from(strategy, data)
    spec(strategy).check(cfg)
    check_trigger(float(cfg.trigger_price))


def check_funding(strategy: str, given: bool) -> None:
    if given and not spec(strategy).funded:
        raise ParamError("funding", "spot grids pay no funding (the hedged grid's short does)")


def run_backtest(strategy: str, candles, cfg, funding=None, *, replay: bool = False, progress=None, risk=None,
                 not_before: int = 0):
    """Backtest ``strategy`` with settings ``cfg`` on ``candles`` (``funding``: the perpetual's
    funding rates, for the strategies that hold one). ``replay``: keep all a replay shows (the
    perpetual grid's order log and marks); ``progress``: see ``engine.strategies.spec.drive``;
    ``risk``: the runtime's risk limits, for the strategies whose kernel is told the gate;
    ``not_before``: the first bar the grid may be laid at (a running system's start)."""
    s = spec(strategy)
    check_funding(strategy, funding is not None)
    if risk is not None and not s.risk_gate:
        raise ParamError("risk", f"applies to {', '.join(n for n, x in SPECS.items() if x.risk_gate)} backtests; "
                                 f"the {strategy} kernel does not size its orders by the risk gate")
    return s.backtest(candles, cfg, funding, replay=replay, progress=progress, risk=risk, not_before=not_before)


def under_each_fill_model(strategy: str, candles, cfg, funding=None, done=None) -> list[dict]:
    """The same grid backtested under each fill model (engine/kernels/matching.py: touch,
    through by a tick, queue), so that a user sees how much of its profit rests on fills at a
    bare touch. A grid with no tick set is filled through by the data's own price step. ``done``:
    the backtest of ``cfg`` as it is, already run (its model is not run again). Empty for a
    strategy without the choice."""
    import dataclasses

    from engine.kernels.matching import FILL_MODELS

    if not hasattr(cfg, "fill_rule"):
        return []
    tick = cfg.tick or candles.price_step()
    rows = []
    for model in FILL_MODELS:
        run = dataclasses.replace(cfg, fill_rule=model, tick=tick if model == "through" else cfg.tick)
        r = done if done is not None and run == cfg else run_backtest(strategy, candles, run, funding)
        m = r.metrics
        label = {"touch": "touch", "through": f"through by {tick:g}",
                 "queue": f"queue, sure at {cfg.queue_depth:.2%} beyond"}[model]
        rows.append({"model": label, "return": m["total_return"], "grid_profit": m["grid_profit"],
                     "fills": m["fills"], "round_trips": m["round_trips"], "max_drawdown": m["max_drawdown"]})
    return rows


FILL_MODEL_COLUMNS = (("model", "Fill model", "{}"), ("return", "Return", "{:+.2%}"),
                      ("grid_profit", "Grid profit", "{:,.2f}"), ("fills", "Fills", "{:,}"),
                      ("round_trips", "Round trips", "{:,}"), ("max_drawdown", "Max drawdown", "{:.2%}"))
FILL_MODELS_EXPLAINED = (
    "touch: a level fills when the candle reaches it (every exchange bot's backtest); through: only when the "
    "price trades a tick beyond it; queue: a level reached fills with a chance that grows with how far the "
    "price went beyond it, never at a bare touch (seeded: the same each run). The gap between touch and "
    "queue is the profit that rests on being first in the queue at a level.")
