"""Running worker processes for the multi-process tests."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.process import BaseProcess


@contextmanager
def running(procs: Sequence[BaseProcess], timeout: float) -> Iterator[None]:
    """Start every process; on leaving, wait for each to exit 0, and kill any still alive."""
    try:
        for proc in procs:
            proc.start()
        yield
        for proc in procs:
            proc.join(timeout)
            assert proc.exitcode == 0, f"worker {proc.pid} ended with {proc.exitcode}"
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()


def start_and_join(procs: Sequence[BaseProcess], timeout: float) -> None:
    """Start every process and wait for each to exit 0 (see `running`)."""
    with running(procs, timeout):
        pass
