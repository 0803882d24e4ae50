"""A test that hangs, or a worker that dies, says where in the report CI prints.

pyproject's ``timeout`` (pytest-timeout) says when; this plugin, how:

- a test without a Qt window fails at its timeout with the stack of every thread in its report
  (SIGALRM in the main thread; pytest-timeout's own handlers print the other threads to the
  worker's terminal, which pytest-xdist does not show);
- every test, one with a Qt window included (Qt's event loop runs in C, where a signal's
  handler waits), is ended ``HARD_STOP`` seconds later by faulthandler's watchdog, a C thread
  that needs no GIL: it writes every thread's stack to the worker's crash file and ends the
  process; a crash (SIGSEGV, SIGABRT) writes its stacks there too;
- when a worker dies, the controller puts that file in the report of the test it was running.
"""

from __future__ import annotations

import faulthandler
import os
import shutil
import signal
import sys
import tempfile
import threading
import traceback
from pathlib import Path

import pytest

HARD_STOP = 60.0
_ENV = "GRIDDESK_TEST_CRASH_DIR"
_file = None


def _crash_file(worker: str) -> Path:
    return Path(os.environ[_ENV]) / f"{worker}.txt"


def stacks() -> str:
    """Every other thread's stack, as text."""
    frames = sys._current_frames()
    me = threading.get_ident()
    return "\n".join(f"--- thread {t.name} ---\n" + "".join(traceback.format_stack(frames[t.ident]))
                     for t in threading.enumerate() if t.ident in frames and t.ident != me)


def pytest_configure(config):
    global _file
    if not hasattr(config, "workerinput") and _ENV not in os.environ:  # the controller, or a run without workers
        os.environ[_ENV] = config._griddesk_crash_dir = tempfile.mkdtemp(prefix="griddesk-test-crash-")
    worker = getattr(config, "workerinput", {}).get("workerid", "main")
    _file = open(_crash_file(worker), "w")  # noqa: SIM115 (open for the process's life)


def pytest_unconfigure(config):
    faulthandler.disable()
    _file.close()
    made = getattr(config, "_griddesk_crash_dir", None)
    if made:  # (the workers have ended: what they wrote was read when one died)
        shutil.rmtree(made, ignore_errors=True)


def pytest_sessionstart(session):
    faulthandler.enable(file=_file, all_threads=True)  # (after pytest's own, which writes to stderr)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    for item in items:
        if "qtbot" in item.fixturenames or "qapp" in item.fixturenames:
            item.add_marker(pytest.mark.timeout(method="thread"))


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item, settings):
    faulthandler.dump_traceback_later(settings.timeout + HARD_STOP, exit=True, file=_file)
    by_signal = settings.method == "signal" and threading.current_thread() is threading.main_thread()
    if by_signal:
        def fail(signum, frame):
            pytest.fail(f"Timeout: over {settings.timeout:g} s; the other threads:\n{stacks()}")

        signal.signal(signal.SIGALRM, fail)
        signal.setitimer(signal.ITIMER_REAL, settings.timeout)

    def cancel():
        faulthandler.cancel_dump_traceback_later()
        if by_signal:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)

    item.cancel_timeout = cancel
    return True


def pytest_handlecrashitem(crashitem, report, sched):
    path = _crash_file(report.node.gateway.id)
    said = path.read_text(errors="replace").strip() if path.exists() else ""
    report.longrepr = f"{report.longrepr}\n{said or '(the worker wrote no stack: killed from outside?)'}"
