"""Candle loading and validation: formats, time units, clear errors, gaps."""

import json

import numpy as np
import pytest
from conftest import BTC_1H, BTC_5M, ETH_5M, FUNDING, shared_file

from engine.data import DataError, GapError, load_candles, load_funding

HEADER = "time,open,high,low,close,volume\n"


def write(tmp_path, text, name="c.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def rows(n=5, start=1_600_000_000, step=300, unit=1):
    out = []
    for i in range(n):
        o = 100 + i
        out.append(f"{(start + i * step) * unit},{o},{o + 2},{o - 1},{o + 1},{10 + i}")
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("name,n,tf,gaps,missing", [
    (BTC_5M, 65_741, "5m", 6, 177), (ETH_5M, 65_742, "5m", 6, 177), (BTC_1H, 45_024, "1h", 27, 127),
])
def test_real_files_load_with_their_gaps_reported(name, n, tf, gaps, missing):
    c = load_candles(shared_file(name))
    assert len(c) == n and c.timeframe == tf
    assert len(c.gaps) == gaps and c.missing_bars == missing
    assert c.open.dtype == np.float64 and c.open.flags.writeable and c.time.dtype == np.int64


def test_the_longest_real_gap_is_found_where_the_exchange_was_down(btc5m):
    longest = max(btc5m.gaps, key=lambda g: g.missing)
    assert longest.describe(btc5m.timeframe_ms).endswith("(4h40m)")
    assert "2021-04-25" in longest.describe(btc5m.timeframe_ms)
    # the bar before the gap and the bar after it are both real data rows
    i = longest.row
    assert btc5m.time[i] - btc5m.time[i - 1] == (longest.missing + 1) * btc5m.timeframe_ms


@pytest.mark.parametrize("header", ["time,open,high,low,close,volume", "Time,Open,High,Low,Close,Volume",
                                    "TIME,OPEN,HIGH,LOW,CLOSE,VOLUME", "date,Open,high,LOW,close,Volume"])
def test_header_in_any_letter_case(tmp_path, header):
    c = load_candles(write(tmp_path, header + "\n" + rows()))
    assert len(c) == 5 and c.timeframe == "5m"
    assert c.close[0] == 101.0


def test_time_as_seconds_milliseconds_and_iso_gives_the_same_bars(tmp_path):
    secs = load_candles(write(tmp_path, HEADER + rows(unit=1), "s.csv"))
    ms = load_candles(write(tmp_path, HEADER + rows(unit=1000), "ms.csv"))
    iso_rows = "\n".join(
        f"{np.datetime_as_string(np.datetime64(int(t), 'ms'))}Z,{o},{h},{l},{c},{v}"
        for t, o, h, l, c, v in zip(secs.time, secs.open, secs.high, secs.low, secs.close, secs.volume, strict=True)
    )
    iso = load_candles(write(tmp_path, HEADER + iso_rows + "\n", "iso.csv"))
    assert np.array_equal(secs.time, ms.time) and np.array_equal(secs.time, iso.time)
    assert secs.time[0] == 1_600_000_000_000


def test_freqtrade_json_parquet_and_feather_match_the_csv(tmp_path, btc5m):
    part = btc5m.slice(0, 3000)
    rows_ = [[int(t), o, h, l, c, v] for t, o, h, l, c, v in zip(
        part.time, part.open, part.high, part.low, part.close, part.volume, strict=True)]
    jpath = tmp_path / "BTC_USDT-5m.json"
    jpath.write_text(json.dumps(rows_))
    from_json = load_candles(jpath)
    frame = part.to_frame()
    import pandas as pd

    frame.insert(0, "date", pd.to_datetime(frame.pop("time"), unit="ms", utc=True))  # freqtrade's layout
    ppath = tmp_path / "BTC_USDT-5m.parquet"
    frame.to_parquet(ppath)
    from_parquet = load_candles(ppath)
    fpath = tmp_path / "BTC_USDT-5m.feather"  # freqtrade's default data format
    frame.reset_index(drop=True).to_feather(fpath)
    from_feather = load_candles(fpath)
    unnamed = tmp_path / "BTC_USDT-5m.data"  # a Feather file by its first bytes
    unnamed.write_bytes(fpath.read_bytes())
    for got in (from_json, from_parquet, from_feather, load_candles(unnamed)):
        assert np.array_equal(got.time, part.time)
        for col in ("open", "high", "low", "close", "volume"):
            assert np.array_equal(getattr(got, col), getattr(part, col))
        assert got.gaps == part.gaps


def test_a_plain_csv_is_read_without_pandas_to_the_same_candles(tmp_path):
    """(The app's paper systems read the sample this way: pandas is ~90 MB it need not load.)"""
    import subprocess
    import sys

    from conftest import ROOT

    code = ("import sys; from engine.data import load_candles; from engine.sample import SAMPLE_PATH; "
            "c = load_candles(SAMPLE_PATH); import numpy as np; "
            "np.save(sys.argv[1], np.c_[c.time, c.open, c.high, c.low, c.close, c.volume]); "
            "assert 'pandas' not in sys.modules, 'pandas was imported'")
    out = tmp_path / "fast.npy"
    subprocess.run([sys.executable, "-c", code, str(out)], cwd=ROOT, check=True)
    import pandas as pd

    from engine.data import candles_from_frame
    from engine.sample import SAMPLE_PATH

    slow = candles_from_frame(pd.read_csv(SAMPLE_PATH, dtype=str), str(SAMPLE_PATH), line_offset=2)
    assert np.array_equal(np.load(out), np.c_[slow.time, slow.open, slow.high, slow.low, slow.close, slow.volume])


@pytest.mark.parametrize("bad_line,message", [
    ("1600000600,102,104,abc,103,12", "row 3 (line 4): unparsable value 'abc' in column low"),
    ("1600000600,102,104,,103,12", "row 3 (line 4): missing value (NaN) in column low"),
    ("1600000600,102,104,NaN,103,12", "row 3 (line 4): missing value (NaN) in column low"),
    ("1600000600,0,104,101,103,12", "row 3 (line 4): price <= 0"),
    ("1600000600,102,102.5,101,103,12", "row 3 (line 4): high 102.5 is below max(open, close) 103.0"),
    ("1600000600,102,104,102.5,103,12", "row 3 (line 4): low 102.5 is above min(open, close) 102.0"),
    ("1600000300,102,104,101,103,12", "row 3 (line 4): duplicate time"),
    ("1600000000,102,104,101,103,12", "row 3 (line 4): time goes backwards"),
    ("16000x0600,102,104,101,103,12", "row 3 (line 4): unparsable time '16000x0600'"),
])
def test_bad_rows_are_refused_naming_file_and_row(tmp_path, bad_line, message):
    text = HEADER + rows(2) + bad_line + "\n" + rows(3, start=1_600_000_900)
    path = write(tmp_path, text, "bad.csv")
    with pytest.raises(DataError) as err:
        load_candles(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_missing_column_and_empty_file_are_named(tmp_path):
    with pytest.raises(DataError, match=r"no volume column; the header has time, open, high, low, close"):
        load_candles(write(tmp_path, "time,open,high,low,close\n1,2,3,1,2\n"))
    with pytest.raises(DataError, match="empty"):
        load_candles(write(tmp_path, "", "e.csv"))
    with pytest.raises(DataError, match="no such file"):
        load_candles(tmp_path / "nope.csv")


def test_timeframe_is_inferred_and_checked(tmp_path):
    path = write(tmp_path, HEADER + rows(6))
    assert load_candles(path, timeframe="5m").timeframe == "5m"
    with pytest.raises(DataError, match="timeframe is 5m in the data, not 1h as asked"):
        load_candles(path, timeframe="1h")
    odd = HEADER + rows(4) + "1600001320,1,2,0.5,1,1\n"  # 7 minutes after a 5m grid
    with pytest.raises(DataError, match=r"row 5 \(line 6\): time step 7m is not a whole number of 5m bars"):
        load_candles(write(tmp_path, odd, "odd.csv"))


def test_gaps_refuse_keep_and_fill(tmp_path):
    text = HEADER + rows(3) + rows(2, start=1_600_000_000 + 6 * 300)  # bars 3, 4, 5 missing
    path = write(tmp_path, text)
    kept = load_candles(path)
    assert [(g.missing, g.row) for g in kept.gaps] == [(3, 3)]
    assert len(kept) == 5 and kept.filled is None
    expected = r"1 gap\(s\), 3 missing bars: 3 bar\(s\) missing from 2020-09-13 12:41 UTC \(15m\)"
    with pytest.raises(GapError, match=expected) as err:
        load_candles(path, gaps="refuse")
    assert err.value.gaps == kept.gaps
    filled = load_candles(path, gaps="fill")
    assert len(filled) == 8
    assert filled.filled.tolist() == [False] * 3 + [True] * 3 + [False] * 2
    assert np.all(np.diff(filled.time) == 300_000)
    carried = slice(3, 6)
    for col in ("open", "high", "low", "close"):
        assert np.all(getattr(filled, col)[carried] == kept.close[2])
    assert np.all(filled.volume[carried] == 0)
    assert filled.gaps == kept.gaps  # the report of what was filled stays


def test_funding_rates_load_and_bad_rates_are_named(tmp_path):
    f = load_funding(shared_file(FUNDING))
    assert len(f) == 4383
    hours = (f.time // 3_600_000) % 24
    assert set(hours.tolist()) == {0, 8, 16}
    bad = write(tmp_path, "time,funding_rate\n1577836800000,0.0001\n1577865600000,0.9\n", "f.csv")
    with pytest.raises(DataError, match=r"row 2 \(line 3\): funding rate 0.9 is beyond"):
        load_funding(bad)


def test_funding_times_as_text_must_name_their_zone(tmp_path):
    """One real funding file is stamped UTC+3 in zone-less text: such a file is refused, naming
    the row; text that names its zone (Z, +03:00) is read as that instant."""
    bare = write(tmp_path, "time,funding_rate\n2020-01-01T00:00:00Z,0.0001\n2020-01-01 08:00:00,0.0002\n", "f.csv")
    with pytest.raises(DataError, match=r"f.csv: row 2 \(line 3\): time '2020-01-01 08:00:00' names no time zone"):
        load_funding(bare)
    zoned = write(tmp_path, "time,funding_rate\n2020-01-01T03:00:00+03:00,0.0001\n2020-01-01T08:00:00Z,0.0002\n",
                  "g.csv")
    assert load_funding(zoned).time.tolist() == [1577836800000, 1577865600000]


def test_a_format_it_does_not_read_is_refused_by_name(tmp_path):
    xlsx = tmp_path / "candles.xlsx"
    xlsx.write_bytes(b"PK\x03\x04\x14\x00\x06\x00" + bytes(64))
    with pytest.raises(DataError, match=r"candles.xlsx: not a candle file GridDesk reads \(.xlsx, binary\)"):
        load_candles(xlsx)
    assert xlsx.read_bytes().startswith(b"PK")  # untouched


@pytest.mark.parametrize("times", ["1606780800000\n1606781100000", "2020-12-01T00:00:00Z\n2020-12-01T00:05:00Z"])
def test_a_utf8_bom_before_the_header_is_read_as_nothing(tmp_path, times):
    """(Spreadsheets save CSV with a byte-order mark: the header was then 'no time column'.)"""
    t0, t1 = times.split("\n")
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufefftime,open,high,low,close,volume\n".encode()
                     + f"{t0},1,2,0.5,1.5,10\n{t1},1.5,2,1,1.2,10\n".encode())
    c = load_candles(path)
    assert c.time.tolist() == [1606780800000, 1606781100000] and c.close.tolist() == [1.5, 1.2]
