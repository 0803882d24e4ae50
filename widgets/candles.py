"""Chart items drawn as one batch from arrays, for the live Grid chart and the replay chart:
candles (up and down wicks and bodies as four paths), bands of states, and markers of one
style."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from pyqtgraph.graphicsItems.ScatterPlotItem import renderSymbol
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QPainter, QPainterPath, QPixmap

UP, DOWN = (38, 166, 91), (214, 48, 49)


def _rects_path(x, y0, y1, w) -> QPainterPath:
    """Rectangles centred on ``x``, ``w`` wide (one width or one each), from y0 to y1."""
    n = len(x)
    xs = np.empty((n, 5))
    ys = np.empty((n, 5))
    xs[:, 0] = xs[:, 3] = xs[:, 4] = x - w / 2
    xs[:, 1] = xs[:, 2] = x + w / 2
    ys[:, 0] = ys[:, 1] = ys[:, 4] = y0
    ys[:, 2] = ys[:, 3] = y1
    conn = np.ones((n, 5), dtype=np.int32)
    conn[:, 4] = 0
    return pg.arrayToQPath(xs.ravel(), ys.ravel(), connect=conn.ravel())


class CandleBatch(pg.GraphicsObject):
    """Candles as four paths (up and down wicks and bodies), rebuilt from arrays in one go."""

    def __init__(self):
        super().__init__()
        self._paths: list[tuple[QPainterPath, QPainterPath, tuple]] = []
        self._bounds = QRectF()
        self._pens = {c: pg.mkPen(c, width=1, cosmetic=True) for c in (UP, DOWN)}
        self._brushes = {c: pg.mkBrush(c) for c in (UP, DOWN)}

    def set_data(self, x, o, h, lo, c, width) -> None:
        self.prepareGeometryChange()
        self._paths = []
        if len(x) == 0:
            self._bounds = QRectF()
            self.update()
            return
        w = width * 0.7
        for sel, color in ((c >= o, UP), (c < o, DOWN)):
            if not sel.any():
                continue
            xs, ls, hs = x[sel], lo[sel], h[sel]
            wicks = pg.arrayToQPath(np.repeat(xs, 2), np.column_stack((ls, hs)).ravel(), connect="pairs")
            bodies = _rects_path(xs, o[sel], c[sel], w)
            self._paths.append((wicks, bodies, color))
        self._bounds = QRectF(float(x[0]) - width, float(lo.min()), float(x[-1] - x[0]) + 2 * width,
                              float(h.max() - lo.min()) or 1.0)
        self.update()

    def paint(self, painter, *args) -> None:
        for wicks, bodies, color in self._paths:
            painter.setPen(self._pens[color])
            painter.setBrush(Qt.NoBrush)
            painter.drawPath(wicks)
            painter.setBrush(self._brushes[color])
            painter.drawPath(bodies)

    def boundingRect(self) -> QRectF:
        return self._bounds


class BandItem(pg.GraphicsObject):
    """Runs of states as filled rectangles between two heights, one path per state (the
    regime band under the replay's candles)."""

    def __init__(self, colors: dict[int, tuple]):
        super().__init__()
        self._brushes = {k: pg.mkBrush(*c) for k, c in colors.items()}
        self._paths: list[tuple[QPainterPath, int]] = []
        self._bounds = QRectF()

    def set_runs(self, x0, x1, states, y0: float, y1: float) -> None:
        self.prepareGeometryChange()
        self._paths = []
        for state in self._brushes:
            sel = states == state
            if sel.any():
                a, b = x0[sel], x1[sel]
                self._paths.append((_rects_path((a + b) / 2, np.full(len(a), y0), np.full(len(a), y1), b - a), state))
        self._bounds = QRectF(float(x0[0]), y0, float(x1[-1] - x0[0]), y1 - y0) if len(x0) else QRectF()
        self.update()

    def paint(self, painter, *args) -> None:
        painter.setPen(Qt.NoPen)
        for path, state in self._paths:
            painter.setBrush(self._brushes[state])
            painter.drawPath(path)

    def boundingRect(self) -> QRectF:
        return self._bounds


class MarkerBatch(pg.GraphicsObject):
    """Markers of one style (a pyqtgraph symbol, its size in pixels, outline and fill) at data
    points: the symbol is rendered once and drawn at every point as a fragment of that pixmap,
    in one call, as pyqtgraph's ScatterPlotItem draws. That item also keeps a record per point
    and works out each point's style in Python at every ``setData``: 3 ms of each seek of the
    replay, for two kinds of 600 fills in view; this one keeps two arrays."""

    def __init__(self, symbol: str, size: float, pen, brush):
        super().__init__()
        self.symbol, self.size, self.pen, self.brush = symbol, size, pen, brush
        self.x = self.y = np.zeros(0)
        self._bounds = QRectF()
        self._pixmap: tuple[float, QPixmap] | None = None  # (device pixel ratio, symbol)
        self._fragments = pg.Qt.internals.PrimitiveArray(QPainter.PixmapFragment, 10)

    def set_data(self, x, y) -> None:
        self.prepareGeometryChange()
        self.x, self.y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        self._bounds = QRectF() if len(self.x) == 0 else QRectF(
            float(self.x.min()), float(self.y.min()), float(np.ptp(self.x)), float(np.ptp(self.y)))
        self.update()

    def boundingRect(self) -> QRectF:
        if not len(self.x):
            return QRectF()
        # the points' extent and half a symbol around it, in data units at the current zoom
        px, py = self.pixelWidth() or 0.0, self.pixelHeight() or 0.0
        half = self.size / 2 + 1
        return self._bounds.adjusted(-half * px, -half * py, half * px, half * py)

    def paint(self, painter, option, widget=None) -> None:
        if not len(self.x):
            return
        dpr = widget.devicePixelRatioF() if widget is not None else 1.0
        if self._pixmap is None or self._pixmap[0] != dpr:
            self._pixmap = (dpr, QPixmap.fromImage(renderSymbol(self.symbol, self.size, self.pen, self.brush, dpr=dpr)))
        pm = self._pixmap[1]
        t = painter.transform()
        frags = self._fragments
        frags.resize(len(self.x))
        f = frags.ndarray()
        # (clipped as pyqtgraph clips: Qt crashes on coordinates far outside the device)
        f[:, 0] = np.clip(t.m11() * self.x + t.m21() * self.y + t.dx(), -2 ** 30, 2 ** 30)
        f[:, 1] = np.clip(t.m12() * self.x + t.m22() * self.y + t.dy(), -2 ** 30, 2 ** 30)
        f[:, 2:6] = (0, 0, pm.width(), pm.height())  # the source: the whole symbol
        f[:, 6:10] = (1 / dpr, 1 / dpr, 0.0, 1.0)  # scale x, y, rotation, opacity
        painter.resetTransform()
        painter.drawPixmapFragments(*frags.drawargs(), pm)
