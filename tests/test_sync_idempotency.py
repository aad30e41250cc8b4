"""The idempotency contract through `kvcache.sync.Idempotency`, on every backend, from threads.

As tests/test_idempotency.py: exactly once (now across threads), release on
failure so a retry runs again, the claim block, fencing after a takeover, and
errors with their own types; plus where a plain handler runs.
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import kvcache.sync
from backends import FakeClock, fresh_key
from kvcache import (
    AlreadyInProgress,
    ClaimLost,
    IdempotencyError,
    KVBackendError,
    KVConfigError,
    KVValidationError,
    Outcome,
)
from kvcache.sync import Idempotency


class Calls:
    """A plain handler that counts its runs (from any thread) and returns or raises."""

    def __init__(self, result: Any = "done", error: BaseException | None = None) -> None:
        self.result = result
        self.error = error
        self.threads: list[str] = []
        self.gate: threading.Event | None = None
        self.started = threading.Event()

    @property
    def count(self) -> int:
        return len(self.threads)

    def __call__(self) -> Any:
        self.threads.append(threading.current_thread().name)
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.error is not None:
            raise self.error
        return self.result


def stored(kv: kvcache.sync.KVStore, key: str, prefix: str = "idem:") -> Any:
    text = kv.get(prefix + key)
    return None if text is None else json.loads(text)


@pytest.mark.parametrize("result", [{"order": 7}, None, 0, "", [], False])
def test_second_run_returns_the_stored_result_without_running(
    skv: kvcache.sync.KVStore, result: Any
) -> None:
    idem, key, handler = Idempotency(skv), fresh_key(), Calls(result)
    assert idem.run(key, handler) == Outcome(result, duplicate=False)
    assert idem.run(key, handler) == Outcome(result, duplicate=True)
    assert handler.threads == [threading.current_thread().name]  # ran here, not on the loop
    assert stored(skv, key)["state"] == "COMPLETED"


def test_exactly_once_across_threads_while_the_first_still_runs(
    skv: kvcache.sync.KVStore,
) -> None:
    idem, key = Idempotency(skv), fresh_key()
    handler = Calls("once")
    handler.gate = threading.Event()
    with ThreadPoolExecutor(21) as pool:
        first = pool.submit(idem.run, key, handler)
        assert handler.started.wait(10)
        others = [pool.submit(idem.run, key, handler) for _ in range(20)]
        errors = [future.exception(10) for future in others]
        handler.gate.set()
        assert first.result(10) == Outcome("once", duplicate=False)
    assert all(isinstance(error, AlreadyInProgress) for error in errors)
    assert idem.run(key, handler) == Outcome("once", duplicate=True)
    assert handler.count == 1


def test_simultaneous_arrivals_on_threads_run_the_handler_once(
    skv: kvcache.sync.KVStore,
) -> None:
    idem, key, handler = Idempotency(skv), fresh_key(), Calls("first")
    barrier = threading.Barrier(20)

    def arrive(_: int) -> Any:
        barrier.wait()
        try:
            return idem.run(key, handler)
        except AlreadyInProgress as exc:
            return exc

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(arrive, range(20)))
    assert handler.count == 1
    fresh = [o for o in outcomes if isinstance(o, Outcome) and not o.duplicate]
    assert fresh == [Outcome("first", duplicate=False)]
    rest = [o for o in outcomes if o not in fresh]
    assert all(o == Outcome("first", True) or isinstance(o, AlreadyInProgress) for o in rest)


def test_failing_handler_releases_so_a_retry_runs_again(skv: kvcache.sync.KVStore) -> None:
    idem, key = Idempotency(skv), fresh_key()
    error = RuntimeError("shop unreachable")
    with pytest.raises(RuntimeError) as info:
        idem.run(key, Calls(error=error))
    assert info.value is error
    assert stored(skv, key) is None
    assert idem.run(key, Calls("second try")) == Outcome("second try", duplicate=False)


def test_an_interrupted_handler_releases_its_claim(skv: kvcache.sync.KVStore) -> None:
    idem, key = Idempotency(skv), fresh_key()
    with pytest.raises(KeyboardInterrupt):
        idem.run(key, Calls(error=KeyboardInterrupt()))
    assert stored(skv, key) is None
    assert idem.run(key, Calls("after")) == Outcome("after", duplicate=False)


def test_unserialisable_or_oversized_results_release(skv: kvcache.sync.KVStore) -> None:
    idem, key = Idempotency(skv), fresh_key()
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        idem.run(key, Calls({1, 2}))
    with pytest.raises(KVValidationError) as info:
        idem.run(key, Calls("x" * skv.limits.max_value_bytes))
    assert info.value.status == 413
    assert stored(skv, key) is None


def test_an_async_handler_is_awaited_on_the_stores_loop(skv: kvcache.sync.KVStore) -> None:
    idem, seen = Idempotency(skv), []

    async def handler() -> str:
        seen.append(threading.current_thread().name)
        return "async"

    assert idem.run(fresh_key(), handler) == Outcome("async", duplicate=False)
    assert seen == ["kvcache-sync"]


def test_store_closed_mid_run_keeps_the_handlers_error_and_logs_the_release(
    skv: kvcache.sync.KVStore, caplog: pytest.LogCaptureFixture
) -> None:
    idem = Idempotency(skv)

    def handler() -> str:
        skv.close()
        raise RuntimeError("handler broke")

    with caplog.at_level(logging.WARNING, logger="kvcache.idempotency"):
        with pytest.raises(RuntimeError, match="handler broke") as info:
            idem.run(fresh_key(), handler)
    assert "could not release the claim" in caplog.text
    assert any("store was closed" in note for note in info.value.__notes__)
    with pytest.raises(KVBackendError):
        idem.run(fresh_key(), Calls())


def test_store_closed_mid_run_by_a_handler_that_succeeded(skv: kvcache.sync.KVStore) -> None:
    def handler() -> str:
        skv.close()
        return "done, but the store is gone"

    with pytest.raises(KVBackendError, match="closed") as info:
        Idempotency(skv).run(fresh_key(), handler)
    assert info.value.backend == skv.backend


def test_foreign_value_under_the_key_is_an_idempotency_error(skv: kvcache.sync.KVStore) -> None:
    idem, key, handler = Idempotency(skv), fresh_key(), Calls()
    skv.put("idem:" + key, "not json")
    with pytest.raises(IdempotencyError, match="not an idempotency record"):
        idem.run(key, handler)
    assert handler.count == 0


# -- the claim block -------------------------------------------------------------------


def test_claim_complete_duplicate_and_release(skv: kvcache.sync.KVStore) -> None:
    idem, key = Idempotency(skv), fresh_key()
    with idem.claim(key) as claim:
        assert (claim.key, claim.duplicate, claim.completed) == (key, False, False)
    assert stored(skv, key) is None  # left without completing: released
    with idem.claim(key) as claim:
        claim.complete({"n": 1})
        assert claim.completed and claim.result == {"n": 1}
        with pytest.raises(IdempotencyError, match="no claim to complete"):
            claim.complete("twice")
    with idem.claim(key) as again:
        assert again.duplicate and again.result == {"n": 1}
    assert "kvcache.sync.Claim" in repr(again)


def test_an_error_in_the_block_releases_and_propagates(skv: kvcache.sync.KVStore) -> None:
    idem, key = Idempotency(skv), fresh_key()
    with pytest.raises(LookupError, match="work failed"):
        with idem.claim(key):
            raise LookupError("work failed")
    assert stored(skv, key) is None
    with idem.claim(key):
        with pytest.raises(AlreadyInProgress) as info:
            with idem.claim(key):
                pytest.fail("entered a claim that another worker holds")
        assert info.value.key == key and info.value.retry_after == 300


def test_a_late_original_is_refused_after_a_takeover(
    skv: kvcache.sync.KVStore, clock: FakeClock
) -> None:
    idem, key = Idempotency(skv, lease_ttl=60), fresh_key()
    with pytest.raises(ClaimLost):
        with idem.claim(key) as original:
            clock.advance(60)
            assert idem.run(key, Calls("taken over")) == Outcome("taken over", False)
            original.complete("late")
    assert idem.run(key, Calls()) == Outcome("taken over", duplicate=True)


def test_options_and_refusals_are_the_async_ones(skv: kvcache.sync.KVStore) -> None:
    idem = Idempotency(skv, lease_ttl=120, result_ttl=600, prefix="hooks:")
    assert (idem.lease_ttl, idem.result_ttl, idem.prefix) == (120, 600, "hooks:")
    assert "kvcache.sync.Idempotency" in repr(idem)
    with pytest.raises(KVConfigError, match="lease_ttl=59 is below"):
        Idempotency(skv, lease_ttl=59)
    with pytest.raises(TypeError, match="kvcache.sync.open_kv"):
        Idempotency(skv._store)  # type: ignore[arg-type]
    with pytest.raises(KVValidationError, match="cannot be empty"):
        idem.run("", Calls())
    with pytest.raises(TypeError, match="must be a str"):
        idem.run(123, Calls())  # type: ignore[arg-type]
