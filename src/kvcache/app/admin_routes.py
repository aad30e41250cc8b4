"""`/healthz`, and the admin routes `/metrics`, `/api/cache/stats`, `/api/webhooks`.

Admin routes want `Authorization: Bearer $KVCACHE_ADMIN_TOKEN` (or the dashboard's
session cookie); with no token configured they answer loopback clients only (see
access.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..shopify.deliveries import MAX_PAGE, OUTCOMES
from .access import access_of
from .metrics import stats_json
from .state import state_of

__all__ = ["admin_routes"]

HEALTH_TIMEOUT = 2.0
Endpoint = Callable[[Request], Awaitable[Response]]


def _refusal(request: Request) -> Response | None:
    """None when the caller may use admin routes, else the 401/403 to answer."""
    access = access_of(request, state_of(request).settings.admin_token)
    if access == "allowed":
        return None
    if access == "forbidden":
        return JSONResponse(
            {"error": "forbidden", "detail": "set KVCACHE_ADMIN_TOKEN to allow remote clients"},
            status_code=403,
        )
    return JSONResponse(
        {"error": "unauthorized"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
    )


def admin(endpoint: Endpoint) -> Endpoint:
    """Wrap an endpoint with the admin rule."""

    async def guarded(request: Request) -> Response:
        refusal = _refusal(request)
        return refusal if refusal is not None else await endpoint(request)

    guarded.__name__ = endpoint.__name__
    return guarded


async def healthz(request: Request) -> Response:
    service = state_of(request).service
    checks: dict[str, Callable[[], Awaitable[Any]]] = {
        "cache_store": lambda: service.cache_store.get("healthz"),
        "claim_store": lambda: service.claim_store.get("healthz"),
        "database": service.log.ping,
    }
    failed = []
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check(), HEALTH_TIMEOUT)
        except Exception:
            failed.append(name)
    if failed:
        return JSONResponse({"status": "unavailable", "failed": failed}, status_code=503)
    return JSONResponse({"status": "ok"})


async def metrics(request: Request) -> Response:
    state = state_of(request)
    state.push_cache()
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def cache_stats(request: Request) -> Response:
    state = state_of(request)
    state.push_cache()
    return JSONResponse(stats_json(state.metrics.cache_sums()))


def _bad(detail: str) -> Response:
    return JSONResponse({"error": "bad_request", "detail": detail}, status_code=400)


async def webhooks_log(request: Request) -> Response:
    query = request.query_params
    outcome = query.get("outcome")
    if outcome is not None and outcome not in OUTCOMES:
        return _bad(f"outcome must be one of {', '.join(OUTCOMES)}")
    try:
        limit = int(query.get("limit", "50"))
        cursor = int(query["cursor"]) if "cursor" in query else None
    except ValueError:
        return _bad("limit and cursor must be whole numbers")
    if not 1 <= limit <= MAX_PAGE:
        return _bad(f"limit must be from 1 to {MAX_PAGE}")
    rows, following = await state_of(request).service.log.page(
        shop=query.get("shop"),
        topic=query.get("topic"),
        outcome=outcome,
        limit=limit,
        cursor=cursor,
    )
    return JSONResponse(
        {
            "deliveries": [row.as_json() for row in rows],
            "next": None if following is None else str(following),
        }
    )


def admin_routes() -> list[Route]:
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", admin(metrics), methods=["GET"]),
        Route("/api/cache/stats", admin(cache_stats), methods=["GET"]),
        Route("/api/webhooks", admin(webhooks_log), methods=["GET"]),
    ]
