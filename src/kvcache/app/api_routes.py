"""The JSON API over the origins: customers by e-mail and the shop configuration.

    GET  /api/customers?shop=S&email=E   200 customer | 404 {"error": "not_found"}; X-Cache
    POST /api/customers?shop=S           201 customer | 422 {"errors": [{"field", "message"}]}
    GET  /api/shops/{shop}/config        200 config | 404
    PUT  /api/shops/{shop}/config        200 config | 404 | 422 (nothing written)

Admin routes (bearer token, or loopback without one). An unknown or uninstalled
shop is 404. Shopify throttling or down past the retries, or the app database
not answering, is 503 with `Retry-After`; a shop whose token Shopify refuses, or
another answer no retry changes, is 502. Never a 500 for an origin's failure.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import (
    CustomerCreationError,
    GraphQLError,
    ShopifyAuthError,
    ShopifyError,
    ShopifyHTTPError,
    ShopifyUnavailable,
    ShopNotFound,
)
from ..shopify.customers import check_email
from ..shopify.shop_config import ConfigFieldError, changes_from_json
from ..shopify.shops import check_shop
from .admin_routes import admin
from .state import state_of
from .webhook_routes import _read_body, _TooLarge

__all__ = ["api_routes"]

logger = logging.getLogger(__name__)

BODY_LIMIT = 64 * 1024
DATABASE_RETRY_AFTER = 5
NOT_FOUND = {"error": "not_found"}


def _bad(detail: str, status: int = 400) -> Response:
    return JSONResponse({"error": "bad_request", "detail": detail}, status_code=status)


def _unavailable(error: str, detail: str, seconds: float | None) -> Response:
    wait = max(1, math.ceil(seconds if seconds else DATABASE_RETRY_AFTER))
    body = {"error": error, "detail": detail}
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(wait)})


def _failure(exc: Exception) -> Response:
    """An origin's failure as the status the module docstring promises."""
    if isinstance(exc, ShopNotFound):
        return JSONResponse(NOT_FOUND | {"detail": str(exc)}, status_code=404)
    if isinstance(exc, ShopifyUnavailable):
        return _unavailable("shopify_unavailable", str(exc), exc.retry_after)
    if isinstance(exc, ShopifyAuthError):
        return JSONResponse({"error": "shopify_unauthorized", "detail": str(exc)}, status_code=502)
    if isinstance(exc, ShopifyHTTPError):
        body = {"error": "shopify_refused", "status": exc.status, "detail": str(exc)}
        return JSONResponse(body, status_code=502)
    if isinstance(exc, GraphQLError):
        body = {"error": "shopify_graphql", "errors": exc.errors}
        return JSONResponse(body, status_code=502)
    logger.warning("app database failed: %s", exc)
    return _unavailable("database_unavailable", "the app database does not answer", None)


Call = Callable[[], Awaitable[Response]]
_ORIGIN_ERRORS = (ShopifyError, SQLAlchemyError, OSError)


async def _guarded(call: Call) -> Response:
    try:
        return await call()
    except CustomerCreationError as refused:
        return JSONResponse({"errors": refused.errors}, status_code=422)
    except _ORIGIN_ERRORS as exc:
        return _failure(exc)


async def _json_body(request: Request) -> Any:
    """The parsed body; raises ValueError with what is wrong."""
    try:
        raw = await _read_body(request, BODY_LIMIT)
    except _TooLarge:
        raise ValueError(f"the body is over {BODY_LIMIT} bytes") from None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise ValueError("the body is not JSON") from None


def _shop_param(value: str | None) -> str:
    if not value:
        raise ValueError("the shop parameter is required")
    return check_shop(value)


async def get_customer(request: Request) -> Response:
    try:
        shop = _shop_param(request.query_params.get("shop"))
        email = check_email(request.query_params.get("email") or "")
    except ValueError as exc:
        return _bad(str(exc))
    origins = state_of(request).service.origins

    async def call() -> Response:
        found = await (await origins.customers(shop)).lookup(email)
        headers = {"X-Cache": "HIT" if found.hit else "MISS"}
        if found.customer is None:
            return JSONResponse(NOT_FOUND, status_code=404, headers=headers)
        return JSONResponse(found.customer, headers=headers)

    return await _guarded(call)


async def create_customer(request: Request) -> Response:
    try:
        shop = _shop_param(request.query_params.get("shop"))
        body = await _json_body(request)
    except ValueError as exc:
        return _bad(str(exc))
    if not isinstance(body, dict):
        return JSONResponse(
            {"errors": [{"field": [], "message": "the body must be a JSON object"}]},
            status_code=422,
        )
    origins = state_of(request).service.origins

    async def call() -> Response:
        customer = await (await origins.customers(shop)).create(body)
        return JSONResponse(customer, status_code=201)

    return await _guarded(call)


async def shop_config(request: Request) -> Response:
    try:
        shop = check_shop(request.path_params["shop"])
    except ValueError as exc:
        return _bad(str(exc))
    origins = state_of(request).service.origins
    changes: dict[str, Any] | None = None
    if request.method == "PUT":
        try:
            changes = changes_from_json(await _json_body(request))
        except ConfigFieldError as bad:
            return JSONResponse({"errors": bad.errors}, status_code=422)
        except ValueError as exc:
            return _bad(str(exc))

    async def call() -> Response:
        await origins.shops.installed(shop)
        if changes is not None:
            return JSONResponse((await origins.config.update(shop, **changes)).as_json())
        config = await origins.config.get(shop)
        if config is None:
            return JSONResponse(NOT_FOUND, status_code=404)
        return JSONResponse(config.as_json())

    return await _guarded(call)


def api_routes() -> list[Route]:
    return [
        Route("/api/customers", admin(get_customer), methods=["GET"]),
        Route("/api/customers", admin(create_customer), methods=["POST"]),
        Route("/api/shops/{shop}/config", admin(shop_config), methods=["GET", "PUT"]),
    ]
