"""Load, validate and gap-check OHLCV candles and funding rates.

Every loader returns a :class:`Candles` whose arrays are contiguous, writable float64
(int64 for time, epoch milliseconds UTC), so numba compiles one signature for all of them.
Bad input raises :class:`DataError` naming the file and the row; gaps are reported, never
silently filled: the caller picks ``gaps="keep"`` (report only), ``"refuse"`` or ``"fill"``
(carry the previous close as zero-volume bars, flagged in ``Candles.filled``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas is imported where text is parsed: a Parquet backtest runs without it
    import pandas as pd

COLUMNS = ("open", "high", "low", "close", "volume")
TIME_ALIASES = ("time", "timestamp", "date", "datetime", "open_time", "opentime")
GAP_POLICIES = ("keep", "refuse", "fill")

TIMEFRAMES_MS = {
    "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
    "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000,
    "8h": 28_800_000, "12h": 43_200_000, "1d": 86_400_000, "3d": 259_200_000,
    "1w": 604_800_000,
}


class DataError(ValueError):
    """Bad candle or funding data; the message names the file and, where it can, the row."""


class GapError(DataError):
    """The data has missing bars and the caller asked to refuse gaps."""

    def __init__(self, message: str, gaps: list[Gap]):
        super().__init__(message)
        self.gaps = gaps


@dataclass(frozen=True)
class Gap:
    """Missing bars: ``missing`` bars starting at ``start`` (epoch ms), after data row ``row``."""

    start: int
    missing: int
    row: int

    def describe(self, timeframe_ms: int) -> str:
        span = format_duration(self.missing * timeframe_ms)
        return f"{self.missing} bar(s) missing from {utc_text(self.start)} UTC ({span})"


@dataclass
class Candles:
    """OHLCV arrays of one market at one timeframe. ``time`` is the bar open, epoch ms UTC."""

    time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    timeframe_ms: int
    source: str = ""
    gaps: list[Gap] = field(default_factory=list)
    filled: np.ndarray | None = None  # True where a bar was carried over a gap
    symbol: str = ""  # the market, e.g. "BTC/USDT", where the file's name says it ("" when not)

    def __post_init__(self) -> None:
        # Contiguous arrays, whatever they were cut from (a column of a 2-D array is strided):
        # numba compiles a kernel once per array layout, and a strided close cost the adaptive
        # grid's loop a second compilation of 30 s in the warm-up. (A no-op for contiguous ones.)
        for name in ("time", "open", "high", "low", "close", "volume"):
            setattr(self, name, np.ascontiguousarray(getattr(self, name)))

    def __len__(self) -> int:
        return len(self.time)

    @property
    def timeframe(self) -> str:
        return timeframe_name(self.timeframe_ms)

    @property
    def missing_bars(self) -> int:
        return sum(g.missing for g in self.gaps)

    def price_step(self) -> float:
        """The price step the data is quoted in (0.01 for prices in cents), read from the prices'
        decimals up to 8 (a satoshi); 0 for prices with more."""
        sample = np.concatenate([a[:: max(1, len(a) // 2000)] for a in (self.open, self.low, self.high)])
        for d in range(9):
            scaled = sample * 10.0 ** d
            if np.all(np.abs(scaled - np.round(scaled)) <= 1e-9 * np.maximum(1.0, np.abs(scaled))):
                return 10.0 ** -d
        return 0.0

    def slice(self, start: int, stop: int) -> Candles:
        """Bars ``start:stop`` (the gap list keeps the gaps inside that span)."""
        t = self.time[start:stop]
        lo, hi = (t[0], t[-1]) if len(t) else (0, -1)
        return replace(
            self,
            time=t.copy(), open=self.open[start:stop].copy(), high=self.high[start:stop].copy(),
            low=self.low[start:stop].copy(), close=self.close[start:stop].copy(),
            volume=self.volume[start:stop].copy(),
            gaps=[g for g in self.gaps if lo < g.start < hi],
            filled=None if self.filled is None else self.filled[start:stop].copy(),
        )

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        df = pd.DataFrame({"time": self.time, **{c: getattr(self, c) for c in COLUMNS}})
        if self.filled is not None:
            df["filled"] = self.filled
        return df


def utc_text(ms: int) -> str:
    """Epoch ms as ``YYYY-MM-DD HH:MM`` in UTC."""
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def timeframe_name(ms: int) -> str:
    for name, value in TIMEFRAMES_MS.items():
        if value == ms:
            return name
    return format_duration(ms)


def parse_timeframe(text: str) -> int:
    try:
        return TIMEFRAMES_MS[text]
    except KeyError:
        raise ValueError(f"unknown timeframe {text!r}; use one of {', '.join(TIMEFRAMES_MS)}") from None


def format_duration(ms: int) -> str:
    minutes = ms // 60_000
    if minutes < 60:
        return f"{minutes}m"
    hours, rem = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h" + (f"{rem}m" if rem else "")
    days, hrs = divmod(hours, 24)
    return f"{days}d" + (f"{hrs}h" if hrs else "")


# ---------------------------------------------------------------------------------------------
# Loading


def _readable(path: str | os.PathLike) -> Path:
    """A data file that is there, a file, and readable; else one line naming it."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a data file")
    if not os.access(path, os.R_OK):
        raise DataError(f"{path}: cannot be read (permission denied)")
    return path


_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USD", "BTC", "ETH", "BNB", "EUR")
_SYMBOL_IN_NAME = re.compile(r"^(?P<base>[A-Z0-9]{2,12}?)[_-]?(?P<quote>" + "|".join(_QUOTES) + r")(?:[_.-]|$)")


def symbol_of(path: str | os.PathLike) -> str:
    """The market a candle file's name says, "BASE/QUOTE": Binance's data files
    (BTCUSDT-5m-2021-01.csv), freqtrade's (BTC_USDT-5m.feather, BTC_USDT_USDT-5m-futures.feather);
    "" when the name does not say it. The bundled sample is priced as BTC/USDT."""
    name = Path(path).name
    if name.startswith("SAMPLE-"):
        return "BTC/USDT"
    m = _SYMBOL_IN_NAME.match(name.upper())
    return f"{m['base']}/{m['quote']}" if m else ""


def load_candles(
    path: str | os.PathLike,
    *,
    timeframe: str | None = None,
    gaps: str = "keep",
) -> Candles:
    """Load candles from CSV (any header case), freqtrade JSON or Parquet, validated.

    ``timeframe`` (e.g. "5m") is checked against the one inferred from the data.
    """
    if gaps not in GAP_POLICIES:
        raise ValueError(f"gaps must be one of {GAP_POLICIES}, not {gaps!r}")
    path = _readable(path)
    suffix = "".join(path.suffixes[-2:]).lower()
    kind = ("parquet" if suffix.endswith((".parquet", ".pq")) else
            "feather" if suffix.endswith((".feather", ".arrow", ".ipc")) else _sniff(path))
    if suffix.endswith(".json") or suffix.endswith(".json.gz"):
        frame, line_offset = _read_freqtrade_json(path), 1
    elif kind in ("parquet", "feather"):
        frame, line_offset = _read_arrow(path, kind), None
    elif kind == "binary":
        raise DataError(f"{path}: not a candle file GridDesk reads ({path.suffix or 'no suffix'}, binary): give "
                        "CSV, freqtrade JSON (.json, .json.gz), Parquet or Feather")
    else:
        frame, line_offset = _read_csv(path), 2
    candles = replace(candles_from_frame(frame, str(path), line_offset=line_offset), symbol=symbol_of(path))
    if timeframe is not None:
        wanted = parse_timeframe(timeframe)
        if wanted != candles.timeframe_ms:
            raise DataError(
                f"{path}: timeframe is {candles.timeframe} in the data, not {timeframe} as asked"
            )
    return apply_gap_policy(candles, gaps)


MAX_HEADER = 64 * 1024  # bytes: a first line longer than this is no CSV header


def _check_size(path: Path) -> None:
    """A CSV is read into memory: one with no header line, or larger than half the memory
    free, is refused by name before it is read (not read whole, then a crash)."""
    with open(path, "rb") as fh:
        head = fh.read(MAX_HEADER)
    if len(head) == MAX_HEADER and b"\n" not in head:
        raise DataError(f"{path}: the first {MAX_HEADER // 1024} KiB hold no line break: not a CSV file")
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # (not on this system)
        return
    size = path.stat().st_size
    if size * 2 > free > 0:  # parsed, a CSV takes about its size again in columns
        raise DataError(f"{path}: {size / 2**30:.1f} GiB, more than half the memory free ({free / 2**30:.1f} GiB): "
                        "split it, or convert it to Parquet")


def _read_csv(path: Path, *, naive_times_as_text: bool = False) -> Mapping:
    """A CSV's columns: read by pyarrow's CSV reader (numbers, epoch and ISO 8601 times typed
    in one pass, ~7x faster than pandas on ISO times) when every column comes out whole and
    typed; a column with an empty cell, text among numbers or a row of another width goes
    through pandas as text instead, whose checks name the file, row and column at fault.
    ``naive_times_as_text``: a time without a zone stays text (for the checks that refuse it)."""
    _check_size(path)
    columns = _read_csv_arrow(path, naive_times_as_text)
    if columns is not None:
        return columns
    import pandas as pd

    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None


def _read_csv_arrow(path: Path, naive_times_as_text: bool) -> dict[str, np.ndarray] | None:
    """pyarrow's reading of a CSV, or None when a column needs the checks of the text path."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    try:
        table = pacsv.read_csv(path, read_options=pacsv.ReadOptions(encoding="utf-8"))
    except (pa.ArrowException, UnicodeDecodeError, OSError):
        return None
    names = table.column_names
    if not names or len(set(names)) != len(names) or table.num_rows == 0:
        return None
    for col in table.columns:
        typed = (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
                 or (pa.types.is_timestamp(col.type) and not (naive_times_as_text and col.type.tz is None)))
        if not typed or col.null_count:
            return None
        if pa.types.is_floating(col.type) and not pc.all(pc.is_finite(col)).as_py():
            return None  # (an inf or a NaN: the text path names the value)
    return _arrow_columns(table)


def _read_freqtrade_json(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() == ".gz":
            import gzip

            with gzip.open(path, "rt") as fh:
                rows = json.load(fh)
        else:
            rows = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a list of [time, open, high, low, close, volume] rows")
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) < 6:
            raise DataError(
                f"{path}: row {i + 1}: expected [time, open, high, low, close, volume], got {row!r}"
            )
    import pandas as pd

    frame = pd.DataFrame([r[:6] for r in rows], columns=["time", *COLUMNS], dtype=object)
    return frame.astype(str)


def _sniff(path: Path) -> str:
    """What the file's first bytes say it is: parquet, feather (Arrow IPC, freqtrade's default
    format), gzip, binary (another format), or text."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return "text"  # (the reader names the error)
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"ARROW1"):
        return "feather"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    return "binary" if b"\x00" in head else "text"


def _read_arrow(path: Path, kind: str) -> dict[str, np.ndarray]:
    """A Parquet or Feather file's columns as numpy arrays (numeric and timestamp columns
    without going through pandas)."""

    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            table = pq.ParquetFile(path).read(use_pandas_metadata=False)
        else:
            import pyarrow.feather as pf

            table = pf.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types
        raise DataError(f"{path}: not a readable {kind.title()} file ({exc})") from None
    return _arrow_columns(table)


def _arrow_columns(table) -> dict[str, np.ndarray]:
    """An Arrow table's columns as numpy arrays: numbers as float64 or int64, timestamps as
    datetime64[ms] (a time without a zone is UTC), anything else as text."""
    import pyarrow as pa

    def values(col, kind, dtype) -> np.ndarray:  # a private copy, read from the Arrow buffer
        arr = col.cast(kind).combine_chunks()  # (Arrow's to_numpy would import pandas)
        out = np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr), offset=arr.offset * 8).copy()
        if arr.null_count:
            out = out.astype(np.float64)
            out[np.asarray(arr.is_null().to_pylist())] = np.nan
        return out

    columns: dict[str, np.ndarray] = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            columns[name] = values(col, pa.timestamp("ms", tz="UTC"), np.int64).astype("datetime64[ms]")
        elif pa.types.is_integer(col.type):
            columns[name] = values(col, pa.int64(), np.int64)
        elif pa.types.is_floating(col.type):
            columns[name] = values(col, pa.float64(), np.float64)
        else:
            columns[name] = np.asarray([str(v) for v in col.to_pylist()], dtype=object)
    del table
    pa.default_memory_pool().release_unused()
    return columns


def _find_column(frame: Mapping, names: tuple[str, ...], source: str, what: str) -> str:
    lower = {str(c).strip().lower(): c for c in frame}
    for name in names:
        if name in lower:
            return lower[name]
    raise DataError(
        f"{source}: no {what} column; the header has {', '.join(map(str, frame))} "
        f"(expected time, open, high, low, close, volume in any letter case)"
    )


def _row_label(i: int, line_offset: int | None) -> str:
    return f"row {i + 1}" + (f" (line {i + line_offset})" if line_offset else "")


def candles_from_frame(frame: Mapping, source: str, *, line_offset: int | None = None) -> Candles:
    """Validate columns time/open/high/low/close/volume (any case; a DataFrame or a dict of
    arrays) into Candles."""
    keys = list(frame)
    if not keys or len(frame[keys[0]]) == 0:
        raise DataError(f"{source}: no rows")
    tcol = _find_column(frame, TIME_ALIASES, source, "time")
    values = {}
    for col in COLUMNS:
        name = _find_column(frame, (col,), source, col)
        values[col] = _parse_numbers(frame[name], source, col, line_offset)
    time = _parse_time(frame[tcol], source, line_offset)
    _validate(time, values, source, line_offset)
    tf = infer_timeframe(time, source, line_offset)
    gaps = find_gaps(time, tf)
    return Candles(time=time, timeframe_ms=tf, source=source, gaps=gaps, **values)


def _numeric(col) -> np.ndarray | None:
    """The column as a float64 numpy array when it is numeric already, else None."""
    if isinstance(col, np.ndarray):
        if col.dtype == np.float64 and col.flags.writeable and col.flags.c_contiguous:
            return col  # already a private float64 copy (the Parquet reader makes one)
        return np.array(col, dtype=np.float64) if col.dtype.kind in "iuf" else None
    import pandas as pd

    if pd.api.types.is_numeric_dtype(col.dtype):
        return col.to_numpy(dtype=np.float64, copy=True)
    return None


def _text(col):
    import pandas as pd

    return pd.Series(col).astype(str).str.strip()


def _parse_numbers(col, source: str, name: str, line_offset: int | None) -> np.ndarray:
    out = _numeric(col)
    raw = None
    if out is None:
        import pandas as pd

        raw = _text(col)
        out = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, copy=True)
    bad = np.flatnonzero(~np.isfinite(out))
    if len(bad):
        i = int(bad[0])
        text = "" if raw is None else raw.iloc[i]
        if np.isinf(out[i]):  # "inf", or a number too large for a float (1e400)
            what = f"value {text!r} out of range" if raw is not None and "inf" not in text.lower() else \
                "infinite or out-of-range value"
        elif raw is None or text.lower() in ("nan", "", "null", "none"):
            what = "missing value (NaN)"
        else:
            what = f"unparsable value {text!r}"
        more = f" (and {len(bad) - 1} more rows)" if len(bad) > 1 else ""
        raise DataError(f"{source}: {_row_label(i, line_offset)}: {what} in column {name}{more}")
    return out


def _parse_time(col, source: str, line_offset: int | None, zone_required: bool = False) -> np.ndarray:
    """Epoch s/ms/us/ns or ISO 8601 text (UTC unless it names a zone) to epoch ms. With
    ``zone_required``, text must name its zone (a settlement an hour or three off is money)."""
    if isinstance(col, np.ndarray) and col.dtype.kind == "M":
        return col.astype("datetime64[ms]").astype(np.int64)
    numbers = _numeric(col)
    if numbers is None:
        import pandas as pd

        if pd.api.types.is_datetime64_any_dtype(getattr(col, "dtype", None)):
            return pd.to_datetime(col, utc=True).to_numpy(dtype="datetime64[ms]").astype(np.int64)
        raw = _text(col)
        numbers = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        if np.isnan(numbers).all():  # ISO 8601 text
            if zone_required:
                bare = np.flatnonzero(~raw.astype(str).str.strip().str.contains(r"(?:Z|[+-]\d\d:?\d\d)$").to_numpy())
                if len(bare):
                    i = int(bare[0])
                    raise DataError(f"{source}: {_row_label(i, line_offset)}: time {raw.iloc[i]!r} names no time "
                                    "zone: give funding times in UTC (ending in Z or +00:00) or as epoch ms")
            stamps = pd.to_datetime(raw, utc=True, errors="coerce", format="ISO8601")
            bad = np.flatnonzero(stamps.isna().to_numpy())
            if len(bad):
                i = int(bad[0])
                raise DataError(
                    f"{source}: {_row_label(i, line_offset)}: unparsable time {raw.iloc[i]!r}"
                )
            return stamps.to_numpy(dtype="datetime64[ms]").astype(np.int64)
        bad = np.flatnonzero(np.isnan(numbers))
        if len(bad):
            i = int(bad[0])
            raise DataError(f"{source}: {_row_label(i, line_offset)}: unparsable time {raw.iloc[i]!r}")
    # Epoch numbers: the unit follows from the magnitude (2001..2286 in seconds is 1e9..1e10),
    # one unit for the whole column: a row in another unit is named, not read as another date.
    units = np.searchsorted(np.array([1e11, 1e14, 1e17]), np.abs(numbers), side="right")
    other = np.flatnonzero(units != units[0])
    if len(other):
        i = int(other[0])
        names = ("seconds", "milliseconds", "microseconds", "nanoseconds")
        raise DataError(f"{source}: {_row_label(i, line_offset)}: time {numbers[i]:.0f} is in "
                        f"{names[units[i]]}, the rows before it in {names[units[0]]}: one unit per file")
    scale = (1000.0, 1.0, 1e-3, 1e-6)[int(units[0])]
    return np.round(numbers * scale).astype(np.int64)


def _validate(time: np.ndarray, v: dict, source: str, line_offset: int | None) -> None:
    o, h, l, c = v["open"], v["high"], v["low"], v["close"]
    checks = (
        ((o <= 0) | (h <= 0) | (l <= 0) | (c <= 0), "price <= 0", None),
        (v["volume"] < 0, "negative volume", None),
        (h < np.maximum(o, c), "high {h} is below max(open, close) {oc}", "h"),
        (l > np.minimum(o, c), "low {l} is above min(open, close) {oc}", "l"),
    )
    for mask, message, kind in checks:
        bad = np.flatnonzero(mask)
        if len(bad):
            i = int(bad[0])
            if kind == "h":
                message = message.format(h=h[i], oc=max(o[i], c[i]))
            elif kind == "l":
                message = message.format(l=l[i], oc=min(o[i], c[i]))
            more = f" (and {len(bad) - 1} more rows)" if len(bad) > 1 else ""
            raise DataError(f"{source}: {_row_label(i, line_offset)}: {message}{more}")
    step = np.diff(time)
    bad = np.flatnonzero(step <= 0)
    if len(bad):
        i = int(bad[0]) + 1
        what = "duplicate time" if step[i - 1] == 0 else "time goes backwards"
        raise DataError(f"{source}: {_row_label(i, line_offset)}: {what} ({utc_text(time[i])} UTC)")


def infer_timeframe(time: np.ndarray, source: str = "data", line_offset: int | None = None) -> int:
    """The bar length in ms: the most common step, checked to divide every step."""
    if len(time) < 2:
        raise DataError(f"{source}: at least two bars are needed to know the timeframe")
    step = np.diff(time)
    values, counts = np.unique(step, return_counts=True)
    tf = int(values[np.argmax(counts)])
    bad = np.flatnonzero(step % tf)
    if len(bad):
        i = int(bad[0]) + 1
        raise DataError(
            f"{source}: {_row_label(i, line_offset)}: time step {format_duration(int(step[i - 1]))} "
            f"is not a whole number of {format_duration(tf)} bars"
        )
    return tf


def find_gaps(time: np.ndarray, timeframe_ms: int) -> list[Gap]:
    step = np.diff(time)
    where = np.flatnonzero(step > timeframe_ms)
    return [
        Gap(start=int(time[i] + timeframe_ms), missing=int(step[i] // timeframe_ms - 1), row=int(i + 1))
        for i in where
    ]


def apply_gap_policy(candles: Candles, policy: str) -> Candles:
    if not candles.gaps or policy == "keep":
        return candles
    if policy == "refuse":
        listing = "; ".join(g.describe(candles.timeframe_ms) for g in candles.gaps[:5])
        more = f"; and {len(candles.gaps) - 5} more" if len(candles.gaps) > 5 else ""
        raise GapError(
            f"{candles.source}: {len(candles.gaps)} gap(s), {candles.missing_bars} missing bars: "
            f"{listing}{more}",
            candles.gaps,
        )
    return fill_gaps(candles)


def fill_gaps(candles: Candles) -> Candles:
    """Carry the previous close over every gap as zero-volume bars flagged in ``filled``."""
    tf = candles.timeframe_ms
    slot = ((candles.time - candles.time[0]) // tf).astype(np.int64)
    n = int(slot[-1]) + 1
    present = np.zeros(n, dtype=bool)
    present[slot] = True
    # index of the last real bar at or before each slot
    src = np.maximum.accumulate(np.where(present, np.arange(n), -1))
    idx_real = np.full(n, -1, dtype=np.int64)
    idx_real[slot] = np.arange(len(slot))
    last = idx_real[src]
    prev_close = candles.close[last]
    out = {}
    for name in ("open", "high", "low", "close"):
        arr = prev_close.copy()
        arr[slot] = getattr(candles, name)
        out[name] = arr
    vol = np.zeros(n)
    vol[slot] = candles.volume
    filled = ~present
    if candles.filled is not None:
        filled[slot] |= candles.filled
    return replace(
        candles,
        time=candles.time[0] + np.arange(n, dtype=np.int64) * tf,
        volume=vol,
        filled=filled,
        **out,
    )


def resample(candles: Candles, timeframe: str) -> Candles:
    """Candles of a longer ``timeframe`` (a whole multiple of theirs), aligned to UTC multiples
    of it: first open, highest high, lowest low, last close, summed volume. A longer bar with
    no shorter bar at all is a gap of the result."""
    tf = parse_timeframe(timeframe)
    if tf % candles.timeframe_ms:
        raise DataError(f"{candles.source}: {candles.timeframe} bars cannot make {timeframe} bars "
                        f"({timeframe} is not a whole multiple of {candles.timeframe})")
    if tf == candles.timeframe_ms:
        return candles
    key = candles.time // tf
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.r_[starts[1:], len(key)] - 1
    time = key[starts] * tf
    return Candles(
        time=time, open=candles.open[starts], high=np.maximum.reduceat(candles.high, starts),
        low=np.minimum.reduceat(candles.low, starts), close=candles.close[ends],
        volume=np.add.reduceat(candles.volume, starts), timeframe_ms=tf, source=f"{candles.source} ({timeframe})",
        gaps=find_gaps(time, tf), symbol=candles.symbol,
    )


# ---------------------------------------------------------------------------------------------
# Funding rates


@dataclass
class FundingRates:
    time: np.ndarray  # settlement time, epoch ms UTC
    rate: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return len(self.time)


def load_funding(path: str | os.PathLike) -> FundingRates:
    """Funding-rate CSV with ``time,funding_rate`` (any case; time as epoch s/ms or ISO 8601)."""
    path = _readable(path)
    frame = _read_csv(path, naive_times_as_text=True)
    source = str(path)
    tcol = _find_column(frame, TIME_ALIASES, source, "time")
    rcol = _find_column(frame, ("funding_rate", "fundingrate", "rate", "funding"), source, "funding_rate")
    time = _parse_time(frame[tcol], source, 2, zone_required=True)
    rate = _parse_numbers(frame[rcol], source, str(rcol), 2)
    bad = np.flatnonzero(np.diff(time) <= 0)
    if len(bad):
        raise DataError(f"{source}: {_row_label(int(bad[0]) + 1, 2)}: duplicate or decreasing time")
    bad = np.flatnonzero(np.abs(rate) > 0.05)
    if len(bad):
        raise DataError(
            f"{source}: {_row_label(int(bad[0]), 2)}: funding rate {rate[bad[0]]} is beyond +-5% "
            "(rates are fractions: 0.0001 is 0.01%)"
        )
    return FundingRates(time=time, rate=rate, source=source)
