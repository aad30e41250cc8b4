"""`POST /webhooks` and `POST /webhooks/{topic}`: the raw body, limited, to the processor."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..shopify.processor import Answer
from .state import State, state_of

__all__ = ["webhook_routes"]


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused as soon as it passes `limit` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
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
    except _TooLarge:
        limit = state.settings.webhook_body_limit
        answer = Answer(413, "rejected", "", f"the body is over the limit of {limit} bytes")
        response = _respond(state, answer)
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
