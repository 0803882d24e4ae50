"""Metrics for dashboards: a Prometheus endpoint (prometheus-client) over what the runner's
status files say (``Runner.views``), per system: equity, PnL and its parts, fills, completed
grids, open orders, orders waiting after a refusal, the last candle traded, the time from a
candle's arrival to its orders, paused or not; and the kill switch.

Scrapes read the last snapshot the runner made on its event loop (every 2 s when anything
changed, ``Runner.keep_views``); a scrape never touches the traders themselves, which live on
the loop. Bound to 127.0.0.1 unless told otherwise: the figures are the owner's.
"""

from __future__ import annotations

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import CollectorRegistry

# bot summary field -> (metric, help)
MONEY = {
    "equity": ("griddesk_equity", "the system's equity, in its quote currency"),
    "total_pnl": ("griddesk_total_pnl", "equity less the investment (grid profit, floating, funding and fees)"),
    "grid_profit": ("griddesk_grid_profit", "profit of the completed grids"),
    "floating": ("griddesk_floating_pnl", "profit of what the system holds, at the last close"),
    "funding": ("griddesk_funding", "funding received (paid: negative)"),
    "fees": ("griddesk_fees", "fees paid"),
    "investment": ("griddesk_investment", "the system's capital"),
}


class RunnerCollector:
    """Yields the metrics of ``source()``: a ``bot_state.json`` view (``Runner.views``) or None."""

    def __init__(self, source):
        self.source = source

    def collect(self):
        state = self.source() or {}
        systems = state.get("systems", {})
        gauges = {key: GaugeMetricFamily(name, text, labels=["system"]) for key, (name, text) in MONEY.items()}
        fills = CounterMetricFamily("griddesk_fills", "fills the exchange made for the system", labels=["system"])
        trips = CounterMetricFamily("griddesk_completed_grids", "completed grids (a buy sold one level up, a "
                                    "perpetual's lot closed by its take-profit)", labels=["system"])
        open_orders = GaugeMetricFamily("griddesk_open_orders", "the system's orders resting on the exchange",
                                        labels=["system"])
        refused = GaugeMetricFamily("griddesk_refused_orders", "orders waiting to be sent again after the "
                                    "exchange or the market's rules refused them", labels=["system"])
        latency = GaugeMetricFamily("griddesk_order_latency_seconds", "from a candle's arrival to its orders "
                                    "sent: the median of the last 100", labels=["system"])
        last = GaugeMetricFamily("griddesk_last_candle_timestamp_seconds", "the close time of the last candle "
                                 "traded", labels=["system"])
        paused = GaugeMetricFamily("griddesk_system_paused", "1 while the system's openings are paused, killed "
                                   "or held", labels=["system"])
        for name, s in systems.items():
            bot = s.get("bot") or {}
            for key, g in gauges.items():
                if key in bot:
                    g.add_metric([name], float(bot[key]))
            if bot:
                fills.add_metric([name], float(bot["fills"]))
                trips.add_metric([name], float(bot["round_trips"]))
            open_orders.add_metric([name], float(s.get("open_orders", 0)))
            refused.add_metric([name], float(s.get("refused", 0)))
            if s.get("latency_s") is not None:
                latency.add_metric([name], float(s["latency_s"]))
            if s.get("last_time", -1) >= 0:
                last.add_metric([name], s["last_time"] / 1000.0)
            paused.add_metric([name], 0.0 if s.get("status") in ("ON", "OFF") else 1.0)
        yield from gauges.values()
        yield from (fills, trips, open_orders, refused, latency, last, paused)
        yield GaugeMetricFamily("griddesk_kill_switch", "1 while the kill switch is engaged",
                                value=1.0 if state.get("kill_all") else 0.0)


def serve(source, port: int, addr: str = "127.0.0.1"):
    """Serve the metrics of ``source()`` on ``addr:port`` (0: a free port) from a thread of
    its own; returns the server (``server_port``, ``shutdown()``). ValueError naming the flag
    when it cannot (the port taken, an address this machine does not have)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(RunnerCollector(source))
    try:
        server, _thread = start_http_server(port, addr, registry=registry)
    except OSError as exc:
        raise ValueError(f"--metrics-port: cannot serve on {addr}:{port}: {exc.strerror or exc}") from None
    return server
