"""Systems as the user defines them (cryptos.json), validated with errors that name the file,
the system and the field."""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from engine.data import TIMEFRAMES_MS
from engine.exchange.ccxt_factory import exchange_ids
from engine.store import read_json, write_json_atomic
from engine.strategies.errors import ParamError
from engine.strategies.registry import RUNTIME, check_settings
from engine.strategies.spec import MAX_CAPITAL

MODES = ("paper", "live")
MAX_NAME = 80  # characters of a system's name
MARKETS = ("spot", "perpetual")
RUNTIME_STRATEGIES = {n: s.market for n, s in RUNTIME.items()}  # strategy -> the market it trades


class ConfigError(ValueError):
    pass


@dataclass
class SystemConfig:
    name: str
    exchange: str = "binance"
    symbol: str = "BTC/USDT"
    market: str = "spot"
    timeframe: str = "15m"
    strategy: str = "spot-grid"
    params: dict = field(default_factory=dict)
    capital: float = 10_000.0
    mode: str = "paper"
    dry_run: bool = True
    enabled: bool = False
    data: str = ""  # paper on recorded candles: "sample" or a file; "" = the exchange's live candles
    exchange_url: str = ""  # every ccxt endpoint at another host (testnet, proxy, simulator)
    sandbox: bool = False  # the exchange's testnet / demo trading, where ccxt has one
    streams: bool = True  # candles and order updates on the exchange's websockets where it has them; else polled
    replay_seconds: float = 1.0  # paper on recorded candles: wall seconds per candle
    replay_from: str = ""  # paper on recorded candles: the first candle traded (a date); "" = after the warm-up
    id: str = ""  # short id in client order ids; from the name when empty

    def __post_init__(self):
        if not self.id and isinstance(self.name, str):  # (any other name is refused by validate)
            self.id = system_id(self.name)

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.name).strip("_") or self.id

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self, where: str = "system") -> SystemConfig:
        def bad(name, msg):
            raise ConfigError(f"{where}: {name}: {msg}")

        if not isinstance(self.name, str) or not self.name.strip():
            bad("name", f"must be a non-empty text, got {self.name!r}")
        if len(self.name) > MAX_NAME:
            bad("name", f"is {len(self.name):,} characters long; at most {MAX_NAME} (it names the system's files)")
        if self.mode not in MODES:
            bad("mode", f"{self.mode!r} is not one of {', '.join(MODES)}")
        if self.exchange not in exchange_ids():
            bad("exchange", f"{self.exchange!r}: ccxt has no such exchange (e.g. binance, bybit, okx)")
        if self.market not in MARKETS:
            bad("market", f"{self.market!r} is not one of {', '.join(MARKETS)}")
        if self.strategy not in RUNTIME_STRATEGIES:
            bad("strategy", f"{self.strategy!r} is not one of {', '.join(RUNTIME_STRATEGIES)}")
        if RUNTIME_STRATEGIES[self.strategy] != self.market:
            bad("market", f"{self.strategy} trades the {RUNTIME_STRATEGIES[self.strategy]} market, not {self.market}")
        if self.timeframe not in TIMEFRAMES_MS:
            bad("timeframe", f"{self.timeframe!r} is not one of {', '.join(TIMEFRAMES_MS)}")
        if isinstance(self.capital, bool) or not isinstance(self.capital, int | float) \
                or not 0 < self.capital <= MAX_CAPITAL:
            bad("capital", f"must be an amount > 0 and at most {MAX_CAPITAL:g}, got {self.capital!r}")
        if not isinstance(self.params, dict):
            bad("params", "must be an object")
        if not isinstance(self.symbol, str) or "/" not in self.symbol:
            bad("symbol", f"{self.symbol!r} is not a BASE/QUOTE pair")
        if not re.fullmatch(r"[a-z0-9]{1,12}", self.id):
            bad("id", f"{self.id!r}: 1 to 12 lower-case letters or digits")
        for flag in ("dry_run", "enabled", "sandbox", "streams"):
            if not isinstance(getattr(self, flag), bool):
                bad(flag, f"must be true or false, got {getattr(self, flag)!r}")
        if isinstance(self.replay_seconds, bool) or not isinstance(self.replay_seconds, int | float) \
                or not 0 <= self.replay_seconds <= 3600:
            bad("replay_seconds", f"must be a number of seconds from 0 to 3600, got {self.replay_seconds!r}")
        for name in ("exchange", "timeframe", "data", "exchange_url", "id", "replay_from"):
            if not isinstance(getattr(self, name), str):
                bad(name, f"must be a text, got {getattr(self, name)!r}")
        if self.replay_from:
            try:
                from engine.fetch import parse_when

                parse_when(self.replay_from)
            except (ValueError, TypeError):
                bad("replay_from", f"{self.replay_from!r} is not a date (2021-03-01, 2021-03-01T12:00Z, epoch ms)")
        if self.market == "perpetual" and isinstance(self.params.get("tiers", ""), str):
            from engine.kernels.perp import tiers_for

            try:  # its margin tiers: the file given, or its symbol's
                tiers_for(self.params.get("tiers", ""), self.symbol)
            except ValueError as exc:
                bad("params.tiers", str(exc).removeprefix("tiers: "))
        try:  # the strategy's settings, as the system will trade them
            check_settings(self.strategy, {**self.params, "capital": float(self.capital)})
        except ParamError as exc:
            bad("capital" if exc.name == "capital" else f"params.{exc.name}", exc.detail)
        return self

    @classmethod
    def from_dict(cls, d: dict, where: str = "system") -> SystemConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{where}: {unknown[0]}: unknown field")
        if "name" not in d:
            raise ConfigError(f"{where}: name: is required")
        try:
            return cls(**d).validate(where)
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def system_id(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:6]


def load_systems(path: str | Path) -> tuple[list[SystemConfig], str]:
    """The systems of a cryptos.json, and a problem to report ('' when none)."""
    path = Path(path)
    loaded = read_json(path)
    systems = loaded.data.get("systems")
    if not isinstance(systems, list):
        raise ConfigError(f"{path}: systems: must be a list")
    out = []
    for i, d in enumerate(systems):
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: systems[{i}]: must be an object")
        name = d.get("name", f"#{i + 1}")
        label = repr(name) if len(repr(name)) <= 42 else repr(name)[:40] + "..."
        out.append(SystemConfig.from_dict(d, f"{path}: system {label}"))
    check_unique(out, str(path))
    return out, loaded.problem or ""


def check_unique(systems: list[SystemConfig], where: str) -> None:
    """Each system's files are its own: two systems may not share a name, an id (the prefix of
    their client order ids) or a file name (``slug``: "a/b" and "a b" are both ``a_b``; file
    systems that ignore case make "A" and "a" one file)."""
    names = [s.name for s in systems]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{where}: system {dup[0]!r}: name used twice")
    ids: dict[str, str] = {}
    files: dict[str, str] = {}
    for s in systems:
        other = ids.setdefault(s.id, s.name)
        if other != s.name:
            raise ConfigError(f"{where}: id {s.id!r} used by two systems ({other!r} and {s.name!r})")
        other = files.setdefault(s.slug.lower(), s.name)
        if other != s.name:
            raise ConfigError(f"{where}: systems {other!r} and {s.name!r} would share the state file "
                              f"{s.slug}.json: rename one")


def save_systems(path: str | Path, systems: list[SystemConfig]) -> None:
    write_json_atomic(path, {"systems": [s.to_dict() for s in systems]})
