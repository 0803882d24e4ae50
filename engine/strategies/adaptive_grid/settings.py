"""The adaptive grid's settings: what a user sets (``AdaptiveGridConfig``), their checks by
name, the numbers the kernel takes (``build_params``), the liquidation estimate shown before a
start."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from engine.kernels import adaptive_grid as kernel
from engine.kernels.matching import FILL_MODELS
from engine.kernels.perp import liquidation_price_nb, tiers_for
from engine.strategies.errors import ParamError
from engine.strategies.space import FloatRange, IntRange
from engine.strategies.spec import MAX_CAPITAL, checked_settings


@dataclass
class AdaptiveGridConfig:
    capital: float = 10_000.0
    leverage: float = 1.0
    levels: int = 10
    order_frac: float = 0.03
    atr_period: int = 14
    atr_k: float = 1.0
    atr_floor: float = 0.005
    kama_period: int = 10
    theta: float = 0.15
    er_threshold: float = 0.5
    gamma: float = 1.0
    kappa: float = 1000.0
    horizon: float = 96.0
    sigma_window: int = 96
    z_halt: float = -3.0
    z_resume: float = -1.0
    stop_m: float = 3.5
    prune_sigma: float = 3.0
    prune_age_hours: float = 24.0
    prune_gap: float = 3.0
    prune_funding: float = 0.5
    prune_offset: bool = True
    offset_min_spacings: float = 2.0
    trail_reserve: float = 0.1
    var_z: float = 1.65
    var_max_dd: float = 0.25
    maker_fee: float = -0.00005
    taker_fee: float = 0.0002
    slippage: float = 0.0005
    no_short: bool = False
    lot: float = 0.001
    tick: float = 0.1
    min_notional: float = 5.0
    max_lots: int = 40
    funding_rate: float = 0.0001  # per 8 h when no funding file covers a settlement
    tiers: str = ""  # a tier table file; "": the symbol's Binance brackets (engine.kernels.perp.tiers_for)
    trigger_price: float = 0.0  # lay the grid once the price reaches this (0: at once)
    fill_rule: str = "touch"  # touch | through | queue: how a resting limit fills (engine/kernels/matching.py)
    queue_depth: float = 0.001  # queue: a level surely fills once the price went this fraction beyond it
    fill_seed: int = 0  # queue: the seed of its draws

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AdaptiveGridConfig:
        return checked_settings(cls, data, "adaptive-grid")


SEARCH_SPACE = {
    "levels": IntRange(3, 20),
    "order_frac": FloatRange(0.01, 0.08, log=True),
    "atr_k": FloatRange(0.5, 3.0),
    "theta": FloatRange(0.05, 0.5),
    "er_threshold": FloatRange(0.2, 0.8),
    "gamma": FloatRange(0.1, 5.0, log=True),
    "stop_m": FloatRange(2.0, 6.0),
}


def positive(cfg, name: str, zero_ok: bool = False, upper: float | None = None) -> None:
    """Setting ``name`` of ``cfg`` is a finite number > 0 (>= 0 with ``zero_ok``), at most
    ``upper``; ParamError by its name."""
    v = getattr(cfg, name)
    if not np.isfinite(v) or v < 0 or (v == 0 and not zero_ok) or (upper is not None and v > upper):
        bound = f" and at most {upper:g}" if upper is not None else ""
        raise ParamError(name, f"must be {'>= 0' if zero_ok else '> 0'}{bound}, got {v}")


def check_perp_costs(cfg) -> None:
    """A perpetual grid's fees, default funding rate and fill model (the adaptive and the
    futures grids have them alike)."""
    if not -0.01 < cfg.maker_fee < 0.01:
        raise ParamError("maker_fee", f"{cfg.maker_fee} is a fraction (-0.00005 is a 0.005% rebate)")
    for name in ("slippage", "taker_fee"):
        positive(cfg, name, zero_ok=True)
    if not abs(cfg.funding_rate) < 0.05:
        raise ParamError("funding_rate", f"{cfg.funding_rate} is a fraction per 8 hours")
    if cfg.fill_rule not in FILL_MODELS:
        raise ParamError("fill_rule", f"{cfg.fill_rule!r} is not one of {', '.join(FILL_MODELS)}")
    if not 0 < cfg.queue_depth < 0.5:
        raise ParamError("queue_depth", f"{cfg.queue_depth} is a fraction of the price (0.001 = 0.1%)")
    if not 0 <= cfg.fill_seed < 2 ** 63:
        raise ParamError("fill_seed", f"must be a whole number from 0, got {cfg.fill_seed}")


def check(cfg: AdaptiveGridConfig) -> None:
    positive(cfg, "capital", upper=MAX_CAPITAL)
    for name in ("atr_floor", "gamma", "kappa", "horizon", "stop_m", "prune_sigma",
                 "prune_age_hours", "prune_gap", "var_z", "var_max_dd"):
        positive(cfg, name)
    positive(cfg, "leverage", upper=125)
    positive(cfg, "order_frac", upper=0.5)
    positive(cfg, "trail_reserve", zero_ok=True, upper=0.9)
    positive(cfg, "prune_funding", zero_ok=True)
    positive(cfg, "offset_min_spacings", zero_ok=True)
    for name in ("atr_k", "lot", "tick", "min_notional"):
        positive(cfg, name, zero_ok=True)
    check_perp_costs(cfg)
    # (the upper bounds keep a run's memory and time in reach: 500 levels a side, 10,000 lots,
    # windows of a year of minutes)
    for name, lo, hi in (("levels", 1, 500), ("atr_period", 1, 525_600), ("kama_period", 2, 525_600),
                         ("sigma_window", 2, 525_600), ("max_lots", 1, 10_000)):
        v = getattr(cfg, name)
        if not np.isfinite(v) or int(v) != v or not lo <= v <= hi:
            raise ParamError(name, f"must be a whole number from {lo} to {hi:,}, got {v}")
    if not cfg.z_halt < cfg.z_resume:
        raise ParamError("z_resume", f"must be above --z-halt ({cfg.z_halt}), got {cfg.z_resume}")
    if cfg.theta <= 0 or not 0 < cfg.er_threshold <= 1:
        raise ParamError("theta" if cfg.theta <= 0 else "er_threshold", "theta must be > 0, ER threshold in (0, 1]")


def build_params(cfg: AdaptiveGridConfig, start_bar: int) -> kernel.AdaptiveGridParams:
    check(cfg)
    return kernel.AdaptiveGridParams(
        capital=float(cfg.capital), leverage=float(cfg.leverage), levels=int(cfg.levels),
        order_frac=float(cfg.order_frac), atr_k=float(cfg.atr_k), atr_floor=float(cfg.atr_floor),
        gamma=float(cfg.gamma), kappa=float(cfg.kappa),
        spread_const=kernel.spread_const(cfg.gamma, cfg.kappa), horizon=float(cfg.horizon), z_halt=float(cfg.z_halt),
        z_resume=float(cfg.z_resume), stop_m=float(cfg.stop_m), prune_sigma=float(cfg.prune_sigma),
        prune_age_ms=float(cfg.prune_age_hours) * 3_600_000.0, prune_gap=float(cfg.prune_gap),
        prune_funding=float(cfg.prune_funding), prune_offset=int(bool(cfg.prune_offset)),
        offset_min_spacings=float(cfg.offset_min_spacings),
        er_threshold=float(cfg.er_threshold), trail_reserve=float(cfg.trail_reserve), var_z=float(cfg.var_z),
        var_max_dd=float(cfg.var_max_dd), maker_fee=float(cfg.maker_fee), taker_fee=float(cfg.taker_fee),
        slippage=float(cfg.slippage), no_short=int(bool(cfg.no_short)), lot=float(cfg.lot), tick=float(cfg.tick),
        min_notional=float(cfg.min_notional), max_lots=int(cfg.max_lots), start_bar=int(start_bar),
        fill_model=FILL_MODELS.index(cfg.fill_rule), queue_depth=float(cfg.queue_depth), fill_seed=int(cfg.fill_seed),
    )


def estimated_liquidation(cfg: AdaptiveGridConfig, symbol: str, price: float) -> tuple[int, float, float]:
    """(lots, long, short): where a side holding every lot its grid may open (its levels, at
    most ``max_lots``), bought or sold at about ``price`` with each lot's margin, is liquidated
    (isolated, the symbol's tiers): what an exchange's grid bot shows before start. The lots
    open spread around the price, so the real figure moves with the fills; ValueError when the
    symbol's tiers are not known."""
    tiers = tiers_for(cfg.tiers, symbol)
    lots = min(int(cfg.levels), int(cfg.max_lots))
    margin = lots * float(cfg.order_frac) * float(cfg.capital)
    qty = margin * float(cfg.leverage) / price
    return (lots, float(liquidation_price_nb(tiers, 1, qty, price, margin)),
            float(liquidation_price_nb(tiers, -1, qty, price, margin)))
