"""The ASGI service of `kvcache serve`: Shopify webhooks, the admin JSON API, /metrics."""

from __future__ import annotations

from .main import build_app, create_app
from .settings import Settings, SettingsError, load_settings

__all__ = ["Settings", "SettingsError", "build_app", "create_app", "load_settings"]
