"""The dashboard: the page, its login, its data and the replay button's route.

    GET  /dashboard              the page (admin rule); 401 with a login form without it
    POST /dashboard/login        form field `token` -> 303 to /dashboard with the session cookie
    POST /dashboard/logout       drops the cookie
    GET  /dashboard/static/...   the page's scripts and styles, shipped in the package
    GET  /api/dashboard?minutes=60            the page's data (dashboard_data.py)
    POST /api/webhooks/replay {"webhookId", "shop"?}   replays a failed delivery

The page loads nothing from another origin: its Content-Security-Policy allows
this origin only, so a CDN reference would fail loudly in the browser.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Awaitable, Callable
from functools import cache
from importlib.resources import files
from urllib.parse import parse_qs

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from .access import access_of, set_session, valid_token
from .admin_routes import admin
from .api_routes import _json_body
from .dashboard_data import MAX_MINUTES, SharedAnswers, dashboard_json
from .service import ReplayRefused
from .state import state_of
from .webhook_routes import _read_body, _TooLarge

__all__ = ["dashboard_routes"]

logger = logging.getLogger(__name__)

FORM_LIMIT = 4096
DEFAULT_MINUTES = 60
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-store"}
REPLAY_STATUS = {"not_found": 404, "not_failed": 409, "ambiguous": 400}


@cache
def _template(name: str) -> str:
    return (files("kvcache.app") / "templates" / name).read_text(encoding="utf-8")


def _login_form(message: str, status: int = 401) -> Response:
    body = _template("login.html").replace("{message}", html.escape(message))
    return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)


async def page(request: Request) -> Response:
    access = access_of(request, state_of(request).settings.admin_token)
    if access == "forbidden":
        return _login_form(
            "Only loopback clients may open the dashboard while no KVCACHE_ADMIN_TOKEN is set.",
            403,
        )
    if access == "unauthorized":
        return _login_form("")
    return HTMLResponse(_template("dashboard.html"), headers=PAGE_HEADERS)


async def login(request: Request) -> Response:
    token = state_of(request).settings.admin_token
    try:
        form = parse_qs((await _read_body(request, FORM_LIMIT)).decode("utf-8", "replace"))
    except _TooLarge:
        return _login_form("The form is too large.", 413)
    given = form.get("token", [""])[0]
    if token is not None and not valid_token(given, token):
        return _login_form("Wrong token.")
    response = RedirectResponse("/dashboard", status_code=303)
    set_session(response, request, token)
    return response


async def logout(request: Request) -> Response:
    response = RedirectResponse("/dashboard", status_code=303)
    set_session(response, request, None)
    return response


def _bad(detail: str) -> Response:
    return JSONResponse({"error": "bad_request", "detail": detail}, status_code=400)


def _data_endpoint() -> Callable[[Request], Awaitable[Response]]:
    shared = SharedAnswers()  # one per app: requests of one window share an answer

    async def data(request: Request) -> Response:
        try:
            minutes = int(request.query_params.get("minutes", str(DEFAULT_MINUTES)))
        except ValueError:
            return _bad("minutes must be a whole number")
        if not 1 <= minutes <= MAX_MINUTES:
            return _bad(f"minutes must be from 1 to {MAX_MINUTES}")
        try:
            state = state_of(request)
            answer = await shared.get(minutes, lambda: dashboard_json(state, minutes))
            return JSONResponse(answer)
        except (SQLAlchemyError, OSError) as exc:
            logger.warning("dashboard data: the app database failed: %s", exc)
            return JSONResponse(
                {"error": "database_unavailable"}, status_code=503, headers={"Retry-After": "5"}
            )

    return data


async def replay(request: Request) -> Response:
    try:
        body = await _json_body(request)
    except ValueError as exc:
        return _bad(str(exc))
    webhook_id = body.get("webhookId") if isinstance(body, dict) else None
    shop = body.get("shop") if isinstance(body, dict) else None
    if not isinstance(webhook_id, str) or not webhook_id or len(webhook_id) > 255:
        return _bad("webhookId must be a non-empty string of at most 255 characters")
    if shop is not None and not isinstance(shop, str):
        return _bad("shop must be a string")
    try:
        answer = await state_of(request).service.replay(webhook_id, shop)
    except ReplayRefused as refused:
        body = {"error": refused.reason, "detail": str(refused)}
        return JSONResponse(body, status_code=REPLAY_STATUS[refused.reason])
    except (SQLAlchemyError, OSError) as exc:
        logger.warning("replay: the app database failed: %s", exc)
        return JSONResponse({"error": "database_unavailable"}, status_code=503)
    return JSONResponse(
        {"webhookId": webhook_id, "outcome": answer.outcome, "detail": answer.detail}
    )


def dashboard_routes() -> list[BaseRoute]:
    return [
        Route("/dashboard", page, methods=["GET"]),
        Route("/dashboard/login", login, methods=["POST"]),
        Route("/dashboard/logout", logout, methods=["POST"]),
        Mount("/dashboard/static", StaticFiles(packages=[("kvcache.app", "static")])),
        Route("/api/dashboard", admin(_data_endpoint()), methods=["GET"]),
        Route("/api/webhooks/replay", admin(replay), methods=["POST"]),
    ]
