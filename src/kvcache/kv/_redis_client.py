"""From a store URL to a connected `Link`, the store's settings, and redis-py's errors to ours.

Imported only when a redis URL is opened: `redis` is the optional extra
`kvcache[redis]`.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import URL_QUERY_ARGUMENT_PARSERS, ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

from ._redis_link import ClientLink, Link, NodeLink
from ._redis_pool import Pool
from ._url import redact_url
from .errors import KVBackendError, KVConfigError

__all__ = [
    "DRIVER_ERRORS",
    "Settings",
    "backend_error",
    "connect",
    "open_link",
    "settings",
    "split_url",
]

#: What redis-py raises when the server or the network fails (RedisClusterException
#: sits outside RedisError; OSError covers anything a socket lets through).
DRIVER_ERRORS: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, OSError)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

#: kvcache's own options, by every name they go by (URL query or keyword) -> field.
_OPTIONS = {
    "timeout": "read_timeout",
    "socket_timeout": "read_timeout",
    "write_timeout": "write_timeout",
    "connect_timeout": "connect_timeout",
    "socket_connect_timeout": "connect_timeout",
    "max_connections": "max_connections",
    "pool_timeout": "pool_timeout",
    "retries": "retries",
}

#: Query options a store URL may carry: kvcache's, redis-py's typed ones and its plain
#: strings. Any other name would reach the connection as a str (`retry=3`,
#: `decode_responses=1`) and break it later, so it is refused up front.
URL_OPTIONS = (
    frozenset(URL_QUERY_ARGUMENT_PARSERS)
    | frozenset(_OPTIONS)
    | {
        "client_name",
        "cluster",
        "lib_name",
        "lib_version",
        "password",
        "ssl_ca_certs",
        "ssl_ca_data",
        "ssl_ca_path",
        "ssl_cert_reqs",
        "ssl_certfile",
        "ssl_ciphers",
        "ssl_keyfile",
        "ssl_password",
        "username",
    }
)
#: Options that change how replies and key names are encoded: the store needs bytes, UTF-8.
_FIXED_OPTIONS = ("decode_responses", "encoding", "encoding_errors")
#: What a wrongly typed option makes redis-py raise while it builds or first uses a client.
_OPTION_ERRORS = (TypeError, ValueError, AttributeError, LookupError)


def _check_fixed(options: dict[str, Any]) -> None:
    fixed = [name for name in _FIXED_OPTIONS if name in options]
    if fixed:
        raise KVConfigError(f"the redis store sets {fixed[0]} itself; leave it out")


@dataclass(frozen=True, slots=True)
class Settings:
    """Deadlines in seconds (None: no limit) and the pool of one store.

    A read (`get`, `get_many`) slower than `read_timeout` is worth less to a cache
    than a miss. `write_timeout` bounds every write and listing; a command gets 1 s
    more per MB it sends and 0.1 s more per 1,000 records it writes or deletes, so a
    25 MiB value or a full bulk call is not cut short. Both are kept under 0.5 s so that
    no cache call waits longer than that on a frozen server. They start once the
    command has a connection: `max_connections` bounds the pool, and a caller
    finding every connection busy waits in line up to `pool_timeout`, so bursts
    larger than the pool are served rather than refused.
    """

    read_timeout: float | None = 0.25
    write_timeout: float | None = 0.4
    connect_timeout: float | None = 1.0
    max_connections: int = 50
    pool_timeout: float | None = 5.0
    retries: int = 0

    def write_deadline(self, size: int, records: int = 1) -> float | None:
        """The deadline of a write that sends `size` bytes about `records` records."""
        base = self.write_timeout
        return None if base is None else base + size * 1e-6 + (records - 1) * 1e-4


def _seconds(name: str, value: object) -> float | None:
    if value is None or (isinstance(value, str) and value.lower() == "none"):
        return None
    try:
        seconds = float(value) if isinstance(value, str | int | float) else math.nan
    except ValueError:
        seconds = math.nan
    if isinstance(value, bool) or not 0 < seconds < math.inf:
        raise KVConfigError(f"{name} must be a number of seconds > 0 (or none), not {value!r}")
    return seconds


def _count(name: str, value: object, least: int) -> int:
    number: object = value
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int) or number < least:
        raise KVConfigError(f"{name} must be an int >= {least}, not {value!r}")
    return number


def settings(query: dict[str, str], keywords: dict[str, Any]) -> Settings:
    """The store's settings from URL query options, then keywords (removed from
    `keywords`; what is left goes to redis-py). The URL wins where both give one."""
    given: dict[str, tuple[str, object]] = {}
    for source in (keywords, query):
        for name in [name for name in source if name in _OPTIONS]:
            given[_OPTIONS[name]] = (name, source[name])
            if source is keywords:
                del keywords[name]
    values: dict[str, Any] = {}
    for field, (name, value) in given.items():
        if field == "max_connections":
            values[field] = _count(name, value, 1)
        elif field == "retries":
            values[field] = _count(name, value, 0)
        else:
            values[field] = _seconds(name, value)
    return Settings(**values)


def backend_error(exc: BaseException, url: str, doing: str | None = None) -> KVBackendError:
    """The one place a driver error becomes `KVBackendError`; `url` is already redacted."""
    what = f"{doing}: " if doing else ""
    text = str(exc) or type(exc).__name__
    return KVBackendError(f"{what}{text} ({url})", backend="redis", cause=exc)


def split_url(url: str, cluster: bool | None) -> tuple[str, bool, dict[str, str]]:
    """The URL redis-py understands, whether it names a cluster, and kvcache's options
    from its query (`socket_timeout`, `write_timeout`, `max_connections`, ...).

    `redis+cluster://` / `rediss+cluster://` and `?cluster=true` mean a cluster;
    the `cluster` keyword, when given, must agree with them.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    from_scheme = scheme.endswith("+cluster")
    if from_scheme:
        scheme = scheme.removesuffix("+cluster")
    query = parse_qsl(parts.query, keep_blank_values=True)
    unknown = sorted({name for name, _ in query} - URL_OPTIONS)
    if unknown:
        raise KVConfigError(
            f"{redact_url(url)!r}: unknown option {unknown[0]!r}; "
            f"a redis URL takes {', '.join(sorted(URL_OPTIONS))}"
        )
    flags = [value.lower() for name, value in query if name == "cluster"]
    ours = {name: value for name, value in query if name in _OPTIONS}
    rest = [(name, value) for name, value in query if name != "cluster" and name not in _OPTIONS]
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
    return clean, cluster, ours


def _link(target: str, cluster: bool, config: Settings, options: dict[str, Any]) -> Link:
    # redis-py's own socket timeouts stay off: the link's deadlines bound every command.
    common: dict[str, Any] = {
        "socket_timeout": None,
        "socket_connect_timeout": config.connect_timeout,
        **options,
    }
    if cluster:
        client = RedisCluster.from_url(
            target,
            retry=Retry(NoBackoff(), config.retries),
            max_connections=config.max_connections,
            **common,
        )
        return ClientLink(client, config.max_connections, config.pool_timeout)
    factory = ConnectionPool.from_url(target, retry=Retry(NoBackoff(), 0), **common)
    pool = Pool(factory.make_connection, config.max_connections, config.pool_timeout)
    return NodeLink(pool, config.retries)


async def open_link(
    url: str, *, cluster: bool | None, options: dict[str, Any]
) -> tuple[Link, Settings]:
    """A store's link whose server has answered PING, and the settings it was opened with.

    Raises KVConfigError for a bad URL or option, KVBackendError (naming the
    redacted URL) when the server cannot be reached.
    """
    target, is_cluster, query = split_url(url, cluster)
    _check_fixed(options)
    config = settings(query, options)
    try:
        link = _link(target, is_cluster, config, options)
    except (*_OPTION_ERRORS, RedisClusterException) as exc:  # cluster: a URL with no host
        raise KVConfigError(f"cannot use {redact_url(url)!r}: {exc}") from exc
    first = None
    if config.connect_timeout is not None and config.write_timeout is not None:
        first = config.connect_timeout + config.write_timeout
    await _answering(link.ping(first), link.aclose, redact_url(url))
    return link, config


async def connect(
    url: str,
    *,
    cluster: bool | None,
    timeout: float | None,
    connect_timeout: float | None,
    retries: int,
    options: dict[str, Any],
) -> Redis | RedisCluster:
    """A plain redis-py client that has answered PING, for questions about the whole
    server (`namespaces`: SCAN and friends) rather than one namespace.

    kvcache's options in the URL win over the keywords here too; `timeout` is
    redis-py's socket timeout of each command.
    """
    target, is_cluster, query = split_url(url, cluster)
    _check_fixed(options)
    keywords = {"timeout": timeout, "connect_timeout": connect_timeout, "retries": retries}
    config = settings(query, {**keywords, **options})
    common: dict[str, Any] = {
        "socket_timeout": config.read_timeout,
        "socket_connect_timeout": config.connect_timeout,
        "retry": Retry(NoBackoff(), config.retries),
        **{name: value for name, value in options.items() if name not in _OPTIONS},
    }
    client: Redis | RedisCluster
    try:
        if is_cluster:
            client = RedisCluster.from_url(target, **common)
        else:
            client = Redis.from_url(target, **common)
    except (*_OPTION_ERRORS, RedisClusterException) as exc:
        raise KVConfigError(f"cannot use {redact_url(url)!r}: {exc}") from exc
    ready = client.initialize() if isinstance(client, RedisCluster) else client.ping()
    await _answering(ready, client.aclose, redact_url(url))
    return client


async def _answering(check: Awaitable[Any], close: Callable[[], Awaitable[None]], url: str) -> None:
    """Await the first contact; on failure close and raise KVBackendError or KVConfigError."""
    try:
        await check
    except DRIVER_ERRORS as exc:
        await close()
        raise backend_error(exc, url, "cannot connect") from exc
    except _OPTION_ERRORS as exc:  # a wrong option may surface only when a connection is made
        await close()
        raise KVConfigError(f"cannot use {url!r}: {exc}") from exc
