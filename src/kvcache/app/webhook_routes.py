"""`POST /webhooks` and `POST /webhooks/{topic}`: the raw body, limited, to the processor."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..shopify.processor import Answer
from .state import State, state_of

__all__ = ["webhook_routes"]


#: A body over the limit is still read (and dropped) up to this many bytes, so the client
#: gets its 413 on a connection closed cleanly, not reset under its unread upload.
DRAIN_LIMIT = 16 << 20


class _TooLarge(Exception):
    def __init__(self, drained: bool) -> None:
        self.drained = drained


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused once it passes `limit` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max(limit, DRAIN_LIMIT):
        raise _TooLarge(drained=False)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > DRAIN_LIMIT:
            raise _TooLarge(drained=False)
        if size <= limit:
            chunks.append(chunk)
    if size > limit:
        raise _TooLarge(drained=True)
    return b"".join(chunks)


def _respond(state: State, answer: Answer) -> Response:
    seconds = answer.seconds if answer.outcome in ("processed", "failed") else None
    state.metrics.observe(answer.topic, answer.outcome, seconds)
    return JSONResponse(answer.as_json(), status_code=answer.status, headers=answer.headers)


async def receive(request: Request) -> Response:
    state = state_of(request)
    path_topic = request.path_params.get("topic")
    try:
        body = await _read_body(request, state.settings.webhook_body_limit)
    except _TooLarge as refused:
        limit = state.settings.webhook_body_limit
        answer = Answer(413, "rejected", "", f"the body is over the limit of {limit} bytes")
        response = _respond(state, answer)
        if not refused.drained:
            response.headers["Connection"] = "close"
        return response
    answer = await state.service.processor.process(
        request.headers, body, path_topic=path_topic.strip("/") if path_topic else None
    )
    return _respond(state, answer)


def webhook_routes() -> list[Route]:
    return [
        Route("/webhooks", receive, methods=["POST"]),
        Route("/webhooks/{topic:path}", receive, methods=["POST"]),
    ]
