"""The Redis store's connection pool: at most `size` connections, callers wait in line.

A connection goes to the first caller still waiting when it comes back; a caller
that gives up (its wait ran out, or it was cancelled) just as one was handed to it
passes it on, so no connection is ever lost. An idle connection is checked before
reuse: one with unread bytes or an end-of-file (the server restarted while it sat
idle) is closed, and reconnects when it is next sent on.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["Pool", "busy"]


def busy(wait: float | None, size: int) -> RedisConnectionError:
    return RedisConnectionError(
        f"no connection free within {wait:g} s: all {size} in use "
        "(raise max_connections or pool_timeout)"
    )


class Pool:
    """At most `size` connections made by `make`; callers finding all busy wait in line,
    `wait` seconds at most (None: no limit)."""

    def __init__(
        self, make: Callable[[], AbstractConnection], size: int, wait: float | None
    ) -> None:
        self._make = make
        self.size = size
        self.wait = wait
        self._all: list[AbstractConnection] = []
        self._idle: list[AbstractConnection] = []
        self._waiters: deque[asyncio.Future[AbstractConnection]] = deque()

    async def take(self) -> AbstractConnection:
        if self._idle:
            conn = self._idle.pop()
            try:
                # Unread bytes or EOF (the server restarted while it sat idle): start afresh.
                if conn.is_connected and await conn.can_read():
                    await conn.disconnect(nowait=True)
            except RedisConnectionError:
                pass  # can_read found it broken and closed it
            except BaseException:
                self.give(conn)
                raise
            return conn
        if len(self._all) < self.size:
            conn = self._make()
            self._all.append(conn)
            return conn
        waiter: asyncio.Future[AbstractConnection] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        line = asyncio.timeout(self.wait)
        try:
            async with line:
                return await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.give(waiter.result())  # handed over just as this caller gave up
            waiter.cancel()
            if isinstance(exc, TimeoutError) and line.expired():
                raise busy(self.wait, self.size) from exc
            raise

    def give(self, conn: AbstractConnection) -> None:
        """Return a connection: to the first caller still waiting, else to the idle list."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    async def aclose(self) -> None:
        """Close every connection; callers still in line get a ConnectionError."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(RedisConnectionError("the store was closed"))
        for conn in self._all:
            await conn.disconnect(nowait=True)
        self._idle.clear()
