"""Exactly-once handling of keyed events (webhook deliveries) over any atomic store.

One record per key moves through two stored states::

    (absent) --claim--> IN_PROGRESS --complete--> COMPLETED --result_ttl--> (absent)
                          |     |
        handler fails ----'     '---- lease_ttl passes (worker died): the store
        (released: absent)            forgets it, so the next claim takes it over

The claim is one atomic `put_if_absent` whose store TTL is the lease, so a dead
worker's claim frees itself; completion and release are fenced by the record's
random owner token. docs/idempotency.md gives the guarantees and failure cases.

Store errors (`KVBackendError`) and key errors (`KVValidationError`) pass
through unchanged: they are already typed, carry the backend and cause, and a
webhook layer answers them with a retryable status.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .errors import AlreadyInProgress, ClaimLost, IdempotencyError, KVConfigError, KVValidationError
from .kv._json import dumps_readable, loads
from .kv.base import KVStore
from .kv.validation import INT32_MAX

__all__ = ["DEFAULT_PREFIX", "Claim", "Idempotency", "Outcome", "State"]

logger = logging.getLogger(__name__)

#: A claim whose lease has less than this many seconds left completes without
#: ever overwriting (see `Claim.complete`).
COMPLETE_MARGIN = 1.0
#: How often a claim is retried when the conflicting record vanishes before it is read.
CLAIM_ATTEMPTS = 3
#: What every claim's key starts with unless `prefix=` says otherwise.
DEFAULT_PREFIX = "idem:"


class State(Enum):
    """Where a key stands. Only IN_PROGRESS and COMPLETED are ever stored."""

    IN_PROGRESS = "IN_PROGRESS"  # a worker holds the claim and its lease is running
    COMPLETED = "COMPLETED"  # the handler finished; the record holds its result
    EXPIRED = "EXPIRED"  # derived: an IN_PROGRESS record whose lease time has passed


@dataclass(frozen=True, slots=True)
class Outcome:
    """What `Idempotency.run` returns: the result, and whether an earlier run produced it."""

    result: Any
    duplicate: bool


@dataclass(frozen=True, slots=True)
class _Record:
    """A stored record, parsed. `expires` is the lease end (IN_PROGRESS only)."""

    state: State
    token: str
    expires: int | None = None
    result: Any = None

    def status(self, now: float) -> State:
        if self.state is State.IN_PROGRESS and self.expires is not None and self.expires <= now:
            return State.EXPIRED
        return self.state

    def retry_after(self, now: float) -> int:
        """Whole seconds until the lease ends, at least 1: a Retry-After for the sender."""
        left = (self.expires - now) if self.expires is not None else 0.0
        return max(1, math.ceil(left))


def _encode(record: dict[str, Any]) -> str:
    """Compact JSON; raises TypeError for anything JSON cannot hold (NaN, too deep)."""
    return dumps_readable(record, "the handler's result")


def _decode(key: str, text: str) -> _Record:
    """Parse a stored record; anything else under an idempotency key is an error."""
    try:
        data = loads(text)
        state = State(data["state"])
        token = data["token"]
        if state is State.IN_PROGRESS and isinstance(token, str):
            expires = data["expires"]
            if isinstance(expires, int) and not isinstance(expires, bool) and abs(expires) < 2**53:
                return _Record(state, token, expires=expires)
        elif state is State.COMPLETED and isinstance(token, str):
            return _Record(state, token, result=data["result"])
    except (ValueError, TypeError, KeyError):
        pass
    raise IdempotencyError(
        f"idempotency key {key!r} holds a value that is not an idempotency record; "
        "is another program writing under the same prefix?"
    )


def _check_ttl(name: str, value: object, kv: KVStore) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int number of seconds, not {type(value).__name__}")
    minimum = kv.limits.min_expiration_ttl
    if not 0 < value <= INT32_MAX:
        raise KVConfigError(f"{name} must be from 1 to {INT32_MAX} seconds (a store's longest TTL)")
    if value < minimum:
        raise KVConfigError(
            f"{name}={value} is below this store's minimum expiration TTL of {minimum} s "
            "(Workers KV's limit); use a longer TTL, or open the store with "
            "limits=Limits.relaxed() for short leases in tests"
        )
    return value


class Claim:
    """One worker's hold on a key, as `Idempotency.claim` yields it.

    `duplicate` is True when the key was already completed: `result` is then the
    stored result and there is nothing to do. Otherwise the holder does the work
    and calls `complete(result)` once.
    """

    def __init__(
        self,
        idem: Idempotency,
        key: str,
        *,
        token: str | None = None,
        held: str | None = None,
        expires: int | None = None,
        stored: _Record | None = None,
        wrote_at: float | None = None,
    ) -> None:
        self.key = key
        self.duplicate = stored is not None
        self.result: Any = stored.result if stored is not None else None
        self.completed = False
        self._idem = idem
        self._store_key = idem.prefix + key
        self._held = held  # the exact IN_PROGRESS text we wrote; None once given up
        self._expires = expires
        self._token = token
        self._wrote_at = wrote_at  # monotonic time of our last write of the key

    async def complete(self, result: Any) -> None:
        """Record the result, fenced by our token.

        While the lease has more than COMPLETE_MARGIN seconds left we check that the
        live record is still ours and replace it. Near or past the end of the lease
        we never overwrite: we give up our record (delete_if_equals of its exact
        text) and write the result only if the key is free (put_if_absent). If
        another worker holds or completed the key, our result is refused: logged,
        and `ClaimLost` raised. A result that is not JSON-serialisable (TypeError)
        or too large for the store (KVValidationError) is not recorded; leaving the
        `claim` block with that error releases the claim.
        """
        if self.duplicate or self.completed or self._held is None:
            raise IdempotencyError(f"idempotency key {self.key!r} has no claim to complete")
        idem, kv = self._idem, self._idem.kv
        await idem.spaced(self._wrote_at)  # first, so the lease is judged after the wait
        now = kv.clock()
        text = _encode(
            {"state": State.COMPLETED.value, "token": self._token, "at": now, "result": result}
        )
        current = await kv.get(self._store_key)
        ours = current == self._held
        if ours and self._expires is not None and self._expires - now > COMPLETE_MARGIN:
            await kv.put(self._store_key, text, expiration_ttl=idem.result_ttl)
        else:
            if ours:
                await kv.delete_if_equals(self._store_key, self._held)
                await idem.spaced(time.monotonic())
            if not await kv.put_if_absent(self._store_key, text, expiration_ttl=idem.result_ttl):
                self._held = None
                logger.warning(
                    "idempotency key %r: lease of token %s expired and another worker "
                    "took the key over; this result is refused",
                    self.key,
                    self._token,
                )
                raise ClaimLost(self.key)
            if not ours:
                logger.warning(
                    "idempotency key %r: completed by token %s after its lease expired "
                    "(no other worker had taken it); consider a longer lease_ttl",
                    self.key,
                    self._token,
                )
        self._held = None
        self.completed = True
        self.result = result

    async def release(self, error: BaseException | None = None) -> None:
        """Give the claim up so a retry runs again; only our own record is deleted.

        With `error` (the exception that ends the work) a store failure here is
        logged and noted on `error` instead of hiding it; the lease then frees the key.
        """
        held, self._held = self._held, None
        if held is None:
            return
        try:
            await self._idem.spaced(self._wrote_at)
            await self._idem.kv.delete_if_equals(self._store_key, held)
        except Exception as exc:
            if error is None:
                raise
            logger.warning(
                "idempotency key %r: could not release the claim (%s); it frees itself "
                "when its lease of %d s ends",
                self.key,
                exc,
                self._idem.lease_ttl,
            )
            error.add_note(f"kvcache: releasing idempotency key {self.key!r} failed: {exc!r}")


class Idempotency:
    """Run each key's handler once, across tasks, processes and machines sharing `kv`.

    `lease_ttl` bounds how long a claim outlives a dead worker (make it longer than
    the slowest handler); `result_ttl` how long a completed result answers
    duplicates (make it longer than the sender's retry window). Both are whole
    seconds, at least `kv.limits.min_expiration_ttl` (60 on Workers KV); a shorter
    value is refused, never raised silently.
    """

    def __init__(
        self,
        kv: KVStore,
        *,
        lease_ttl: int = 300,
        result_ttl: int = 86400,
        prefix: str = DEFAULT_PREFIX,
        best_effort: bool = False,
    ) -> None:
        if not isinstance(kv, KVStore):
            raise TypeError(f"kv must be a KVStore, not {type(kv).__name__}")
        if not kv.atomic and not best_effort:
            raise KVConfigError(
                f"{type(kv).__name__} ({kv.backend}) has no atomic put_if_absent: two "
                "deliveries of one event could both claim the key and both run the handler "
                "(Cloudflare Workers KV is eventually consistent, last write wins). Use an "
                "atomic store (sqlite, redis, memory) or pass best_effort=True to accept "
                "occasional duplicate runs"
            )
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        self.kv = kv
        self.lease_ttl = _check_ttl("lease_ttl", lease_ttl, kv)
        self.result_ttl = _check_ttl("result_ttl", result_ttl, kv)
        self.prefix = prefix

    def __repr__(self) -> str:
        return (
            f"<Idempotency {self.kv!r} prefix={self.prefix!r} lease_ttl={self.lease_ttl} "
            f"result_ttl={self.result_ttl}>"
        )

    async def spaced(self, since: float | None) -> None:
        """Wait out the store's `same_key_write_interval` since `since` (the monotonic time
        of our last write of the key), so that Workers KV does not refuse the next write
        with 429: a claim completed within a second of its claim waits for the rest."""
        interval = self.kv.same_key_write_interval
        if interval and since is not None:
            left = since + interval - time.monotonic()
            if left > 0:
                await asyncio.sleep(left)

    async def run(self, key: str, handler: Callable[[], Awaitable[Any]]) -> Outcome:
        """Run `handler` once for `key`, or return the result an earlier run stored.

        Raises AlreadyInProgress while another worker holds the key (answer a
        retryable status), ClaimLost when our lease ran out and another worker took
        over before we completed, and whatever the handler raised, after releasing
        the claim so that a retry runs it again.
        """
        if not callable(handler):
            raise TypeError(f"handler must be an async callable, not {type(handler).__name__}")
        async with self.claim(key) as claim:
            if claim.duplicate:
                return Outcome(claim.result, duplicate=True)
            pending = handler()
            if not inspect.isawaitable(pending):
                raise TypeError(
                    f"handler must be an async function; it returned {type(pending).__name__}"
                )
            result = await pending
            await claim.complete(result)
        return Outcome(result, duplicate=False)

    @asynccontextmanager
    async def claim(self, key: str) -> AsyncIterator[Claim]:
        """Hold `key` for the block: `async with idem.claim(key) as c: ... c.complete(r)`.

        Entering raises AlreadyInProgress if another worker holds the key; a
        completed key yields a claim with `duplicate` True. Leaving the block with
        an exception, or without calling `complete`, releases the claim.
        """
        claim = await self._acquire(key)
        try:
            yield claim
        except BaseException as exc:
            await claim.release(exc)
            raise
        await claim.release()

    async def _acquire(self, key: str) -> Claim:
        """Atomic claim first; read only on conflict, then branch on the stored state."""
        if not isinstance(key, str):
            raise TypeError(f"idempotency key must be a str, not {type(key).__name__}")
        if not key:
            raise KVValidationError("Idempotency key cannot be empty.")
        kv, store_key = self.kv, self.prefix + key
        removed: float | None = None  # when we removed an expired holder's record
        for _ in range(CLAIM_ATTEMPTS):
            token = secrets.token_hex(16)
            expires = math.floor(kv.clock()) + self.lease_ttl
            held = _encode({"state": State.IN_PROGRESS.value, "token": token, "expires": expires})
            await self.spaced(removed)
            if await kv.put_if_absent(store_key, held, expiration_ttl=self.lease_ttl):
                return Claim(
                    self, key, token=token, held=held, expires=expires, wrote_at=time.monotonic()
                )
            current = await kv.get(store_key)
            if current is None:
                continue  # released or expired between our claim and the read: try again
            record = _decode(key, current)
            now = kv.clock()
            state = record.status(now)
            if state is State.COMPLETED:
                return Claim(self, key, stored=record)
            if state is State.EXPIRED:
                # The holder's lease is over by its own record, though the store still
                # has it (a clock ahead of ours, or a longer store TTL): take it over.
                # Only that exact record is removed; its late completion is fenced.
                await kv.delete_if_equals(store_key, current)
                removed = time.monotonic()
                continue
            raise AlreadyInProgress(key, retry_after=record.retry_after(now))
        raise AlreadyInProgress(key, retry_after=1)
