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
_NUMBA_SOURCES = ("kernels/*.py", "strategies/adaptive_grid.py")


def drop_stale_numba_cache(engine: Path = _ENGINE) -> None:
    sources = sorted(p for pattern in _NUMBA_SOURCES for p in engine.glob(pattern))
    digest = hashlib.sha1()
    for p in sources:
        digest.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    stamp = engine / "kernels" / "__pycache__" / "numba-sources.stamp"
    with contextlib.suppress(OSError):  # a read-only install: numba caches elsewhere, and so be it
        if stamp.exists() and stamp.read_text() == digest.hexdigest():
            return
        for folder in {p.parent / "__pycache__" for p in sources}:
            for f in [*folder.glob("*.nbi"), *folder.glob("*.nbc")]:
                f.unlink(missing_ok=True)
        stamp.parent.mkdir(exist_ok=True)
        stamp.write_text(digest.hexdigest())


drop_stale_numba_cache()
