"""Who may use the admin routes: a bearer token, the dashboard's session cookie, or loopback.

With `KVCACHE_ADMIN_TOKEN` set, a request needs `Authorization: Bearer <token>` or
the cookie the dashboard's login form sets. The cookie holds an HMAC of the token,
not the token, so it is useless anywhere else and dies when the token changes;
it is HttpOnly and SameSite=Strict, so another site can neither read it nor make
the browser send it (no cross-site form can replay a delivery). With no token
configured only loopback clients are let in (a development default that never
exposes the log or the metrics to the network).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import Literal

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["COOKIE", "Access", "access_of", "session_value", "set_session", "valid_token"]

COOKIE = "kvcache_session"
SESSION_SECONDS = 12 * 3600
_PURPOSE = b"kvcache dashboard session v1"

Access = Literal["allowed", "forbidden", "unauthorized"]


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def session_value(token: str) -> str:
    """The cookie value of a session opened with `token`."""
    return hmac.new(token.encode(), _PURPOSE, hashlib.sha256).hexdigest()


def valid_token(given: str, token: str) -> bool:
    """Constant-time comparison of a presented token with the configured one."""
    return hmac.compare_digest(given.encode(), token.encode())


def access_of(request: Request, token: str | None) -> Access:
    """Whether `request` may use the admin routes under admin token `token`."""
    if token is None:
        return "allowed" if _loopback(request) else "forbidden"
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and valid_token(given.strip(), token):
        return "allowed"
    cookie = request.cookies.get(COOKIE)
    if cookie is not None and hmac.compare_digest(cookie.encode(), session_value(token).encode()):
        return "allowed"
    return "unauthorized"


def set_session(response: Response, request: Request, token: str | None) -> None:
    """Open a session on `response` (`token` None: close it)."""
    if token is None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return
    response.set_cookie(
        COOKIE,
        session_value(token),
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
