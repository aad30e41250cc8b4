"""`ShopifyAdminEmulator`: a local Shopify Admin GraphQL API on a loopback port.

    async with ShopifyAdminEmulator(latency=0.1) as shopify:
        shopify.add_customer("bob@example.com", first_name="Bob")
        admin = AdminClient(shopify.shop, shopify.token, admin_url=shopify.admin_url())

A real HTTP server (uvicorn, in a thread of its own) answering as Shopify does:
`POST /admin/api/{version}/graphql.json` for the default shop, or
`/shops/{shop}/admin/api/{version}/graphql.json` for any other. It checks
`X-Shopify-Access-Token`, runs the customer queries and mutations (see
`_graphql`), reports `extensions.cost` on every answer and throttles with the
plan's leaky bucket, as a THROTTLED error with HTTP 200 or (`throttle_status=429`)
as HTTP 429 with `Retry-After` in seconds. `fail_next()` makes the next answers
fail with any status; `legacy=True` (or an API version before 2025-01) has no
`customerByIdentifier`; `latency` delays every answer. Counters tell what it served.
`GET /_emulator/stats` gives the same counters over HTTP.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Self

import uvicorn
from graphql import (
    DocumentNode,
    GraphQLError,
    OperationDefinitionNode,
    execute_sync,
    parse,
    validate,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..shopify.admin import ACCESS_TOKEN_HEADER, DEFAULT_API_VERSION
from ._graphql import api_schema, query_cost, shopify_errors, version_features
from ._shop import PLANS, Bucket, EmulatedShop

__all__ = ["ShopifyAdminEmulator"]

MAX_QUERY_COST = 1000
START_TIMEOUT = 20.0
INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"
THROTTLED_DOCS = "https://shopify.dev/api/usage/rate-limits"


@dataclass(frozen=True, slots=True)
class _Fault:
    status: int
    retry_after: float | None
    body: Any


class ShopifyAdminEmulator:
    """A local Admin GraphQL API. `with`/`async with` it, or `start()` and `stop()`.

    `access_token` is the token every shop accepts (None: any non-empty token).
    `plan` picks Shopify's bucket ("standard": 2000 points, 100 a second); `bucket_size`
    and `restore_rate` override it. `clock` drives the buckets (tests pass a fake one).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        shop: str = "demo.myshopify.com",
        access_token: str | None = "shpat_emulator",
        plan: str = "standard",
        bucket_size: float | None = None,
        restore_rate: float | None = None,
        latency: float = 0.0,
        legacy: bool = False,
        throttle_status: int = 200,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if plan not in PLANS:
            raise ValueError(f"plan must be one of {', '.join(PLANS)}, not {plan!r}")
        if throttle_status not in (200, 429):
            raise ValueError("throttle_status must be 200 (THROTTLED error) or 429")
        if isinstance(latency, bool) or not isinstance(latency, int | float) or latency < 0:
            raise ValueError(f"latency must be seconds >= 0, not {latency!r}")
        maximum, rate = PLANS[plan]
        self.bucket_size = float(bucket_size if bucket_size is not None else maximum)
        self.restore_rate = float(restore_rate if restore_rate is not None else rate)
        if self.bucket_size <= 0 or self.restore_rate <= 0:
            raise ValueError("bucket_size and restore_rate must be positive")
        self.host = host
        self.port = port
        self.shop = shop
        self.token = access_token
        self.latency = float(latency)
        self.legacy = legacy
        self.throttle_status = throttle_status
        self._clock = clock
        self._lock = threading.Lock()
        self._shops: dict[str, EmulatedShop] = {}
        self._faults: deque[_Fault] = deque()
        self._counts: Counter[str] = Counter()
        self._operations: Counter[str] = Counter()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.add_shop(shop, access_token=access_token)

    # -- shops and customers --------------------------------------------------

    def add_shop(self, domain: str, *, access_token: str | None = None) -> None:
        """Another shop (its own customers and bucket), reached at `admin_url(domain)`."""
        with self._lock:
            bucket = Bucket(self.bucket_size, self.restore_rate, self._clock)
            self._shops[domain] = EmulatedShop(domain, bucket, access_token)

    def _shop(self, domain: str | None) -> EmulatedShop:
        domain = domain or self.shop
        with self._lock:
            if domain not in self._shops:
                bucket = Bucket(self.bucket_size, self.restore_rate, self._clock)
                self._shops[domain] = EmulatedShop(domain, bucket, self.token)
            return self._shops[domain]

    def add_customer(
        self,
        email: str | None = None,
        *,
        first_name: str | None = None,
        last_name: str | None = None,
        tags: Iterable[str] = (),
        phone: str | None = None,
        shop: str | None = None,
    ) -> dict[str, Any]:
        """Add a customer as customerCreate would (same rules); returns its GraphQL object."""
        fields: dict[str, Any] = {"email": email, "firstName": first_name, "lastName": last_name}
        fields |= {"phone": phone, "tags": list(tags)}
        return self._shop(shop).create(fields).node()

    def update_customer(
        self, customer: Any, *, shop: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Change a customer (`email=`, `firstName=`, ...) as the merchant would in the admin."""
        return self._shop(shop).update(customer, fields).node()

    def customers(self, shop: str | None = None) -> list[dict[str, Any]]:
        return [record.node() for record in self._shop(shop).all()]

    # -- faults and counters ------------------------------------------------------

    def fail_next(
        self, status: int, times: int = 1, *, retry_after: float | None = None, body: Any = None
    ) -> None:
        """Answer the next `times` GraphQL requests with `status` (and `Retry-After`)."""
        with self._lock:
            self._faults.extend(_Fault(status, retry_after, body) for _ in range(times))

    def clear_faults(self) -> None:
        """Forget the failures `fail_next` queued and no request used yet."""
        with self._lock:
            self._faults.clear()

    @property
    def calls(self) -> int:
        """GraphQL requests received, whatever was answered."""
        return self._counts["requests"]

    def stats(self) -> dict[str, Any]:
        """`requests`, `served`, `throttled`, `failed` (injected), `unauthorized`, and
        `operations`: how many times each root field ran (e.g. customerByIdentifier)."""
        with self._lock:
            names = ("requests", "served", "throttled", "failed", "unauthorized")
            counts: dict[str, Any] = {name: self._counts[name] for name in names}
            counts["operations"] = dict(self._operations)
        return counts

    def operations(self, name: str) -> int:
        with self._lock:
            return self._operations[name]

    def reset_counters(self) -> None:
        with self._lock:
            self._counts.clear()
            self._operations.clear()

    # -- addresses and lifecycle ---------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def admin_url(self, shop: str | None = None, api_version: str = DEFAULT_API_VERSION) -> str:
        if shop is None or shop == self.shop:
            return f"{self.url}/admin/api/{api_version}/graphql.json"
        return f"{self.url}/shops/{shop}/admin/api/{api_version}/graphql.json"

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say so, and
        # without it every answer waits out the client's delayed ACK (40 ms).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app(), log_level="warning", lifespan="off", access_log=False)
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="shopify-emulator", daemon=True
        )
        self._server, self._thread, self._socket = server, thread, sock
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the Shopify emulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        server, thread, sock = self._server, self._thread, self._socket
        self._server = self._thread = self._socket = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(START_TIMEOUT)
        if sock is not None:
            sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    def __repr__(self) -> str:
        return f"<ShopifyAdminEmulator {self.url} shop={self.shop!r}>"

    # -- the HTTP side -------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/admin/api/{version}/graphql.json", self._graphql, methods=["POST"]),
                Route(
                    "/shops/{shop}/admin/api/{version}/graphql.json",
                    self._graphql,
                    methods=["POST"],
                ),
                Route("/_emulator/stats", self._stats, methods=["GET"]),
            ]
        )

    async def _stats(self, request: Request) -> Response:
        return JSONResponse(self.stats())

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    async def _graphql(self, request: Request) -> Response:
        self._count("requests")
        shop = self._shop(request.path_params.get("shop"))
        features = version_features(request.path_params["version"], self.legacy)
        if features is None:
            return JSONResponse({"errors": "Not Found"}, status_code=404)
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        if fault is not None:
            self._count("failed")
            headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            body = fault.body if fault.body is not None else {"errors": f"HTTP {fault.status}"}
            return JSONResponse(body, status_code=fault.status, headers=headers)
        given = request.headers.get(ACCESS_TOKEN_HEADER.lower(), "")
        if not given or (shop.token is not None and given != shop.token):
            self._count("unauthorized")
            return JSONResponse({"errors": INVALID_TOKEN}, status_code=401)
        try:
            payload = json.loads(await request.body())
            query = payload["query"]
            variables = payload.get("variables") or {}
            if not isinstance(query, str) or not isinstance(variables, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            body = {"errors": {"query": "Required parameter missing or invalid"}}
            return JSONResponse(body, status_code=400)
        status, answer, headers = self._run(shop, features, query, variables)
        if self.latency:
            await asyncio.sleep(self.latency)
        return JSONResponse(answer, status_code=status, headers=headers)

    def _run(
        self, shop: EmulatedShop, features: tuple[bool, bool], query: str, variables: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        schema = api_schema(*features)
        document, invalid = _checked(query, *features)
        if document is None:
            return 200, {"errors": invalid}, {}
        cost = query_cost(schema, document, variables)
        if cost.requested > MAX_QUERY_COST:
            message = (
                f"Query cost is {cost.requested}, which exceeds the single query max cost "
                f"limit ({MAX_QUERY_COST})."
            )
            error = {
                "message": message,
                "extensions": {
                    "code": "MAX_COST_EXCEEDED",
                    "cost": cost.requested,
                    "maxCost": MAX_QUERY_COST,
                },
            }
            return 200, {"errors": [error]}, {}
        with shop.lock:
            if not shop.bucket.take(cost.requested):
                return self._throttled(shop, cost.requested)
            result = execute_sync(
                schema, document, variable_values=variables, context_value={"shop": shop}
            )
            actual = cost.actual(result.data)
            shop.bucket.refund(cost.requested - actual)
            extensions = _cost(cost.requested, actual, shop.bucket)
        answer: dict[str, Any] = {}
        if result.errors:
            answer["errors"] = shopify_errors(list(result.errors))
        if result.data is not None:
            answer["data"] = result.data
        answer["extensions"] = extensions
        self._count("served")
        with self._lock:
            for definition in document.definitions:
                if isinstance(definition, OperationDefinitionNode):
                    for selection in definition.selection_set.selections:
                        name = getattr(getattr(selection, "name", None), "value", None)
                        if name and not name.startswith("__"):
                            self._operations[name] += 1
        return 200, answer, {}

    def _throttled(
        self, shop: EmulatedShop, requested: int
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        self._count("throttled")
        error = {
            "message": "Throttled",
            "extensions": {"code": "THROTTLED", "documentation": THROTTLED_DOCS},
        }
        body = {"errors": [error], "extensions": _cost(requested, None, shop.bucket)}
        if self.throttle_status == 429:
            wait = max(1, math.ceil(shop.bucket.seconds_until(requested)))
            return 429, body, {"Retry-After": str(wait)}
        return 200, body, {}


@functools.lru_cache(maxsize=512)
def _checked(
    query: str, by_identifier: bool, default_email: bool
) -> tuple[DocumentNode | None, list[dict[str, Any]]]:
    """The parsed document, or Shopify's errors for it; an app sends the same few queries."""
    try:
        document = parse(query)
    except GraphQLError as exc:
        return None, shopify_errors([exc])
    invalid = validate(api_schema(by_identifier, default_email), document)
    return (None, shopify_errors(list(invalid))) if invalid else (document, [])


def _cost(requested: int, actual: int | None, bucket: Bucket) -> dict[str, Any]:
    return {
        "cost": {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": bucket.status(),
        }
    }
