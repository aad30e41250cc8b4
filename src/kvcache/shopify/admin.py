"""A Shopify Admin GraphQL client that keeps to the shop's budget instead of fighting it.

    admin = AdminClient("demo.myshopify.com", token, api_version="2025-01")
    data = await admin.execute("query { shop { name } }")

`POST {admin_url}` with `X-Shopify-Access-Token`, where `admin_url` defaults to
`https://{shop}/admin/api/{version}/graphql.json`, on one `httpx.AsyncClient` pool.

Shopify throttles in two ways, and both are retried: HTTP 429 with `Retry-After`
in seconds (every caller of the shop then waits that long), and HTTP 200 with
`errors[].extensions.code == "THROTTLED"` (wait until the reported bucket can pay
the query's requested cost). Before each request the query's cost is reserved
from the shop's `CostBudget`, which follows `extensions.cost.throttleStatus`, so
concurrent callers queue for budget rather than all being throttled; none of
Shopify's own clients reads that status. 502, 503, 504 and no answer at all are
retried with a doubling back-off. 401 and 403 raise `ShopifyAuthError`, 402, 423 and
other 4xx `ShopifyHTTPError`, at once: no retry helps them. After `retries` retries,
`ShopifyUnavailable`. The token is never in a repr, a log line or an error.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..errors import GraphQLError, ShopifyAuthError, ShopifyHTTPError, ShopifyUnavailable
from .budget import CostBudget, ThrottleStatus, requested_cost

__all__ = ["DEFAULT_API_VERSION", "AdminClient", "GraphQLResponse", "default_admin_url"]

logger = logging.getLogger(__name__)

#: The oldest version with `customerByIdentifier` (older ones fall back to a search).
DEFAULT_API_VERSION = "2025-01"
ACCESS_TOKEN_HEADER = "X-Shopify-Access-Token"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
AUTH_STATUSES = frozenset({401, 403})
#: Cost reserved for a query never seen before (a mutation costs 10 on Shopify).
FIRST_ESTIMATE = 10.0
_ESTIMATES_MAX = 256
Sleep = Callable[[float], Awaitable[None]]


def default_admin_url(shop: str, api_version: str) -> str:
    return f"https://{shop}/admin/api/{api_version}/graphql.json"


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """`Retry-After` as seconds: a number of seconds, or an HTTP date; None if unreadable."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - now()
    return max(0.0, seconds) if seconds == seconds else None  # NaN is unreadable


@dataclass(frozen=True, slots=True)
class GraphQLResponse:
    """A successful answer: `data`, the top-level `extensions` and the HTTP status."""

    data: dict[str, Any]
    extensions: dict[str, Any] = field(default_factory=dict)
    status: int = 200

    @property
    def throttle_status(self) -> ThrottleStatus | None:
        return ThrottleStatus.parse(self.extensions)


class _Retry(Exception):
    """One attempt failed in a way a later attempt may not: wait `delay`, then try again."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        self.reason = reason
        self.delay = delay
        super().__init__(reason)


class AdminClient:
    """One shop's Admin GraphQL API. Use `async with` or call `aclose()`.

    `http` borrows a shared `httpx.AsyncClient` (left open by `aclose`); without
    one the client makes its own pool with `timeout`. `retries` bounds the
    retries of one call; `max_wait` is the longest single wait a call sits
    through (a longer `Retry-After` raises `ShopifyUnavailable` at once, carrying
    it). `clock` and `sleep` are injectable so tests move time themselves.
    """

    def __init__(
        self,
        shop: str,
        token: str,
        *,
        api_version: str = DEFAULT_API_VERSION,
        admin_url: str | None = None,
        http: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
        retries: int = 5,
        backoff: float = 0.5,
        max_wait: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not isinstance(shop, str) or not shop:
            raise ValueError("shop must be a non-empty domain, e.g. demo.myshopify.com")
        if not isinstance(token, str) or not token:
            raise ShopifyAuthError(f"no access token for {shop}", shop=shop, status=401)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a whole number >= 0, not {retries!r}")
        for name, value in (("timeout", timeout), ("backoff", backoff), ("max_wait", max_wait)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        self.shop = shop
        self.api_version = api_version
        self.admin_url = admin_url or default_admin_url(shop, api_version)
        self.retries = retries
        self.backoff = float(backoff)
        self.max_wait = float(max_wait)
        self.budget = CostBudget(clock=clock, sleep=sleep)
        #: HTTP requests sent, and how many of them were throttled (either way).
        self.requests = 0
        self.throttled = 0
        self._headers = {ACCESS_TOKEN_HEADER: token, "Content-Type": "application/json"}
        self._sleep = sleep
        self._estimates: dict[str, float] = {}
        self._own_http = http is None
        self._http = http if http is not None else httpx.AsyncClient(timeout=timeout)
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0))

    def __repr__(self) -> str:
        return f"<AdminClient shop={self.shop!r} api_version={self.api_version!r}>"

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def execute(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        *,
        cost: float | None = None,
    ) -> GraphQLResponse:
        """Run one query or mutation; `cost` is the points to reserve (default: learned).

        Raises `GraphQLError` when the answer has `errors` (other than THROTTLED),
        `ShopifyAuthError`, `ShopifyHTTPError` or, after the retries, `ShopifyUnavailable`.
        """
        if not isinstance(query, str) or not query.strip():
            raise ValueError("query must be a non-empty GraphQL document")
        body: dict[str, Any] = {"query": query}
        if variables is not None:
            body["variables"] = dict(variables)
        last, waited = "no attempt", self.backoff
        for attempt in range(self.retries + 1):
            estimate = cost if cost is not None else self._estimates.get(query, FIRST_ESTIMATE)
            try:
                return await self._attempt(query, body, estimate)
            except _Retry as retry:
                last = retry.reason
                if attempt == self.retries:
                    break
                delay = retry.delay
                if delay is None:
                    delay = self.backoff * 2**attempt * random.uniform(0.75, 1.0)
                waited = delay
                if delay > self.max_wait:
                    raise ShopifyUnavailable(
                        f"{self.shop}: {last}; Shopify asks to wait {delay:.0f} s",
                        shop=self.shop,
                        retry_after=delay,
                    ) from None
                logger.info("%s: %s; retry %d in %.2f s", self.shop, last, attempt + 1, delay)
                if delay > 0:
                    await self._sleep(delay)
        raise ShopifyUnavailable(
            f"{self.shop}: {last} (gave up after {self.retries + 1} attempts)",
            shop=self.shop,
            retry_after=max(waited, self.backoff),
        )

    async def _attempt(self, query: str, body: dict[str, Any], estimate: float) -> GraphQLResponse:
        paused = self.budget.paused_for()
        if paused > self.max_wait:
            raise ShopifyUnavailable(
                f"{self.shop}: Shopify asked to wait {paused:.0f} s more",
                shop=self.shop,
                retry_after=paused,
            )
        await self.budget.reserve(estimate)
        status: ThrottleStatus | None = None
        try:
            self.requests += 1
            try:
                response = await self._http.post(
                    self.admin_url, json=body, headers=self._headers, timeout=self._timeout
                )
            except httpx.TimeoutException:
                raise _Retry("no answer in time") from None
            except httpx.TransportError as exc:
                raise _Retry(f"no answer ({type(exc).__name__})") from None
            payload = self._json(response)
            extensions = payload.get("extensions") if isinstance(payload, dict) else None
            status = ThrottleStatus.parse(extensions)
            self._learn(query, extensions)
            return self._answer(response, payload, status, estimate)
        finally:
            self.budget.settle(estimate, status)

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            return None

    def _learn(self, query: str, extensions: Any) -> None:
        requested = requested_cost(extensions)
        if requested is not None:
            if len(self._estimates) >= _ESTIMATES_MAX and query not in self._estimates:
                self._estimates.clear()
            self._estimates[query] = requested

    def _answer(
        self,
        response: httpx.Response,
        payload: Any,
        status: ThrottleStatus | None,
        estimate: float,
    ) -> GraphQLResponse:
        code = response.status_code
        if code == 429:
            self.throttled += 1
            wait = parse_retry_after(response.headers.get("retry-after"))
            wait = 1.0 if wait is None else wait
            self.budget.pause(wait)
            raise _Retry("HTTP 429 (throttled)", wait)
        if code in RETRY_STATUSES:
            raise _Retry(f"HTTP {code}")
        if code in AUTH_STATUSES:
            raise ShopifyAuthError(
                f"{self.shop} refused the access token (HTTP {code}): {_detail(payload)}",
                shop=self.shop,
                status=code,
            )
        if code >= 400 or not isinstance(payload, dict):
            if code < 400:  # a 2xx or 3xx that is not a GraphQL answer
                raise _Retry(f"HTTP {code} without a GraphQL body")
            raise ShopifyHTTPError(
                f"{self.shop} answered HTTP {code}: {_detail(payload)}", shop=self.shop, status=code
            )
        errors = payload.get("errors")
        if errors:
            listed = _error_list(errors)
            if any(_code(error) == "THROTTLED" for error in listed):
                self.throttled += 1
                need = requested_cost(payload.get("extensions")) or estimate
                wait = self.budget.wait_for(need, status) if status is not None else None
                raise _Retry("THROTTLED", wait)
            raise GraphQLError(listed, shop=self.shop, data=payload.get("data"))
        data = payload.get("data")
        if not isinstance(data, dict):
            raise _Retry(f"HTTP {code} without data or errors")
        extensions = payload.get("extensions")
        return GraphQLResponse(data, extensions if isinstance(extensions, dict) else {}, code)


def _error_list(errors: Any) -> list[dict[str, Any]]:
    """Shopify's `errors` is a list of objects, or (on some 4xx) one string."""
    if isinstance(errors, list):
        return [e if isinstance(e, dict) else {"message": str(e)} for e in errors]
    return [{"message": str(errors)}]


def _code(error: Mapping[str, Any]) -> str | None:
    extensions = error.get("extensions")
    code = extensions.get("code") if isinstance(extensions, dict) else None
    return code if isinstance(code, str) else None


def _detail(payload: Any) -> str:
    if isinstance(payload, dict) and payload.get("errors"):
        return "; ".join(str(e.get("message", "")) for e in _error_list(payload["errors"]))[:300]
    return "no details"
