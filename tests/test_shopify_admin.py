"""The Admin GraphQL client against the emulator over HTTP: throttling both ways, retries, errors.

Both sides run on one fake clock: the emulator's bucket refills by it and the
client's waits move it, so every wait is checked exactly and nothing sleeps.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from backends import FakeClock
from kvcache import GraphQLError, ShopifyAuthError, ShopifyHTTPError, ShopifyUnavailable
from kvcache.shopify.admin import AdminClient, parse_retry_after
from kvcache.testing import ShopifyAdminEmulator
from redis_server import free_port
from shopify_helpers import FakeSleep, client_for

SEARCH = "query($q: String!) { customers(first: 1, query: $q) { edges { node { id email } } } }"
BY_EMAIL = "query($e: String!) { customerByIdentifier(identifier: {emailAddress: $e}) { id } }"


@pytest.fixture
def sleep(clock: FakeClock) -> FakeSleep:
    return FakeSleep(clock)


@pytest.fixture
async def emulator(clock: FakeClock) -> AsyncIterator[ShopifyAdminEmulator]:
    async with ShopifyAdminEmulator(clock=clock) as emu:
        emu.add_customer("bob@example.com", first_name="Bob")
        yield emu


async def test_a_query_returns_data_and_the_cost(
    emulator: ShopifyAdminEmulator, clock: FakeClock, sleep: FakeSleep
) -> None:
    async with client_for(emulator, clock, sleep) as admin:
        answer = await admin.execute(BY_EMAIL, {"e": "BOB@example.com"})
    assert answer.data["customerByIdentifier"]["id"].startswith("gid://shopify/Customer/")
    cost = answer.extensions["cost"]
    assert cost["requestedQueryCost"] == 1 and cost["actualQueryCost"] == 1
    status = answer.throttle_status
    assert status is not None
    assert (status.maximum_available, status.restore_rate) == (2000.0, 100.0)
    assert status.currently_available == 1999
    assert admin.budget.status == status
    assert emulator.calls == 1 and sleep.calls == []


@pytest.mark.parametrize("header", ["2", "2.0"])
async def test_http_429_waits_retry_after_in_seconds(
    emulator: ShopifyAdminEmulator, clock: FakeClock, sleep: FakeSleep, header: str
) -> None:
    emulator.fail_next(429, retry_after=float(header))
    async with client_for(emulator, clock, sleep) as admin:
        answer = await admin.execute(SEARCH, {"q": "email:bob@example.com"})
    assert answer.data["customers"]["edges"][0]["node"]["email"] == "bob@example.com"
    assert sleep.calls == [2.0]  # seconds, not milliseconds (the JS client's mistake)
    assert emulator.calls == 2 and admin.throttled == 1


async def test_a_long_retry_after_is_handed_to_the_caller(
    emulator: ShopifyAdminEmulator, clock: FakeClock, sleep: FakeSleep
) -> None:
    emulator.fail_next(429, retry_after=120)
    async with client_for(emulator, clock, sleep, max_wait=30) as admin:
        with pytest.raises(ShopifyUnavailable) as caught:
            await admin.execute(SEARCH, {"q": "email:bob@example.com"})
        assert caught.value.retry_after == 120.0
        # Every later call of the shop is told at once, for the rest of the pause.
        clock.advance(20)
        with pytest.raises(ShopifyUnavailable) as later:
            await admin.execute(SEARCH, {"q": "email:bob@example.com"})
        assert later.value.retry_after == 100.0
    assert emulator.calls == 1 and sleep.calls == []


async def drain(emulator: ShopifyAdminEmulator, clock: FakeClock, queries: int) -> None:
    """Spend the bucket through another client, which the client under test knows nothing of."""
    async with client_for(emulator, clock, FakeSleep(clock)) as other:
        for _ in range(queries):
            await other.execute(BY_EMAIL, {"e": "bob@example.com"})


@pytest.mark.parametrize("throttle_status", [200, 429])
async def test_throttled_both_ways_waits_for_the_bucket(
    clock: FakeClock, sleep: FakeSleep, throttle_status: int
) -> None:
    async with ShopifyAdminEmulator(
        clock=clock, bucket_size=10, restore_rate=2, throttle_status=throttle_status
    ) as emulator:
        await drain(emulator, clock, 10)
        async with client_for(emulator, clock, sleep) as admin:
            answer = await admin.execute(SEARCH, {"q": "email:nobody@example.com"})
        assert answer.data["customers"]["edges"] == []
        stats = emulator.stats()
    assert stats["throttled"] == 1 and stats["requests"] == 12
    # THROTTLED: (requested 3 - available 0) / 2 per second; 429: Retry-After rounded up to 2 s.
    assert sleep.calls == [1.5] if throttle_status == 200 else sleep.calls == [2.0]


async def test_fifty_concurrent_callers_under_a_small_bucket_all_succeed(
    clock: FakeClock, sleep: FakeSleep
) -> None:
    async with ShopifyAdminEmulator(clock=clock, bucket_size=12, restore_rate=3) as emulator:
        async with client_for(emulator, clock, sleep) as admin:
            answers = await asyncio.gather(
                *(admin.execute(SEARCH, {"q": f"email:c{i}@example.com"}) for i in range(50))
            )
        stats = emulator.stats()
    assert len(answers) == 50 and all(a.data["customers"]["edges"] == [] for a in answers)
    # Paced by the reported bucket: each caller waited for budget, none was throttled.
    assert stats["throttled"] == 0 and stats["served"] == 50
    assert sleep.calls and admin.requests == 50


async def test_two_clients_of_one_shop_are_throttled_and_still_all_succeed(
    clock: FakeClock,
) -> None:
    async with ShopifyAdminEmulator(clock=clock, bucket_size=6, restore_rate=3) as emulator:
        async with (
            client_for(emulator, clock, FakeSleep(clock), retries=20) as one,
            client_for(emulator, clock, FakeSleep(clock), retries=20) as two,
        ):
            calls = [
                c.execute(SEARCH, {"q": f"email:{i}@x.io"}) for i in range(20) for c in (one, two)
            ]
            answers = await asyncio.gather(*calls)
        stats = emulator.stats()
    assert len(answers) == 40 and stats["served"] == 40


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, ShopifyAuthError),
        (403, ShopifyAuthError),
        (402, ShopifyHTTPError),
        (423, ShopifyHTTPError),
    ],
)
async def test_no_retry_on_401_402_403_423(
    emulator: ShopifyAdminEmulator,
    clock: FakeClock,
    sleep: FakeSleep,
    status: int,
    error: type[Exception],
) -> None:
    emulator.fail_next(status, times=5, body={"errors": "Unavailable Shop"})
    async with client_for(emulator, clock, sleep) as admin:
        with pytest.raises(error) as caught:
            await admin.execute(BY_EMAIL, {"e": "bob@example.com"})
    assert isinstance(caught.value, ShopifyHTTPError) and caught.value.status == status
    assert emulator.calls == 1 and sleep.calls == []


async def test_a_bad_token_never_shows_in_errors_reprs_or_logs(
    emulator: ShopifyAdminEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    token = "shpat_0123456789abcdef_secret"
    caplog.set_level(logging.DEBUG)
    async with client_for(emulator, token=token) as admin:
        with pytest.raises(ShopifyAuthError) as caught:
            await admin.execute(BY_EMAIL, {"e": "bob@example.com"})
        shown = [repr(admin), str(admin), str(caught.value), repr(caught.value)]
    assert caught.value.status == 401 and "Invalid API key" in str(caught.value)
    assert emulator.calls == 1
    assert not any(token in text for text in shown + [caplog.text])


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_gateway_errors_are_retried_with_backoff(
    emulator: ShopifyAdminEmulator, clock: FakeClock, sleep: FakeSleep, status: int
) -> None:
    emulator.fail_next(status, times=2)
    async with client_for(emulator, clock, sleep, backoff=0.5) as admin:
        answer = await admin.execute(BY_EMAIL, {"e": "bob@example.com"})
    assert answer.data["customerByIdentifier"] is not None
    assert emulator.calls == 3 and len(sleep.calls) == 2
    assert 0.375 <= sleep.calls[0] <= 0.5 and 0.75 <= sleep.calls[1] <= 1.0


async def test_the_retries_are_bounded(
    emulator: ShopifyAdminEmulator, clock: FakeClock, sleep: FakeSleep
) -> None:
    emulator.fail_next(503, times=10)
    async with client_for(emulator, clock, sleep, retries=3) as admin:
        with pytest.raises(ShopifyUnavailable) as caught:
            await admin.execute(BY_EMAIL, {"e": "bob@example.com"})
    assert emulator.calls == 4 and len(sleep.calls) == 3
    assert "HTTP 503" in str(caught.value) and caught.value.retry_after


async def test_a_shop_that_does_not_answer_is_unavailable(
    clock: FakeClock, sleep: FakeSleep
) -> None:
    url = f"http://127.0.0.1:{free_port()}/admin/api/2025-01/graphql.json"
    async with AdminClient(
        "gone.myshopify.com", "t", admin_url=url, retries=2, clock=clock, sleep=sleep
    ) as admin:
        with pytest.raises(ShopifyUnavailable, match="no answer"):
            await admin.execute(BY_EMAIL, {"e": "bob@example.com"})
    assert len(sleep.calls) == 2 and admin.requests == 3


async def test_graphql_errors_are_raised_with_the_list(emulator: ShopifyAdminEmulator) -> None:
    async with client_for(emulator, api_version="2024-10") as admin:
        with pytest.raises(GraphQLError) as caught:
            await admin.execute(BY_EMAIL, {"e": "bob@example.com"})
    assert caught.value.codes == ["undefinedField"]
    assert caught.value.errors[0]["extensions"]["fieldName"] == "customerByIdentifier"
    assert emulator.calls == 1


async def test_a_query_over_the_max_cost_is_a_graphql_error(emulator: ShopifyAdminEmulator) -> None:
    pages = " ".join(f"p{i}: customers(first: 250) {{ nodes {{ id }} }}" for i in range(4))
    async with client_for(emulator) as admin:
        with pytest.raises(GraphQLError) as caught:
            await admin.execute("{ " + pages + " }")
    assert caught.value.codes == ["MAX_COST_EXCEEDED"]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ShopifyAuthError):
        AdminClient("demo.myshopify.com", "")
    with pytest.raises(ValueError, match="retries"):
        AdminClient("demo.myshopify.com", "t", retries=-1)
    with pytest.raises(ValueError, match="timeout"):
        AdminClient("demo.myshopify.com", "t", timeout=0)


async def test_the_default_url_and_an_empty_query() -> None:
    async with AdminClient("demo.myshopify.com", "t", api_version="2025-04") as admin:
        assert admin.admin_url == "https://demo.myshopify.com/admin/api/2025-04/graphql.json"
        with pytest.raises(ValueError, match="query"):
            await admin.execute("  ")


def test_retry_after_parsing() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=lambda: 1445412470.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("-3") == 0.0
