"""One Cloudflare API request: pacing, retries, the v4 envelope and its errors.

Cloudflare allows 1,200 API requests per 5 minutes per user and blocks a client
for 5 minutes after a 429, so the client paces itself (a sliding log: any burst
is free while the last 5 minutes hold fewer than the limit), waits as long as a
429's `Retry-After` says (or backs off 1, 2, 4, 8, 16 s without one), and gives
up after 5 such retries. 5xx answers and dropped connections are retried
3 times with the same backoff; every KV request is idempotent, so a retry never
does something twice. The API token stays inside the httpx client's headers:
it is never part of a URL, a repr, a log line or an error.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import KVBackendError

__all__ = ["Api", "Pacer", "Reply", "Sleep"]

BACKEND = "cloudflare"
RATE_WINDOW = 300.0
RATE_LIMIT = 1200
MAX_429_RETRIES = 5
MAX_ERROR_RETRIES = 3
BACKOFF_START = 1.0
BACKOFF_MAX = 60.0
#: Error codes of an authentication or authorisation failure.
AUTH_CODES = frozenset({6003, 6111, 9106, 9109, 10000})
READ = "Workers KV Storage Read"
WRITE = "Workers KV Storage Write"

Sleep = Callable[[float], Awaitable[None]]


class Pacer:
    """At most `limit` requests in any `window` seconds; a 429 holds every request back."""

    def __init__(
        self,
        limit: int = RATE_LIMIT,
        window: float = RATE_WINDOW,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.sleep = sleep
        self._sent: deque[float] = deque()
        self._held_until = 0.0

    async def wait(self) -> None:
        """Return once one more request fits in the budget (and any 429 hold is over)."""
        while True:
            now = self.clock()
            if now < self._held_until:
                await self.sleep(self._held_until - now)
                continue
            while self._sent and self._sent[0] <= now - self.window:
                self._sent.popleft()
            if len(self._sent) < self.limit:
                self._sent.append(now)
                return
            await self.sleep(self._sent[0] + self.window - now)

    def hold(self, seconds: float) -> None:
        """No request leaves before `seconds` from now (after a 429)."""
        self._held_until = max(self._held_until, self.clock() + seconds)


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful answer: the raw response, and its envelope if it was JSON."""

    response: httpx.Response
    envelope: Mapping[str, Any] | None

    @property
    def result(self) -> Any:
        return None if self.envelope is None else self.envelope.get("result")


def _retry_after(response: httpx.Response) -> float | None:
    header = response.headers.get("retry-after")
    if header is None:
        return None
    try:
        seconds = float(header)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _envelope(response: httpx.Response) -> Mapping[str, Any] | None:
    """The v4 envelope, or None when the body is not one."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("success"), bool):
        return None
    return body


def _first_error(envelope: Mapping[str, Any] | None) -> tuple[int | None, str]:
    errors = envelope.get("errors") if envelope is not None else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code = errors[0].get("code")
        return (code if isinstance(code, int) else None), str(errors[0].get("message", ""))
    return None, ""


class Api:
    """Requests to one namespace's REST routes, paced, retried and mapped to kvcache errors."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        base: str,
        token: str,
        pacer: Pacer,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.client = client
        self.base = base
        self._auth = {"Authorization": f"Bearer {token}"}
        self.pacer = pacer
        self.sleep = sleep
        self.requests = 0  # requests sent, retries included (the benchmark reads it)

    def _problem(
        self, what: str, detail: str, cause: BaseException | None = None
    ) -> KVBackendError:
        return KVBackendError(f"{what} failed: {detail}", backend=BACKEND, cause=cause)

    def _refused(
        self, what: str, response: httpx.Response, envelope: Mapping[str, Any] | None, write: bool
    ) -> KVBackendError:
        code, message = _first_error(envelope)
        status = response.status_code
        said = f"Cloudflare error {code}: {message}" if code is not None else _excerpt(response)
        if status in (401, 403) or code in AUTH_CODES:
            permission = WRITE if write else READ
            return self._problem(
                what,
                f"HTTP {status}, {said}; the API token (CLOUDFLARE_API_TOKEN) is missing, "
                f"wrong, or lacks the '{permission}' permission on this account",
            )
        return self._problem(what, f"HTTP {status}, {said}")

    async def call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        write: bool,
        absent_ok: bool = False,
        envelope: bool = True,
        refusals: Mapping[int, Callable[[str], Exception]] | None = None,
        **kwargs: Any,
    ) -> Reply | None:
        """Send until answered; None for a 404 "key not found" (10009) when `absent_ok`.

        `envelope=False`: a 200 body is raw bytes (the values route), not JSON.
        `refusals`: HTTP status -> the error to raise instead of KVBackendError (it
        gets the text of the KVBackendError, which becomes its cause).
        """
        limited = failed = 0
        backoff = BACKOFF_START
        kwargs["headers"] = {**kwargs.get("headers", {}), **self._auth}
        while True:
            await self.pacer.wait()
            self.requests += 1
            try:
                response = await self.client.request(method, self.base + path, **kwargs)
            except httpx.TransportError as exc:  # connect, read, write, timeout
                if failed >= MAX_ERROR_RETRIES:
                    raise self._problem(what, f"{type(exc).__name__}: {exc}", exc) from exc
                failed += 1
                await self.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            status = response.status_code
            if status == 429:
                if limited >= MAX_429_RETRIES:
                    raise self._problem(
                        what,
                        f"HTTP 429, rate limited {limited + 1} times in a row (Cloudflare "
                        "allows 1,200 API requests per 5 minutes); lower rate_limit= or "
                        "spread the work out",
                    )
                limited += 1
                wait = _retry_after(response)
                if wait is None:
                    wait = backoff
                    backoff = min(backoff * 2, BACKOFF_MAX)
                self.pacer.hold(wait)
                continue
            if status >= 500:
                if failed >= MAX_ERROR_RETRIES:
                    code, message = _first_error(_envelope(response))
                    said = f"Cloudflare error {code}: {message}" if code else _excerpt(response)
                    raise self._problem(what, f"HTTP {status} after {failed + 1} tries, {said}")
                failed += 1
                await self.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            try:
                return self._answer(
                    what, response, write=write, absent_ok=absent_ok, raw=not envelope
                )
            except KVBackendError as exc:
                if refusals is not None and status in refusals:
                    raise refusals[status](str(exc)) from exc
                raise

    def _answer(
        self, what: str, response: httpx.Response, *, write: bool, absent_ok: bool, raw: bool
    ) -> Reply | None:
        if raw and response.status_code == 200:
            return Reply(response, None)
        body = _envelope(response)
        if response.status_code == 404 and absent_ok:
            code, _ = _first_error(body)
            if code == 10009:
                return None
        if response.is_success and body is not None and body["success"] is True:
            return Reply(response, body)
        if body is None:
            raise self._problem(
                what,
                f"HTTP {response.status_code}, not a Cloudflare API answer: {_excerpt(response)}",
            )
        raise self._refused(what, response, body, write)


def _excerpt(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return repr(text[:200] + ("..." if len(text) > 200 else "")) if text else "an empty body"
