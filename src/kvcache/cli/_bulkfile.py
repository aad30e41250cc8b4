"""Reading wrangler's bulk JSON files: every entry is checked before anything is written.

A bulk put file is an array of `{key, value, expiration?, expiration_ttl?,
metadata?, base64?}` objects, checked by the rule `put_many` itself applies; a bulk
delete or get file is an array of key strings or `{"name": ...}` objects, so
`kvcache kv key list` output can be fed back in.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..errors import KVValidationError
from ..kv import Limits
from ..kv.validation import check_server_key, entry_record
from ._common import shorten

__all__ = [
    "PUT_FIELDS",
    "Problem",
    "describe_problems",
    "key_names",
    "key_problems",
    "put_problems",
    "unexpected_fields",
]

PUT_FIELDS = ("key", "value", "expiration", "expiration_ttl", "metadata", "base64")
MAX_NAMED = 12

Problem = tuple[int, str]
"""(index of the entry in the file, what is wrong with it)."""


def _label(index: int, entry: object, name_field: str) -> str:
    name = entry.get(name_field) if isinstance(entry, dict) else entry
    if not isinstance(name, str):
        return f"entry {index}"
    return f"entry {index} ({shorten(name, 40)!r})"


def put_problems(entries: Sequence[object], now: float, limits: Limits) -> list[Problem]:
    """The bad entries of a bulk put file, by `put_many`'s own rule (`entry_record`).

    The whole file is checked, not only its first 10,000 entries, so that a bad
    entry in a later batch stops the command before the first batch is written.
    """
    problems: list[Problem] = []
    for index, entry in enumerate(entries):
        try:
            entry_record(entry, now, limits)
        except (KVValidationError, TypeError) as exc:
            problems.append((index, f"{_label(index, entry, 'key')}: {exc}"))
    return problems


def unexpected_fields(entries: Sequence[object]) -> list[Problem]:
    """Entries with properties other than PUT_FIELDS (a warning, as in wrangler).

    The names are given as a JSON array, as wrangler does, so that a name holding a
    newline cannot break the warning's line.
    """
    found: list[Problem] = []
    for index, entry in enumerate(entries):
        if isinstance(entry, dict):
            extra = [str(field) for field in entry if field not in PUT_FIELDS]
            if extra:
                names = json.dumps(extra, ensure_ascii=False)
                found.append((index, f"{_label(index, entry, 'key')}: {names}"))
    return found


def _key_name(item: object) -> str | None:
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        name: str = item["name"]
        return name
    return None


def key_names(items: Sequence[object]) -> tuple[list[str], list[Problem]]:
    """Key names from strings or {"name": ...} objects, and the items that are neither."""
    names: list[str] = []
    problems: list[Problem] = []
    for index, item in enumerate(items):
        name = _key_name(item)
        if name is None:
            problems.append(
                (index, f'entry {index}: must be a key string or an object with a "name" string')
            )
        else:
            names.append(name)
    return names, problems


def key_problems(names: Sequence[str], op: str, limits: Limits) -> list[Problem]:
    """Names the store would refuse (empty, "." or "..", too long).

    Indexes match the file's only when `key_names` found no problems, so call it first.
    """
    problems: list[Problem] = []
    for index, name in enumerate(names):
        try:
            check_server_key(name, op, limits)
        except (KVValidationError, TypeError) as exc:
            problems.append((index, f"{_label(index, name, 'name')}: {exc}"))
    return problems


def describe_problems(problems: Sequence[Problem], total: int, path: str, outcome: str) -> str:
    """One line naming the first MAX_NAMED problems, e.g. for `Error: ...`."""
    named = "; ".join(text for _, text in problems[:MAX_NAMED])
    more = len(problems) - MAX_NAMED
    suffix = f"; and {more} more" if more > 0 else ""
    return f"{len(problems)} of {total} entries in {path} are invalid, {outcome}: {named}{suffix}"
