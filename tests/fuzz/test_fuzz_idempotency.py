"""Idempotency with hostile options, keys, results and stored records, on every backend.

A refused `run` or `claim` leaves the store as it was: the claim it may have
taken is released. A stored value that is not a record is an IdempotencyError,
never a parse error or an OverflowError.
"""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
from hypothesis import given

from fuzz.contract import Harness, check_error, fuzz_settings
from fuzz.strategies import JUNK, KEYS, METADATA, NUMBERS, deep_text, realise
from kvcache import (
    AlreadyInProgress,
    Idempotency,
    IdempotencyError,
    KVConfigError,
    KVValidationError,
    Limits,
)

ALLOWED = (KVValidationError, TypeError)
EXAMPLES = 25


@fuzz_settings(100)
@given(lease=NUMBERS, result=NUMBERS, prefix=st.one_of(st.just("idem:"), KEYS), best_effort=JUNK)
def test_options_get_a_clear_error(lease: Any, result: Any, prefix: Any, best_effort: Any) -> None:
    with Harness("memory://") as harness:
        try:
            Idempotency(
                harness.kv,
                lease_ttl=realise(lease),
                result_ttl=realise(result),
                prefix=realise(prefix),
                best_effort=best_effort,
            )
        except Exception as exc:
            check_error(exc, (KVConfigError, TypeError))


def test_hostile_keys_and_results_are_refused_and_leave_no_claim(store_url: str) -> None:
    with Harness(store_url) as harness:
        idem = Idempotency(harness.kv, prefix="seed:")

        @fuzz_settings(EXAMPLES)
        @given(key=KEYS, result=METADATA, via_claim=st.booleans())
        def check(key: Any, result: Any, via_claim: bool) -> None:
            async def handler() -> Any:
                return realise(result)

            async def by_claim() -> None:
                async with idem.claim(realise(key)) as claim:
                    if not claim.duplicate:
                        await claim.complete(await handler())

            call = by_claim if via_claim else lambda: idem.run(realise(key), handler)
            # A seeded key ("seed:a", ...) holds a value that is not a record.
            harness.refuses_cleanly(call, (*ALLOWED, IdempotencyError))

        check()


def test_bad_handlers_are_refused_and_leave_no_claim(store_url: str) -> None:
    with Harness(store_url) as harness:
        idem = Idempotency(harness.kv, prefix="h:")

        @fuzz_settings(EXAMPLES)
        @given(handler=JUNK | st.just(lambda: "not awaitable"))
        def check(handler: Any) -> None:
            harness.refuses_cleanly(lambda: idem.run("key", handler), ALLOWED)

        check()


#: Values another program may have left under an idempotency key.
FOREIGN = st.one_of(
    st.text(max_size=10),
    st.binary(max_size=8),
    st.builds(
        lambda state, token, expires: (
            f'{{"state":"{state}","token":{token},"expires":{expires},"result":1}}'
        ),
        st.sampled_from(["IN_PROGRESS", "COMPLETED", "EXPIRED", "x"]),
        st.sampled_from(['"t"', "1", "null", "[]"]),
        st.sampled_from(["1", "1e400", "9" * 400, "-" + "9" * 400, "true", '"1"', "NaN"]),
    ),
    st.builds(deep_text, st.sampled_from([500, 3000]), st.sampled_from(["list", "dict"])).map(
        lambda text: text.build()
    ),
)


def test_foreign_values_under_a_key_are_an_idempotency_error(store_url: str) -> None:
    with Harness(store_url, limits=Limits.relaxed()) as harness:
        idem = Idempotency(harness.kv, prefix="seed:")

        @fuzz_settings(EXAMPLES)
        @given(stored=FOREIGN)
        def check(stored: str | bytes) -> None:
            harness.run(harness.kv.put("seed:foreign", stored))

            async def handler() -> str:
                return "ran"

            error = harness.refuses_cleanly(
                lambda: idem.run("foreign", handler),
                (IdempotencyError, AlreadyInProgress),
            )
            harness.run(harness.kv.delete("seed:foreign"))
            if error is None:  # only a well-formed completed record answers as a duplicate
                text = stored if isinstance(stored, str) else stored.decode("utf-8", "replace")
                assert '"COMPLETED"' in text

        check()
