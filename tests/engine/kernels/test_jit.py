"""The kernels' hot loops run without numba's reference counting (engine/kernels/jit.py)."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT

# numba shows the code it compiled, not code loaded from its cache: the loops (and the kernels
# that call them) are compiled afresh here, without the cache; the functions they call that are
# not inlined in them are checked where they are compiled.
CHECK = r"""
import json, re, sys
import numpy as np
from numba.core.caching import NullCache
from engine.strategies.spot_grid import run_spot_grid
from engine.data import Candles
from engine.kernels.adaptive_grid import loop as perp_loop
from engine.kernels.spot_grid import loop as spot_loop
from engine.strategies.adaptive_grid import AdaptiveGridConfig, run_adaptive_grid
from engine.strategies.spot_grid import SpotGridConfig

n = 400
rng = np.random.default_rng(3)
close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.004, n)))
open_ = np.concatenate([[100.0], close[:-1]])
c = Candles(time=np.arange(n, dtype=np.int64) * 900_000, open=open_, high=np.maximum(open_, close) * 1.002,
            low=np.minimum(open_, close) * 0.998, close=close, volume=np.ones(n), timeframe_ms=900_000,
            symbol="BTC/USDT")
name = sys.argv[1]
if name == "adaptive":
    kernels = (perp_loop.adaptive_grid_nb, perp_loop.adaptive_grid_log_nb, perp_loop._run)
else:
    kernels = (spot_loop.spot_grid_nb, spot_loop._run)
for kernel in kernels:
    kernel._cache = NullCache()
if name == "adaptive":
    run_adaptive_grid(c, AdaptiveGridConfig())
else:
    run_spot_grid(c, SpotGridConfig(lower=90.0, upper=110.0, levels=20, capital=10_000.0))
kernel = kernels[-1]
ir = "".join(kernel.inspect_llvm(sig) for sig in kernel.signatures)
print(json.dumps({"nrt": kernel.targetoptions.get("_nrt"), "compiled": len(kernel.signatures), "ir": len(ir),
                  "refcounts": len(re.findall(r"call void @NRT_(?:incref|decref)\(", ir))}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", ["adaptive", "spot"])  # (two processes: the test workers share them out)
def test_the_hot_loops_count_no_references(name):
    done = subprocess.run([sys.executable, "-c", CHECK, name], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    loop = json.loads(done.stdout.strip().splitlines()[-1])
    assert loop["nrt"] is False and loop["compiled"] == 1 and loop["ir"] > 10_000, (name, loop)
    # the loop and every function compiled into it: no atomic reference count left
    assert loop["refcounts"] == 0, (name, loop)


def test_the_kernel_cache_outlives_new_file_times_and_not_new_content(tmp_path):
    """A checkout or a copy that gives the sources new file times keeps the compiled kernels;
    a change to any kernel's source drops them all (a kernel compiles in its callees)."""
    import os
    import shutil

    from engine.kernels import drop_stale_numba_cache

    engine = ROOT / "engine"
    for rel in ("kernels/spot_grid/loop.py", "kernels/matching.py", "strategies/adaptive_grid/backtest.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(engine / rel, tmp_path / rel)
    cached = [tmp_path / "kernels/spot_grid/__pycache__/loop._run-1.py311.nbi",
              tmp_path / "strategies/adaptive_grid/__pycache__/backtest._log_return_std_nb-2.py311.nbc"]

    def compile_all():
        for f in cached:
            f.parent.mkdir(exist_ok=True)
            f.write_bytes(b"compiled")

    drop_stale_numba_cache(tmp_path)  # no stamp yet: whatever is there is of unknown sources
    compile_all()
    for f in (tmp_path / "kernels").rglob("*.py"):
        os.utime(f, (1e9, 1e9))
    drop_stale_numba_cache(tmp_path)
    assert all(f.exists() for f in cached)
    with open(tmp_path / "kernels/matching.py", "a") as f:
        f.write("\n# changed\n")
    drop_stale_numba_cache(tmp_path)
    assert not any(f.exists() for f in cached)
