"""What every `kvcache` command shares: the target store, one event loop, errors, files.

Expected failures (bad input, a refused value, an unreachable store, an unreadable
file) end as one `Error: ...` line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import KVError
from ..kv import KVStore, open_kv
from ..kv._url import default_url, redact_url

__all__ = [
    "Target",
    "chunks",
    "fail",
    "pass_target",
    "progress",
    "read_bytes",
    "read_json",
    "run",
    "stdin_is_terminal",
    "target_options",
    "write_json",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Target:
    """The store URL (None: the embedded default) and namespace a command acts on."""

    store: str | None = None
    namespace: str = "default"

    def describe(self) -> str:
        return f'namespace "{self.namespace}" of {redact_url(self.store or default_url())}'


pass_target = click.make_pass_decorator(Target, ensure=True)


def _setter(field: str) -> Callable[[click.Context, click.Parameter, str | None], None]:
    """An option callback that records a given value on the context's Target."""

    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        target = ctx.ensure_object(Target)
        if value is not None:
            setattr(target, field, value)

    return callback


_TARGET_OPTIONS = (
    (
        "--store",
        "URL",
        "KVCACHE_STORE",
        "Store URL: sqlite:////abs/path.db, sqlite:///rel.db, "
        "redis://host:port/0, memory:// [default: ./.kvcache/kv.sqlite3].",
    ),
    (
        "--namespace",
        "NAME",
        "KVCACHE_NAMESPACE",
        'Namespace inside the store [default: "default"].',
    ),
)


def target_options(*, envvars: bool) -> Callable[[F], F]:
    """`--store` and `--namespace`; a later (leaf) occurrence overrides an earlier one."""

    def decorate(func: F) -> F:
        for flag, metavar, envvar, help_text in reversed(_TARGET_OPTIONS):
            func = click.option(
                flag,
                metavar=metavar,
                envvar=envvar if envvars else None,
                show_envvar=envvars,
                expose_value=False,
                callback=_setter(flag.removeprefix("--")),
                help=help_text,
            )(func)
        return func

    return decorate


def fail(message: str) -> click.ClickException:
    """The exception that prints `Error: <message>` (one line) and exits 1."""
    return click.ClickException(" ".join(message.splitlines()))


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except click.ClickException:
        raise
    except (KVError, TypeError, ValueError, OSError) as exc:
        raise fail(str(exc) or type(exc).__name__) from None


def run(target: Target, work: Callable[[KVStore], Awaitable[T]]) -> T:
    """Open the target store, await `work(store)` on a fresh event loop, close the store."""

    async def session() -> T:
        async with open_kv(target.store, namespace=target.namespace) as kv:
            return await work(kv)

    with _user_errors():
        return asyncio.run(session())


def read_bytes(path: str) -> bytes:
    """The file's bytes; "-" reads stdin."""
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror or exc}") from None


def read_json(path: str) -> Any:
    data = read_bytes(path)
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise fail(f"{path} is not valid JSON: {exc}") from None


def write_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _is_terminal(stream: Any) -> bool:
    try:
        return stream is not None and bool(stream.isatty())
    except ValueError:  # a closed stream
        return False


def stdin_is_terminal() -> bool:
    return _is_terminal(sys.stdin)


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr when it is a terminal; a no-op otherwise.

    The check is isatty() itself: rich alone would also draw into a pipe under FORCE_COLOR.
    """
    if not _is_terminal(sys.stderr):
        yield lambda done: None
        return
    console = Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.advance(task, done)
