"""The peer of bench_origins.py: a bare Starlette endpoint answering a constant customer."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

CUSTOMER: dict[str, object] = {
    "id": "gid://shopify/Customer/7000000000001",
    "email": "c0@example.com",
    "firstName": "C0",
    "lastName": None,
    "tags": [],
}


async def customer(request: Request) -> Response:
    return JSONResponse(CUSTOMER, headers={"X-Cache": "HIT"})


app = Starlette(routes=[Route("/api/customers", customer, methods=["GET"])])
