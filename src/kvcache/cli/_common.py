"""What every `kvcache` command shares: one event loop per command, blame, files, output.

Expected failures end as one `Error: ...` line on stderr and exit status 1 (see
`_errors`); the store that failed or the flag at fault is named in the line.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import re
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import KVError
from ..kv import KVStore, Limits, open_kv
from ._errors import fail
from ._target import Target

__all__ = [
    "LIMITS",
    "blame",
    "chunks",
    "loads_strict",
    "printable",
    "progress",
    "read_bytes",
    "read_json",
    "run",
    "shorten",
    "stdin_is_terminal",
    "write_json",
]

T = TypeVar("T")

#: The CLI applies Workers KV's limits; commands check their input against these
#: before the store is opened, so that a refused command creates and changes nothing.
LIMITS = Limits.cloudflare()
_SURROGATE = re.compile("[\ud800-\udfff]")


def run(target: Target, work: Callable[[KVStore], Awaitable[T]]) -> T:
    """Open the target store, await `work(store)` on a fresh event loop, close the store.

    A store that cannot be opened is named as the option that chose it.
    """

    async def session() -> T:
        try:
            store = await open_kv(target.store, namespace=target.namespace, limits=LIMITS)
        except (KVError, ValueError, TypeError) as exc:
            raise fail(f"{target.where}: {exc}") from exc
        async with store:
            return await work(store)

    return asyncio.run(session())


@contextmanager
def blame(label: str) -> Iterator[None]:
    """Errors inside name `label` (a flag or argument) as the one at fault."""
    try:
        yield
    except (KVError, TypeError, ValueError) as exc:
        raise fail(f"{label}: {exc}") from exc


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
    """The JSON in the file ("-": stdin); a UTF-8 byte order mark is allowed."""
    data = read_bytes(path)
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return loads_strict(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise fail(f"{path} is not valid JSON: {exc}") from None


def _not_json(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def loads_strict(data: str | bytes) -> Any:
    """`json.loads` as JavaScript's JSON.parse reads: NaN and Infinity are not JSON."""
    return json.loads(data, parse_constant=_not_json)


def printable(text: str) -> str:
    """Text any UTF-8 stream can take: a lone surrogate (an undecodable byte) as U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def shorten(text: str, most: int = 30) -> str:
    """`text`, cut to `most` characters for an error line."""
    return text if len(text) <= most else text[: most - 3] + "..."


def write_json(value: Any) -> None:
    """Indented JSON on stdout; lone surrogates escaped as well-formed JSON.stringify does."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    click.echo(_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


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
