"""What the Shopify tests share: a sleep that moves a fake clock, and clients on an emulator."""

from __future__ import annotations

import asyncio
from typing import Any

from backends import FakeClock
from kvcache.shopify.admin import AdminClient
from kvcache.testing import ShopifyAdminEmulator

__all__ = ["FakeSleep", "client_for"]


class FakeSleep:
    """`sleep=` for AdminClient: records each wait and moves the clock by it at once."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.advance(seconds)
        await asyncio.sleep(0)


def client_for(
    emulator: ShopifyAdminEmulator,
    clock: FakeClock | None = None,
    sleep: FakeSleep | None = None,
    *,
    shop: str | None = None,
    api_version: str = "2025-01",
    token: str | None = None,
    **options: Any,
) -> AdminClient:
    """An AdminClient on the emulator's shop (on the fake clock and sleep when given)."""
    if clock is not None:
        options["clock"] = clock
    if sleep is not None:
        options["sleep"] = sleep
    domain = shop or emulator.shop
    return AdminClient(
        domain,
        token or emulator.token or "shpat_any",
        api_version=api_version,
        admin_url=emulator.admin_url(domain, api_version),
        **options,
    )
