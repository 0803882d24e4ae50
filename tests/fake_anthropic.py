"""A fake of Anthropic's Messages endpoint on 127.0.0.1 (the ``anthropic`` SDK takes its base
URL), with a scripted "model". Its rules follow the API reference
(https://docs.anthropic.com/en/api/messages, .../api/errors, the tool-use guide):

- POST /v1/messages with the key in ``x-api-key`` (or ``Authorization: Bearer``, as the SDK 2.x
  sends it) and an ``anthropic-version`` header; a key it
  does not know is 401 ``{"type": "error", "error": {"type": "authentication_error", ...}}``, a
  request at fault 400 ``invalid_request_error``.
- ``model``, ``max_tokens`` and ``messages`` are required; the messages alternate user and
  assistant, starting with the user's.
- A response is ``{"id", "type": "message", "role": "assistant", "content": [blocks], "model",
  "stop_reason", "stop_sequence", "usage": {"input_tokens", "output_tokens"}}``; a tool call is a
  ``tool_use`` block (``id``, ``name``, ``input``) with ``stop_reason: "tool_use"``, an answer
  ``text`` blocks with ``"end_turn"``.
- Each ``tool_use`` must be answered by a ``tool_result`` block with its ``tool_use_id`` in the
  user message right after it, else 400; a tool the request does not list cannot be called by
  the real model (here the script may name one anyway, to test the client's refusal).

The script: ``fake.script(question, tools) -> steps``, each ``("tool", name, input)`` or
``("text", template)``; the template's ``{results}`` is the tool results of this question so far
(their content, joined), so an answer shows what the tools gave the model.
"""

from __future__ import annotations

import itertools

from aiohttp import web
from local_app import LocalApp


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"type": "error", "error": {"type": kind, "message": message}}, status=status)


class FakeAnthropic:
    def __init__(self, key: str, script=None):
        self.key = key
        self.script = script or (lambda question, tools: [("text", "You asked: " + question)])
        self.requests: list[dict] = []
        self.url = ""
        self._ids = itertools.count(1)

    async def _messages(self, request: web.Request) -> web.Response:
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.key not in (request.headers.get("x-api-key"), bearer):
            return _error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        body = await request.json()
        self.requests.append(body)
        for name in ("model", "max_tokens", "messages"):
            if name not in body:
                return _error(400, "invalid_request_error", f"{name}: Field required")
        messages = body["messages"]
        if not messages or messages[0]["role"] != "user":
            return _error(400, "invalid_request_error", "messages: the first message must use the user role")
        for a, b in itertools.pairwise(messages):
            if a["role"] == b["role"]:
                return _error(400, "invalid_request_error", "messages: roles must alternate between user and "
                                                            "assistant")
            calls = [c["id"] for c in a["content"] if isinstance(a["content"], list) and c.get("type") == "tool_use"]
            if calls:
                answered = [c.get("tool_use_id") for c in b["content"] if isinstance(b["content"], list)
                            and c.get("type") == "tool_result"]
                if sorted(answered) != sorted(calls):
                    return _error(400, "invalid_request_error", "messages: tool_use ids were found without "
                                                                "tool_result blocks immediately after")
        # this question, and the tool rounds it has had
        start = max(i for i, m in enumerate(messages) if m["role"] == "user" and isinstance(m["content"], str))
        question = messages[start]["content"]
        rounds = [m for m in messages[start + 1:] if m["role"] == "user"]
        results = [c.get("content", "") for m in rounds for c in m["content"] if c.get("type") == "tool_result"]
        steps = self.script(question, [t["name"] for t in body.get("tools", [])])
        step = steps[min(len(rounds), len(steps) - 1)]
        if step[0] == "tool":
            content = [{"type": "tool_use", "id": f"toolu_{next(self._ids):04d}", "name": step[1], "input": step[2]}]
            stop = "tool_use"
        else:
            content = [{"type": "text", "text": step[1].format(results=" | ".join(map(str, results)))}]
            stop = "end_turn"
        return web.json_response({"id": f"msg_{next(self._ids):04d}", "type": "message", "role": "assistant",
                                  "content": content, "model": body["model"], "stop_reason": stop,
                                  "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 5}})

    def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        self.server = LocalApp(app)
        self.url = self.server.start()
        return self.url

    def stop(self) -> None:
        self.server.stop()
