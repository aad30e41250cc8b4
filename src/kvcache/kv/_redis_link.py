"""How the Redis store reaches the server: one command per round trip, each under a deadline.

`NodeLink` serves a single server (the `from_url` case). It keeps its own small
pool of redis-py `Connection`s (redis-py still connects, authenticates, speaks
TLS and parses replies) and packs the store's few commands itself, because
redis-py's generic path costs more than the store's whole budget on a fast
server: on the 2-core development machine a checkout and return through
`BlockingConnectionPool` took 23 µs and `execute_command` about as much again,
against a loopback round trip of 60-70 µs. The pool (`_redis_pool`) holds at
most `size` connections; a caller that finds all of them busy waits in line, so
any number of concurrent callers are served.

Two bounds apply to each command: waiting in line for a connection (the pool's
`wait`, generous, so that a burst of callers larger than the pool is served) and
then the command's own deadline, which covers connecting, sending and the reply.
When the deadline passes, or the caller is cancelled, or the connection fails,
that connection is closed before it goes back to the pool, so a reply can never
be read by the wrong caller; it reconnects on next use.

`ClientLink` serves anything else through a redis-py client (Redis Cluster,
or a client the caller passed in), with the same deadlines and, when a size is
given, the same bound on concurrent commands.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._redis_pool import Pool, busy

__all__ = ["Arg", "ClientLink", "Link", "NodeLink", "pack", "pack_mget"]

Arg: TypeAlias = "bytes | str | int | float"

#: Arguments longer than this are handed to the socket as they are, not copied
#: into the packed command (a 25 MiB value is then never copied on the way out).
_INLINE_MAX = 16 * 1024


def _encode(arg: Arg) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, float):
        return repr(arg).encode()
    return b"%d" % arg


def pack(args: Sequence[Arg]) -> bytes | list[bytes]:
    """A command in RESP: one bytes object, or a list of them when an argument is big."""
    chunks: list[bytes] = [b"*%d\r\n" % len(args)]
    out: list[bytes] | None = None
    for arg in args:
        data = arg if arg.__class__ is bytes else _encode(arg)
        if len(data) <= _INLINE_MAX:
            chunks.append(b"$%d\r\n%s\r\n" % (len(data), data))
            continue
        out = [] if out is None else out
        chunks.append(b"$%d\r\n" % len(data))
        out += [b"".join(chunks), data]
        chunks = [b"\r\n"]
    if out is None:
        return b"".join(chunks)
    out.append(b"".join(chunks))
    return out


def pack_mget(prefix: bytes, keys: Sequence[str]) -> bytes:
    """MGET of `prefix + key` for each key, packed in one pass.

    Keys are nearly always ASCII: then the command is built as one str and encoded
    once (a third faster than formatting 100 bytes objects); otherwise per key.
    """
    size = len(prefix)
    head = b"*%d\r\n$4\r\nMGET\r\n" % (len(keys) + 1)
    text = prefix.decode("ascii", "replace")
    body = "".join([f"${size + len(key)}\r\n{text}{key}\r\n" for key in keys])
    if body.isascii() and text.isascii():
        return head + body.encode()
    parts = [head]
    for key in keys:
        data = key.encode()
        parts.append(b"$%d\r\n%s%s\r\n" % (size + len(data), prefix, data))
    return b"".join(parts)


def _late(timeout: float | None) -> RedisTimeoutError:
    return RedisTimeoutError(f"no reply within {timeout:g} s")


def _expire(deadline: asyncio.Timeout) -> None:
    """A command's time is up: cancel it on the loop's next turn, not this one, so a
    reply that arrived in time but waited behind other tasks (a busy loop, not a
    slow server) is still read."""
    deadline.reschedule(asyncio.get_running_loop().time())


class Link(ABC):
    """The commands the store sends; `timeout` is each call's deadline in seconds."""

    @abstractmethod
    async def get(self, name: bytes, timeout: float | None) -> bytes | None: ...

    @abstractmethod
    async def mget(
        self, prefix: bytes, keys: Sequence[str], timeout: float | None
    ) -> list[bytes | None]: ...

    @abstractmethod
    async def evalsha(
        self, sha: str, keys: tuple[bytes, bytes], args: Sequence[Arg], timeout: float | None
    ) -> Any: ...

    @abstractmethod
    async def script_load(self, source: str, timeout: float | None) -> None: ...

    @abstractmethod
    async def ping(self, timeout: float | None) -> None: ...

    @abstractmethod
    async def aclose(self) -> None: ...


class NodeLink(Link):
    """One server through a `Pool`; `retries` re-sends after a connection error or timeout."""

    def __init__(self, pool: Pool, retries: int = 0) -> None:
        self.pool = pool
        self._retries = retries
        #: Without retries a command is sent by `_once` itself: one coroutine less a call.
        self._send = self._once if retries == 0 else self._retrying

    async def get(self, name: bytes, timeout: float | None) -> bytes | None:
        packed = b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(name), name)
        return cast("bytes | None", await self._send(packed, timeout))

    async def mget(
        self, prefix: bytes, keys: Sequence[str], timeout: float | None
    ) -> list[bytes | None]:
        reply = await self._send(pack_mget(prefix, keys), timeout)
        if isinstance(reply, list):
            return reply
        raise ResponseError(f"MGET answered {reply!r}")

    async def evalsha(
        self, sha: str, keys: tuple[bytes, bytes], args: Sequence[Arg], timeout: float | None
    ) -> Any:
        return await self._send(pack(["EVALSHA", sha, 2, *keys, *args]), timeout)

    async def script_load(self, source: str, timeout: float | None) -> None:
        await self._send(pack(["SCRIPT", "LOAD", source]), timeout)

    async def ping(self, timeout: float | None) -> None:
        await self._send(pack(["PING"]), timeout)

    async def aclose(self) -> None:
        await self.pool.aclose()

    async def _retrying(self, packed: bytes | list[bytes], timeout: float | None) -> Any:
        attempt = 0
        while True:
            try:
                return await self._once(packed, timeout)
            except (RedisConnectionError, RedisTimeoutError):
                if attempt >= self._retries:
                    raise
                attempt += 1

    async def _once(self, packed: bytes | list[bytes], timeout: float | None) -> Any:
        pool = self.pool
        conn = await pool.take()
        deadline = asyncio.timeout(None)
        try:
            async with deadline:
                timer = None
                if timeout is not None:
                    timer = asyncio.get_running_loop().call_later(timeout, _expire, deadline)
                try:
                    await conn.send_packed_command(packed, check_health=False)
                    reply = await conn.read_response()
                finally:
                    if timer is not None:
                        timer.cancel()
        except ResponseError:
            pool.give(conn)  # a whole error reply: the connection is still in step
            raise
        except BaseException as exc:
            await conn.disconnect(nowait=True)
            pool.give(conn)
            if isinstance(exc, TimeoutError) and deadline.expired():
                raise _late(timeout) from exc
            raise
        pool.give(conn)
        return reply


class ClientLink(Link):
    """A redis-py client (cluster, or one the caller owns), under the same deadlines.

    `size`, when given, bounds this store's concurrent commands: callers beyond it
    wait in line, `wait` seconds at most.
    """

    def __init__(
        self, client: Redis | RedisCluster, size: int | None = None, wait: float | None = None
    ) -> None:
        self.client = client
        self._slots = asyncio.Semaphore(size) if size else None
        self._size = size or 0
        self._wait = wait

    async def get(self, name: bytes, timeout: float | None) -> bytes | None:
        return cast("bytes | None", await self._call(timeout, self.client.get, name))

    async def mget(
        self, prefix: bytes, keys: Sequence[str], timeout: float | None
    ) -> list[bytes | None]:
        names = [prefix + key.encode() for key in keys]
        return cast("list[bytes | None]", await self._call(timeout, self.client.mget, names))

    async def evalsha(
        self, sha: str, keys: tuple[bytes, bytes], args: Sequence[Arg], timeout: float | None
    ) -> Any:
        return await self._call(timeout, self.client.evalsha, sha, 2, *keys, *args)

    async def script_load(self, source: str, timeout: float | None) -> None:
        await self._call(timeout, self.client.script_load, source)

    async def ping(self, timeout: float | None) -> None:
        if isinstance(self.client, RedisCluster):
            await self._call(timeout, self.client.initialize)
        await self._call(timeout, self.client.ping)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _call(self, timeout: float | None, method: Callable[..., Any], *args: Any) -> Any:
        if self._slots is None:
            return await self._within(timeout, method, args)
        line = asyncio.timeout(self._wait)
        try:
            async with line:
                await self._slots.acquire()
        except TimeoutError as exc:
            if line.expired():
                raise busy(self._wait, self._size) from exc
            raise
        try:
            return await self._within(timeout, method, args)
        finally:
            self._slots.release()

    @staticmethod
    async def _within(timeout: float | None, method: Callable[..., Any], args: Any) -> Any:
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                return await method(*args)
        except TimeoutError as exc:
            if deadline.expired():
                raise _late(timeout) from exc
            raise
