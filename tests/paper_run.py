"""A system traded on paper over recorded candles, one candle per tick of a test's own clock:
the runtime's Trader on a ReplaySource and a PaperExchange filling as the backtest does."""

from __future__ import annotations

from engine.exchange.base import MarketRules
from engine.exchange.paper import PaperExchange, PaperPerpExchange
from engine.exchange.replay import ReplaySource
from engine.risk import RiskGate, RiskLimits
from engine.runtime.trader import Trader
from engine.strategies.registry import config_from


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def paper_trader(candles, cfg, data_dir, *, warmup: int = 1, rules: MarketRules | None = None, **limits):
    """(trader, clock): system ``cfg`` on paper over ``candles`` (the history before the first
    traded is ``warmup`` candles), the exchange's rules (unless given) and fees from its
    settings; alone in its account: no share-of-the-portfolio caps, the ATR breaker off unless
    given."""
    sc = config_from(cfg.strategy, dict(cfg.params, capital=cfg.capital))
    clock = Clock()
    source = ReplaySource(candles, seconds_per_candle=1.0, warmup=warmup, clock=clock)
    rules = rules or MarketRules("BTC/USDT", sc.tick, sc.lot, 0.0, sc.min_notional, "BTC", "USDT")
    taker = sc.fee if sc.taker_fee is None else sc.taker_fee
    paper = PaperExchange(source, rules, quote=cfg.capital, maker_fee=sc.fee, taker_fee=taker,
                          fill_rule=sc.fill_rule, queue_depth=sc.queue_depth, fill_seed=sc.fill_seed)
    limits = {"atr_jump": 1e9, "max_symbol_share": float("inf"), "max_total_share": float("inf"), **limits}
    return Trader(cfg, paper, RiskGate(RiskLimits(**limits)), data_dir), clock


def perp_paper_trader(candles, cfg, data_dir, *, warmup: int = 1, funding=None, limits: RiskLimits | None = None):
    """(trader, clock): perpetual system ``cfg`` on a paper USDT-M perpetual over ``candles``
    (with ``funding``: its rates), the rules, fees, leverage and tiers from its settings;
    ``limits``: the risk gate's (default: the ATR breaker off)."""
    from engine.kernels.perp import tiers_for

    sc = config_from(cfg.strategy, dict(cfg.params, capital=cfg.capital))
    clock = Clock()
    source = ReplaySource(candles, seconds_per_candle=1.0, warmup=warmup, clock=clock, funding=funding)
    rules = MarketRules(cfg.symbol, sc.tick, sc.lot, 0.0, sc.min_notional, "BTC", "USDT")
    paper = PaperPerpExchange(source, rules, quote=cfg.capital, leverage=sc.leverage,
                              tiers=tiers_for(sc.tiers, cfg.symbol), maker_fee=sc.maker_fee, taker_fee=sc.taker_fee,
                              slippage=sc.slippage, fill_rule=sc.fill_rule, queue_depth=sc.queue_depth,
                              fill_seed=sc.fill_seed)
    return Trader(cfg, paper, RiskGate(limits or RiskLimits(atr_jump=1e9)), data_dir), clock


async def drive(trader, clock, last_time: int) -> None:
    """Candle by candle up to the one at ``last_time`` (the source has one more: still forming)."""
    if trader.last_time < 0:
        await trader.boot()
        await trader.poll()
    while trader.last_time < last_time:
        clock.now += 1.0
        assert await trader.poll() == 1
