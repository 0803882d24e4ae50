"""Every strategy the backtest knows: its settings class, the choices of its text settings,
presets, and one call that runs it. The CLI and the Backtest tab both read this."""

from __future__ import annotations

from engine.strategies import adaptive_grid, hedged_grid, spot_grid
from engine.strategies.adaptive_grid import AdaptiveGridConfig
from engine.strategies.hedged_grid import HedgedGridConfig
from engine.strategies.spot_grid import ParamError, SpotGridConfig

CONFIGS = {"spot-grid": SpotGridConfig, "hedged-grid": HedgedGridConfig, "adaptive-grid": AdaptiveGridConfig}
STRATEGIES = tuple(CONFIGS)
# What the optimizer varies by default: declared in each strategy's module.
SPACES = {"spot-grid": spot_grid.SEARCH_SPACE, "hedged-grid": hedged_grid.SEARCH_SPACE,
          "adaptive-grid": adaptive_grid.SEARCH_SPACE}

# Settings that take one of a few words.
CHOICES = {
    "mode": ("range", "lower-only"), "spacing": ("arithmetic", "geometric", "atr"), "qty_mode": ("quote", "base"),
    "trailing": ("none", "up", "down", "both"), "stop_action": ("sell", "keep"), "fill_rule": ("touch", "through"),
}

# Starting points offered in the editor, as changes from the strategy's defaults.
PRESETS: dict[str, dict[str, dict]] = {
    "spot-grid": {
        "Defaults (arithmetic, +-20%)": {},
        "Geometric, trailing both ways": {"spacing": "geometric", "trailing": "both", "levels": 30},
        "ATR-spaced, recentering": {"spacing": "atr", "atr_k": 1.0, "levels": 20, "recenter": 1.0},
        "Lower-only, ATR": {"mode": "lower-only", "spacing": "atr", "levels": 15},
        "Tight and dense (fee check)": {"spacing": "geometric", "range_pct": 0.05, "levels": 60},
    },
    "hedged-grid": {
        "Defaults (hedge 50%)": {},
        "Full hedge": {"hedge_ratio": 1.0, "hedge_step": 0.0},
        "Light hedge, wide grid": {"hedge_ratio": 0.25, "atr_k": 2.0},
    },
    "adaptive-grid": {
        "Defaults (1x, 10 levels a side)": {},
        "Long only": {"no_short": True},
        "3x leverage": {"leverage": 3.0, "order_frac": 0.02},
        "Wide spacing": {"atr_k": 2.0, "levels": 6},
    },
}


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
    if strategy not in CONFIGS:
        raise ParamError("strategy", f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    return CONFIGS[strategy].from_dict(dict(data))


def check_settings(strategy: str, data: dict) -> None:
    """A system's settings checked when they are read, before any candle: ParamError names
    the setting at fault."""
    cfg = config_from(strategy, data)
    if strategy == "adaptive-grid":
        adaptive_grid.check(cfg)
    else:
        spot_grid.check_settings(cfg)


FUNDED = ("hedged-grid", "adaptive-grid")  # strategies that hold a perpetual and pay funding


def check_funding(strategy: str, given: bool) -> None:
    if given and strategy not in FUNDED:
        raise ParamError("funding", "spot grids pay no funding (the hedged grid's short does)")


def run_backtest(strategy: str, candles, cfg, funding=None, *, replay: bool = False, progress=None, risk=None):
    """Backtest ``strategy`` with settings ``cfg`` on ``candles`` (``funding``: the perpetual's
    funding rates, for the strategies that hold one). ``replay``: keep all a replay shows (the
    perpetual grid's order log and marks); ``progress``: see ``engine.backtest.drive``;
    ``risk``: the runtime's risk limits, for the perpetual grid (``run_adaptive_grid``)."""
    if strategy == "adaptive-grid":
        from engine.strategies.adaptive_grid import run_adaptive_grid

        return run_adaptive_grid(candles, cfg, funding, orders=replay, progress=progress, risk=risk)
    check_funding(strategy, funding is not None)
    from engine.backtest import run_spot_grid

    return run_spot_grid(candles, cfg, funding, progress=progress)
