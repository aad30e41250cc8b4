"""How `kvcache` fails: one `Error: ...` line on stderr, never a traceback (unless --debug).

Exit statuses: 0 success, 1 an error (bad input the store refuses, an unreadable
file, an unreachable store, ...), 2 a usage error (click's: unknown option, missing
argument, two options that exclude each other). `--debug` or KVCACHE_DEBUG=1 prints
the traceback that the one line stands for.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import click

from ..errors import KVError

__all__ = ["debug_requested", "fail", "one_line", "one_line_errors", "set_debug"]

_DEBUG = "kvcache.debug"
_OFF = ("", "0", "false", "no", "off")


def one_line(text: str) -> str:
    """`text` with every line break (\\n, \\r, U+2028, ...) made a space."""
    return " ".join(str(text).splitlines()).strip()


def fail(message: str) -> click.ClickException:
    """The exception that prints `Error: <message>` (one line) and exits 1."""
    return click.ClickException(one_line(message))


def set_debug(ctx: click.Context, param: click.Parameter, value: bool | None) -> None:
    """Option callback of --debug; `ctx.meta` is shared by every nested context."""
    if value:
        ctx.meta[_DEBUG] = True


def debug_requested(ctx: click.Context) -> bool:
    if ctx.meta.get(_DEBUG):
        return True
    return os.environ.get("KVCACHE_DEBUG", "").strip().lower() not in _OFF


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename is not None else ""
        return f"{where}{exc.strerror}"
    return str(exc) or type(exc).__name__


def _show_traceback(exc: BaseException) -> None:
    """The traceback of what the one-line error stands for: its cause if it has one."""
    cause = (exc.__cause__ or exc.__context__) if isinstance(exc, click.ClickException) else exc
    sys.stderr.write("".join(traceback.format_exception(cause or exc)))


@contextmanager
def one_line_errors(ctx: click.Context) -> Iterator[None]:
    """Turn anything a command raises into `Error: ...` and status 1."""
    try:
        yield
    except (click.exceptions.Exit, click.Abort, click.UsageError, BrokenPipeError):
        raise  # click reports these itself (a closed stdout: quietly, status 0)
    except click.ClickException as exc:
        if debug_requested(ctx):
            _show_traceback(exc)
        raise
    except (KVError, OSError, ValueError, TypeError) as exc:
        if debug_requested(ctx):
            _show_traceback(exc)
        raise fail(_describe(exc)) from exc
    except Exception as exc:
        if debug_requested(ctx):
            _show_traceback(exc)
        raise fail(
            f"unexpected {type(exc).__name__}: {_describe(exc)} (a bug in kvcache; "
            "--debug shows the traceback)"
        ) from exc
