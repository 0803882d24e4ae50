"""The numba kernels.

numba's on-disk cache checks only the file of the function it caches (by a hash of its
content, numba 0.68): a kernel that calls another module's kernel (the sweep calls the spot
grid, both grids call the matcher and the perpetual's liquidation price) would keep running
the old callee after that file changed. So on import, when the content of any source file
with numba functions differs from what the cache was compiled from, the whole cache of those
files is dropped and compiled again. Content, not file times: a checkout, a copy or an
install that leaves the sources as they were keeps the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

_ENGINE = Path(__file__).resolve().parent.parent
_NUMBA_SOURCES = ("kernels/**/*.py", "strategies/adaptive_grid/backtest.py")


def _sources(engine: Path) -> list[Path]:
    return sorted(p for pattern in _NUMBA_SOURCES for p in engine.glob(pattern))


def sources_digest(engine: Path = _ENGINE) -> str:
    digest = hashlib.sha1()
    for p in _sources(engine):
        digest.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return digest.hexdigest()


_WARM = _ENGINE / "kernels" / "__pycache__" / "warm.stamp"


def kernels_warm() -> bool:
    """Whether ``griddesk warmup`` has compiled every kernel of these sources into the cache
    (then a first run loads them in a moment instead of compiling them)."""
    try:
        return _WARM.read_text() == sources_digest()
    except OSError:
        return False


def mark_warm() -> None:
    with contextlib.suppress(OSError):
        _WARM.parent.mkdir(exist_ok=True)
        _WARM.write_text(sources_digest())


def drop_stale_numba_cache(engine: Path = _ENGINE) -> None:
    sources = _sources(engine)
    digest = sources_digest(engine)
    stamp = engine / "kernels" / "__pycache__" / "numba-sources.stamp"
    with contextlib.suppress(OSError):  # a read-only install: numba caches elsewhere, and so be it
        if stamp.exists() and stamp.read_text() == digest:
            return
        for folder in {p.parent / "__pycache__" for p in sources}:
            for f in [*folder.glob("*.nbi"), *folder.glob("*.nbc")]:
                f.unlink(missing_ok=True)
        stamp.parent.mkdir(exist_ok=True)
        stamp.write_text(digest)


drop_stale_numba_cache()
