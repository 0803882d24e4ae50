"""A fake of the Telegram Bot API on 127.0.0.1, for the notifier's tests (python-telegram-bot's
``Bot`` takes its base URL). Each rule follows https://core.telegram.org/bots/api:

- "All queries ... must be presented in this form: https://api.telegram.org/bot<token>/METHOD_NAME",
  by GET or POST, the parameters in the query string, application/x-www-form-urlencoded,
  application/json or multipart/form-data; method names are case-insensitive.
- "The response contains a JSON object, which always has a Boolean field 'ok' ... If 'ok' equals
  True ... the result of the query can be found in the 'result' field. In case of an unsuccessful
  request, 'ok' equals false and the error is explained in the 'description'", with an
  'error_code', the HTTP status of the answer too (401 Unauthorized for a token the server does
  not know, 404 Not Found for a method it lacks, 400 Bad Request for a parameter at fault) and,
  for flood control (429), a
  'parameters' object whose 'retry_after' says how many seconds to wait.
- getUpdates: "Identifier of the first update to be returned. Must be greater by one than the
  highest among the identifiers of previously received updates ... An update is considered
  confirmed as soon as getUpdates is called with an offset higher than its update_id";
  "timeout: Timeout in seconds for long polling" (the answer waits up to that long for an update).
- sendMessage: chat_id and text ("1-4096 characters"); the result is the Message sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

from aiohttp import web
from local_app import LocalApp

MAX_TEXT = 4096


class FakeTelegram:
    def __init__(self, token: str):
        self.token = token
        self.url = ""
        self.sent: list[dict] = []  # every message the bot sent: {"chat_id", "text"}
        self.updates: list[dict] = []  # every update made, by update_id order
        self.confirmed = 0  # update_ids below this are confirmed (never served again)
        self.flood = 0  # the next n sendMessage calls are refused with 429
        self.retry_after = 1
        self.calls: list[str] = []
        self._next_update = 500
        self._message_id = 1
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._new: asyncio.Event | None = None
        self._closing = False  # (a long poll waiting answers at once: the server can stop)

    # -- test controls ---------------------------------------------------------------------------
    def say(self, chat_id: int, text: str) -> None:
        """A user writes to the bot from ``chat_id``."""
        with self._lock:
            self.updates.append({"update_id": self._next_update, "message": {
                "message_id": self._message_id, "date": int(time.time()), "text": text,
                "chat": {"id": chat_id, "type": "private"},
                "from": {"id": chat_id, "is_bot": False, "first_name": "owner"},
                **({"entities": [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]}
                   if text.startswith("/") else {})}})
            self._next_update += 1
            self._message_id += 1
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._new.set)

    def texts(self, chat_id: int | None = None) -> list[str]:
        with self._lock:
            return [m["text"] for m in self.sent if chat_id is None or str(m["chat_id"]) == str(chat_id)]

    # -- the API -----------------------------------------------------------------------------------
    @staticmethod
    def _error(code: int, description: str, **extra) -> web.Response:
        return web.json_response({"ok": False, "error_code": code, "description": description, **extra}, status=code)

    async def _params(self, request: web.Request) -> dict:
        params = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                params.update(await request.json())
            else:  # (urlencoded or multipart: each value a string, JSON for the structured ones)
                params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        return params

    async def _handle(self, request: web.Request) -> web.Response:
        token, method = request.match_info["token"], request.match_info["method"].lower()
        self.calls.append(method)
        if token != self.token:
            return self._error(401, "Unauthorized")
        p = await self._params(request)
        if method == "getme":
            return web.json_response({"ok": True, "result": {
                "id": int(self.token.split(":")[0]), "is_bot": True, "first_name": "GridDesk test",
                "username": "griddesk_test_bot", "can_join_groups": True, "can_read_all_group_messages": False,
                "supports_inline_queries": False}})
        if method == "getupdates":
            return await self._get_updates(p)
        if method == "sendmessage":
            return self._send_message(p)
        if method in ("close", "logout", "deletewebhook"):
            return web.json_response({"ok": True, "result": True})
        return self._error(404, "Not Found")

    async def _get_updates(self, p: dict) -> web.Response:
        offset = int(p.get("offset") or 0)
        timeout = float(p.get("timeout") or 0)
        with self._lock:
            if offset:
                self.confirmed = max(self.confirmed, offset)
        end = time.monotonic() + timeout
        while True:
            with self._lock:
                ready = [u for u in self.updates if u["update_id"] >= self.confirmed][: int(p.get("limit") or 100)]
            left = end - time.monotonic()
            if ready or left <= 0 or self._closing:
                return web.json_response({"ok": True, "result": ready})
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), left)

    def _send_message(self, p: dict) -> web.Response:
        text = p.get("text") or ""
        if "chat_id" not in p:
            return self._error(400, "Bad Request: chat_id is empty")
        if not 1 <= len(text) <= MAX_TEXT:
            return self._error(400, "Bad Request: message text is empty" if not text else
                               "Bad Request: message is too long")
        with self._lock:
            if self.flood > 0:
                self.flood -= 1
                return self._error(429, f"Too Many Requests: retry after {self.retry_after}",
                                   parameters={"retry_after": self.retry_after})
            self.sent.append({"chat_id": p["chat_id"], "text": text})
            self._message_id += 1
            mid = self._message_id
        chat = int(p["chat_id"]) if str(p["chat_id"]).lstrip("-").isdigit() else p["chat_id"]
        return web.json_response({"ok": True, "result": {
            "message_id": mid, "date": int(time.time()), "text": text,
            "chat": {"id": chat, "type": "private"},
            "from": {"id": int(self.token.split(":")[0]), "is_bot": True, "first_name": "GridDesk test"}}})

    # -- serving ---------------------------------------------------------------------------------
    def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self.server = LocalApp(app)
        self.url = self.server.start() + "/bot"
        self._loop = self.server.loop
        asyncio.run_coroutine_threadsafe(self._make_event(), self._loop).result(10)
        return self.url

    async def _make_event(self) -> None:
        self._new = asyncio.Event()

    def stop(self) -> None:
        self._closing = True  # (a long poll waiting answers at once)
        self._loop.call_soon_threadsafe(self._new.set)
        self.server.stop()
        self._loop = None
