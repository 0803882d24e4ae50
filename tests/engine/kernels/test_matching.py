"""The one bar matcher (engine/kernels/matching.py) against GRID_SEMANTICS.md, written out
here as a walk of the candle's path, and with hand-worked candles."""

from types import SimpleNamespace as O

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.kernels.matching import limit_fill_nb, match_bar, reached_nb, stop_fill_nb


def _reference(o, h, lo, c, tick, orders, opens):
    """GRID_SEMANTICS.md as a walk: market orders at the open; then the leg nearer the open
    (the low first when the candle closes at or above its open), then the other; on the leg to
    the low the buy limits at or above the low (more than a tick above it with ``tick``) and the
    sell stops at or above it; on the leg to the high, mirrored; each leg from the open outwards,
    and at one price an opening, a reduction, then a stop, alike ones as given."""
    out = [x for x in orders if x.type == "market"]
    legs = ("low", "high") if c >= o else ("high", "low")
    for leg in legs:
        here = []
        for n, x in enumerate(orders):
            if x.type == "market":
                continue
            on_low_leg = (x.side == "buy") == (x.type == "limit")
            if on_low_leg != (leg == "low"):
                continue
            t = tick if x.type == "limit" else 0.0
            if leg == "low":
                ok = (lo < x.price - t) if t else (lo <= x.price)
                along = -x.price
            else:
                ok = (h > x.price + t) if t else (h >= x.price)
                along = x.price
            if ok:
                rank = 2 if x.type == "stop" else (0 if opens(x) else 1)
                here.append((along, rank, n, x))
        out += [x for *_, x in sorted(here, key=lambda r: r[:3])]
    return out


_order = st.builds(O, price=st.integers(90, 110).map(float), side=st.sampled_from(["buy", "sell"]),
                   type=st.sampled_from(["limit", "limit", "stop", "market"]), opens=st.booleans())


@settings(max_examples=300, deadline=None)
@given(st.lists(_order, max_size=12), st.integers(95, 105), st.integers(0, 8), st.integers(0, 8),
       st.integers(-1, 1).map(float), st.sampled_from([0.0, 1.0]))
def test_the_matcher_walks_the_candle_as_the_semantics_say(orders, o, down, up, c_off, tick):
    o = float(o)
    lo, h = o - down, o + up
    c = min(h, max(lo, o + c_off * min(up, down)))
    opens = lambda x: x.opens  # noqa: E731
    got = match_bar(o, h, lo, c, tick, orders, opens)
    assert [id(x) for x in got] == [id(x) for x in _reference(o, h, lo, c, tick, orders, opens)]


def test_a_hand_worked_candle():
    # open 100, low 95, high 104, close 101: the leg to the low first, then the high
    buy99 = O(price=99.0, side="buy", type="limit", opens=True)
    buy102 = O(price=102.0, side="buy", type="limit", opens=True)  # above the open: fills at the open
    buy94 = O(price=94.0, side="buy", type="limit", opens=True)  # below the low: not reached
    sell103 = O(price=103.0, side="sell", type="limit", opens=False)
    stop97 = O(price=97.0, side="sell", type="stop", opens=False)
    close99 = O(price=99.0, side="buy", type="limit", opens=False)  # a short's take-profit at 99
    market = O(price=0.0, side="sell", type="market", opens=False)
    got = match_bar(100.0, 104.0, 95.0, 101.0, 0.0, [sell103, buy94, stop97, close99, buy99, buy102, market],
                    lambda x: x.opens)
    assert got == [market, buy102, buy99, close99, stop97, sell103]
    assert limit_fill_nb(True, 100.0, 102.0) == 100.0 and limit_fill_nb(True, 100.0, 99.0) == 99.0
    assert stop_fill_nb(True, 100.0, 97.0, 0.01) == 97.0 * 0.99
    # a red candle: the high first
    got = match_bar(100.0, 104.0, 95.0, 96.0, 0.0, [buy99, sell103], lambda x: x.opens)
    assert got == [sell103, buy99]
    # through by more than a tick: with a tick of 1 a low of 98 fills a buy at 99.01, not at 99
    assert reached_nb(True, 99.0, 98.0, 0.0) and not reached_nb(True, 99.0, 98.0, 1.0)
    assert reached_nb(True, 99.01, 98.0, 1.0) and reached_nb(False, 99.0, 100.01, 1.0)
