"""`GET /api/cost[?window=24h]`: the cost projection of the traffic the history holds.

An admin route (bearer token, or loopback without one). The JSON is
`kvcache.cost.project`'s (DESIGN.md's shape); a bad window is 400, the app
database not answering 503.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..cost import parse_window, project
from .admin_routes import admin
from .state import state_of
from .usage import load_usage

__all__ = ["DEFAULT_WINDOW", "cost_routes"]

logger = logging.getLogger(__name__)

DEFAULT_WINDOW = "24h"


async def cost(request: Request) -> Response:
    try:
        window = parse_window(request.query_params.get("window", DEFAULT_WINDOW))
    except ValueError as exc:
        return JSONResponse({"error": "bad_request", "detail": str(exc)}, status_code=400)
    service = state_of(request).service
    service.record_meter()  # this worker's latest counts too
    try:
        usage = await load_usage(service.history, window, now=service.history.clock())
    except (SQLAlchemyError, OSError) as exc:
        logger.warning("app database failed: %s", exc)
        body = {"error": "database_unavailable", "detail": "the app database does not answer"}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})
    return JSONResponse(project(usage))


def cost_routes() -> list[Route]:
    return [Route("/api/cost", admin(cost), methods=["GET"])]
