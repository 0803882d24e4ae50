"""Every strategy setting in words, once: its label with the unit, and a line of help. The
Backtest tab's editor, Add System and ``griddesk backtest --help`` read it, so a setting reads
the same everywhere. (Values in the editor and the files are as stored: fractions, not
percents; Add System shows fees in percent and says so.)"""

from __future__ import annotations

# name: (label, help)
SETTINGS: dict[str, tuple[str, str]] = {
    # the spot grid
    "mode": ("Grid", "range: buys and sells between lower and upper; lower-only: buys below the price at start, "
                     "each sold one level up"),
    "spacing": ("Spacing", "arithmetic: equal price steps; geometric: equal percent steps; atr: steps of the ATR"),
    "lower": ("Lower (0: from the price)", "the lowest level, in quote; 0: range around the first price"),
    "upper": ("Upper (0: from the price)", "the highest level (a lower-only grid's anchor), in quote; 0: from "
                                           "the first price"),
    "levels": ("Levels", "how many price levels the grid has"),
    "range_pct": ("Range around the price (fraction)", "with lower/upper 0: the grid spans the first price "
                                                       "± this fraction (0.2 = ±20%)"),
    "trigger_price": ("Trigger price (0: start at once)", "wait until the price reaches this, from above or "
                                                           "below, then lay the grid at that candle's close"),
    "capital": ("Capital (quote)", "what the system may spend, in the quote currency"),
    "fee": ("Fee (fraction)", "the maker fee on resting orders: 0.001 = 0.1% (Binance spot)"),
    "taker_fee": ("Taker fee (fraction; empty: the fee)", "the fee on market and stop orders"),
    "slippage": ("Slippage (fraction)", "adverse slippage on market and stop orders: 0.0005 = 0.05%"),
    "lot": ("Lot (base)", "the quantity step: order sizes round down to it"),
    "tick": ("Tick (quote; 0: none)", "the price step: levels round to it"),
    "min_notional": ("Minimum order (quote)", "orders below this value are refused, as the exchange refuses them"),
    "qty_mode": ("Order size", "quote: the same value at each level; base: the same quantity"),
    "atr_period": ("ATR period (bars)", "bars of the Average True Range"),
    "atr_k": ("Spacing (× ATR)", "with ATR spacing: a step is this many ATRs"),
    "atr_floor": ("Smallest step (fraction)", "a step never narrower than this share of the price: 0.005 = 0.5%"),
    "trailing": ("Trailing", "whether the grid follows the price when it leaves the range: up, down or both"),
    "recenter": ("Recenter (spacings; empty: the mode's)", "the grid is laid again around the price when it is this "
                                                         "many steps beyond it (range: 0 = never; lower-only: 2)"),
    "consumed": ("Recenter when bought (fraction; empty: 0.8)", "lower-only: lay again when this share of the buys "
                                                               "has filled"),
    "dead_zone": ("Dead zone (fraction)", "no order within this share of the price"),
    "stop_loss": ("Stop-loss price (0: none)", "below it the grid stops (and sells, as stop action says)"),
    "take_profit": ("Take-profit price (0: none)", "above it the grid stops (and sells, as stop action says)"),
    "stop_action": ("At a stop", "sell: sell what the grid holds; keep: keep it"),
    "step": ("Step (fraction a level)", "infinity grid: each level this share above the one below, the profit of "
                                       "a grid before fees: 0.01 = 1%"),
    "fill_rule": ("Fills", "touch: a level fills when the price reaches it; through: only when it trades a tick "
                           "beyond it; queue: with a chance that grows with how far the price went beyond it "
                           "(a place in the order queue)"),
    "queue_depth": ("Queue depth (fraction)", "queue fills: a level surely fills once the price went this share "
                                              "beyond it: 0.001 = 0.1%"),
    "fill_seed": ("Queue seed", "queue fills: the seed of the draws (the same seed, the same fills)"),
    # the hedged grid
    "reserve_ratio": ("Reserve (fraction of capital)", "kept aside, never spent by the grid: the hedge's margin"),
    "fee_reserve": ("Fee reserve (fraction of capital)", "kept aside for fees, as the reserve is"),
    "bank_frac": ("Banked (fraction of a win)", "a share of each winning round trip moved into the reserve"),
    "bank_cap": ("Bank cap (fraction of capital)", "the most the banking moves into the reserve"),
    "hedge_ratio": ("Hedge (fraction of the inventory)", "the perpetual short opened when the price falls below "
                                                        "the grid, sized as this share of the coins held"),
    "hedge_step": ("Hedge step (fraction)", "added to the hedge for each further step down"),
    "hedge_max": ("Largest hedge (fraction)", "the hedge never exceeds this share of the coins held"),
    "hedge_leverage": ("Hedge leverage (×)", "the perpetual short's leverage"),
    "hedge_fee": ("Hedge fee (fraction)", "the perpetual's taker fee: 0.0002 = 0.02%"),
    "hedge_tp": ("Hedge take-profit (fraction)", "the short is closed at this profit on its notional"),
    "hedge_reversal_k": ("Hedge reversal (× ATR over the EMA)", "the short is closed when a close rises this many "
                                                               "ATRs above the EMA"),
    "ema_period": ("EMA period (bars)", "the trend line the hedge's reversal is measured from"),
    "funding_rate": ("Funding when unknown (fraction / 8 h)", "paid at settlements a funding file has no rate for"),
    "tiers": ("Margin tiers (file)", "the exchange's leverage brackets; empty: the symbol's bundled ones"),
    # the adaptive perpetual grid
    "leverage": ("Leverage (×)", "isolated margin, hedge mode"),
    "order_frac": ("Order size (fraction of capital)", "each grid order's notional as a share of the capital"),
    "kama_period": ("KAMA period (bars)", "Kaufman's adaptive moving average: the trend the grid leans to"),
    "theta": ("Trend threshold (KAMA slope in ATRs)", "a KAMA slope beyond this many ATRs a bar names a trend"),
    "er_threshold": ("Breakout efficiency", "a trend whose Kaufman efficiency ratio is at least this is a breakout"),
    "gamma": ("Inventory aversion (γ)", "Avellaneda-Stoikov: how much a held position skews the grid against it"),
    "kappa": ("Order-book depth (κ)", "Avellaneda-Stoikov: the book's liquidity in the spread term"),
    "horizon": ("Horizon (bars)", "Avellaneda-Stoikov: the time over which inventory risk is counted"),
    "sigma_window": ("Volatility window (bars)", "bars of the log-return deviation the skew uses"),
    "z_halt": ("Halt below (z-score)", "the circuit breaker halts new openings when the price's z-score falls "
                                       "below this"),
    "z_resume": ("Resume above (z-score)", "and resumes them when it rises back above this"),
    "stop_m": ("Stop (× ATR from the entry)", "a side's stop, this many ATRs beyond its average entry"),
    "prune_sigma": ("Prune beyond (σ)", "a side is pruned when the price is this many standard deviations "
                                       "beyond the KAMA against it"),
    "prune_age_hours": ("Prune after (hours)", "the oldest lot is closed once held this long"),
    "prune_gap": ("Prune gap (spacings)", "a lot this many steps from the price is closed"),
    "prune_funding": ("Prune on funding (fraction of grid profit)", "lots are closed when the funding they paid "
                                                                    "exceeds this share of the grid's profit"),
    "prune_offset": ("Offset losses", "a losing lot is closed when the take-profits so far pay for it"),
    "offset_min_spacings": ("Offset from (spacings)", "only lots at least this many steps under water are offset"),
    "trail_reserve": ("Trailing reserve (fraction)", "the share of capital kept out of the grid for trailing up"),
    "var_z": ("VaR confidence (z)", "the z-score of the value-at-risk check (1.65 = 95%)"),
    "var_max_dd": ("Largest VaR (fraction of equity)", "no new opening while the positions' VaR exceeds this"),
    "maker_fee": ("Maker fee (fraction)", "the perpetual's maker fee; below 0 a rebate (Binance USDT-M: 0.0002)"),
    "no_short": ("Long only", "no short grid"),
    "max_lots": ("Most lots a side", "the most open lots each side holds"),
    # the futures grid
    "direction": ("Direction", "neutral: no position at start, long below the price and short above it; long: "
                               "buys the slots above the price at start, every slot long; short: the mirror"),
    "stop_top": ("Stop top (price; 0: none)", "a candle reaching it ends the grid: every order cancelled, what it "
                                              "holds closed at market"),
    "stop_bottom": ("Stop bottom (price; 0: none)", "a candle reaching it ends the grid, as the stop top does"),
    "stop_loss_pct": ("Stop-loss (fraction of capital; 0: none)", "the grid ends when its total PnL at a close is "
                                                                  "this share of the capital or more lost"),
    "take_profit_pct": ("Take-profit (fraction of capital; 0: none)", "the grid ends when its total PnL at a close "
                                                                      "is this share of the capital or more"),
}


def label(name: str) -> str:
    return SETTINGS.get(name, (name.replace("_", " "), ""))[0]


def help_text(name: str) -> str:
    return SETTINGS.get(name, ("", ""))[1]
