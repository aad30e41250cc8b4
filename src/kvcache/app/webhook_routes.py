"""`POST /webhooks` and `POST /webhooks/{topic}`: the raw body, limited, to the processor.

The endpoint is a plain ASGI app inside Starlette's `Route`s (which still answer
405 for other methods, and Starlette's middleware still turns an unexpected error
into a 500): it reads the scope's headers and the body's messages itself and sends
the JSON answer as two messages, because a Starlette `Request` and `JSONResponse`
cost more per delivery than the rest of the route outside the store. The answers
are byte for byte what `JSONResponse` sends: the extra headers first, then
content-length and content-type.
"""

from __future__ import annotations

import json

from starlette.requests import ClientDisconnect, Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..shopify.processor import Answer
from .state import State

__all__ = ["WebhookEndpoint", "webhook_routes"]


#: A body over the limit is still read (and dropped) up to this many bytes, so the client
#: gets its 413 on a connection closed cleanly, not reset under its unread upload.
DRAIN_LIMIT = 16 << 20
_JSON = (b"content-type", b"application/json")


class _TooLarge(Exception):
    def __init__(self, drained: bool) -> None:
        self.drained = drained


class _Disconnected(ClientDisconnect):
    """The client went away before its body was read: there is no one to answer."""


async def _read_body(request: Request, limit: int) -> bytes:
    """`_read_raw` of a Starlette request (the JSON API's bodies)."""
    declared = request.headers.get("content-length")
    return await _read_raw(None if declared is None else declared.encode(), request.receive, limit)


async def _read_raw(declared: bytes | None, receive: Receive, limit: int) -> bytes:
    """The raw body, refused once it passes `limit` bytes (declared or streamed)."""
    if declared is not None and declared.isdigit() and int(declared) > max(limit, DRAIN_LIMIT):
        raise _TooLarge(drained=False)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _Disconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > DRAIN_LIMIT:
            raise _TooLarge(drained=False)
        if size <= limit and chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if size > limit:
        raise _TooLarge(drained=True)
    return b"".join(chunks)


async def _respond(state: State, answer: Answer, send: Send, *, close: bool = False) -> None:
    """Count the outcome, then send what `JSONResponse(answer.as_json(), ...)` would."""
    seconds = answer.seconds if answer.outcome in ("processed", "failed") else None
    state.metrics.observe(answer.topic, answer.outcome, seconds)
    body = json.dumps(
        answer.as_json(), ensure_ascii=False, allow_nan=False, separators=(",", ":")
    ).encode("utf-8")
    retry = answer.retry_after
    headers = [] if retry is None else [(b"retry-after", str(retry).encode("latin-1"))]
    headers += [(b"content-length", b"%d" % len(body)), _JSON]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class WebhookEndpoint:
    """The ASGI app of both webhook routes (the app's `State` is read from the scope)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: State = scope["app"].state.kvcache
        headers: dict[str, str] = {}
        declared: bytes | None = None
        for name, value in scope["headers"]:
            if declared is None and name == b"content-length":
                declared = value
            # As Starlette's Headers: names lower-cased; of a repeated header the last wins.
            headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        limit = state.settings.webhook_body_limit
        try:
            body = await _read_raw(declared, receive, limit)
        except _Disconnected:
            return
        except _TooLarge as refused:
            answer = Answer(413, "rejected", "", f"the body is over the limit of {limit} bytes")
            await _respond(state, answer, send, close=not refused.drained)
            return
        path_topic = scope.get("path_params", {}).get("topic")
        answer = await state.service.processor.process(
            headers, body, path_topic=path_topic.strip("/") if path_topic else None
        )
        await _respond(state, answer, send)


def webhook_routes() -> list[Route]:
    endpoint = WebhookEndpoint()
    return [
        Route("/webhooks", endpoint, methods=["POST"]),
        Route("/webhooks/{topic:path}", endpoint, methods=["POST"]),
    ]
