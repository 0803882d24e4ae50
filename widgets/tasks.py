"""Ask the controller something that takes a while (the exchange's markets, a test connection)
from a dialog without blocking it: the answer comes back on the GUI thread, and is dropped when
the dialog has gone meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine

from shiboken6 import isValid

_RUNNING: set[asyncio.Task] = set()  # the loop holds tasks weakly


def when_done(widget, coro: Coroutine, on_result: Callable, on_error: Callable[[Exception], None]) -> bool:
    """Run ``coro`` on the app's loop; ``on_result(value)`` or ``on_error(exc)`` after it, while
    ``widget`` lives. False (the coroutine closed unrun) when no loop runs: a dialog opened
    outside the app (a test, a script) works without the exchange."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        coro.close()
        return False
    task = loop.create_task(coro)
    _RUNNING.add(task)

    def done(t: asyncio.Task) -> None:
        _RUNNING.discard(t)
        if t.cancelled() or not isValid(widget):
            return
        exc = t.exception()
        if exc is not None:
            on_error(exc)
        else:
            on_result(t.result())

    task.add_done_callback(done)
    return True
