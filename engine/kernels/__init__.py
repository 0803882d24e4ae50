"""The numba kernels.

numba's on-disk cache checks only the file of the function it caches: a kernel that calls
another module's kernel (the sweep calls the spot grid, the spot grid calls the perpetual's
liquidation price) would keep running the old callee after that file changed. So on import,
when any source file with numba functions has changed since the cache was written, the
whole cache of those files is dropped and compiled again.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

_ENGINE = Path(__file__).resolve().parent.parent
_NUMBA_SOURCES = ("kernels/*.py", "strategies/adaptive_grid.py")


def _drop_stale_numba_cache() -> None:
    sources = sorted(p for pattern in _NUMBA_SOURCES for p in _ENGINE.glob(pattern))
    digest = hashlib.sha1()
    for p in sources:
        st = p.stat()
        digest.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    stamp = _ENGINE / "kernels" / "__pycache__" / "numba-sources.stamp"
    with contextlib.suppress(OSError):  # a read-only install: numba caches elsewhere, and so be it
        if stamp.exists() and stamp.read_text() == digest.hexdigest():
            return
        for folder in {p.parent / "__pycache__" for p in sources}:
            for f in [*folder.glob("*.nbi"), *folder.glob("*.nbc")]:
                f.unlink(missing_ok=True)
        stamp.parent.mkdir(exist_ok=True)
        stamp.write_text(digest.hexdigest())


_drop_stale_numba_cache()
