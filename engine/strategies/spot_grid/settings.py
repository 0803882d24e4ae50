"""The spot grid's settings: what a user sets (``SpotGridConfig``), their checks by name, the
numbers the kernel takes (``build_params``), the grid they lay (``planned_grid``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from engine.kernels import grid
from engine.kernels import spot_grid as kernel
from engine.kernels.matching import FILL_MODELS
from engine.strategies.errors import ParamError
from engine.strategies.space import Choice, FloatRange, IntRange
from engine.strategies.spec import MAX_CAPITAL, checked_settings


@dataclass
class SpotGridConfig:
    """A spot grid as a user describes it. ``lower``/``upper`` of 0 mean "from the data":
    range grids span +-``range_pct`` around the first price; lower-only grids anchor at the
    first price with ``lower`` at (1 - range_pct) of it."""

    hedged: ClassVar[bool] = False  # the hedged grid's settings (engine.strategies.hedged_grid) say True

    mode: str = "range"  # range | lower-only
    spacing: str = "arithmetic"  # arithmetic | geometric | atr
    lower: float = 0.0
    upper: float = 0.0
    levels: int = 20
    range_pct: float = 0.2
    capital: float = 10_000.0
    fee: float = 0.001
    taker_fee: float | None = None  # defaults to fee
    slippage: float = 0.0
    lot: float = 1e-8
    tick: float = 0.0
    min_notional: float = 0.0
    qty_mode: str = "quote"  # quote | base
    atr_period: int = 14
    atr_k: float = 1.0
    atr_floor: float = 0.005
    trailing: str = "none"  # none | up | down | both
    recenter: float | None = None  # spacings beyond the grid; None: 0 (range), 2 (lower-only)
    consumed: float | None = None  # lower-only; None: 0.8
    dead_zone: float = 0.0
    stop_loss: float = 0.0
    take_profit: float = 0.0
    stop_action: str = "sell"  # sell | keep
    fill_rule: str = "touch"  # touch | through | queue
    queue_depth: float = 0.001  # queue: a level surely fills once the price went this fraction beyond it
    fill_seed: int = 0  # queue: the seed of its draws
    trigger_price: float = 0.0  # lay the grid once the price reaches this (0: at once)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SpotGridConfig:
        return checked_settings(cls, data, "spot-grid")


# Settings that take one of a few words (the kernels' names where they have them).
CHOICES = {
    "mode": kernel.MODE_NAMES, "spacing": grid.SPACING_NAMES, "qty_mode": ("quote", "base"),
    "trailing": kernel.TRAIL_NAMES, "stop_action": ("sell", "keep"), "fill_rule": FILL_MODELS,
}

# What the optimizer may vary by default (the rest keep the user's values).
SEARCH_SPACE = {
    "spacing": Choice(("arithmetic", "geometric")),
    "levels": IntRange(5, 100),
    "range_pct": FloatRange(0.03, 0.5, log=True),
    "trailing": Choice(CHOICES["trailing"]),
}


def _choice(name: str, value: str, options: tuple[str, ...]) -> int:
    if value not in options:
        raise ParamError(name, f"{value!r} is not one of {', '.join(options)}")
    return options.index(value)




def _positive(name: str, value: float, *, zero_ok: bool = False) -> float:
    if value is None or not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise ParamError(name, f"must be {'>= 0' if zero_ok else '> 0'}, got {value}")
    return float(value)


def check_settings(cfg: SpotGridConfig) -> None:
    """What ``build_params`` checks without data (settings read from a file, before any
    candle): each setting's range, an explicit range's order, and what an exchange would make
    of the grid: a step that earns no more than the fees of its round trip, an order below
    the minimum notional."""
    price = (cfg.lower + cfg.upper) / 2 if cfg.lower and cfg.upper else cfg.upper or cfg.lower or 1.0
    p = build_params(cfg, price, check_price=False)
    if p.mode == kernel.RANGE:  # (a lower-only grid's top is the price at start: checked then)
        check_grid(p, price)


def check_grid(p: kernel.SpotGridParams, price: float) -> None:
    """What an exchange's grid bot refuses: a grid laid at ``price`` whose narrowest step earns
    no more than the fees of its round trip, and an order below the minimum notional."""
    if p.min_notional and p.capital / p.levels < p.min_notional:
        raise ParamError("capital", f"{p.capital:g} over {p.levels} levels is {p.capital / p.levels:.2f} an order, "
                                    f"below the minimum order value {p.min_notional:g}")
    planned = planned_grid(p, price)
    if planned is not None and planned[1] <= 0:
        raise ParamError("levels", f"{p.levels} levels over the range leave {planned[1]:+.3%} a grid after the fees "
                                   f"of its round trip ({2 * p.fee:.3%}): each trade would lose money")


def build_params(cfg: SpotGridConfig, first_price: float, start_bar: int = 0, *,
                 check_price: bool = True) -> kernel.SpotGridParams:
    """Validate ``cfg`` against the data's first price and turn it into kernel numbers
    (``check_price`` False: no data yet, the price-bound checks are left for the first candle)."""
    mode, spacing, trailing, qty_mode, stop_action, fill_model = (
        _choice(name, getattr(cfg, name), CHOICES[name])
        for name in ("mode", "spacing", "trailing", "qty_mode", "stop_action", "fill_rule"))
    if not isinstance(cfg.levels, int | np.integer) or cfg.levels < 2 or cfg.levels > 5000:
        raise ParamError("levels", f"must be a whole number from 2 to 5000, got {cfg.levels}")
    capital = _positive("capital", cfg.capital)
    if capital > MAX_CAPITAL:
        raise ParamError("capital", f"must be at most {MAX_CAPITAL:g}, got {capital:g}")
    fee = _positive("fee", cfg.fee, zero_ok=True)
    if fee >= 0.1:
        raise ParamError("fee", f"{fee} is a fraction of the notional (0.001 is 0.1%); 10% or more is not a fee")
    taker = fee if cfg.taker_fee is None else _positive("taker_fee", cfg.taker_fee, zero_ok=True)
    slippage = _positive("slippage", cfg.slippage, zero_ok=True)
    lot = _positive("lot", cfg.lot, zero_ok=True)
    tick = _positive("tick", cfg.tick, zero_ok=True)
    min_notional = _positive("min_notional", cfg.min_notional, zero_ok=True)
    lower = _positive("lower", cfg.lower, zero_ok=True)
    upper = _positive("upper", cfg.upper, zero_ok=True)
    range_pct = _positive("range_pct", cfg.range_pct)
    if range_pct >= 1:
        raise ParamError("range_pct", f"must be below 1, got {range_pct}")
    stop_loss = _positive("stop_loss", cfg.stop_loss, zero_ok=True)
    take_profit = _positive("take_profit", cfg.take_profit, zero_ok=True)
    if check_price and stop_loss and stop_loss >= first_price:
        raise ParamError("stop_loss", f"{stop_loss} is not below the first price {first_price:.8g}")
    if check_price and take_profit and take_profit <= first_price:
        raise ParamError("take_profit", f"{take_profit} is not above the first price {first_price:.8g}")
    queue_depth = _positive("queue_depth", cfg.queue_depth)
    if queue_depth >= 0.5:
        raise ParamError("queue_depth", f"{queue_depth} is a fraction of the price (0.001 = 0.1%)")
    if not isinstance(cfg.fill_seed, int | np.integer) or not 0 <= cfg.fill_seed < 2 ** 63:
        raise ParamError("fill_seed", f"must be a whole number from 0, got {cfg.fill_seed}")
    if mode == kernel.INFINITY:
        return _infinity_params(cfg, first_price, start_bar, check_price, fee=fee, taker=taker, slippage=slippage,
                                lot=lot, tick=tick, min_notional=min_notional, lower=lower, range_pct=range_pct,
                                fill_model=fill_model, stop_loss=stop_loss, take_profit=take_profit,
                                queue_depth=queue_depth)
    if mode == kernel.RANGE:
        lower = lower or first_price * (1 - range_pct)
        upper = upper or first_price * (1 + range_pct)
    else:
        anchor = upper or first_price
        lower = lower or anchor * (1 - range_pct)
        if spacing != grid.ATR and not lower < anchor:
            raise ParamError("lower", f"{lower} must be below the grid's anchor {anchor}")
    if spacing != grid.ATR and mode == kernel.RANGE:
        if not lower < upper:
            raise ParamError("upper", f"upper {upper} must be above lower {lower}")
        grid.grid_levels(lower, upper, cfg.levels, grid.SPACING_NAMES[spacing], tick)  # raises on coarse tick
    if mode == kernel.LOWER_ONLY and trailing in (kernel.TRAIL_DOWN, kernel.TRAIL_BOTH):
        raise ParamError("trailing", "a lower-only grid trails up only; it follows a fall by recentering (--consumed)")
    recenter = cfg.recenter if cfg.recenter is not None else (2.0 if mode == kernel.LOWER_ONLY else 0.0)
    consumed = cfg.consumed if cfg.consumed is not None else (0.8 if mode == kernel.LOWER_ONLY else 0.0)
    _positive("recenter", recenter, zero_ok=True)
    if not 0 <= consumed < 1:
        raise ParamError("consumed", f"must be from 0 to below 1, got {consumed}")
    dead_zone = _positive("dead_zone", cfg.dead_zone, zero_ok=True)
    if dead_zone >= 0.5:
        raise ParamError("dead_zone", f"{dead_zone} is a fraction of the price; 0.5 or more leaves no grid")
    if spacing == grid.ATR:
        if cfg.atr_period < 1:
            raise ParamError("atr_period", f"must be >= 1, got {cfg.atr_period}")
        _positive("atr_k", cfg.atr_k, zero_ok=True)
        _positive("atr_floor", cfg.atr_floor, zero_ok=True)
        if cfg.atr_k == 0 and cfg.atr_floor == 0:
            raise ParamError("atr_k", "ATR spacing needs atr_k > 0 or atr_floor > 0")
    hedge = _hedge_numbers(cfg)
    return kernel.SpotGridParams(
        **hedge,
        mode=mode, spacing=spacing, lower=float(lower), upper=float(upper), levels=int(cfg.levels),
        capital=capital, fee=fee, taker_fee=taker, slippage=slippage, lot=lot, tick=tick,
        min_notional=min_notional, qty_mode=qty_mode, atr_k=float(cfg.atr_k),
        atr_floor=float(cfg.atr_floor), trailing=trailing, recenter=float(recenter),
        consumed=float(consumed), dead_zone=dead_zone, stop_loss=stop_loss,
        take_profit=take_profit, stop_action=stop_action, fill_model=fill_model,
        queue_depth=queue_depth, fill_seed=int(cfg.fill_seed),
        start_bar=int(start_bar),
    )


def _infinity_params(cfg, first_price: float, start_bar: int, check_price: bool, **known) -> kernel.SpotGridParams:
    """An infinity grid's numbers (engine.strategies.infinity_grid): geometric from the lowest
    price up without end, a window of ``levels`` around the price, the reserve above it."""
    if not hasattr(cfg, "step"):
        raise ParamError("mode", "infinity is a strategy of its own: infinity-grid")
    step = _positive("step", cfg.step)
    if not 0.001 <= step <= 0.5:
        raise ParamError("step", f"must be from 0.001 (0.1%) to 0.5 (50%) a level, got {step}")
    if step <= 2 * known["fee"]:
        raise ParamError("step", f"{step:.3%} a level does not pay the fees of its round trip "
                                 f"({2 * known['fee']:.3%}): each trade would lose money")
    if cfg.levels > 200:
        raise ParamError("levels", f"an infinity grid keeps a window of up to 200 orders, got {cfg.levels}")
    lower = known["lower"] or first_price * (1 - known["range_pct"])
    if check_price and not lower < first_price:
        raise ParamError("lower", f"the lowest price {lower:,.8g} is not below the price at start {first_price:,.8g}")
    return kernel.SpotGridParams(
        mode=kernel.INFINITY, spacing=grid.GEOMETRIC, lower=float(lower), upper=0.0, levels=int(cfg.levels),
        capital=_positive("capital", cfg.capital), fee=known["fee"], taker_fee=known["taker"],
        slippage=known["slippage"], lot=known["lot"], tick=known["tick"], min_notional=known["min_notional"],
        stop_loss=known["stop_loss"], take_profit=known["take_profit"],
        stop_action=CHOICES["stop_action"].index(cfg.stop_action), fill_model=known["fill_model"],
        queue_depth=known["queue_depth"], fill_seed=int(cfg.fill_seed), step=step,
        start_bar=int(start_bar))


def _hedge_numbers(cfg: SpotGridConfig) -> dict:
    """Reserve, banking and hedge settings (a hedged-grid config has them; a spot grid none)."""
    if not hasattr(cfg, "hedge_ratio"):
        return {}
    out = {}
    for name, upper in (("reserve_ratio", 0.9), ("fee_reserve", 0.1), ("bank_frac", 1.0), ("bank_cap", 0.5),
                        ("hedge_ratio", 2.0), ("hedge_step", 2.0), ("hedge_max", 3.0), ("hedge_fee", 0.01),
                        ("hedge_tp", 1.0), ("hedge_reversal_k", 100.0)):
        v = float(getattr(cfg, name))
        if not 0 <= v <= upper:
            raise ParamError(name, f"must be from 0 to {upper}, got {v}")
        out[name] = v
    if out["reserve_ratio"] + out["fee_reserve"] >= 0.9:
        raise ParamError("reserve_ratio", "the reserves leave the grid less than 10% of the capital")
    if out["hedge_max"] < out["hedge_ratio"]:
        raise ParamError("hedge_max", f"must be at least --hedge-ratio ({out['hedge_ratio']})")
    lev = float(cfg.hedge_leverage)
    if not 1 <= lev <= 125:
        raise ParamError("hedge_leverage", f"must be from 1 to 125, got {lev}")
    out["hedge_leverage"] = lev
    out["reserve_ratio"] += out.pop("fee_reserve")  # the fee reserve is kept aside the same way
    return out


def initial_levels(params: kernel.SpotGridParams) -> np.ndarray | None:
    """The levels of the first grid for fixed spacings (None for ATR spacing: it needs data,
    and for an infinity grid: its window is laid around the price)."""
    if params.spacing == grid.ATR or params.mode == kernel.INFINITY:
        return None
    if params.mode == kernel.RANGE:
        return grid.grid_levels(params.lower, params.upper, params.levels, grid.SPACING_NAMES[params.spacing],
                                params.tick)
    anchor = params.upper
    if anchor <= 0:
        return None
    return grid.grid_levels(params.lower, anchor, params.levels + 1, grid.SPACING_NAMES[params.spacing], params.tick)


def planned_grid(params: kernel.SpotGridParams, price: float) -> tuple[np.ndarray, float, float] | None:
    """The levels of the first grid laid at ``price`` (a lower-only grid without an upper bound
    anchors at it) and its net profit per grid after fees, lowest and highest; None for ATR
    spacing (its levels need data)."""
    if params.mode == kernel.INFINITY:
        r = 1.0 + params.step
        j0 = max(0, kernel.below_levels_nb(params.lower, r, price) - (params.levels - 1) // 2)
        levels = np.array([grid.round_tick_nb(params.lower * r ** (j0 + k), params.tick) for k in range(params.levels)])
        return (levels, *grid.profit_range(levels, params.fee))
    if params.mode != kernel.RANGE and params.upper <= 0:
        params = params._replace(upper=float(price))
    levels = initial_levels(params)
    if levels is None:
        return None
    return (levels, *grid.profit_range(levels, params.fee))


def check_spot(cfg: SpotGridConfig, first_price: float | None = None) -> None:
    """The spec's check: without data (``check_settings``), or against the data's first price."""
    if first_price is None:
        check_settings(cfg)
    else:
        build_params(cfg, first_price, 0)
