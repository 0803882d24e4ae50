"""Start the desktop app: one QApplication, one qasync event loop for Qt and asyncio."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_API", "pyside6")


def gui_thread_gc():
    """Garbage collection on the GUI thread only, from a timer (pyqtgraph's GarbageCollector):
    with automatic collection a worker thread (a backtest, a file load) can collect a widget
    caught in a reference cycle, and Qt crashes when a widget dies outside its thread."""
    from pyqtgraph.util.garbage_collector import GarbageCollector

    return GarbageCollector(interval=1.0)


# What Qt's X11 (xcb) platform plugin loads, by Debian package (STACK.md). Without one of them Qt
# aborts the process with a message naming only xcb-cursor0, whatever is missing.
XCB_LIBRARIES = {
    "libxcb-cursor.so.0": "libxcb-cursor0", "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxcb-icccm.so.4": "libxcb-icccm4", "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-shape.so.0": "libxcb-shape0", "libxcb-xkb.so.1": "libxcb-xkb1", "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0", "libxcb-util.so.1": "libxcb-util1",
    "libxcb-randr.so.0": "libxcb-randr0", "libxcb-render.so.0": "libxcb-render0", "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1", "libxcb-xfixes.so.0": "libxcb-xfixes0", "libX11-xcb.so.1": "libx11-xcb1",
}


def missing_window_libraries(load=None) -> list[str]:
    """The Debian packages of the libraries Qt needs for a window on X11 that do not load here
    (none when Qt will not use X11: offscreen, Wayland, another system)."""
    import ctypes

    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if not sys.platform.startswith("linux") or platform not in ("", "xcb") or \
            (not platform and os.environ.get("WAYLAND_DISPLAY")):
        return []
    load = load or ctypes.CDLL
    missing = []
    for lib, package in XCB_LIBRARIES.items():
        try:
            load(lib)
        except OSError:
            missing.append(package)
    return missing


def window_libraries_error(missing: list[str]) -> str:
    return (f"Qt needs system libraries for a window on X11 that are not installed: {', '.join(missing)}. "
            f"Install them (sudo apt-get install {' '.join(missing)}, or: sudo bash scripts/install-system-deps.sh "
            "--gui), or run without a window: QT_QPA_PLATFORM=offscreen")


def main(data_dir: Path | None = None, *, quit_after: float | None = None, screenshot: Path | None = None,
         exchange_url: str | None = None, metrics: tuple[int, str] | None = None,
         api: tuple[int, str] | None = None, telegram: tuple | None = None) -> int:
    import qasync
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from app.controller import ROOT, Controller
    from app.main_window import MainWindow
    from engine.runtime.runner import default_data_dir
    from engine.store import FolderBusy, FolderLock

    missing = [] if QApplication.instance() else missing_window_libraries()
    if missing:  # (Qt would abort the process with a message naming the wrong library)
        print(f"griddesk gui: error: {window_libraries_error(missing)}", file=sys.stderr)
        return 2
    app = QApplication.instance() or QApplication(sys.argv)
    try:  # one process trades a data folder: a second app (or griddesk run) there is refused at once
        lock = FolderLock(data_dir or default_data_dir(), "griddesk gui").acquire()
    except FolderBusy as exc:
        print(f"griddesk gui: error: {exc}", file=sys.stderr)
        if os.environ.get("QT_QPA_PLATFORM") != "offscreen":
            from PySide6.QtWidgets import QMessageBox

            QMessageBox.critical(None, "GridDesk", str(exc))
        return 2
    app.setApplicationName("GridDesk")
    app.setWindowIcon(QIcon(str(ROOT / "resources" / "icons" / "griddesk.svg")))
    app.setQuitOnLastWindowClosed(False)  # the loop ends after the systems have stopped cleanly
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    collector = gui_thread_gc()  # noqa: F841 (kept alive for the app's life)
    controller = Controller(data_dir, exchange_url=exchange_url)
    try:  # (ValueError: the port taken, an address this machine does not have, no keyring for the token)
        if metrics is not None:
            server = controller.serve_metrics(*metrics)
            print(f"griddesk gui: metrics at http://{metrics[1]}:{server.server_port}/metrics", flush=True)
        if api is not None:
            server, token = controller.serve_api(*api)
            print(f"griddesk gui: control API at {server.url} (its OpenAPI page at {server.url}/docs)", flush=True)
            if server.warning:
                print(f"griddesk gui: warning: {server.warning}", file=sys.stderr, flush=True)
            if token:
                print(f"griddesk gui: the control API's token (shown this once; kept in the OS keyring): {token}",
                      flush=True)
    except ValueError as exc:
        print(f"griddesk gui: error: {exc}", file=sys.stderr)
        controller.close_servers()
        lock.release()
        return 2
    window = MainWindow(controller)
    window.show()
    closed = asyncio.Event()
    window.closed.connect(closed.set)

    async def run():
        controller.start()
        if telegram is not None:  # (token, chat, base URL, warn: griddesk gui --telegram-chat)
            controller.notify(*telegram)
            print(f"griddesk gui: notifications to Telegram chat {telegram[1]}", flush=True)
        if quit_after is not None:
            await asyncio.sleep(quit_after)
            if screenshot is not None:
                window.grab().save(str(screenshot))
            window.close()
        await closed.wait()
        await controller.shutdown()

    try:
        with loop:
            loop.run_until_complete(run())
    finally:
        lock.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())


def screenshots(out_dir: Path, data_dir: Path | None = None, *, warmup: float = 4.0,
                size: tuple[int, int] = (1280, 800)) -> list[Path]:
    """Render the main window on each tab to ``out_dir/NN-tab.png`` (offscreen works): the
    first system switched ON for ``warmup`` seconds, the Backtest tab mid-replay of a run on the
    sample, and the Optimizer tab after a small study on the sample. It always works in a
    throwaway folder, so no user's system is touched: with ``data_dir``, a copy of that folder's
    paper systems on recorded candles only (none of them ON; a live system, or one on the
    exchange's candles, is left out), else the bundled samples."""
    import tempfile

    from engine.runtime.config import load_systems, save_systems

    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import qasync
    from PySide6.QtWidgets import QApplication

    from app.controller import Controller
    from app.main_window import MainWindow

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication(sys.argv)
    app.setQuitOnLastWindowClosed(False)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    collector = gui_thread_gc()  # noqa: F841
    scratch = tempfile.TemporaryDirectory(prefix="griddesk-shots-")
    if data_dir is not None and (Path(data_dir) / "cryptos.json").exists():  # (read only: nothing written there)
        systems, _ = load_systems(Path(data_dir) / "cryptos.json")
        paper = [s for s in systems if s.mode == "paper" and s.data]
        for s in paper:
            s.enabled = False
        if paper:
            save_systems(Path(scratch.name) / "cryptos.json", paper)
    study_dir = tempfile.TemporaryDirectory(prefix="griddesk-study-")
    controller = Controller(scratch.name)
    window = MainWindow(controller)
    window.resize(*size)
    window.show()
    saved: list[Path] = []

    async def run():
        controller.start()
        if controller.systems:
            controller.set_on(controller.systems[0].name, True)
        bt = window.backtest
        bt.editor.apply_preset("Geometric, trailing both ways")
        await bt.start_run()
        opt = window.optimizer  # a small study on the sample, in a throwaway database
        opt.storage.setText(f"sqlite:///{study_dir.name}/study.db")
        opt.trials.setValue(40)
        opt.seed.setValue(1)
        await opt.start()
        await asyncio.sleep(warmup)
        for _ in range(100):  # the system's first grid laid (the chart has something to show)
            t = next(iter(controller.runner.traders.values()), None)
            if t is None or (t.strategy is not None and t.strategy.started):
                break
            await asyncio.sleep(0.2)
        if bt.run is not None:
            bt.set_overlays(["ema", "regime"])
            bt.seek(bt.run.n_bars * 2 // 5)
            bt.jump_trade(1)
        window.grid.system.setCurrentIndex(0)
        for i in range(window.tabs.count()):
            window.tabs.setCurrentIndex(i)
            if window.tabs.widget(i) is window.grid:
                window.grid.refresh(force=True)
            await asyncio.sleep(0.3)
            path = out_dir / f"{i + 1:02d}-{window.tabs.tabText(i).lower()}.png"
            if (window.width(), window.height()) != size:  # a window wider than asked: something grew it
                raise RuntimeError(f"the window is {window.width()}x{window.height()} on the "
                                   f"{window.tabs.tabText(i)} tab, not the {size[0]}x{size[1]} asked for")
            window.grab().save(str(path))
            saved.append(path)
        await controller.shutdown()
        window.hide()

    try:
        with loop:
            loop.run_until_complete(run())
    finally:
        study_dir.cleanup()
        scratch.cleanup()
    return saved
