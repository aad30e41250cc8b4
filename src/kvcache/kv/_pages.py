"""Full list pages over a server's own cursors (Workers KV's REST API and binding).

A server page may hold fewer keys than asked (Workers KV skips expired and
deleted keys after counting them) and the REST API serves at least 10 keys a
page, while kvcache's `list` promises exactly `limit` keys on every page but the
last. `fill_page` asks as often as needed and hands out its own cursor: the
server's cursor of the page it stopped in, the last key it returned from that
page, and how far into the page that was. Resuming drops the keys up to that
last one (keys are listed in UTF-8 byte order, which is `str` order), so a key
written or deleted before the cursor's position moves nothing.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable

from .errors import KVValidationError
from .types import KeyInfo, ListPage

__all__ = ["Fetch", "decode_cursor", "encode_cursor", "fill_page"]

#: fetch(prefix, server cursor or None, count) -> (keys, next server cursor or None when done).
Fetch = Callable[[str, str | None, int], Awaitable[tuple[list[KeyInfo], str | None]]]

_TAG = "kv1"
_SERVER_PAGE_MAX = 1000


def encode_cursor(server_cursor: str | None, skip: int, last: str | None) -> str:
    mark = "" if last is None else base64.urlsafe_b64encode(last.encode("utf-8")).decode("ascii")
    return f"{_TAG}:{skip}:{mark}:{server_cursor or ''}"


def decode_cursor(cursor: str | None) -> tuple[str | None, int, str | None]:
    """(server cursor or None, keys of that page already returned, the last of them)."""
    if cursor is None or cursor == "":
        return None, 0, None
    if not isinstance(cursor, str):
        raise TypeError(f"cursor must be str, not {type(cursor).__name__}")
    parts = cursor.split(":", 3)
    try:
        tag, skip_text, mark, server = parts
        if tag != _TAG or not skip_text.isascii() or not skip_text.isdigit():
            raise ValueError(cursor)
        skip = int(skip_text)
        last = base64.urlsafe_b64decode(mark.encode("ascii")).decode("utf-8") if mark else None
    except (ValueError, binascii.Error, UnicodeError):
        raise KVValidationError(f"Invalid cursor {cursor!r}.", status=400, op="GET") from None
    if skip >= _SERVER_PAGE_MAX:
        raise KVValidationError(f"Invalid cursor {cursor!r}.", status=400, op="GET")
    return server or None, skip, last


async def fill_page(
    fetch: Fetch, prefix: str, limit: int, cursor: str | None, min_page: int = 1
) -> ListPage:
    """Exactly `limit` keys unless the listing ends; `cursor` None exactly when it does."""
    server, skip, last = decode_cursor(cursor)
    keys: list[KeyInfo] = []
    while True:
        need = limit - len(keys)
        count = min(_SERVER_PAGE_MAX, max(min_page, skip + need))
        page, after = await fetch(prefix, server, count)
        start = 0
        if last is not None:
            while start < len(page) and page[start].name <= last:
                start += 1
        taken = page[start : start + need]
        keys.extend(taken)
        end = start + len(taken)
        if end < len(page):  # stopped inside this server page
            return ListPage(keys, False, encode_cursor(server, end, taken[-1].name))
        if after is None:
            return ListPage(keys, True, None)
        server, skip, last = after, 0, None
        if len(keys) == limit:
            return ListPage(keys, False, encode_cursor(server, 0, None))
