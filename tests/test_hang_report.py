"""tests/hang_report.py: a test that hangs fails with every thread's stack in its report, and a
worker that dies has its stacks put in the report of the test it ran (run in a pytest of its own)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_a_hung_test_and_a_dead_worker_say_where(tmp_path):
    (tmp_path / "conftest.py").write_text(
        f"import sys\nsys.path.insert(0, {str(TESTS)!r})\npytest_plugins = ['hang_report']\n")
    (tmp_path / "test_it.py").write_text(
        "import ctypes, threading\n"
        "def test_waits_on_a_lock():\n"
        "    threading.Thread(target=threading.Event().wait, name='helper', daemon=True).start()\n"
        "    lock = threading.Lock(); lock.acquire(); lock.acquire()\n"
        "def test_crashes():\n"
        "    ctypes.string_at(0)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "GRIDDESK_TEST_CRASH"))}
    run = subprocess.run([sys.executable, "-m", "pytest", "-n", "1", "-p", "no:cacheprovider", "-p", "no:randomly",
                          "-o", "timeout=1", "-o", "timeout_method=signal", "--rootdir", str(tmp_path), str(tmp_path)],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    out = run.stdout
    assert "2 failed" in out, out
    hung = out[out.index("_ test_waits_on_a_lock _"):]
    assert "Timeout: over 1 s; the other threads:" in hung and "--- thread helper ---" in hung
    assert "lock.acquire(); lock.acquire()" in hung  # (where the test itself waited)
    crashed = out[out.index("crashed while running"):]
    assert "Fatal Python error: Segmentation fault" in crashed and "in test_crashes" in crashed
