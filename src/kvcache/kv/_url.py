"""Store URLs: the default one, their parts, and a form safe to print."""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import KVConfigError

__all__ = ["DEFAULT_PATH", "default_url", "redact_url", "sqlite_path", "url_options"]

#: The embedded default store, relative to the working directory.
DEFAULT_PATH = os.path.join(".kvcache", "kv.sqlite3")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, safe for errors and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return url.replace(parts.netloc, f"{user}:***@{netloc[-1]}", 1)


def default_url() -> str:
    return os.environ.get("KVCACHE_STORE") or "sqlite:///" + DEFAULT_PATH


def sqlite_path(url: str) -> str:
    """sqlite:///rel/path.db -> rel/path.db; sqlite:////abs/path.db -> /abs/path.db."""
    parts = urlsplit(url)
    if parts.netloc:
        raise KVConfigError(
            f"sqlite URL {url!r} has a host; use sqlite:///relative/path or sqlite:////absolute/path"
        )
    path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    if not path:
        raise KVConfigError(f"sqlite URL {url!r} names no file")
    return path


def url_options(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))
