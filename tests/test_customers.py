"""CustomerRepository against the emulator over HTTP, on real stores.

The store runs on the fake clock (so the 30 min and 60 s TTLs are moved, not waited);
the emulator's answers take real milliseconds, so concurrent look-ups really overlap.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import kvcache
from backends import FakeClock
from kvcache import Cache, CustomerCreationError, ShopifyUnavailable
from kvcache.shopify import keys
from kvcache.shopify.customers import CustomerRepository
from kvcache.shopify.invalidation import forget_customer
from kvcache.testing import ShopifyAdminEmulator
from shopify_helpers import FakeSleep, client_for

SHOP = "demo.myshopify.com"


@pytest.fixture
def emulator() -> Iterator[ShopifyAdminEmulator]:
    with ShopifyAdminEmulator(latency=0.05) as emu:
        yield emu


@pytest.fixture
async def cache(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Cache]:
    async with kvcache.open_kv(f"sqlite:///{tmp_path}/kv.db", namespace="CACHE", clock=clock) as kv:
        cache = Cache(kv, family=keys.family)
        yield cache
        await cache.close()


@pytest.fixture
async def repo(emulator: ShopifyAdminEmulator, cache: Cache) -> AsyncIterator[CustomerRepository]:
    async with client_for(emulator) as admin:
        yield CustomerRepository(admin, cache)


async def test_a_miss_asks_shopify_then_the_cache_answers(
    repo: CustomerRepository, emulator: ShopifyAdminEmulator, cache: Cache
) -> None:
    made = emulator.add_customer(
        "Bob@Example.com", first_name="Bob", last_name="Biller", tags=["vip"]
    )
    first = await repo.lookup("  BOB@example.com ")
    assert first.hit is False
    assert first.customer == {
        "id": made["id"],
        "email": "Bob@Example.com",
        "firstName": "Bob",
        "lastName": "Biller",
        "tags": ["vip"],
    }
    again = await repo.lookup("bob@example.com")
    assert again == kvcache.shopify.customers.Lookup(first.customer, True)
    assert emulator.operations("customerByIdentifier") == 1 and emulator.calls == 1
    # One look-up, one miss; one hit; one fetch.
    stats = cache.stats().by_family["customer:email"]
    assert (stats.fetches, stats.hits, stats.misses, stats.sets) == (1, 1, 1, 1)
    # Under the shop's own key, with the id -> e-mail index the webhook handlers read.
    assert await cache.get(f"shop:{SHOP}:customer:email:bob@example.com") == first.customer
    index = keys.customer_index_key(SHOP, made["id"], "bob@example.com")
    assert await cache.get(index) == "bob@example.com"


async def test_the_entry_lives_30_minutes(
    repo: CustomerRepository, emulator: ShopifyAdminEmulator, clock: FakeClock
) -> None:
    emulator.add_customer("ann@example.com")
    await repo.find_by_email("ann@example.com")
    clock.advance(1799)
    assert (await repo.lookup("ann@example.com")).hit
    clock.advance(2)
    assert not (await repo.lookup("ann@example.com")).hit
    assert emulator.calls == 2


async def test_an_unknown_email_reaches_shopify_once_a_minute(
    repo: CustomerRepository, emulator: ShopifyAdminEmulator, clock: FakeClock
) -> None:
    answers = await asyncio.gather(*(repo.lookup("nobody@example.com") for _ in range(30)))
    assert all(answer.customer is None for answer in answers)
    assert emulator.calls == 1
    assert (await repo.lookup("nobody@example.com")) == kvcache.shopify.customers.Lookup(None, True)
    clock.advance(61)
    assert await repo.find_by_email("nobody@example.com") is None
    assert emulator.calls == 2


async def test_fifty_concurrent_lookups_of_one_email_reach_shopify_once(
    repo: CustomerRepository, emulator: ShopifyAdminEmulator
) -> None:
    emulator.add_customer("cat@example.com")
    answers = await asyncio.gather(*(repo.lookup("cat@example.com") for _ in range(50)))
    assert {a.customer["email"] for a in answers if a.customer} == {"cat@example.com"}
    assert emulator.calls == 1


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy-emulator", "old-version"])
async def test_versions_without_customer_by_identifier_search_instead(
    cache: Cache, legacy: bool
) -> None:
    with ShopifyAdminEmulator(legacy=legacy) as emulator:
        emulator.add_customer("dan@example.com", first_name="Dan")
        emulator.add_customer("dana@example.com")
        version = "2025-01" if legacy else "2024-10"
        async with client_for(emulator, api_version=version) as admin:
            repo = CustomerRepository(admin, cache)
            found = await repo.find_by_email("DAN@example.com")
            assert found is not None and found["firstName"] == "Dan"
            assert await repo.find_by_email("dana@example.com") is not None
            assert await repo.find_by_email("da@example.com") is None
        # Legacy: one refused customerByIdentifier, then only searches; an old version
        # searches from the start.
        assert emulator.operations("customers") == 3
        assert emulator.calls == (4 if legacy else 3)
        assert emulator.operations("customerByIdentifier") == 0


async def test_a_2025_04_shop_is_read_through_default_email_address(cache: Cache) -> None:
    with ShopifyAdminEmulator() as emulator:
        emulator.add_customer("eve@example.com")
        async with client_for(emulator, api_version="2025-04") as admin:
            found = await CustomerRepository(admin, cache).find_by_email("eve@example.com")
    assert found is not None and found["email"] == "eve@example.com"


async def test_create_clears_a_cached_not_found(
    repo: CustomerRepository, emulator: ShopifyAdminEmulator
) -> None:
    assert await repo.find_by_email("fay@example.com") is None
    made = await repo.create({"email": "Fay@example.com", "firstName": "Fay", "tags": ["b", "a"]})
    assert made["id"].startswith("gid://shopify/Customer/") and made["tags"] == ["a", "b"]
    again = await repo.lookup("fay@example.com")
    assert again.hit is False and again.customer == made
    assert emulator.operations("customerCreate") == 1


@pytest.mark.parametrize(
    ("dto", "field", "message"),
    [
        ({"email": "taken@example.com"}, ["email"], "Email has already been taken"),
        ({"email": "not-an-email"}, ["email"], "Email is invalid"),
        ({"email": "x@example.com", "tags": "vip"}, ["tags"], "must be a list of strings"),
        ({"email": "x@example.com", "age": 3}, ["age"], "is not a customer field"),
        ({"firstName": 7}, ["firstName"], "must be a string"),
    ],
)
async def test_create_maps_user_errors(
    repo: CustomerRepository,
    emulator: ShopifyAdminEmulator,
    dto: dict[str, object],
    field: list[str],
    message: str,
) -> None:
    emulator.add_customer("taken@example.com")
    with pytest.raises(CustomerCreationError) as caught:
        await repo.create(dto)
    assert (caught.value.field, caught.value.message) == (field, message)
    assert caught.value.errors == [{"field": field, "message": message}]


async def test_two_shops_never_share_an_entry(cache: Cache) -> None:
    with ShopifyAdminEmulator() as emulator:
        emulator.add_shop("other.myshopify.com", access_token="shpat_other")
        mine = emulator.add_customer("same@example.com", first_name="Mine")
        theirs = emulator.add_customer(
            "same@example.com", first_name="Theirs", shop="other.myshopify.com"
        )
        async with (
            client_for(emulator) as a,
            client_for(emulator, shop="other.myshopify.com", token="shpat_other") as b,
        ):
            first = await CustomerRepository(a, cache).find_by_email("same@example.com")
            second = await CustomerRepository(b, cache).find_by_email("same@example.com")
    assert first is not None and first["firstName"] == "Mine" and first["id"] == mine["id"]
    assert second is not None and second["firstName"] == "Theirs"
    assert second["id"] == theirs["id"] and emulator.calls == 2


async def test_the_index_lets_a_webhook_forget_an_old_email(
    repo: CustomerRepository, emulator: ShopifyAdminEmulator, cache: Cache
) -> None:
    made = emulator.add_customer("old@example.com")
    await repo.find_by_email("old@example.com")
    emulator.update_customer(made["id"], email="new@example.com")
    # What customers/update does: its payload carries only the new e-mail.
    await forget_customer(cache, SHOP, made["id"], ["new@example.com"])
    assert (await repo.lookup("old@example.com")) == kvcache.shopify.customers.Lookup(None, False)
    found = await repo.lookup("new@example.com")
    assert found.customer is not None and found.customer["id"] == made["id"]


async def test_shopify_down_raises_and_caches_nothing(
    emulator: ShopifyAdminEmulator, cache: Cache, clock: FakeClock
) -> None:
    emulator.add_customer("gus@example.com")
    emulator.fail_next(503, times=3)
    async with client_for(emulator, clock, FakeSleep(clock), retries=2) as admin:
        repo = CustomerRepository(admin, cache)
        with pytest.raises(ShopifyUnavailable):
            await repo.find_by_email("gus@example.com")
        assert (await repo.lookup("gus@example.com")).customer is not None


@pytest.mark.parametrize("email", ["", "no-at-sign", "a b@example.com", "x" * 250 + "@ex.com"])
async def test_bad_emails_are_refused_before_any_call(
    repo: CustomerRepository, emulator: ShopifyAdminEmulator, email: str
) -> None:
    with pytest.raises(ValueError, match="email"):
        await repo.find_by_email(email)
    assert emulator.calls == 0
