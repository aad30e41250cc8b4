"""Running worker processes for the multi-process tests."""

from __future__ import annotations

from collections.abc import Sequence
from multiprocessing.process import BaseProcess


def start_and_join(procs: Sequence[BaseProcess], timeout: float) -> None:
    """Start every process, wait for each to exit 0, and kill any still alive after."""
    try:
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(timeout)
            assert proc.exitcode == 0, f"worker {proc.pid} ended with {proc.exitcode}"
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
