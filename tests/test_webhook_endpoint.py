"""The raw ASGI webhook endpoint, in process: it answers byte for byte as Starlette's
`JSONResponse` did, and handles the edges a real client rarely shows (a body declared
far over the limit, a client gone before its body arrived). Every status over HTTP
is in test_webhook_statuses.py, against this same endpoint."""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from starlette.responses import JSONResponse

from kvcache.app.metrics import Metrics
from kvcache.app.service import Service
from kvcache.app.state import State
from kvcache.app.webhook_routes import DRAIN_LIMIT, WebhookEndpoint, _respond
from kvcache.shopify.processor import Answer
from service import settings_for

Message = dict[str, Any]


async def _sent_by(app: Any, scope: dict[str, Any], messages: list[Message]) -> list[Message]:
    feed = iter(messages)
    sent: list[Message] = []

    async def receive() -> Message:
        return next(feed, {"type": "http.disconnect"})

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def _state(tmp_path: Path) -> State:
    # These paths end before the processor: no service is opened.
    settings = settings_for(tmp_path, webhook_body_limit=100)
    return State(settings, cast(Service, None), Metrics({}))


ANSWERS = [
    Answer(200, "processed", "customers/update"),
    Answer(200, "conflict", "customers/update", "reused with another body"),
    Answer(409, "in_progress", "customers/update", "busy", 7),
    Answer(401, "rejected", "", "HMAC signature missing or invalid: «ünïcode»"),
    Answer(503, "failed", "orders/create", "the claim store is unavailable", 5, seconds=0.1),
]


@pytest.mark.parametrize("answer", ANSWERS, ids=[a.outcome + str(a.status) for a in ANSWERS])
@pytest.mark.parametrize("close", [False, True])
async def test_answers_as_json_response_did(tmp_path: Path, answer: Answer, close: bool) -> None:
    expected = JSONResponse(answer.as_json(), status_code=answer.status, headers=answer.headers)
    if close:
        expected.headers["Connection"] = "close"
    scope = {"type": "http", "method": "POST", "path": "/webhooks", "headers": []}
    want = await _sent_by(expected, scope, [])
    state = _state(tmp_path)
    got: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        got.append(message)

    await _respond(state, answer, send, close=close)
    assert [m["type"] for m in got] == [m["type"] for m in want]
    assert (got[0]["status"], got[0]["headers"]) == (want[0]["status"], want[0]["headers"])
    assert got[1]["body"] == want[1]["body"]
    assert not got[1].get("more_body", False)


def _scope(state: State, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/webhooks",
        "headers": headers,
        "app": SimpleNamespace(state=SimpleNamespace(kvcache=state)),
    }


async def test_a_body_declared_far_over_the_limit_is_refused_unread(tmp_path: Path) -> None:
    state = _state(tmp_path)
    declared = str(DRAIN_LIMIT + 1).encode()
    scope = _scope(state, [(b"content-length", declared)])
    endless = [{"type": "http.request", "body": b"x" * 1000, "more_body": True}]
    sent = await _sent_by(WebhookEndpoint(), scope, endless)
    assert sent[0]["status"] == 413
    assert (b"connection", b"close") in sent[0]["headers"]  # the upload was not drained


async def test_a_streamed_body_over_the_limit_is_drained_then_413(tmp_path: Path) -> None:
    state = _state(tmp_path)
    chunks: list[Message] = [
        {"type": "http.request", "body": b"x" * 60, "more_body": True} for _ in range(3)
    ]
    chunks.append({"type": "http.request", "body": b"", "more_body": False})
    sent = await _sent_by(WebhookEndpoint(), _scope(state, []), chunks)
    assert sent[0]["status"] == 413
    assert (b"connection", b"close") not in sent[0]["headers"]
    assert b'"outcome":"rejected"' in sent[1]["body"]


async def test_a_client_gone_before_its_body_gets_no_answer(tmp_path: Path) -> None:
    state = _state(tmp_path)
    partial = [{"type": "http.request", "body": b'{"id":', "more_body": True}]
    assert await _sent_by(WebhookEndpoint(), _scope(state, []), partial) == []
