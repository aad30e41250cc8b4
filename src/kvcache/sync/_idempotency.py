"""`kvcache.sync.Idempotency`: exactly-once handling without `await`, over a sync store.

It holds an async `kvcache.Idempotency` and runs its flow on the store's loop:
the atomic claim, the lease, completion fenced by the owner's token and the
release on failure are the async core's, unchanged. A plain handler runs on
the thread that called `run` (its claim is held meanwhile); an `async def`
handler is awaited on the store's loop. `claim()` is the core's async context
manager driven from this thread, so leaving the block runs the core's own
release path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .. import Claim as AsyncClaim
from .. import Idempotency as AsyncIdempotency
from .. import Outcome
from ..idempotency import DEFAULT_PREFIX
from ._portal import Portal, on_caller
from ._store import KVStore, core_of

__all__ = ["Claim", "Idempotency"]


class Claim:
    """One worker's hold on a key, as `Idempotency.claim` yields it (see `kvcache.Claim`).

    `duplicate` is True when the key was already completed: `result` is then the
    stored result. Otherwise do the work and call `complete(result)` once.
    """

    def __init__(self, claim: AsyncClaim, portal: Portal) -> None:
        self._claim = claim
        self._portal = portal

    @property
    def key(self) -> str:
        return self._claim.key

    @property
    def duplicate(self) -> bool:
        return self._claim.duplicate

    @property
    def result(self) -> Any:
        return self._claim.result

    @property
    def completed(self) -> bool:
        return self._claim.completed

    def complete(self, result: Any) -> None:
        """Record the result, fenced by our token (raises `ClaimLost` if another took over)."""
        self._portal.run(self._claim.complete(result))

    def release(self, error: BaseException | None = None) -> None:
        """Give the claim up so a retry runs again; only our own record is deleted."""
        self._portal.run(self._claim.release(error))

    def __repr__(self) -> str:
        return f"<kvcache.sync.Claim key={self.key!r} duplicate={self.duplicate}>"


class Idempotency:
    """Run each key's handler once, across threads, processes and machines sharing `kv`.

    The options and guarantees are `kvcache.Idempotency`'s (docs/idempotency.md).
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
        store, self._portal = core_of(kv, "Idempotency")
        self.kv = kv
        self._idem = AsyncIdempotency(
            store,
            lease_ttl=lease_ttl,
            result_ttl=result_ttl,
            prefix=prefix,
            best_effort=best_effort,
        )

    @property
    def lease_ttl(self) -> int:
        return self._idem.lease_ttl

    @property
    def result_ttl(self) -> int:
        return self._idem.result_ttl

    @property
    def prefix(self) -> str:
        return self._idem.prefix

    def run(self, key: str, handler: Callable[[], Any]) -> Outcome:
        """Run `handler` once for `key`, or return the result an earlier run stored.

        As `kvcache.Idempotency.run`: raises `AlreadyInProgress`, `ClaimLost`, or
        what the handler raised, after releasing the claim.
        """
        return self._portal.run(self._idem.run(key, on_caller(handler)))

    @contextmanager
    def claim(self, key: str) -> Iterator[Claim]:
        """Hold `key` for the block: `with idem.claim(key) as c: ... c.complete(r)`.

        Entering raises `AlreadyInProgress` if another worker holds the key; a
        completed key yields a claim with `duplicate` True. Leaving the block with
        an exception, or without calling `complete`, releases the claim.
        """
        manager = self._idem.claim(key)
        claim = self._portal.run(manager.__aenter__())
        try:
            yield Claim(claim, self._portal)
        except BaseException as exc:
            if not self._portal.run(manager.__aexit__(type(exc), exc, exc.__traceback__)):
                raise
        else:
            self._portal.run(manager.__aexit__(None, None, None))

    def __repr__(self) -> str:
        return (
            f"<kvcache.sync.Idempotency {self.kv!r} prefix={self.prefix!r} "
            f"lease_ttl={self.lease_ttl} result_ttl={self.result_ttl}>"
        )
