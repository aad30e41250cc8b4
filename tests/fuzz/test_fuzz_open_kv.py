"""`open_kv` with URL-ish strings and hostile options.

A URL opens a store or answers KVConfigError (a URL or option that cannot be
used), KVBackendError (the store cannot be reached) or TypeError (not a str),
and no message shows the password. Hosts are loopback only (a live Redis, a
closed port) and sqlite paths stay inside the test's directory.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import hypothesis.strategies as st
import pytest
from hypothesis import assume, given

import kvcache
from fuzz.contract import check_error, fuzz_settings
from fuzz.strategies import JUNK, NUMBERS, realise
from kvcache import KVBackendError, KVConfigError, KVValidationError, Limits
from redis_server import RedisServer, free_port

ALLOWED = (KVConfigError, KVBackendError, TypeError)
PASSWORD = "s3cret-pw"
#: Characters that trip URL parsers.
_TRICKY = st.text(alphabet="[]@:/%?#&=;. \x00é\ud800\\aZ09", max_size=8)


def _queries(names: list[str]) -> st.SearchStrategy[str]:
    pair = st.tuples(st.sampled_from(names) | _TRICKY, _TRICKY | st.sampled_from(["1", "-1", "x"]))
    return st.lists(pair, max_size=3).map(
        lambda pairs: ("?" + "&".join(f"{k}={v}" for k, v in pairs)) if pairs else ""
    )


def _urls(live: int, closed: int) -> dict[str, st.SearchStrategy[str]]:
    hosts = st.sampled_from(
        [
            f"127.0.0.1:{live}",
            f"127.0.0.1:{closed}",
            f"user:{PASSWORD}@127.0.0.1:{closed}",
            f":{PASSWORD}@127.0.0.1:{live}",
            f"[::1]:{closed}",
            f"[::1:{closed}",
            f"u:{PASSWORD}@[::1",
            "127.0.0.1:abc",
            "127.0.0.1:99999",
            "127.0.0.1:-1",
            "",
            "[",
            "]",
            f"127.0.0.1:{live}@",
        ]
    )
    paths = st.sampled_from(["", "/", "/0", "/1", "/99999", "/x", "/0/1", "/%zz", "/-1"])
    options = ["cluster", "db", "socket_timeout", "max_connections", "decode_responses"]
    options += ["encoding", "retry", "protocol", "client_name", "busy_timeout", "unknown"]
    redis = st.builds(
        lambda scheme, host, path, query: f"{scheme}://{host}{path}{query}",
        st.sampled_from(["redis", "rediss", "REDIS", "redis+cluster", "rediss+cluster"]),
        hosts,
        paths,
        _queries(options),
    )
    sqlite_path = st.text(alphabet="ab./%_\x00é\ud800 ", max_size=12).filter(
        lambda path: ".." not in unquote(path) and not unquote(path).startswith("/")
    )
    sqlite = st.builds(
        lambda netloc, path, query: f"sqlite://{netloc}/{path}{query}",
        st.sampled_from(["", "host", f"u:{PASSWORD}@h", "[::1", "[", ":1"]),
        sqlite_path,
        _queries(["busy_timeout", "x"]),
    )
    unix = st.builds(
        lambda path, query: f"unix://{path}{query}",
        st.sampled_from(["/nonexistent/kvcache.sock", "", "x.sock", f"u:{PASSWORD}@[x"]),
        _queries(["db", "socket_timeout"]),
    )
    others = st.one_of(
        st.builds(lambda tail: "memory://" + tail, _TRICKY),
        st.builds(
            lambda scheme, tail: scheme + tail, st.sampled_from(["", "://", "x://"]), _TRICKY
        ),
        _TRICKY,
        st.sampled_from(["memory", "sqlite:", "sqlite:/", "redis:", "cloudflare://a/b"]),
    )
    return {"redis": redis, "sqlite": sqlite, "unix": unix, "other": others}


async def _attempt(url: Any, options: dict[str, Any]) -> BaseException | None:
    try:
        kv = await asyncio.wait_for(kvcache.open_kv(url, **options), 30)
    except Exception as exc:
        return exc
    await kv.close()
    return None


@pytest.mark.parametrize("family", ["redis", "sqlite", "unix", "other"])
def test_url_strings_open_or_get_a_clear_error(
    family: str, redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # every sqlite path below is relative, so it lands here
    closed = free_port()

    @fuzz_settings(60)
    @given(url=_urls(redis_server.port, closed)[family])
    def check(url: str) -> None:
        if url.startswith("sqlite://") and "/" in url[9:]:
            path = unquote(url[9:].split("/", 1)[1].split("?")[0])
            assume(not os.path.isabs(path) and ".." not in path)
        error = asyncio.run(_attempt(url, {}))
        if error is not None:
            check_error(error, ALLOWED)
            assert PASSWORD not in str(error), f"the password shows in {error}"

    check()


@fuzz_settings(100)
@given(url=JUNK | st.just("memory://"), namespace=JUNK | st.text(max_size=3), limits=JUNK)
def test_hostile_options_get_a_clear_error(url: Any, namespace: Any, limits: Any) -> None:
    options = {"namespace": namespace, "limits": limits}
    error = asyncio.run(_attempt(url, {k: v for k, v in options.items() if v is not None}))
    if error is not None:
        check_error(error, ALLOWED)


@fuzz_settings(100)
@given(
    fields=st.fixed_dictionaries(
        {},
        optional={
            name: NUMBERS
            for name in ("max_key_bytes", "max_value_bytes", "max_metadata_bytes")
            + ("min_expiration_ttl", "min_cache_ttl")
        },
    )
)
def test_limits_refuse_what_is_not_a_size(fields: dict[str, Any]) -> None:
    try:
        Limits(**realise(fields))
    except Exception as exc:
        check_error(exc, (TypeError, ValueError, KVValidationError))
