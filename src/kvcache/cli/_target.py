"""Which store and namespace a command acts on: flags, bindings, environment, defaults.

The store: `--store`, else the binding's `store` (kvcache.toml), else KVCACHE_STORE,
else kvcache.toml's top-level `store`, else the embedded ./.kvcache/kv.sqlite3.
The namespace: `--namespace`/`--namespace-id`, else the binding's, else
KVCACHE_NAMESPACE, else "default". Every option can be given before `kv` or at the
end of a command (wrangler style); a later one overrides an earlier one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from ..kv._url import default_url, redact_url, sqlite_path
from ..kv.registry import BACKENDS
from ._bindings import Binding, find_binding, read_kvcache_toml, toml_store
from ._errors import fail, set_debug
from ._remote import remote_url

__all__ = ["Choices", "Target", "pass_choices", "shown_url", "target_options"]

F = TypeVar("F", bound=Callable[..., Any])
_EXAMPLES = {
    "memory": "memory://",
    "sqlite": "sqlite:///path/to/kv.sqlite3",
    "redis": "redis://127.0.0.1:6379/0",
    "rediss": "rediss://host:6380/0",
}


def shown_url(url: str) -> str:
    """The URL with any password hidden, even when it is too malformed to parse."""
    try:
        return redact_url(url)
    except ValueError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


@dataclass(frozen=True)
class Target:
    """The resolved store (None: the embedded default) and namespace, and what chose the store."""

    store: str | None
    namespace: str
    source: str

    @property
    def url(self) -> str:
        return self.store if self.store is not None else default_url()

    @property
    def where(self) -> str:
        """The store as errors name it: `--store redis://...`, `the default store ...`."""
        return f"{self.source} {shown_url(self.url)}"


def _url_problem(url: str) -> str | None:
    """Why `url` is not a store URL, with the URL the user probably meant."""
    if "://" in url:
        return None
    word = url.strip().lower().rstrip(":/")
    if word in BACKENDS:
        return f"did you mean {_EXAMPLES.get(word, word + '://...')}?"
    if "/" in url or url.endswith((".db", ".sqlite", ".sqlite3")):
        return f"did you mean sqlite:///{url}?"
    return "a store URL looks like memory://, sqlite:///path/kv.sqlite3 or redis://host:6379/0"


def _check_exists(target: Target) -> None:
    """A command that only reads (or deletes) never creates a sqlite file or directory."""
    url = target.url
    if url.split("://", 1)[0].lower() != "sqlite":
        return
    path = sqlite_path(url)
    if path == ":memory:" or os.path.exists(path):
        return
    raise fail(
        f"{target.where}: no store at {path} (no such file); nothing was created, "
        "as only a write creates a store: check the path"
    )


@dataclass
class Choices:
    """What the command line asked for, before any configuration file is read."""

    store: str | None = None
    namespace: str | None = None
    binding: str | None = None
    preview: bool | None = None
    env: str | None = None
    config: str | None = None
    local: bool = False
    remote: bool = False

    def _store(self, binding: Binding | None) -> tuple[str | None, str]:
        if self.store is not None:
            return self.store, "--store"
        if binding is not None and binding.store is not None:
            return binding.store, f"the store of {binding.where}"
        if os.environ.get("KVCACHE_STORE"):
            return os.environ["KVCACHE_STORE"], "KVCACHE_STORE"
        found = read_kvcache_toml()
        store = toml_store(found)
        if store is not None and found is not None:
            return store, f"the store of {found[0]}"
        return None, "the default store"

    def resolve(self, *, writes: bool, creates: bool) -> Target:
        """The target, checked: options that exclude each other, the URL, a missing file.

        `writes`: the command changes data (a binding with both ids is then ambiguous).
        `creates`: it may create the store; otherwise a missing sqlite file is an error.
        """
        if self.local and self.remote:
            raise click.UsageError("--local and --remote exclude each other")
        if self.binding is not None and self.namespace is not None:
            raise click.UsageError("--binding and --namespace-id (--namespace) exclude each other")
        if self.remote:
            return self._remote(writes)
        binding = None
        if self.binding is not None:
            binding = find_binding(
                self.binding, preview=self.preview, env=self.env, config=self.config, writes=writes
            )
        namespace = self.namespace if binding is None else binding.namespace
        if namespace is None:
            namespace = os.environ.get("KVCACHE_NAMESPACE") or "default"
        if not namespace:
            raise fail("--namespace: the namespace name must not be empty")
        store, source = self._store(binding)
        target = Target(store, namespace, source)
        problem = _url_problem(target.url)
        if problem is not None:
            raise fail(f"{source} {target.url!r} is not a store URL; {problem}")
        if not creates:
            try:
                _check_exists(target)
            except ValueError as exc:  # KVConfigError: a sqlite URL with a host, no file
                raise fail(f"{target.where}: {exc}") from exc
        return target

    def _remote(self, writes: bool) -> Target:
        if self.store is not None:
            raise click.UsageError("--store and --remote exclude each other")
        try:
            url, namespace, source = remote_url(
                namespace_id=self.namespace,
                binding=self.binding,
                preview=self.preview,
                env=self.env,
                config=self.config,
                writes=writes,
            )
        except ValueError as exc:  # KVConfigError from the wrangler config
            raise fail(str(exc)) from exc
        return Target(url, namespace, source)


pass_choices = click.make_pass_decorator(Choices, ensure=True)


def _record(field: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    """An option callback that records a given value on the context's Choices."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is not None:
            setattr(ctx.ensure_object(Choices), field, value)

    return callback


def _persist_to(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        raise click.UsageError(
            "--persist-to is wrangler's Miniflare directory; kvcache names its store with "
            f"--store instead, for example --store sqlite:///{value.rstrip('/')}/kv.sqlite3"
        )


_OPTIONS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (
        ("--store",),
        {
            "metavar": "URL",
            "callback": _record("store"),
            "help": "Store URL: sqlite:///rel.db, sqlite:////abs/path.db, redis://host:port/0, "
            "memory:// [env KVCACHE_STORE; default: ./.kvcache/kv.sqlite3].",
        },
    ),
    (
        ("--namespace", "--namespace-id"),
        {
            "metavar": "NAME",
            "callback": _record("namespace"),
            "help": 'Namespace inside the store [env KVCACHE_NAMESPACE; default: "default"].',
        },
    ),
    (
        ("--binding",),
        {
            "metavar": "NAME",
            "callback": _record("binding"),
            "help": "A binding from kvcache.toml [kv.bindings.NAME] or wrangler.toml/json(c).",
        },
    ),
    (
        ("--preview/--no-preview",),
        {"default": None, "callback": _record("preview"), "help": "Use the preview id."},
    ),
    (
        ("--env", "-e"),
        {"metavar": "ENV", "callback": _record("env"), "help": "wrangler [env.ENV] bindings."},
    ),
    (
        ("--config", "-c"),
        {"metavar": "FILE", "callback": _record("config"), "help": "The wrangler config file."},
    ),
    (
        ("--local",),
        {
            "is_flag": True,
            "default": None,
            "callback": _record("local"),
            "help": "A local store (the default).",
        },
    ),
    (
        ("--remote",),
        {
            "is_flag": True,
            "default": None,
            "callback": _record("remote"),
            "help": "The namespace on Cloudflare (CLOUDFLARE_ACCOUNT_ID, CLOUDFLARE_API_TOKEN).",
        },
    ),
    (
        ("--debug",),
        {
            "is_flag": True,
            "default": None,
            "callback": set_debug,
            "help": "Show the traceback behind an error [env KVCACHE_DEBUG=1].",
        },
    ),
    (("--persist-to",), {"metavar": "DIR", "hidden": True, "callback": _persist_to}),
)


def target_options(func: F) -> F:
    """The options above, on the top-level group and on every kv command."""
    for decls, settings in reversed(_OPTIONS):
        func = click.option(*decls, expose_value=False, **settings)(func)
    return func
