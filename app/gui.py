"""Start the desktop app: one QApplication, one qasync event loop for Qt and asyncio."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_API", "pyside6")


def main(data_dir: Path | None = None, *, quit_after: float | None = None, screenshot: Path | None = None) -> int:
    import qasync
    from PySide6.QtWidgets import QApplication

    from app.controller import Controller
    from app.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("GridDesk")
    app.setQuitOnLastWindowClosed(False)  # the loop ends after the systems have stopped cleanly
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    controller = Controller(data_dir)
    window = MainWindow(controller)
    window.show()
    closed = asyncio.Event()
    window.closed.connect(closed.set)

    async def run():
        controller.start()
        if quit_after is not None:
            await asyncio.sleep(quit_after)
            if screenshot is not None:
                window.grab().save(str(screenshot))
            window.close()
        await closed.wait()
        await controller.shutdown()

    with loop:
        loop.run_until_complete(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
