"""Store URLs: the default one, their parts, and a form safe to print.

urllib raises a bare ValueError for some malformed URLs (an unclosed IPv6
bracket, a port that is not a number); `split_url` turns it into a
`KVConfigError` naming the URL with its password hidden. `open_kv` parses every
URL with it first, so no backend meets a URL urllib refuses.
"""

from __future__ import annotations

import os
import re
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from .errors import KVConfigError

__all__ = [
    "DEFAULT_PATH",
    "default_url",
    "redact_url",
    "parse_url",
    "sqlite_path",
    "url_options",
]

#: The embedded default store, relative to the working directory.
DEFAULT_PATH = os.path.join(".kvcache", "kv.sqlite3")

#: `scheme://user:password@` -- for URLs urllib cannot split.
_USERINFO = re.compile(r"^([^:/?#]*://[^:/?#@]*):[^/?#]*@")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, safe for errors and logs."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return _USERINFO.sub(r"\1:***@", url, count=1)
    if password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return url.replace(parts.netloc, f"{user}:***@{netloc[-1]}", 1)


def parse_url(url: str) -> SplitResult:
    """`urlsplit(url)`, with its port checked; KVConfigError when urllib refuses the URL."""
    try:
        url.encode("utf-8")  # a lone surrogate: no byte form, nothing can connect to it
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- parsing the port is what raises for "host:abc"
    except ValueError as exc:
        raise KVConfigError(f"malformed store URL {redact_url(url)!r}: {exc}") from None
    return parts


def default_url() -> str:
    return os.environ.get("KVCACHE_STORE") or "sqlite:///" + DEFAULT_PATH


def sqlite_path(url: str) -> str:
    """sqlite:///rel/path.db -> rel/path.db; sqlite:////abs/path.db -> /abs/path.db."""
    parts = parse_url(url)
    if parts.netloc:
        raise KVConfigError(
            f"sqlite URL {redact_url(url)!r} has a host; "
            "use sqlite:///relative/path or sqlite:////absolute/path"
        )
    path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    if not path:
        raise KVConfigError(f"sqlite URL {redact_url(url)!r} names no file")
    try:
        if "\0" in path:
            raise ValueError("a NUL character")
        os.fsencode(path)
    except ValueError as exc:  # UnicodeEncodeError: a lone surrogate
        raise KVConfigError(
            f"sqlite URL {redact_url(url)!r} names a path no file can have: {exc}"
        ) from None
    return path


def url_options(url: str) -> dict[str, str]:
    return dict(parse_qsl(parse_url(url).query))
