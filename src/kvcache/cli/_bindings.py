"""`--binding NAME`: from a binding name to a namespace (and perhaps a store).

Looked up in the working directory, in this order:

1. `kvcache.toml`, which can also name the store of a binding::

       [kv.bindings.CACHE]
       store = "redis://127.0.0.1:6379/0"   # optional: the store otherwise in use
       namespace = "CACHE"                  # optional: the binding's name
       preview_namespace = "CACHE_preview"  # optional: used with --preview

2. the wrangler configuration: the first of wrangler.json, wrangler.jsonc and
   wrangler.toml (or the file `--config` names), `[[kv_namespaces]]` with
   `binding`, `id` and `preview_id` (from `[env.NAME]` with `--env NAME`). The id
   is the namespace inside the kvcache store.

A top-level `store = "..."` in kvcache.toml (the service's setting) is the store
of every command that names none.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from typing import Any

from ..errors import KVConfigError

__all__ = [
    "KVCACHE_TOML",
    "WRANGLER_FILES",
    "Binding",
    "wrangler_file",
    "find_binding",
    "read_kvcache_toml",
    "strip_jsonc",
    "toml_store",
]

KVCACHE_TOML = "kvcache.toml"
WRANGLER_FILES = ("wrangler.json", "wrangler.jsonc", "wrangler.toml")
_BINDING_FIELDS = ("store", "namespace", "preview_namespace")


@dataclass(frozen=True)
class Binding:
    """Where a binding points: a namespace, the store if the file names one, and the file."""

    namespace: str
    store: str | None
    where: str


def _string_end(text: str, start: int) -> int:
    """The index just past the JSON string that opens at `start`."""
    index = start + 1
    while index < len(text) and text[index] != '"':
        index += 2 if text[index] == "\\" else 1
    return index + 1


def _comment_end(text: str, start: int) -> int:
    """The index just past the // or /* comment at `start` (a // comment keeps its newline)."""
    if text.startswith("//", start):
        end = text.find("\n", start)
        return len(text) if end < 0 else end
    end = text.find("*/", start + 2)
    return len(text) if end < 0 else end + 2


def _next_token(text: str, start: int) -> int:
    """The index of the next character that is neither blank nor inside a comment."""
    index = start
    while index < len(text):
        if text[index].isspace():
            index += 1
        elif text.startswith(("//", "/*"), index):
            index = _comment_end(text, index)
        else:
            break
    return index


def strip_jsonc(text: str) -> str:
    """JSON with comments and trailing commas (as wrangler reads it) -> plain JSON.

    Strings are copied untouched, so `"http://x"` or `"a,}"` survive; comments become
    spaces and newlines, so a JSON error still points at the right line.
    """
    plain: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == '"':
            end = _string_end(text, index)
            plain.append(text[index:end])
        elif text.startswith(("//", "/*"), index):
            end = _comment_end(text, index)
            plain.append("".join("\n" if c == "\n" else " " for c in text[index:end]))
        else:
            end = index + 1
            after = _next_token(text, end) if char == "," else end
            if char != "," or text[after : after + 1] not in ("}", "]"):
                plain.append(char)  # a trailing comma, before } or ], is dropped
        index = end
    return "".join(plain)


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8-sig") as handle:
            return handle.read()
    except OSError as exc:
        raise KVConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise KVConfigError(f"{path} is not UTF-8 text: {exc}") from exc


def _read_config(path: str) -> dict[str, Any]:
    text = _read_text(path)
    try:
        if path.endswith(".toml"):
            data: Any = tomllib.loads(text)
        else:
            data = json.loads(strip_jsonc(text))
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError and JSONDecodeError too
        kind = "TOML" if path.endswith(".toml") else "JSON"
        raise KVConfigError(f"{path} is not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise KVConfigError(f"{path} must hold an object at the top, not {type(data).__name__}")
    return data


def read_kvcache_toml(directory: str = ".") -> tuple[str, dict[str, Any]] | None:
    """The path and contents of kvcache.toml in `directory`, or None if there is none."""
    path = os.path.normpath(os.path.join(directory, KVCACHE_TOML))
    if not os.path.isfile(path):
        return None
    return path, _read_config(path)


def toml_store(found: tuple[str, dict[str, Any]] | None) -> str | None:
    """The top-level `store` of kvcache.toml, if it sets one."""
    if found is None:
        return None
    path, data = found
    store = data.get("store")
    if store is not None and not (isinstance(store, str) and store):
        raise KVConfigError(f"{path}: store must be a store URL string, not {store!r}")
    return store


def _pick(
    name: str, ids: tuple[str | None, str | None], preview: bool | None, writes: bool, where: str
) -> str:
    """wrangler's choice between a binding's id and preview id (no ids: the binding's name)."""
    main, preview_id = ids
    flag = f"--binding {name}"
    if preview:
        if preview_id is None:
            raise KVConfigError(f"{flag} --preview: {where} gives {name} no preview namespace")
        return preview_id
    if main is None and preview_id is None:
        return name
    if preview is False:
        if main is None:
            raise KVConfigError(f"{flag} --no-preview: {where} gives {name} no namespace id")
        return main
    if main is None or preview_id is None:
        return main or preview_id or name
    if writes:
        raise KVConfigError(
            f"{flag}: {where} gives {name} both a namespace and a preview namespace; "
            "pass --preview or --no-preview so the write goes where you mean"
        )
    return main


def _text_field(table: dict[str, Any], field: str, where: str) -> str | None:
    value = table.get(field)
    if value is not None and not (isinstance(value, str) and value):
        raise KVConfigError(f"{where}: {field} must be a non-empty string, not {value!r}")
    return value


def _from_kvcache_toml(
    name: str, found: tuple[str, dict[str, Any]], preview: bool | None, writes: bool
) -> Binding | None:
    path, data = found
    kv = data.get("kv", {})
    bindings = kv.get("bindings", {}) if isinstance(kv, dict) else None
    if not isinstance(bindings, dict):
        raise KVConfigError(f"{path}: [kv.bindings] must be a table of bindings")
    table = bindings.get(name)
    if table is None:
        return None
    where = f"{path} [kv.bindings.{name}]"
    if not isinstance(table, dict):
        raise KVConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - set(_BINDING_FIELDS))
    if unknown:
        raise KVConfigError(
            f"{where}: unknown field {', '.join(unknown)} (use {', '.join(_BINDING_FIELDS)})"
        )
    fields = {field: _text_field(table, field, where) for field in _BINDING_FIELDS}
    ids = (fields["namespace"] or name, fields["preview_namespace"])
    return Binding(_pick(name, ids, preview, writes, where), fields["store"], where)


def wrangler_file(config: str | None, directory: str) -> str | None:
    """`config` if given (it must exist), else the first wrangler config in `directory`."""
    if config is not None:
        if not os.path.isfile(config):
            raise KVConfigError(f"--config {config}: no such file")
        return config
    for candidate in WRANGLER_FILES:
        path = os.path.normpath(os.path.join(directory, candidate))
        if os.path.isfile(path):
            return path
    return None


def _wrangler_namespaces(path: str, env: str | None) -> list[Any]:
    data = _read_config(path)
    if env is not None:
        section = data.get("env", {}).get(env) if isinstance(data.get("env"), dict) else None
        if not isinstance(section, dict):
            raise KVConfigError(f"--env {env}: {path} has no [env.{env}] section")
        data = section
    entries = data.get("kv_namespaces", [])
    if not isinstance(entries, list):
        raise KVConfigError(f"{path}: kv_namespaces must be an array of tables")
    return entries


def _from_wrangler(
    name: str, path: str, env: str | None, preview: bool | None, writes: bool
) -> Binding | None:
    where = f"{path} kv_namespaces" + (f" of [env.{env}]" if env else "")
    for entry in _wrangler_namespaces(path, env):
        if isinstance(entry, dict) and entry.get("binding") == name:
            ids = (_text_field(entry, "id", where), _text_field(entry, "preview_id", where))
            return Binding(_pick(name, ids, preview, writes, where), None, where)
    return None


def find_binding(
    name: str,
    *,
    preview: bool | None = None,
    env: str | None = None,
    config: str | None = None,
    writes: bool = False,
    directory: str = ".",
) -> Binding:
    """The binding NAME from kvcache.toml, else from the wrangler config (`config` if given).

    Raises KVConfigError naming `--binding NAME` and the files that were searched.
    """
    found = read_kvcache_toml(directory) if config is None else None
    if found is not None:
        binding = _from_kvcache_toml(name, found, preview, writes)
        if binding is not None:
            return binding
    wrangler = wrangler_file(config, directory)
    if wrangler is not None:
        binding = _from_wrangler(name, wrangler, env, preview, writes)
        if binding is not None:
            return binding
    searched = [path for path in (found[0] if found else None, wrangler) if path]
    if not searched:
        files = ", ".join((KVCACHE_TOML, *WRANGLER_FILES))
        raise KVConfigError(
            f"--binding {name}: none of {files} is in {os.path.abspath(directory)}; "
            "give --namespace-id instead, or add the binding to one of them"
        )
    raise KVConfigError(
        f"--binding {name}: no binding {name!r} in {' or '.join(searched)} "
        "(kvcache.toml: [kv.bindings.NAME]; wrangler: [[kv_namespaces]] binding = NAME)"
    )
