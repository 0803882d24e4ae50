"""Search spaces: the ranges and choices an optimizer may try for a strategy's settings.

Each strategy module declares its ``SEARCH_SPACE`` next to its settings class; a user may
narrow or replace any entry (``parse_ranges``). No optimizer import here: a space only says
what may vary and checks the values it is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.strategies.errors import ParamError


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    step: int = 1
    log: bool = False

    def check(self, name: str) -> None:
        if not (isinstance(self.low, int) and isinstance(self.high, int)) or self.low > self.high:
            raise ParamError(name, f"range {self.low}..{self.high} is not whole numbers low <= high")
        if self.log and self.low < 1:
            raise ParamError(name, "a log range must start at 1 or more")

    def describe(self) -> str:
        return f"{self.low}..{self.high}" + (" (log)" if self.log else "")


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = False

    def check(self, name: str) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low > self.high:
            raise ParamError(name, f"range {self.low}..{self.high} is not finite with low <= high")
        if self.log and self.low <= 0:
            raise ParamError(name, "a log range must start above 0")

    def describe(self) -> str:
        return f"{self.low:g}..{self.high:g}" + (" (log)" if self.log else "")


@dataclass(frozen=True)
class Choice:
    options: tuple

    def check(self, name: str) -> None:
        if not self.options:
            raise ParamError(name, "a choice needs at least one option")

    def describe(self) -> str:
        return "|".join(str(o) for o in self.options)


Dimension = IntRange | FloatRange | Choice


def parse_range(name: str, text: str, default: Dimension | None) -> Dimension:
    """A range as typed on the command line or in the Optimizer tab: ``10..60``, ``0.05..0.4``,
    ``0.001..0.1:log``, or options ``arithmetic|geometric``. Whole-number ends make an integer
    range; a setting whose default range is of floats stays a float range."""
    text = text.strip()
    log = text.endswith(":log")
    if log:
        text = text[:-4]
    if ".." not in text:
        options = tuple(_word(o) for o in text.split("|") if o.strip())
        dim: Dimension = Choice(options)
    else:
        lo_text, hi_text = text.split("..", 1)
        try:
            lo, hi = float(lo_text), float(hi_text)
        except ValueError:
            raise ParamError(name, f"{text!r} is not a range like 10..60 or 0.05..0.4") from None
        whole = lo.is_integer() and hi.is_integer() and "." not in lo_text + hi_text
        if whole and not isinstance(default, FloatRange):
            dim = IntRange(int(lo), int(hi), log=log)
        else:
            dim = FloatRange(lo, hi, log=log)
    dim.check(name)
    return dim


def _word(text: str):
    text = text.strip()
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
