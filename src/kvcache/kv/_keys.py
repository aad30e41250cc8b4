"""The key rules, written once; each surface's wording of them is data.

Workers KV checks a key in two places with the same rules and different words:
the binding (get, get_with_metadata, put, delete) raises its own TypeError text,
the server (reached by bulk calls) answers `KV <OP> failed: 400 ...`. A list
prefix obeys only the size rule. `check_key` applies the rules; a `KeyRules`
says how one surface words them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import KVValidationError
from .limits import Limits

__all__ = ["BINDING", "PREFIX", "SERVER", "KeyRules", "check_key", "check_prefix"]


@dataclass(frozen=True, slots=True)
class KeyRules:
    """How one surface words the key rules; None where a rule does not apply there.

    `what` names the argument in a TypeError and `label` the string in the Unicode
    error. `server` makes the empty and reserved-name errors read as the server's
    (`KV PUT failed: 400 ...`) instead of the binding's bare text.
    """

    what: str
    label: str
    empty: str | None
    reserved: str | None  # "{key}" stands for the key
    server: bool


#: The binding's client-side checks (get, get_with_metadata, put, delete).
BINDING = KeyRules(
    "key", "Key name", "Key name cannot be empty.", '"{key}" is not allowed as a key name.', False
)
#: The server's checks, which bulk operations reach (no client-side check there).
SERVER = KeyRules(
    "key",
    "Key name",
    "Key names must not be empty",
    'Illegal key name "{key}". Please use a different name.',
    True,
)
#: A list prefix: any string within the key size limit.
PREFIX = KeyRules("prefix", "Prefix", None, None, True)


def check_key(key: object, op: str, limits: Limits, rules: KeyRules = BINDING) -> str:
    """`key` if usable; else TypeError or KVValidationError, in Workers KV's order."""
    if not isinstance(key, str):
        raise TypeError(f"KV {op.lower()}() {rules.what} must be str, not {type(key).__name__}")
    if key.isascii() and 2 < len(key) <= limits.max_key_bytes:
        return key  # the usual key: ASCII (bytes == chars), neither empty nor a dot name
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise KVValidationError(f"{rules.label} is not valid Unicode.", op=op) from None
    if size == 0 and rules.empty is not None:
        _refuse(rules.empty, op, rules)
    if (key == "." or key == "..") and rules.reserved is not None:
        _refuse(rules.reserved.format(key=key), op, rules)
    if size > limits.max_key_bytes:
        raise KVValidationError(
            f"UTF-8 encoded length of {size} exceeds key length limit of {limits.max_key_bytes}.",
            status=414,
            op=op,
        )
    return key


def _refuse(message: str, op: str, rules: KeyRules) -> None:
    if rules.server:
        raise KVValidationError(message, status=400, op=op)
    raise KVValidationError(message)


def check_prefix(prefix: object, limits: Limits) -> str:
    """A list prefix: any string up to the key size limit; None means all keys."""
    if prefix is None:
        return ""
    return check_key(prefix, "GET", limits, PREFIX)
