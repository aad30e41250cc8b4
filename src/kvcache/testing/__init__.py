"""Tools for testing apps built on kvcache offline: a local Shopify Admin GraphQL API.

`ShopifyAdminEmulator` does for the Shopify side what Miniflare does for Workers:
a real HTTP server on a loopback port with Shopify's response shapes, costs and
throttling, so an app (or kvcache's own client) is exercised over HTTP. It needs
the `service` extra (starlette, uvicorn, graphql-core). Nothing in kvcache imports
this package except the command line.
"""

from __future__ import annotations

from ._shop import PLANS
from .emulator import ShopifyAdminEmulator

__all__ = ["PLANS", "ShopifyAdminEmulator"]
