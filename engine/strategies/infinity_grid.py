"""The infinity grid (Pionex's): a geometric spot grid from a lowest price up, without an upper
bound. It keeps a constant value in the coin: as the price rises a level, it sells coins worth
the grid's step of that value; as it falls a level, it buys them back. Every slot, level j
buying at L(j) = lowest x (1 + step)^j and selling at L(j + 1), is of the same quote size, so
a slot above the price holds Q / L(j) coins and all of them together V / L, V = Q (1 + step) /
step: the value the grid keeps.

It runs in the spot-grid kernel (engine/kernels/spot_grid/, mode INFINITY): a window of
``levels`` slots with the price in its middle rests on the exchange; the slots above the
window are the reserve, bought at market at the start and held, and the window moves a level
at a time as the price nears its edge, its slots kept as they are. The capital pays for V at
the start and for a buy at every level down to the lowest.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.strategies.errors import ParamError
from engine.strategies.space import FloatRange, IntRange
from engine.strategies.spec import StrategySpec, checked_settings
from engine.strategies.spot_grid import SpotGridConfig, SpotGridRunner, backtest_spot, check_spot, sweep_spot_grid

NAME = "infinity-grid"
FIXED = ("mode", "spacing", "upper", "trailing", "recenter", "consumed", "qty_mode", "atr_period", "atr_k",
         "atr_floor", "dead_zone")


@dataclass
class InfinityGridConfig(SpotGridConfig):
    mode: str = "infinity"
    spacing: str = "geometric"
    levels: int = 20  # the window of orders resting around the price
    range_pct: float = 0.5  # with lower 0: the lowest price is this fraction below the price at start
    step: float = 0.01  # each level this fraction above the one below (the profit per grid before fees)

    @classmethod
    def from_dict(cls, data: dict) -> InfinityGridConfig:
        cfg = checked_settings(cls, data, NAME)
        default = cls()
        for name in FIXED:
            if getattr(cfg, name) != getattr(default, name):
                raise ParamError(name, f"an infinity grid holds {name} at {getattr(default, name)!r} (a geometric "
                                       "grid from the lowest price up, without an upper bound)")
        return cfg


class InfinityGridRunner(SpotGridRunner):
    strategy = NAME


SPEC = StrategySpec(
    NAME, InfinityGridConfig, lambda *a, **k: _named(backtest_spot(*a, **k)),
    search_space={"step": FloatRange(0.004, 0.05, log=True), "levels": IntRange(8, 60),
                  "range_pct": FloatRange(0.2, 0.8)},
    check=check_spot, market="spot", runner=InfinityGridRunner, sweep=sweep_spot_grid, fixed=FIXED,
    presets={
        "Defaults (1% a level, lowest half the price)": {},
        "Tight (0.5% a level)": {"step": 0.005, "levels": 30},
        "Wide (2% a level)": {"step": 0.02, "levels": 16},
    })


def sizes(params, price: float) -> tuple[float, float]:
    """(Q, V): what each level buys, in quote, and the value the grid keeps in the coin, for a
    grid laid at ``price`` (the kernel's own numbers: engine.kernels.spot_grid.new_state)."""
    from engine.kernels import spot_grid as kernel

    q = float(kernel.new_state(params, price)[2][kernel.F_SLOT_QUOTE])
    return q, q * (1.0 + params.step) / params.step


def _named(result):
    result.strategy = NAME
    return result
