"""Candles drawn as one batch: up and down wicks and bodies as four paths built from arrays,
for the live Grid chart and the replay chart."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QPainterPath

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
