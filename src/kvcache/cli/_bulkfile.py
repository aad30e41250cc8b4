"""Reading wrangler's bulk JSON files: every entry is checked before anything is written.

A bulk put file is an array of `{key, value, expiration?, expiration_ttl?,
metadata?, base64?}` objects; a bulk delete or get file is an array of key strings
or `{"name": ...}` objects, so `kvcache kv key list` output can be fed back in.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import KVValidationError
from ..kv import Limits
from ..kv.validation import check_server_key, entry_record

__all__ = [
    "PUT_FIELDS",
    "Problem",
    "describe_problems",
    "json_type",
    "key_names",
    "key_problems",
    "put_problems",
    "unexpected_fields",
]

PUT_FIELDS = ("key", "value", "expiration", "expiration_ttl", "metadata", "base64")
MAX_NAMED = 12

Problem = tuple[int, str]
"""(index of the entry in the file, what is wrong with it)."""


def json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _shape_problem(entry: object) -> str | None:
    """wrangler's own type checks, which run before the store's."""
    if not isinstance(entry, dict):
        return f"must be an object, not {json_type(entry)}"
    for field in ("key", "value"):
        if not isinstance(entry.get(field), str):
            return f'needs a "{field}" string'
    for field in ("expiration", "expiration_ttl"):
        number = entry.get(field)
        if number is not None and (isinstance(number, bool) or not isinstance(number, int | float)):
            return f'"{field}" must be a number, not {json_type(number)}'
    flag = entry.get("base64")
    if flag is not None and not isinstance(flag, bool):
        return f'"base64" must be true or false, not {json_type(flag)}'
    metadata = entry.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        return f'"metadata" must be an object, not {json_type(metadata)}'
    return None


def _entry_problem(entry: object, now: float, limits: Limits) -> str | None:
    shape = _shape_problem(entry)
    if shape is not None:
        return shape
    try:
        entry_record(entry, now, limits)
    except (KVValidationError, TypeError) as exc:
        return str(exc)
    return None


def _label(index: int, entry: object, name_field: str) -> str:
    name = entry.get(name_field) if isinstance(entry, dict) else entry
    return f"entry {index} ({name!r})" if isinstance(name, str) else f"entry {index}"


def put_problems(entries: Sequence[object], now: float, limits: Limits) -> list[Problem]:
    """The first bad entries of a bulk put file, with the store's limits at time `now`."""
    problems: list[Problem] = []
    for index, entry in enumerate(entries):
        problem = _entry_problem(entry, now, limits)
        if problem is not None:
            problems.append((index, f"{_label(index, entry, 'key')}: {problem}"))
    return problems


def unexpected_fields(entries: Sequence[object]) -> list[Problem]:
    """Entries with properties other than PUT_FIELDS (a warning, as in wrangler)."""
    found: list[Problem] = []
    for index, entry in enumerate(entries):
        if isinstance(entry, dict):
            extra = [str(field) for field in entry if field not in PUT_FIELDS]
            if extra:
                found.append((index, f"{_label(index, entry, 'key')}: {', '.join(extra)}"))
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
