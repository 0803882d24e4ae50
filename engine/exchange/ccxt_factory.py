"""Build ccxt clients, optionally pointed at another host (testnet, proxy, local simulator)."""

from __future__ import annotations

import functools
import importlib.util
import pkgutil
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

# Options that keep a Binance client to the one market a system trades: a spot client away
# from futures and margin endpoints, a perpetual one on USDT-M futures (fapi) only.
MARKET_OPTIONS = {
    "spot": {"binance": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False}},
    "perpetual": {"binance": {"defaultType": "swap", "fetchMarkets": {"types": ["linear"]},
                              "fetchCurrencies": False, "fetchMargins": False}},
}


def rewrite_api_urls(urls, base_url: str):
    """Every URL in ccxt's ``urls["api"]`` (a string or nested dict) moved to ``base_url``,
    keeping its path: https://api.binance.com/api/v3 -> http://127.0.0.1:8080/api/v3, and the
    websocket ones likewise (wss://stream.binance.com:9443/ws -> ws://127.0.0.1:8080/ws; wss
    when the base is https)."""
    base = urlsplit(base_url.rstrip("/"))
    if isinstance(urls, dict):
        return {k: rewrite_api_urls(v, base_url) for k, v in urls.items()}
    if isinstance(urls, str) and urls.startswith(("http", "ws")):
        u = urlsplit(urls)
        scheme = base.scheme if u.scheme.startswith("http") else "wss" if base.scheme == "https" else "ws"
        return urlunsplit((scheme, base.netloc, base.path + u.path, u.query, u.fragment))
    return urls


@functools.cache
def exchange_ids() -> list[str]:
    """ccxt's exchanges (``ccxt.exchanges``), read from its package without importing it:
    ccxt takes ~90 MB and half a second, which a list of names should not cost."""
    spec = importlib.util.find_spec("ccxt")
    folder = Path(spec.submodule_search_locations[0]) / "async_support"
    return sorted(m.name for m in pkgutil.iter_modules([str(folder)]) if not m.ispkg)


def make_exchange(exchange_id: str, *, base_url: str | None = None, market: str = "spot",
                  config: dict | None = None, websocket: bool = False):
    """An async ccxt client for ``exchange_id`` (closing it is the caller's job). With
    ``websocket``, ccxt's pro client where ccxt has one for the exchange: the same REST calls
    plus its ``watch_*`` streams."""
    if exchange_id not in exchange_ids():  # (before the import: a typo costs no 90 MB)
        raise ValueError(f"exchange {exchange_id!r}: ccxt has no such exchange")
    import ccxt.async_support as ccxt_async

    module = ccxt_async
    if websocket:
        import ccxt.pro

        module = ccxt.pro if exchange_id in ccxt.pro.exchanges else ccxt_async
    options = dict(MARKET_OPTIONS.get(market, {}).get(exchange_id, {}))
    # ccxt paces requests by their weights. Its default leaky bucket starts empty and spaces
    # every request by its weight (Binance: 50 ms a unit), so a boot's weight-30 call (the
    # position mode) held the next request 1.5 s, and a restart's queries of its orders 50 ms
    # each: 3-5 s before a restarted grid traded. The rolling window lets the weights of any
    # minute go out as they come, up to the same 1,200 a minute (Binance's limits: 2,400 a
    # minute on USDT-M, 6,000 on spot); ccxt uses it where it knows the exchange's window
    # (``rollingWindowSize``, set for Binance), the leaky bucket elsewhere.
    cfg = {"enableRateLimit": True, "rateLimiterAlgorithm": "rollingWindow", **(config or {})}
    cfg["options"] = {**options, **cfg.get("options", {})}
    exchange = getattr(module, exchange_id)(cfg)
    if base_url:
        exchange.urls["api"] = rewrite_api_urls(exchange.urls["api"], base_url)
    return exchange
