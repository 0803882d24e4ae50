"""The ``griddesk`` command line: backtest, optimize, indicators, fetch, sample, run, status."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

SAMPLE = "sample"


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments give one line that names the argument, not a usage dump."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _sample_path() -> Path:
    from engine.sample import SAMPLE_PATH

    return SAMPLE_PATH


def _load(args) -> tuple[object, float]:
    from engine.data import load_candles

    path = _sample_path() if args.data == SAMPLE else Path(args.data)
    t = time.perf_counter()
    candles = load_candles(path, timeframe=args.timeframe, gaps=args.gaps)
    return candles, time.perf_counter() - t


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="candle file (CSV, freqtrade JSON, Parquet) or 'sample'")
    p.add_argument("--timeframe", help="expected timeframe, checked against the data (e.g. 5m)")
    p.add_argument("--gaps", choices=("keep", "refuse", "fill"), default="keep",
                   help="missing bars: keep (report them), refuse, or fill with the previous close")


def _float(name):
    def parse(text):
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    parse.__name__ = name
    return parse


def _number(name, lo: float, hi: float, *, integer: bool = False, lo_open: bool = False):
    """An argument that is a number from ``lo`` to ``hi`` (above ``lo`` with ``lo_open``)."""
    def parse(text):
        try:
            v = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole number' if integer else 'number'}") from None
        if not (lo < v if lo_open else lo <= v) or not v <= hi:
            def fmt(x):
                return f"{x:,.0f}" if float(x).is_integer() else f"{x:g}"
            where = f"{'above' if lo_open else 'from'} {fmt(lo)} to {fmt(hi)}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: {where}")
        return v
    parse.__name__ = name
    return parse


def _out_file(text: str) -> Path:
    """A file to write: not a folder, in a folder that exists (checked before any work)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: is a folder; give a file name")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: its folder {path.parent} does not exist")
    return path


def _window_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size: {text!r} is not WIDTHxHEIGHT (e.g. 1280x800)") from None
    if not (640 <= w <= 7680 and 480 <= h <= 4320):
        raise argparse.ArgumentTypeError(f"--size: {w}x{h} is outside 640x480 .. 7680x4320")
    return w, h


def _out_dir(text: str) -> Path:
    """A folder to write into (made if missing): not a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: is a file; give a folder")
    return path


def _away_arguments(parser) -> None:
    parser.add_argument("--metrics-port", type=_number("metrics_port", 0, 65_535, integer=True), default=None,
                        help="serve Prometheus metrics (equity, PnL, fills, orders, latency per system) on this "
                             "port at /metrics (0: a free one, printed)")
    parser.add_argument("--metrics-addr", default="127.0.0.1",
                        help="the address the metrics are served on (default 127.0.0.1: this machine only)")
    parser.add_argument("--telegram-chat", help="send notifications to this Telegram chat (its id) and take "
                                                "/status, /profit and /kill from it; the bot's token: griddesk "
                                                "telegram-token, or GRIDDESK_TELEGRAM_TOKEN")
    parser.add_argument("--telegram-warn", type=_number("telegram_warn", 0, 1, lo_open=True), default=0.05,
                        help="warn when a position's liquidation price is within this share of the price "
                             "(default 0.05)")
    parser.add_argument("--telegram-url", default="", help="the Bot API's base URL (default: Telegram's)")


def _telegram(args):
    """(token, chat, base URL, warn) of --telegram-chat, None without it; ValueError when no token."""
    if not args.telegram_chat:
        return None
    from app.secrets import TELEGRAM_TOKEN, load_secret

    token = load_secret(TELEGRAM_TOKEN)
    if not token:
        raise ValueError("--telegram-chat: no bot token: store it with `griddesk telegram-token` (OS keyring) or "
                         "set GRIDDESK_TELEGRAM_TOKEN")
    return token, args.telegram_chat, args.telegram_url, args.telegram_warn


def _headless_arguments(parser) -> None:
    parser.add_argument("--config", type=Path, default=Path("cryptos.json"), help="the systems (cryptos.json)")
    parser.add_argument("--exchange-url", help="send every exchange request to this base URL")
    parser.add_argument("--data-dir", type=Path, help="state, journal and logs folder (default: the app's)")
    parser.add_argument("--poll", type=_number("poll", 0, 3600, lo_open=True), default=1.0,
                        help="seconds between polls of the exchange")
    parser.add_argument("--from", dest="replay_from", default="",
                        help="paper systems on recorded candles: trade from the candle at this date (the same run "
                             "every time; default: after 200 candles of history)")


def build_parser() -> argparse.ArgumentParser:
    from engine.strategies.registry import STRATEGIES
    from engine.stress import STRESSED

    ap = OneLineParser(prog="griddesk", description="GridDesk: crypto grid trading workstation")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    bt = sub.add_parser("backtest", help="backtest a strategy on candles and print a report")
    _add_data_args(bt)
    bt.add_argument("--strategy", choices=tuple(STRATEGIES), help="default: the --params file's, else spot-grid")
    bt.add_argument("--params", type=Path, help="JSON file of strategy settings (flags override it)")
    bt.add_argument("--funding", type=Path, help="funding-rate CSV (time,funding_rate) for perpetual strategies")
    bt.add_argument("--risk", action="store_true",
                    help="the perpetual grids: apply the runtime's risk gate (its volatility breaker and exposure "
                         "limits, as a paper system alone in its account meets them), with the limits the systems of "
                         "--data-dir run with: the backtest a paper system of these settings makes")
    bt.add_argument("--data-dir", type=Path, help="with --risk: whose risk limits (default: the app's)")
    _add_setting_args(bt)
    bt.add_argument("--json", type=_out_file, help="write every metric and the timings to this file")
    bt.add_argument("--trades", type=_out_file, help="write the trades to this CSV file")

    ind = sub.add_parser("indicators", help="compute the indicator set and write it as CSV")
    _add_data_args(ind)
    ind.add_argument("--out", type=_out_file, required=True)

    fe = sub.add_parser("fetch", help="download candles through ccxt into the cache (and a file)")
    fe.add_argument("--exchange", default="binance")
    fe.add_argument("--symbol", required=True)
    fe.add_argument("--timeframe", required=True)
    fe.add_argument("--since", required=True, help="start, ISO 8601 (UTC) or epoch ms")
    fe.add_argument("--until", help="end, ISO 8601 (UTC) or epoch ms (default: now)")
    fe.add_argument("--exchange-url", help="send every request to this base URL (testnet, proxy, simulator)")
    fe.add_argument("--cache-dir", type=Path)
    fe.add_argument("--out", type=_out_file, help="also write the candles to this CSV or Parquet file")

    sub.add_parser("warmup", help="compile the engine's kernels into the cache (the first run then loads them)")

    sm = sub.add_parser("sample", help="write the bundled sample candles again from their seed")
    sm.add_argument("--out", type=_out_file)
    sm.add_argument("--seed", type=int, default=7)

    ru = sub.add_parser("run", help="run trading systems without the GUI until Ctrl-C or SIGTERM")
    _headless_arguments(ru)
    ru.add_argument("--system", action="append", help="a system to run (repeat; default: the enabled ones)")
    _away_arguments(ru)

    se = sub.add_parser("serve", help="run trading systems with the control API (start, stop, kill switch, cancel "
                                      "all, orders, fills, equity, logs over HTTP) until Ctrl-C or SIGTERM")
    _headless_arguments(se)
    se.add_argument("--port", type=_number("port", 0, 65_535, integer=True), default=8765,
                    help="the control API's port (default 8765; 0: a free one, printed)")
    se.add_argument("--addr", default="127.0.0.1",
                    help="the address the control API listens on (default 127.0.0.1: this machine only)")
    se.add_argument("--new-token", action="store_true",
                    help="make a new token for the control API (the old one stops working) and show it once")
    _away_arguments(se)

    gu = sub.add_parser("gui", help="open the desktop app (the default with no command)")
    gu.add_argument("--data-dir", type=Path, help="systems, state, journal and logs (default: the app's)")
    gu.add_argument("--exchange-url", help="send every exchange request to this base URL (testnet, proxy, simulator)")
    _away_arguments(gu)
    gu.add_argument("--api-port", type=_number("api_port", 0, 65_535, integer=True), default=None,
                    help="serve the control API on this port too (0: a free one, printed; its token as "
                         "griddesk serve has it)")
    gu.add_argument("--api-addr", default="127.0.0.1",
                    help="the address the control API listens on (default 127.0.0.1: this machine only)")
    gu.add_argument("--quit-after", type=_number("quit_after", 0, 86_400, lo_open=True), help=argparse.SUPPRESS)
    gu.add_argument("--screenshot", type=Path, help=argparse.SUPPRESS)

    sh = sub.add_parser("screenshot", help="render the app on each tab to PNG files (offscreen works)")
    sh.add_argument("--out", type=_out_dir, required=True, help="folder for the PNG files")
    sh.add_argument("--data-dir", type=Path, help="show this folder's paper systems on recorded candles (a copy: "
                    "the folder is not touched; default: the bundled ones)")
    sh.add_argument("--warmup", type=_number("warmup", 0, 600), default=4.0,
                    help="seconds the sample system trades first")
    sh.add_argument("--size", type=_window_size, default=(1280, 800), metavar="WxH",
                    help="window size in pixels (default 1280x800)")

    op = sub.add_parser("optimize", help="walk-forward parameter search (Optuna), resumable and distributable")
    op.add_argument("--strategy", default="spot-grid", choices=tuple(STRATEGIES))
    op.add_argument("--data", nargs="+", required=True, help="candle files, one per market (or 'sample')")
    op.add_argument("--resample", help="make longer bars first, e.g. 15m from 5m files")
    op.add_argument("--funding", type=Path, nargs="+", help="funding CSV: one for all data sets or one per data set")
    op.add_argument("--params", type=Path, help="base settings (JSON); the search varies only the searched names")
    op.add_argument("--search", action="append", default=[], metavar="NAME=RANGE",
                    help="search NAME over RANGE instead of the strategy's default space: 10..60, 0.05..0.4, "
                         "0.001..0.1:log, or a|b|c (repeat; 'NAME=' drops it)")
    op.add_argument("--only-search", action="store_true", help="search only the --search names")
    op.add_argument("--trials", type=_number("trials", 1, 1_000_000, integer=True), default=100,
                    help="finished trials the study should have (all workers)")
    op.add_argument("--windows", type=_number("windows", 1, 100, integer=True), default=3, help="walk-forward windows")
    op.add_argument("--train-frac", type=_float("train_frac"), default=0.7, help="training share of a window")
    op.add_argument("--tail", type=_float("tail"), default=0.15, help="held-out share at the end of each data set")
    op.add_argument("--storage", help="Optuna storage URL (default: SQLite in the data folder)")
    op.add_argument("--data-dir", type=Path, help="the data folder whose optuna.db is the default storage "
                                                  "(default: the app's)")
    op.add_argument("--study", help="study name (default: from the strategy and settings); same name joins or resumes")
    op.add_argument("--seed", type=int, help="sampler seed: the same seed gives the same fresh study")
    op.add_argument("--timeout", type=_number("timeout", 0, 1e9, lo_open=True),
                    help="stop adding trials after this many seconds")
    op.add_argument("--batch", type=_number("batch", 1, 4096, integer=True),
                    help="trials asked at once (default: 16 for spot grids, else the cores)")
    op.add_argument("--out", type=_out_file, help="best settings JSON (default: best-<study>.json)")
    op.add_argument("--table", type=_out_file, help="write every trial to this CSV file")
    for name, default in (("dd_floor", 0.02), ("max_fills_per_day", 50.0), ("overtrade_weight", 1.0),
                          ("stability_weight", 0.5)):
        op.add_argument("--" + name.replace("_", "-"), type=_float(name), default=default,
                        help=f"fitness weight (default {default})")

    sr = sub.add_parser("stress", help="stress-test a spot grid: its return, drawdown, time outside its range and "
                                       "underwater over many paths resampled from the candles (and a crash, a "
                                       "trend, a range)")
    _add_data_args(sr)
    sr.add_argument("--strategy", choices=STRESSED, default="spot-grid", help="the grid (default spot-grid)")
    sr.add_argument("--params", type=Path, help="JSON file of the grid's settings (flags override it)")
    sr.add_argument("--paths", type=_number("paths", 1, 100_000, integer=True), default=1000,
                    help="paths per scenario (default 1000)")
    sr.add_argument("--block", type=_number("block", 1, 10_000_000, integer=True), default=288,
                    help="bars a resampled block keeps together (default 288: a day of 5m bars)")
    sr.add_argument("--seed", type=int, default=1, help="the same seed, the same paths")
    sr.add_argument("--scenario", action="append", choices=("bootstrap", "crash", "trend", "range"),
                    help="bootstrap (the history's own drift), crash (ends at half), trend (ends at double), range "
                         "(ends where it began); repeat; default: all four")
    sr.add_argument("--json", type=_out_file, help="write each scenario's figures to this file")
    _add_setting_args(sr)

    sub.add_parser("telegram-token", help="store the Telegram bot's token in the OS keyring (read from the terminal "
                                          "or standard input)")

    st = sub.add_parser("status", help="print each system's state, open orders and PnL from the files")
    st.add_argument("--data-dir", type=Path, help="state folder (default: the app's)")

    pa = sub.add_parser("parity", help="a paper or live system's fills beside the backtest of its settings on the "
                                       "same candles, every difference named with its money (reads only)")
    pa.add_argument("system", help="the system's name in the config")
    pa.add_argument("--config", type=Path, default=Path("cryptos.json"), help="the systems (cryptos.json)")
    pa.add_argument("--data-dir", type=Path, help="state, journal and logs folder (default: the app's)")
    pa.add_argument("--exchange-url", help="read the exchange's candles from this base URL")
    pa.add_argument("--limit", type=int, default=50, help="differences listed one by one (default 50)")
    return ap




def _add_setting_args(parser: argparse.ArgumentParser) -> None:
    """One option per setting of every strategy's config, typed from its default."""
    import dataclasses

    from engine.strategies.registry import CHOICES, CONFIGS
    from engine.strategies.settings_text import help_text

    def _help(name: str) -> str:
        return help_text(name).replace("%", "%%") or None  # (argparse formats its help with %)

    seen: set[str] = set()
    for cls in CONFIGS.values():
        for f in dataclasses.fields(cls):
            if f.name in seen:
                continue
            seen.add(f.name)
            flag = "--" + f.name.replace("_", "-")
            default = f.default
            if f.name in CHOICES:
                parser.add_argument(flag, choices=CHOICES[f.name], help=_help(f.name))
            elif isinstance(default, bool) and not default:  # e.g. --no-short: a plain flag
                parser.add_argument(flag, action="store_const", const=True, default=None, help=_help(f.name))
            elif isinstance(default, bool):  # on by default: --prune-offset / --no-prune-offset
                parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=_help(f.name))
            elif isinstance(default, int):
                parser.add_argument(flag, type=int, help=_help(f.name))
            elif isinstance(default, str):
                parser.add_argument(flag, help=_help(f.name))
            else:
                parser.add_argument(flag, type=_float(f.name), help=_help(f.name))


def _strategy_config(args):
    import dataclasses

    from engine.strategies.registry import CONFIGS

    cls = CONFIGS[args.strategy]
    from engine.strategies.registry import read_settings

    data = read_settings(args.params, args.strategy)[1] if args.params else {}
    own = {f.name for f in dataclasses.fields(cls)}
    other = {f.name for c in CONFIGS.values() for f in dataclasses.fields(c)} - own
    for name in sorted(own | other):
        value = getattr(args, name, None)
        if value is None:
            continue
        if name in other:
            from engine.strategies.errors import ParamError

            raise ParamError(name, f"is not a setting of {args.strategy}")
        data[name] = value
    return cls.from_dict(data)


def cmd_warmup(args) -> int:
    from engine.warmup import warm

    seconds = warm(lambda line: print(line, flush=True))
    print(f"griddesk warmup: the engine is ready ({seconds:.1f} s)")
    return 0


def cmd_backtest(args) -> int:
    from engine.data import load_funding
    from engine.report import backtest_text
    from engine.strategies.registry import check_funding, read_settings, run_backtest, under_each_fill_model

    if args.strategy is None:
        args.strategy = (read_settings(args.params)[0] if args.params else None) or "spot-grid"
    check_funding(args.strategy, bool(args.funding))
    candles, load_s = _load(args)
    cfg = _strategy_config(args)
    funding = load_funding(args.funding) if args.funding else None
    risk = where = None
    if args.risk:
        from engine.runtime.runner import default_data_dir, saved_limits

        risk, where = saved_limits(args.data_dir or default_data_dir())
    result = run_backtest(args.strategy, candles, cfg, funding, risk=risk)
    models = under_each_fill_model(args.strategy, candles, cfg, funding, done=None if risk else result)
    print(backtest_text(result, candles, load_s, funding, where, models))
    if args.json:
        out = result.to_json_dict()
        out["timings"] = {"load": load_s, **result.timings}
        args.json.write_text(json.dumps(out, indent=2, default=float))
    if args.trades:
        result.trades_frame().to_csv(args.trades, index=False)
    return 0


def _search_setup(args):
    from engine.optimize.study import Setup
    from engine.optimize.walkforward import Fitness, open_data_sets
    from engine.strategies.registry import SPACES, check_funding, read_settings
    from engine.strategies.space import parse_range

    check_funding(args.strategy, bool(args.funding))
    space = {} if args.only_search else dict(SPACES[args.strategy])
    for item in args.search:
        name, sep, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep:
            raise ValueError(f"--search: {item!r} is not NAME=RANGE")
        if text.strip():
            space[name] = parse_range(name, text, space.get(name))
        else:
            space.pop(name, None)
    if not space:
        raise ValueError("--search: nothing to search")
    data = open_data_sets(args.data, resample=args.resample or "", funding=[str(f) for f in args.funding or ()])
    base = read_settings(args.params, args.strategy)[1] if args.params else {}
    fitness = Fitness(args.dd_floor, args.max_fills_per_day, args.overtrade_weight, args.stability_weight)
    return Setup(args.strategy, data, base, space, args.windows, args.train_frac, args.tail, fitness)


def _bar(p) -> str:
    width = 24
    full = int(width * min(p.done / max(p.target, 1), 1.0))
    eta = "--:--" if p.eta_s == float("inf") else time.strftime("%H:%M:%S", time.gmtime(p.eta_s))
    return f"[{'#' * full}{'.' * (width - full)}] {p.done}/{p.target} trials  best {p.best:.4g}  ETA {eta}"


def cmd_optimize(args) -> int:
    import signal
    import threading

    from engine.optimize.study import Search, default_storage
    from engine.report import search_text

    setup = _search_setup(args)
    search = Search(setup, storage=args.storage or default_storage(args.data_dir), study=args.study, seed=args.seed,
                    batch=args.batch)
    print(f"study {search.study_name} in {search.storage_url}", file=sys.stderr)
    for d in setup.data:
        w = d.split.windows
        print(f"  {d.name}: {len(d.candles):,} bars of {d.candles.timeframe}; {len(w)} windows "
              f"(train {w[0].train[1] - w[0].train[0]:,} / test {w[0].test[1] - w[0].test[0]:,} bars), "
              f"held-out tail {d.period(*d.split.tail)}", file=sys.stderr)
    stop = threading.Event()

    def on_sigint(*_):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping after the current part of the data (Ctrl-C again to quit at once)", file=sys.stderr)

    old = signal.signal(signal.SIGINT, on_sigint)
    tty = sys.stderr.isatty()
    try:
        try:
            search.run(args.trials, timeout=args.timeout, stop=stop,
                       progress=lambda p: print(("\r" if tty else "") + _bar(p), end="" if tty else "\n",
                                                file=sys.stderr, flush=True))
        finally:
            signal.signal(signal.SIGINT, old)
        if tty:
            print(file=sys.stderr)
        table = search.table()
        if args.table:
            table.to_csv(args.table, index=False)
        if not (table["state"] == "COMPLETE").any():
            print("no complete trial yet", file=sys.stderr)
            return 130 if stop.is_set() else 1
        best = search.best_json()
        out = args.out or Path(f"best-{search.study_name}.json")
        hold = search.holdout()  # (one more backtest: the search's workers are still wanted)
        best["optimized"]["holdout"] = hold["score"]
        out.write_text(json.dumps(best, indent=2))
        print(search_text(search, best, hold, table, out))
        return 130 if stop.is_set() else 0
    finally:
        search.close()


def cmd_indicators(args) -> int:
    from engine.indicators import indicators_frame

    candles, _ = _load(args)
    frame = indicators_frame(candles)
    frame.to_csv(args.out, index=False, float_format="%.10g")
    print(f"wrote {len(frame):,} rows x {len(frame.columns) - 1} indicators to {args.out}")
    return 0


def cmd_fetch(args) -> int:
    import asyncio

    from engine.fetch import fetch_candles, parse_when

    def progress(done: int, total: int) -> None:
        pct = 100.0 * done / total if total else 100.0
        print(f"\r  {done:,}/{total:,} bars ({pct:.0f}%)", end="", file=sys.stderr, flush=True)

    candles = asyncio.run(fetch_candles(
        args.exchange, args.symbol, args.timeframe, parse_when(args.since),
        parse_when(args.until) if args.until else None, progress=progress,
        cache_dir=args.cache_dir, base_url=args.exchange_url,
    ))
    print(file=sys.stderr)
    print(f"{len(candles):,} bars of {args.symbol} {args.timeframe} from {args.exchange}"
          + (f", {len(candles.gaps)} gap(s)" if candles.gaps else ""))
    if args.out:
        frame = candles.to_frame()
        if args.out.suffix.lower() in (".parquet", ".pq"):
            frame.to_parquet(args.out, index=False)
        else:
            frame.to_csv(args.out, index=False)
        print(f"wrote {args.out}")
    return 0


def cmd_sample(args) -> int:
    from engine import sample

    return sample.main([*(["--out", str(args.out)] if args.out else []), "--seed", str(args.seed)]) or 0


def cmd_run(args) -> int:
    return _headless(args, "run")


def cmd_serve(args) -> int:
    return _headless(args, "serve")


def _headless(args, command: str) -> int:
    """``griddesk run``: the systems until Ctrl-C, SIGTERM or their end. ``griddesk serve``:
    the same with the control API, until Ctrl-C or SIGTERM (the systems come and go by it)."""
    import asyncio
    import signal

    from engine.runtime.config import load_systems
    from engine.runtime.runner import Runner, default_data_dir

    systems, problem = load_systems(args.config)
    if problem:
        print(f"griddesk {command}: warning: {problem}", file=sys.stderr)
    if getattr(args, "system", None):
        names = {s.name for s in systems}
        for n in args.system:
            if n not in names:
                raise ValueError(f"--system: {args.config} has no system {n!r} (it has {', '.join(sorted(names))})")
        systems = [s for s in systems if s.name in args.system]
    else:
        systems = [s for s in systems if s.enabled]
        if not systems and command == "run":
            raise ValueError(f"--system: no system in {args.config} is enabled; name one with --system")
    telegram = _telegram(args)
    from engine.store import FolderLock

    data_dir = args.data_dir or default_data_dir()
    lock = FolderLock(data_dir, f"griddesk {command}").acquire()  # before anything is read for trading
    token = ""
    if command == "serve":  # (after the lock: a token made is shown, not lost to a busy folder)
        from app.secrets import SecretsError, api_token

        try:
            token, new = api_token(rotate=args.new_token)
        except SecretsError as exc:  # (no keyring: one line, like any other cause of the user's)
            lock.release()
            raise ValueError(str(exc)) from None
    runner = Runner(systems, data_dir, exchange_url=args.exchange_url, poll_seconds=args.poll,
                    replay_from=args.replay_from)

    async def main_loop():
        stop, end = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"griddesk {command}: {len(systems)} system(s) on, data in {data_dir}; Ctrl-C stops (orders stay "
              "resting)", flush=True)
        if args.metrics_port is not None:
            from engine.runtime.exporter import serve

            server = serve(lambda: runner.status, args.metrics_port, args.metrics_addr)
            print(f"griddesk {command}: metrics at http://{args.metrics_addr}:{server.server_port}/metrics",
                  flush=True)
        from engine.runtime.desk import Desk

        desk = Desk(args.config, runner)
        api = notifier = None
        told = asyncio.Event()
        if telegram is not None:
            from engine.runtime.notify import Telegram

            bot_token, chat, url, warn = telegram
            notifier = asyncio.ensure_future(Telegram(desk, bot_token, chat, base_url=url, liq_warn=warn).run(told))
            print(f"griddesk {command}: notifications to Telegram chat {chat}", flush=True)
        if command == "serve":
            from engine.runtime.api import ControlServer

            api = ControlServer(desk, loop, token, args.port, args.addr)
            print(f"griddesk serve: control API at {api.url} (its OpenAPI page at {api.url}/docs)", flush=True)
            if api.warning:
                print(f"griddesk serve: warning: {api.warning}", file=sys.stderr, flush=True)
            print(f"griddesk serve: token (shown this once; kept in the OS keyring, --new-token makes another): "
                  f"{token}" if new else "griddesk serve: token: the one shown when it was made (kept in the OS "
                  "keyring; --new-token makes another)", flush=True)
        running = asyncio.ensure_future(runner.run(end, until_stopped=api is not None))
        await asyncio.wait([running, asyncio.ensure_future(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
        if api is not None:  # no request comes in while the systems stop
            await asyncio.to_thread(api.shutdown)
        end.set()
        await running
        if notifier is not None:  # (after the systems: their last words are sent)
            told.set()
            await notifier

    try:
        asyncio.run(main_loop())
    finally:
        lock.release()
    for name, err in runner.errors.items():
        print(f"griddesk {command}: {name}: {err}", file=sys.stderr)
    print(f"griddesk {command}: stopped; resting orders left in place", flush=True)
    return 1 if runner.errors else 0


def cmd_stress(args) -> int:
    import time

    from engine.stress import SCENARIOS, stress

    candles, _ = _load(args)
    cfg = _strategy_config(args)
    t = time.perf_counter()
    results = stress(candles, cfg, paths=args.paths, block=args.block, seed=args.seed,
                     scenarios=tuple(args.scenario or SCENARIOS))
    seconds = time.perf_counter() - t
    rows = [r.summary() for r in results]
    print(f"GridDesk stress test: {args.strategy} on {candles.source}, {len(candles):,} bars of {candles.timeframe}; "
          f"{args.paths:,} paths a scenario in blocks of {args.block:,} bars (seed {args.seed}), {seconds:.1f} s")
    print(f"  {'scenario':<10} {'return p5':>10} {'p50':>8} {'p95':>8}  {'max DD p50':>10} {'p95':>7}  "
          f"{'leaves range':>12} {'idle':>6} {'underwater':>10}")
    for r in rows:
        print(f"  {r['scenario']:<10} {r['return_p5']:>+10.2%} {r['return_p50']:>+8.2%} {r['return_p95']:>+8.2%}  "
              f"{r['drawdown_p50']:>10.2%} {r['drawdown_p95']:>7.2%}  {r['left_range']:>12.1%} {r['idle']:>6.1%} "
              f"{r['underwater']:>10.1%}")
    print("  (leaves range: share of paths whose price went beyond the grid as first laid; idle: share of the time "
          "the close was outside it; underwater: share of the time the equity was below the capital)")
    if args.json:
        args.json.write_text(json.dumps({"seconds": seconds, "scenarios": rows}, indent=2))
    return 0


def cmd_telegram_token(args) -> int:
    import getpass

    from app.secrets import TELEGRAM_TOKEN, SecretsError, store_secret

    token = getpass.getpass("Telegram bot token (from @BotFather): ") if sys.stdin.isatty() else sys.stdin.readline()
    try:
        store_secret(TELEGRAM_TOKEN, token)
    except SecretsError as exc:
        raise ValueError(str(exc)) from None
    print("griddesk telegram-token: stored in the OS keyring")
    return 0


def cmd_status(args) -> int:
    from engine.data import utc_text
    from engine.runtime.runner import default_data_dir
    from engine.store import StoreError, read_json

    data_dir = args.data_dir or default_data_dir()
    folder = data_dir / "state" / "systems"
    files = sorted(folder.glob("*.json")) if folder.exists() else []
    if not files:
        print(f"no system has run yet (no state in {folder})")
        return 0
    # (only reads: a corrupt file is named, not kept aside; one bad file does not hide the others)
    try:
        bot = read_json(data_dir / "state" / "bot_state.json", default={}, keep=False).data
    except StoreError as exc:
        print(f"warning: {exc}")
        bot = {}
    if bot.get("kill_all"):
        print("KILL SWITCH ON: no new orders")
    systems = bot.get("systems") if isinstance(bot.get("systems"), dict) else {}
    bad = 0
    for path in files:
        try:
            loaded = read_json(path, keep=False)
            _print_state(loaded.data, systems, utc_text)
        except StoreError as exc:
            print(f"{path.name}: unreadable: {exc}")
            bad += 1
            continue
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            why = f"{exc.args[0]}: missing" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
            print(f"{path}: not a system state GridDesk can read ({why}); left untouched")
            bad += 1
            continue
        if loaded.problem:
            print(f"  warning: {loaded.problem}")
    return 2 if bad else 0


def cmd_parity(args) -> int:
    import asyncio

    from engine.parity import parity, system_candles, system_funding
    from engine.runtime.config import load_systems
    from engine.runtime.runner import default_data_dir

    systems, problem = load_systems(args.config)
    if problem:
        print(f"griddesk parity: warning: {problem}", file=sys.stderr)
    cfg = next((s for s in systems if s.name == args.system), None)
    if cfg is None:
        raise ValueError(f"{args.config} has no system {args.system!r} (it has {', '.join(s.name for s in systems)})")
    data_dir = args.data_dir or default_data_dir()
    candles, where = asyncio.run(system_candles(cfg, data_dir, base_url=args.exchange_url))
    funding = asyncio.run(system_funding(cfg, data_dir, base_url=args.exchange_url))
    print(parity(cfg, data_dir, candles, funding, candles_from=where).text(args.limit))
    return 0


def _print_state(d: dict, systems: dict, utc_text) -> None:
    s = d.get("summary") or {}
    when = utc_text(d["last_time"]) if d.get("last_time", -1) >= 0 else "-"
    status = (systems.get(d.get("system"), {}) or {}).get("status", "OFF")
    feed = f", candles by {s['feed']}" if s.get("feed") else ""
    print(f"{d['system']}: {status}, last candle {when}{feed}, price {s.get('price', 0):,.2f}")
    if s.get("equity") is not None:
        print(f"  equity {s['equity']:,.2f}  cash {s['cash']:,.2f}  position {s['position']:.8g}  "
              f"grid profit {s['grid_profit']:,.2f}  floating {s['floating']:,.2f}  fees {s['fees']:,.2f}  "
              f"fills {s['fills']}")
    orders = d.get("orders", [])
    print(f"  {len(orders)} open order(s)")
    for o in sorted(orders, key=lambda o: -o["price"]):
        kind = o.get("role", "").replace("_", " ").lower()  # "take profit long", "stop1 short"...
        print(f"    {o['side']:4} {o['qty']:.8g} @ {o['price']:,.2f}  {o['state']:16} {kind:18} {o['cid']}")


def cmd_gui(args) -> int:
    from app.gui import main as gui_main

    return gui_main(args.data_dir, quit_after=args.quit_after, screenshot=args.screenshot,
                    exchange_url=args.exchange_url,
                    metrics=None if args.metrics_port is None else (args.metrics_port, args.metrics_addr),
                    api=None if args.api_port is None else (args.api_port, args.api_addr), telegram=_telegram(args))


def cmd_screenshot(args) -> int:
    from app.gui import screenshots

    for path in screenshots(args.out, args.data_dir, warmup=args.warmup, size=args.size):
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv or ["gui"])
    from engine.data import DataError
    from engine.store import StoreError
    from engine.strategies.errors import ParamError

    handlers = {"warmup": cmd_warmup,
                "backtest": cmd_backtest, "indicators": cmd_indicators, "fetch": cmd_fetch, "sample": cmd_sample,
                "run": cmd_run, "serve": cmd_serve, "telegram-token": cmd_telegram_token, "stress": cmd_stress,
                "status": cmd_status, "parity": cmd_parity, "gui": cmd_gui, "screenshot": cmd_screenshot,
                "optimize": cmd_optimize}
    try:
        return handlers[args.command](args)
    except BrokenPipeError:  # (the output piped into a reader that stopped: `griddesk status | head`)
        sys.stderr.close()
        return 0
    except (DataError, ParamError, StoreError, ValueError, OSError) as exc:
        # what a user can cause (a bad file, setting or path, a full or read-only disk): one
        # line, exit 2; anything else is a bug and keeps its traceback. --debug: always.
        if args.debug:
            raise
        if isinstance(exc, OSError) and not isinstance(exc, DataError | StoreError):
            where = f"{exc.filename}: " if exc.filename else ""
            print(f"griddesk {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        else:
            print(f"griddesk {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"griddesk {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
