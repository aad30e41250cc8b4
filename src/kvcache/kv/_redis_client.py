"""From a store URL to a connected redis-py asyncio client, and redis-py's errors to ours.

Imported only when a redis URL is opened: `redis` is the optional extra
`kvcache[redis]`.
"""

from __future__ import annotations

from typing import Any, TypeAlias, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from ._url import redact_url
from .errors import KVBackendError, KVConfigError

__all__ = ["DRIVER_ERRORS", "Client", "backend_error", "connect", "mget", "split_url"]

Client: TypeAlias = "Redis | RedisCluster"

#: What redis-py raises when the server or the network fails (RedisClusterException
#: sits outside RedisError; OSError covers anything a socket lets through).
DRIVER_ERRORS: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, OSError)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def backend_error(exc: BaseException, url: str, doing: str | None = None) -> KVBackendError:
    """The one place a driver error becomes `KVBackendError`; `url` is already redacted."""
    what = f"{doing}: " if doing else ""
    text = str(exc) or type(exc).__name__
    return KVBackendError(f"{what}{text} ({url})", backend="redis", cause=exc)


def split_url(url: str, cluster: bool | None) -> tuple[str, bool]:
    """The URL redis-py understands and whether it names a cluster.

    `redis+cluster://` / `rediss+cluster://` and `?cluster=true` mean a cluster;
    the `cluster` keyword, when given, must agree with them.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    from_scheme = scheme.endswith("+cluster")
    if from_scheme:
        scheme = scheme.removesuffix("+cluster")
    query = parse_qsl(parts.query, keep_blank_values=True)
    flags = [value.lower() for name, value in query if name == "cluster"]
    rest = [(name, value) for name, value in query if name != "cluster"]
    from_query: bool | None = None
    if flags:
        if flags[-1] not in _TRUE | _FALSE:
            raise KVConfigError(f"cluster={flags[-1]!r} in {redact_url(url)!r} is not a boolean")
        from_query = flags[-1] in _TRUE
    wanted = from_scheme or bool(from_query)
    if cluster is None:
        cluster = wanted
    elif not cluster and wanted:
        raise KVConfigError(f"cluster=False contradicts the cluster URL {redact_url(url)!r}")
    if cluster and scheme == "unix":
        raise KVConfigError("Redis Cluster cannot be reached over a unix:// socket")
    database = parts.path.strip("/") if scheme != "unix" else "0"
    if database and not (database.isdigit() and database.isascii()):
        raise KVConfigError(f"{redact_url(url)!r}: the path must be a database number, like /0")
    if cluster and database not in ("", "0"):
        raise KVConfigError(f"{redact_url(url)!r}: Redis Cluster has only database 0")
    clean = urlunsplit((scheme, parts.netloc, parts.path, urlencode(rest), parts.fragment))
    return clean, cluster


async def connect(
    url: str,
    *,
    cluster: bool | None,
    timeout: float | None,
    connect_timeout: float | None,
    retries: int,
    options: dict[str, Any],
) -> Client:
    """A client that has answered PING; raises KVBackendError naming the (redacted) URL."""
    redacted = redact_url(url)
    target, is_cluster = split_url(url, cluster)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise KVConfigError(f"retries must be an int >= 0, not {retries!r}")
    settings: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": connect_timeout,
        "retry": Retry(NoBackoff(), retries),
        **options,
    }
    client: Client
    try:
        if is_cluster:
            client = RedisCluster.from_url(target, **settings)
        else:
            client = Redis.from_url(target, **settings)
    except (TypeError, ValueError) as exc:
        raise KVConfigError(f"cannot use {redacted!r}: {exc}") from exc
    try:
        if isinstance(client, RedisCluster):
            await client.initialize()
        await client.ping()
    except DRIVER_ERRORS as exc:
        await client.aclose()
        raise backend_error(exc, redacted, "cannot connect") from exc
    except TypeError as exc:  # an unknown option only surfaces when a connection is made
        await client.aclose()
        raise KVConfigError(f"cannot use {redacted!r}: {exc}") from exc
    return client


def pack_mget(names: list[bytes]) -> bytes:
    """MGET in RESP, built in one pass (redis-py's generic packer costs ~0.4 µs a key)."""
    parts = [b"*%d\r\n$4\r\nMGET\r\n" % (len(names) + 1)]
    parts += [b"$%d\r\n%s\r\n" % (len(name), name) for name in names]
    return b"".join(parts)


async def mget(client: Client, names: list[bytes]) -> list[bytes | None]:
    """One MGET round trip.

    On a pooled single-node client the command is packed here and sent on a
    connection taken from the client's own pool, the way redis-py's pipelines
    do; a failure or cancellation between send and reply drops that connection
    so no half-read reply is ever reused. Cluster and single-connection clients
    use the ordinary `mget`.
    """
    if isinstance(client, RedisCluster) or client.connection is not None:
        return cast("list[bytes | None]", await client.mget(names))
    pool = client.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        await conn.send_packed_command(pack_mget(names), check_health=False)
        reply = await conn.read_response()
    except BaseException:
        await conn.disconnect(nowait=True)
        raise
    finally:
        await pool.release(conn)
    if isinstance(reply, list):
        return cast("list[bytes | None]", reply)
    raise ResponseError(f"MGET answered {reply!r}")
