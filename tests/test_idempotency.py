"""Idempotency over real memory and SQLite stores, time moved by the fake clock."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from backends import FakeClock, StoreFactory, fresh_key
from kvcache import (
    AlreadyInProgress,
    ClaimLost,
    IdempotencyError,
    KVBackendError,
    KVConfigError,
    KVStore,
    KVValidationError,
    Limits,
)
from kvcache.idempotency import COMPLETE_MARGIN, Claim, Idempotency, Outcome, State
from kvcache.kv.memory import MemoryStore


class Calls:
    """A handler that counts its runs and returns a fixed result (or raises)."""

    def __init__(self, result: Any = "done", error: BaseException | None = None) -> None:
        self.result = result
        self.error = error
        self.count = 0

    async def __call__(self) -> Any:
        self.count += 1
        if self.error is not None:
            raise self.error
        return self.result


async def stored(kv: KVStore, key: str, prefix: str = "idem:") -> dict[str, Any] | None:
    text = await kv.get(prefix + key)
    return None if text is None else json.loads(text)


# -- the happy path -----------------------------------------------------------


@pytest.mark.parametrize("result", [{"order": 7, "ok": True}, None, 0, "", [], False, "ünï"])
async def test_second_run_returns_the_stored_result_without_running(
    kv: KVStore, result: Any
) -> None:
    idem, key, handler = Idempotency(kv), fresh_key(), Calls(result)
    assert await idem.run(key, handler) == Outcome(result, duplicate=False)
    assert await idem.run(key, handler) == Outcome(result, duplicate=True)
    assert handler.count == 1


async def test_completed_record_is_json_under_the_prefix(kv: KVStore, clock: FakeClock) -> None:
    idem, key = Idempotency(kv, prefix="webhook:"), fresh_key()
    await idem.run(key, Calls({"a": [1, 2]}))
    record = await stored(kv, key, "webhook:")
    assert record is not None
    assert record["state"] == State.COMPLETED.value
    assert record["result"] == {"a": [1, 2]}
    assert len(record["token"]) == 32
    assert await kv.get("idem:" + key) is None


async def test_result_is_kept_for_result_ttl_then_runs_again(kv: KVStore, clock: FakeClock) -> None:
    idem, key, handler = Idempotency(kv, result_ttl=3600), fresh_key(), Calls()
    await idem.run(key, handler)
    clock.advance(3599 - (clock.now - clock.whole))
    assert (await idem.run(key, handler)).duplicate
    clock.advance(1)
    assert not (await idem.run(key, handler)).duplicate
    assert handler.count == 2


async def test_outcome_is_frozen() -> None:
    outcome = Outcome(1, duplicate=False)
    with pytest.raises(AttributeError):
        outcome.result = 2  # type: ignore[misc]


# -- concurrency within one process ----------------------------------------------


async def test_concurrent_runs_run_the_handler_once(kv: KVStore) -> None:
    idem, key = Idempotency(kv), fresh_key()
    started, release = asyncio.Event(), asyncio.Event()
    runs = 0

    async def handler() -> str:
        nonlocal runs
        runs += 1
        started.set()
        await release.wait()
        return "once"

    first = asyncio.create_task(idem.run(key, handler))
    await started.wait()
    others = await asyncio.gather(
        *(idem.run(key, handler) for _ in range(20)), return_exceptions=True
    )
    assert all(isinstance(error, AlreadyInProgress) for error in others)
    release.set()
    assert await first == Outcome("once", duplicate=False)
    assert await idem.run(key, handler) == Outcome("once", duplicate=True)
    assert runs == 1


async def test_simultaneous_arrivals_run_the_handler_once(kv: KVStore) -> None:
    idem, key, handler = Idempotency(kv), fresh_key(), Calls("first")
    outcomes = await asyncio.gather(
        *(idem.run(key, handler) for _ in range(20)), return_exceptions=True
    )
    assert handler.count == 1
    assert outcomes[0] == Outcome("first", duplicate=False)
    assert all(outcome == Outcome("first", duplicate=True) for outcome in outcomes[1:])


async def test_already_in_progress_says_when_the_lease_ends(kv: KVStore, clock: FakeClock) -> None:
    idem, key = Idempotency(kv, lease_ttl=120), fresh_key()
    async with idem.claim(key):
        with pytest.raises(AlreadyInProgress) as info:
            await idem.run(key, Calls())
        assert info.value.key == key
        assert info.value.retry_after == math.ceil(clock.whole + 120 - clock.now)
        clock.advance(100)
        with pytest.raises(AlreadyInProgress) as info:
            await idem.run(key, Calls())
        assert info.value.retry_after == math.ceil(clock.whole - 100 + 120 - clock.now)


# -- failure and release -------------------------------------------------------------


async def test_failing_handler_releases_so_a_retry_runs_again(kv: KVStore) -> None:
    idem, key = Idempotency(kv), fresh_key()
    failing = Calls(error=RuntimeError("shop unreachable"))
    with pytest.raises(RuntimeError, match="shop unreachable"):
        await idem.run(key, failing)
    assert await stored(kv, key) is None
    retry = Calls("second try")
    assert await idem.run(key, retry) == Outcome("second try", duplicate=False)
    assert (failing.count, retry.count) == (1, 1)


async def test_cancelled_handler_releases_its_claim(kv: KVStore) -> None:
    idem, key = Idempotency(kv), fresh_key()
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(idem.run(key, forever))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await idem.run(key, Calls("after")) == Outcome("after", duplicate=False)


@pytest.mark.parametrize("result", [object(), {1, 2}, float("nan"), {"x": b"bytes"}])
async def test_unserialisable_result_is_a_type_error_and_releases(kv: KVStore, result: Any) -> None:
    idem, key = Idempotency(kv), fresh_key()
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        await idem.run(key, Calls(result))
    assert await stored(kv, key) is None
    assert not (await idem.run(key, Calls("fixed"))).duplicate


async def test_result_too_large_for_the_store_releases(kv: KVStore) -> None:
    idem, key = Idempotency(kv), fresh_key()
    with pytest.raises(KVValidationError) as info:
        await idem.run(key, Calls("x" * kv.limits.max_value_bytes))
    assert info.value.status == 413
    assert await stored(kv, key) is None


async def test_store_failure_passes_through_without_running(kv: KVStore) -> None:
    idem, handler = Idempotency(kv), Calls()
    await kv.close()
    with pytest.raises(KVBackendError):
        await idem.run(fresh_key(), handler)
    assert handler.count == 0


@pytest.mark.parametrize(
    ("handler_error", "expected"),
    [(RuntimeError, RuntimeError), (None, KVBackendError)],
    ids=["handler-failed", "completion-failed"],
)
async def test_store_lost_mid_run_keeps_the_first_error_and_logs_the_release(
    kv: KVStore,
    caplog: pytest.LogCaptureFixture,
    handler_error: type[Exception] | None,
    expected: type[Exception],
) -> None:
    idem = Idempotency(kv)

    async def handler() -> str:
        await kv.close()
        if handler_error is not None:
            raise handler_error("handler broke")
        return "done, but the store is gone"

    with caplog.at_level(logging.WARNING, logger="kvcache.idempotency"):
        with pytest.raises(expected) as info:
            await idem.run(fresh_key(), handler)
    assert "could not release the claim" in caplog.text
    assert any("releasing idempotency key" in note for note in info.value.__notes__)


async def test_foreign_value_under_the_key_is_an_idempotency_error(kv: KVStore) -> None:
    idem, key, handler = Idempotency(kv), fresh_key(), Calls()
    for foreign in ["not json", '{"state":"EXPIRED","token":"t","expires":1}', "[1]"]:
        await kv.put("idem:" + key, foreign)
        with pytest.raises(IdempotencyError, match="not an idempotency record"):
            await idem.run(key, handler)
    assert handler.count == 0


# -- leases, takeover and fencing --------------------------------------------------------


async def test_expired_lease_is_taken_over_and_the_late_original_refused(
    kv: KVStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    idem, key = Idempotency(kv, lease_ttl=60), fresh_key()
    with caplog.at_level(logging.WARNING, logger="kvcache.idempotency"):
        with pytest.raises(ClaimLost) as info:
            async with idem.claim(key) as original:
                clock.advance(60)
                assert await idem.run(key, Calls("taken over")) == Outcome("taken over", False)
                await original.complete("late")
    assert info.value.key == key
    assert "another worker took the key over; this result is refused" in caplog.text
    assert await idem.run(key, Calls()) == Outcome("taken over", duplicate=True)


async def test_record_past_its_own_lease_is_taken_over_though_the_store_keeps_it(
    kv: KVStore, clock: FakeClock
) -> None:
    # A holder whose clock ran ahead wrote a lease that, by its record, ended already,
    # with a store TTL that outlives it: the record reads as EXPIRED and is taken over.
    idem, key = Idempotency(kv, lease_ttl=60), fresh_key()
    token, ended = "a" * 32, math.floor(clock()) - 5
    record = json.dumps({"state": "IN_PROGRESS", "token": token, "expires": ended})
    await kv.put("idem:" + key, record, expiration_ttl=300)
    assert await idem.run(key, Calls("ran")) == Outcome("ran", duplicate=False)
    assert (await stored(kv, key) or {})["state"] == State.COMPLETED.value


async def test_record_within_its_lease_is_in_progress_whatever_its_store_ttl(
    kv: KVStore, clock: FakeClock
) -> None:
    idem, key = Idempotency(kv, lease_ttl=60), fresh_key()
    running = json.dumps(
        {"state": "IN_PROGRESS", "token": "b" * 32, "expires": math.floor(clock()) + 30}
    )
    await kv.put("idem:" + key, running, expiration_ttl=300)
    with pytest.raises(AlreadyInProgress) as info:
        await idem.run(key, Calls())
    assert info.value.retry_after == 30
    assert await kv.get("idem:" + key) == running


async def test_late_original_is_refused_while_the_new_owner_still_works(
    kv: KVStore, clock: FakeClock
) -> None:
    idem, key = Idempotency(kv, lease_ttl=60), fresh_key()
    async with idem.claim(key) as original:
        clock.advance(61)
        async with idem.claim(key) as newer:
            with pytest.raises(ClaimLost):
                await original.complete("late")
            await newer.complete("newer")
    assert (await stored(kv, key) or {})["result"] == "newer"


async def test_late_completion_is_kept_when_nobody_took_over(
    kv: KVStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    idem, key = Idempotency(kv, lease_ttl=60), fresh_key()
    with caplog.at_level(logging.WARNING, logger="kvcache.idempotency"):
        async with idem.claim(key) as claim:
            clock.advance(120)
            await claim.complete("slow but alone")
    assert "after its lease expired" in caplog.text
    assert await idem.run(key, Calls()) == Outcome("slow but alone", duplicate=True)


async def test_takeover_that_failed_leaves_the_key_to_the_late_original(
    kv: KVStore, clock: FakeClock
) -> None:
    idem, key = Idempotency(kv, lease_ttl=60), fresh_key()
    async with idem.claim(key) as original:
        clock.advance(60)
        with pytest.raises(ValueError):
            await idem.run(key, Calls(error=ValueError("takeover failed")))
        await original.complete("original")
    assert await idem.run(key, Calls()) == Outcome("original", duplicate=True)


@pytest.mark.parametrize("left", [COMPLETE_MARGIN + 0.5, COMPLETE_MARGIN, 0.5, 0.01])
async def test_completing_in_the_last_moments_of_the_lease(
    kv: KVStore, clock: FakeClock, left: float, caplog: pytest.LogCaptureFixture
) -> None:
    idem, key = Idempotency(kv, lease_ttl=60), fresh_key()
    with caplog.at_level(logging.WARNING, logger="kvcache.idempotency"):
        async with idem.claim(key) as claim:
            clock.advance(clock.whole + 60 - left - clock.now)
            with pytest.raises(AlreadyInProgress):
                await idem.run(key, Calls())
            await claim.complete("just in time")
    assert caplog.text == ""
    assert await idem.run(key, Calls()) == Outcome("just in time", duplicate=True)


class InterleavingStore(MemoryStore):
    """A memory store that runs `between` once, right after its next read: another
    worker's step landing in the gap between two of ours."""

    between: Callable[[], Awaitable[None]] | None = None

    async def _get_value(self, key: str) -> bytes | None:
        value = await super()._get_value(key)
        step, self.between = self.between, None
        if step is not None:
            await step()
        return value


async def test_near_the_end_of_the_lease_completion_never_overwrites(clock: FakeClock) -> None:
    kv = InterleavingStore(clock=clock)
    idem, key = Idempotency(kv, lease_ttl=60), fresh_key()
    async with AsyncExitStack() as stack:
        original = await stack.enter_async_context(idem.claim(key))
        clock.advance(clock.whole + 60 - COMPLETE_MARGIN / 2 - clock.now)
        taken: list[Claim] = []

        async def lease_ends_and_another_worker_claims() -> None:
            clock.advance(COMPLETE_MARGIN)
            taken.append(await stack.enter_async_context(idem.claim(key)))

        kv.between = lease_ends_and_another_worker_claims
        with pytest.raises(ClaimLost):
            await original.complete("late")
        await taken[0].complete("newer")
    assert await idem.run(key, Calls()) == Outcome("newer", duplicate=True)


# -- the claim context manager -------------------------------------------------------


async def test_claim_of_a_completed_key_is_a_duplicate(kv: KVStore) -> None:
    idem, key = Idempotency(kv), fresh_key()
    await idem.run(key, Calls({"n": 1}))
    async with idem.claim(key) as claim:
        assert claim.duplicate and claim.result == {"n": 1}
        with pytest.raises(IdempotencyError, match="no claim to complete"):
            await claim.complete("again")


async def test_leaving_the_block_without_completing_releases(kv: KVStore) -> None:
    idem, key = Idempotency(kv), fresh_key()
    async with idem.claim(key) as claim:
        assert not claim.duplicate and claim.result is None
    assert await stored(kv, key) is None
    async with idem.claim(key) as claim:
        await claim.complete("ok")
        assert claim.completed and claim.result == "ok"
        with pytest.raises(IdempotencyError, match="no claim to complete"):
            await claim.complete("twice")
    assert (await stored(kv, key) or {})["result"] == "ok"


async def test_claim_held_elsewhere_raises_on_entry(kv: KVStore) -> None:
    idem, key = Idempotency(kv), fresh_key()
    async with idem.claim(key):
        with pytest.raises(AlreadyInProgress):
            async with idem.claim(key):
                pytest.fail("entered a claim that another worker holds")


async def test_two_idempotency_objects_share_one_store(kv: KVStore) -> None:
    key, handler = fresh_key(), Calls()
    await Idempotency(kv).run(key, handler)
    assert (await Idempotency(kv).run(key, handler)).duplicate
    assert not (await Idempotency(kv, prefix="other:").run(key, handler)).duplicate
    assert handler.count == 2


# -- configuration and keys -----------------------------------------------------------


class NonAtomicMemoryStore(MemoryStore):
    """A memory store that declares itself not atomic, as Cloudflare KV is."""

    atomic = False


async def test_non_atomic_store_is_refused_unless_best_effort() -> None:
    kv = NonAtomicMemoryStore()
    with pytest.raises(KVConfigError) as info:
        Idempotency(kv)
    message = str(info.value)
    assert "no atomic put_if_absent" in message
    assert "both run the handler" in message
    assert "best_effort=True" in message
    idem = Idempotency(kv, best_effort=True)
    assert (await idem.run(fresh_key(), Calls("ok"))).result == "ok"


@pytest.mark.parametrize("name", ["lease_ttl", "result_ttl"])
async def test_ttl_below_the_store_minimum_is_refused(kv: KVStore, name: str) -> None:
    with pytest.raises(KVConfigError, match=f"{name}=59 is below .* minimum expiration TTL of 60"):
        Idempotency(kv, **{name: 59})  # type: ignore[arg-type]
    Idempotency(kv, **{name: 60})  # type: ignore[arg-type]


async def test_relaxed_limits_allow_short_leases(make_store: StoreFactory) -> None:
    kv = await make_store(limits=Limits.relaxed())
    idem = Idempotency(kv, lease_ttl=1, result_ttl=2)
    assert (idem.lease_ttl, idem.result_ttl) == (1, 2)
    with pytest.raises(KVConfigError):
        Idempotency(kv, lease_ttl=0)


@pytest.mark.parametrize("value", [60.0, "60", True, None])
async def test_ttl_must_be_an_int(kv: KVStore, value: Any) -> None:
    with pytest.raises(TypeError, match="lease_ttl must be an int"):
        Idempotency(kv, lease_ttl=value)


async def test_bad_constructor_arguments_are_type_errors(kv: KVStore) -> None:
    with pytest.raises(TypeError, match="kv must be a KVStore"):
        Idempotency("sqlite:///x.db")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="prefix must be a str"):
        Idempotency(kv, prefix=None)  # type: ignore[arg-type]


async def test_bad_keys_are_refused_before_any_work(kv: KVStore) -> None:
    idem, handler = Idempotency(kv), Calls()
    with pytest.raises(KVValidationError, match="Idempotency key cannot be empty"):
        await idem.run("", handler)
    with pytest.raises(TypeError, match="must be a str"):
        await idem.run(123, handler)  # type: ignore[arg-type]
    with pytest.raises(KVValidationError) as info:
        await idem.run("k" * 600, handler)
    assert info.value.status == 414
    assert handler.count == 0


# -- a store that refuses a second write of one key within an interval (Workers KV) ----


class OneWritePerInterval(MemoryStore):
    """Workers KV's 1 write/s/key, shortened: a faster second write of a key fails (429)."""

    same_key_write_interval = 0.25

    def __init__(self) -> None:
        super().__init__(limits=Limits.relaxed())
        self.last: dict[str, float] = {}
        self.writes: list[str] = []

    def _wrote(self, key: str) -> None:
        now = asyncio.get_running_loop().time()
        last = self.last.get(key)
        if last is not None and now - last < self.same_key_write_interval:
            raise KVBackendError("KV PUT failed: 429 Too Many Requests", backend=self.backend)
        self.last[key] = now
        self.writes.append(key)

    async def _put(self, record: Any) -> None:
        self._wrote(record[0])
        await super()._put(record)

    async def _put_if_absent(self, record: Any) -> bool:
        if self._live(record[0]) is None:  # a write only where the key is free
            self._wrote(record[0])
        return await super()._put_if_absent(record)

    async def _delete_if_equals(self, key: str, value: bytes) -> bool:
        live = self._live(key)
        if live is not None and live[0] == value:
            self._wrote(key)
        return await super()._delete_if_equals(key, value)


async def test_a_completion_waits_out_the_stores_same_key_write_interval() -> None:
    kv = OneWritePerInterval()
    idem = Idempotency(kv, lease_ttl=60)
    assert await idem.run("k", Calls("done")) == Outcome("done", duplicate=False)
    assert kv.writes == ["idem:k", "idem:k"]  # the claim, then the completion: both taken
    assert await idem.run("k", Calls("again")) == Outcome("done", duplicate=True)


async def test_a_release_waits_it_out_too_so_the_retry_can_claim() -> None:
    kv = OneWritePerInterval()
    idem = Idempotency(kv, lease_ttl=60)
    with pytest.raises(RuntimeError):
        await idem.run("k", Calls(error=RuntimeError("handler failed")))
    assert kv.writes == ["idem:k", "idem:k"]  # the claim, then its release
    assert await stored(kv, "k") is None  # released: the retry runs it
    await asyncio.sleep(kv.same_key_write_interval)  # a sender's retry comes later still
    assert await idem.run("k", Calls("retried")) == Outcome("retried", duplicate=False)


async def test_stores_without_the_limit_wait_for_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("kvcache.idempotency.asyncio.sleep", sleep)
    idem = Idempotency(MemoryStore())
    await idem.run("k", Calls())
    with pytest.raises(RuntimeError):
        await idem.run("other", Calls(error=RuntimeError("x")))
    assert slept == []
