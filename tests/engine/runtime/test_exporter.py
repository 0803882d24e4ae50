"""The Prometheus endpoint (engine/runtime/exporter.py): each figure of a system's status as a
metric, and ``griddesk run --metrics-port`` serving a running paper system's."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request

from conftest import ROOT
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from engine.runtime.exporter import RunnerCollector, serve

STATUS = {
    "kill_all": False,
    "systems": {
        "grid a": {"last_time": 1_700_000_060_000, "open_orders": 19, "refused": 1, "latency_s": 0.004,
                   "status": "ON", "bot": {"investment": 10_000.0, "equity": 10_123.5, "total_pnl": 123.5,
                                           "grid_profit": 150.25, "floating": -20.0, "funding": 0.0, "fees": 6.75,
                                           "fills": 42, "round_trips": 17}},
        "perp b": {"last_time": -1, "open_orders": 0, "status": "PAUSED", "bot": None},
    },
}


def metrics(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_each_figure_of_a_systems_status_is_a_metric():
    registry = CollectorRegistry()
    registry.register(RunnerCollector(lambda: STATUS))
    m = metrics(generate_latest(registry).decode())
    a = '{system="grid a"}'
    assert m["griddesk_equity" + a] == 10_123.5 and m["griddesk_total_pnl" + a] == 123.5
    assert m["griddesk_grid_profit" + a] == 150.25 and m["griddesk_floating_pnl" + a] == -20.0
    assert m["griddesk_fees" + a] == 6.75 and m["griddesk_investment" + a] == 10_000.0
    assert m["griddesk_fills_total" + a] == 42 and m["griddesk_completed_grids_total" + a] == 17
    assert m["griddesk_open_orders" + a] == 19 and m["griddesk_refused_orders" + a] == 1
    assert m["griddesk_order_latency_seconds" + a] == 0.004
    assert m["griddesk_last_candle_timestamp_seconds" + a] == 1_700_000_060.0
    assert m["griddesk_system_paused" + a] == 0 and m['griddesk_system_paused{system="perp b"}'] == 1
    assert 'griddesk_equity{system="perp b"}' not in m  # not started: no figures yet, not zeros
    assert m["griddesk_kill_switch"] == 0
    # before the runner's first snapshot: the kill switch alone, no system
    empty = CollectorRegistry()
    empty.register(RunnerCollector(lambda: None))
    assert metrics(generate_latest(empty).decode()) == {"griddesk_kill_switch": 0.0}


def test_the_sample_dashboard_asks_only_for_metrics_that_are_served():
    dashboard = json.loads((ROOT / "docs" / "grafana-griddesk.json").read_text())
    asked = {name for panel in dashboard["panels"] for t in panel["targets"]
             for name in re.findall(r"griddesk_[a-z_]+", t["expr"])}
    registry = CollectorRegistry()
    registry.register(RunnerCollector(lambda: STATUS))
    served = {name.split("{")[0] for name in metrics(generate_latest(registry).decode())}
    assert len(asked) >= 10 and asked <= served, asked - served


def test_served_on_this_machine_only_by_default():
    server = serve(lambda: STATUS, 0)
    try:
        assert server.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5) as r:
            assert 'griddesk_equity{system="grid a"} 10123.5' in r.read().decode()
    finally:
        server.shutdown()


def test_griddesk_run_serves_its_systems_metrics(tmp_path):
    config = tmp_path / "cryptos.json"
    config.write_text(json.dumps({"schema_version": 1, "systems": [
        {"name": "paper sample", "data": "sample", "replay_seconds": 0.05, "enabled": True,
         "params": {"levels": 10, "spacing": "geometric"}}]}))
    data = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "run", "--config", str(config), "--data-dir", str(data),
                             "--metrics-port", "0"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        url = None
        while url is None:
            line = proc.stdout.readline()
            assert line, "griddesk run ended before serving its metrics"
            found = re.search(r"metrics at (http://127\.0\.0\.1:\d+/metrics)", line)
            url = found.group(1) if found else None
        s = '{system="paper sample"}'
        deadline = time.monotonic() + 120
        while True:
            with urllib.request.urlopen(url, timeout=5) as r:
                m = metrics(r.read().decode())
            if m.get("griddesk_fills_total" + s, 0) > 0:
                break
            assert time.monotonic() < deadline, "no fill in two minutes"
            time.sleep(0.2)
        assert m["griddesk_equity" + s] == m["griddesk_investment" + s] + m["griddesk_total_pnl" + s]
        assert m["griddesk_investment" + s] == 10_000.0 and m["griddesk_open_orders" + s] > 0
        assert m["griddesk_system_paused" + s] == 0 and m["griddesk_kill_switch"] == 0
        assert m["griddesk_order_latency_seconds" + s] >= 0
        assert m["griddesk_last_candle_timestamp_seconds" + s] > 1.5e9
    finally:
        proc.terminate()
        proc.wait(60)
    assert proc.returncode == 0
    # what was served is what the status file says, a moment earlier
    final = json.loads((data / "state" / "bot_state.json").read_text())["systems"]["paper sample"]
    assert final["bot"]["fills"] >= m["griddesk_fills_total" + s]


def test_a_port_in_use_is_refused_in_one_line(tmp_path):
    server = serve(lambda: STATUS, 0)
    try:
        config = tmp_path / "cryptos.json"
        config.write_text(json.dumps({"schema_version": 1, "systems": [
            {"name": "paper sample", "data": "sample", "enabled": True}]}))
        out = subprocess.run([sys.executable, "-m", "app.cli", "run", "--config", str(config), "--data-dir",
                              str(tmp_path / "data"), "--metrics-port", str(server.server_port)], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    finally:
        server.shutdown()
    assert out.returncode == 2, out.stderr
    assert f"--metrics-port: cannot serve on 127.0.0.1:{server.server_port}" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
