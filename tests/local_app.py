"""An aiohttp application served on 127.0.0.1 (a free port) from a thread and loop of its own:
the fakes of Telegram's Bot API and of Anthropic's Messages endpoint run on it."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web


class LocalApp:
    def __init__(self, app: web.Application):
        self.app = app
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> str:
        """Serve; returns http://127.0.0.1:<port>."""
        ready = threading.Event()
        self.loop = asyncio.new_event_loop()

        async def serve():
            self._runner = web.AppRunner(self.app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()

        def run():
            asyncio.set_event_loop(self.loop)
            self.loop.create_task(serve())
            self.loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the local server did not start")
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
