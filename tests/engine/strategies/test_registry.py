"""Each strategy's spec holds together: what the CLI, the app, the optimizer and the runtime
read from it names real settings and passes the strategy's own checks."""

import dataclasses

import pytest

from engine.strategies.errors import ParamError
from engine.strategies.registry import CHOICES, SPECS, config_from, run_backtest, spec


@pytest.mark.parametrize("name", list(SPECS))
def test_a_specs_presets_and_search_space_are_settings_its_checks_pass(name):
    s = SPECS[name]
    fields = {f.name for f in dataclasses.fields(s.config)}
    assert s.name == name and set(s.search_space) <= fields
    for preset, changes in s.presets.items():
        assert set(changes) <= fields, preset
        s.check(config_from(name, changes))  # a starting point offered to a user is a valid one
    for setting, options in CHOICES.items():
        if setting in fields:
            assert getattr(s.config(), setting) in options
    if s.market:
        assert s.runner is not None and s.runner.strategy == name and s.runner.perpetual == (s.market == "perpetual")


def test_an_unknown_strategy_and_a_capability_it_lacks_are_refused_by_name(btc5m):
    with pytest.raises(ParamError,
                       match="--strategy: unknown strategy 'grid' \\(known: spot-grid, infinity-grid, hedged-grid"):
        spec("grid")
    from engine.risk import RiskLimits

    with pytest.raises(ParamError, match="--risk: applies to adaptive-grid, long-grid, futures-grid backtests; "
                                         "the spot-grid kernel"):
        run_backtest("spot-grid", btc5m.slice(0, 300), config_from("spot-grid", {}), risk=RiskLimits())
    with pytest.raises(ParamError, match="--funding: spot grids pay no funding"):
        run_backtest("spot-grid", btc5m.slice(0, 300), config_from("spot-grid", {}), funding=object())
