"""The service's settings: environment variables over an optional `kvcache.toml`.

    KVCACHE_STORE                    store URL of the cache (CACHE) and the claims (WEBHOOKS)
    KVCACHE_DATABASE_URL             SQLAlchemy URL of the app database
    SHOPIFY_API_SECRET               the app's client secret; comma-separated, all verify
    KVCACHE_ADMIN_TOKEN              bearer token of /api/* and /metrics (unset: loopback only)
    KVCACHE_SECRET_KEY               Fernet key(s) of shop tokens stored in the database
    KVCACHE_HANDLERS                 comma-separated modules with register(webhooks)
    KVCACHE_WEBHOOK_BODY_LIMIT       bytes (1 MiB)
    KVCACHE_WEBHOOK_LEASE_TTL        seconds a claim outlives a dead worker (30)
    KVCACHE_WEBHOOK_RESULT_TTL       seconds a completed delivery answers duplicates (86400)
    KVCACHE_WEBHOOK_LOG_RETENTION    seconds the delivery log keeps a row (7 days)
    KVCACHE_SHOPIFY_RETRIES          retries of one Admin API call that was throttled or failed (5)

The TOML file uses the same names in lower case without the prefix (`store`,
`database_url`, `shopify_api_secret` as a string or list, `admin_token`,
`handlers = [...]`, `webhook_body_limit`, ...). The environment wins. Tables
(`[kv.bindings.CACHE]`, the CLI's) are left to their owners.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import KVConfigError
from ..kv._url import redact_url

__all__ = ["ENV_JSON", "Settings", "SettingsError", "load_settings"]

#: How `kvcache serve` hands resolved settings to its worker processes.
ENV_JSON = "KVCACHE_SERVE_SETTINGS"
CONFIG_FILE = "kvcache.toml"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///.kvcache/app.db"


class SettingsError(KVConfigError):
    """A setting that is missing or malformed; `kvcache serve` prints it as one line."""


@dataclass(frozen=True)
class Settings:
    """Everything `build_app` needs; `Settings.load()` reads environment and file."""

    api_secrets: tuple[str, ...]
    store: str | None = None
    database_url: str = DEFAULT_DATABASE_URL
    admin_token: str | None = None
    handlers: tuple[str, ...] = ()
    webhook_body_limit: int = 1 << 20
    webhook_lease_ttl: int = 30
    webhook_result_ttl: int = 86_400
    webhook_log_retention: int = 7 * 86_400
    shopify_retries: int = 5
    secret_key: str | None = None

    def __repr__(self) -> str:
        """Every setting but the secrets: logs and tracebacks may show settings."""
        shown = []
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if value is not None and item.name in _SECRETS:
                value = f"<{len(value)} hidden>" if isinstance(value, tuple) else "<hidden>"
            elif value is not None and item.name in ("store", "database_url"):
                value = redact_url(value)
            shown.append(f"{item.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    def __post_init__(self) -> None:
        if not self.api_secrets or not all(isinstance(s, str) and s for s in self.api_secrets):
            raise SettingsError(
                "SHOPIFY_API_SECRET is not set: give the app's client secret (comma-separated "
                "during a rotation) in the environment or as shopify_api_secret in kvcache.toml"
            )
        for name in (
            "webhook_body_limit",
            "webhook_lease_ttl",
            "webhook_result_ttl",
            "webhook_log_retention",
            "shopify_retries",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SettingsError(f"{name} must be a positive whole number, not {value!r}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Settings:
        data = json.loads(text)
        data["api_secrets"] = tuple(data["api_secrets"])
        data["handlers"] = tuple(data["handlers"])
        return cls(**data)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


_ENV = {
    "store": "KVCACHE_STORE",
    "database_url": "KVCACHE_DATABASE_URL",
    "api_secrets": "SHOPIFY_API_SECRET",
    "admin_token": "KVCACHE_ADMIN_TOKEN",
    "secret_key": "KVCACHE_SECRET_KEY",
    "handlers": "KVCACHE_HANDLERS",
    "webhook_body_limit": "KVCACHE_WEBHOOK_BODY_LIMIT",
    "webhook_lease_ttl": "KVCACHE_WEBHOOK_LEASE_TTL",
    "webhook_result_ttl": "KVCACHE_WEBHOOK_RESULT_TTL",
    "webhook_log_retention": "KVCACHE_WEBHOOK_LOG_RETENTION",
    "shopify_retries": "KVCACHE_SHOPIFY_RETRIES",
}
#: Fields a repr never shows.
_SECRETS = ("api_secrets", "admin_token", "secret_key")
_TOML = {name: name for name in _ENV} | {"api_secrets": "shopify_api_secret"}
_LISTS = ("api_secrets", "handlers")
_INTS = (
    "webhook_body_limit",
    "webhook_lease_ttl",
    "webhook_result_ttl",
    "webhook_log_retention",
    "shopify_retries",
)


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _from_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path} is not valid TOML: {exc}") from exc
    names = {toml: attr for attr, toml in _TOML.items()}
    # Tables belong to other parts of kvcache (the CLI's [kv.bindings.NAME], ...); a
    # top-level value the service does not know is a typo, and refused.
    unknown = sorted(
        key for key, value in data.items() if key not in names and not isinstance(value, dict)
    )
    if unknown:
        raise SettingsError(f"{path}: unknown setting(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            continue
        attr = names[key]
        if attr in _LISTS:
            if isinstance(value, str):
                value = _split(value)
            elif isinstance(value, list) and all(isinstance(item, str) for item in value):
                value = tuple(value)
            else:
                raise SettingsError(f"{path}: {key} must be a string or a list of strings")
        elif attr in _INTS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise SettingsError(f"{path}: {key} must be a whole number")
        elif not isinstance(value, str):
            raise SettingsError(f"{path}: {key} must be a string")
        values[attr] = value
    return values


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for attr, name in _ENV.items():
        raw = environ.get(name)
        if raw is None or raw == "":
            continue
        if attr in _LISTS:
            values[attr] = _split(raw)
        elif attr in _INTS:
            try:
                values[attr] = int(raw)
            except ValueError:
                raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
        else:
            values[attr] = raw
    return values


def load_settings(
    config: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Settings from `config` (or ./kvcache.toml if it exists), then the environment,
    then `overrides` (the command line's options; None values are ignored)."""
    env = os.environ if environ is None else environ
    path = Path(config) if config is not None else Path(CONFIG_FILE)
    values: dict[str, Any] = {}
    if config is not None or path.exists():
        values.update(_from_file(path))
    values.update(_from_env(env))
    values.update({key: value for key, value in overrides.items() if value is not None})
    values.setdefault("api_secrets", ())
    return Settings(**values)
