"""The cloudflare:// backend's error paths, against a small local HTTP server that misbehaves.

Each test scripts the server's answers (429 with and without Retry-After, 5xx,
broken envelopes, refused tokens, unsuccessful bulk keys) and checks what the
store sends and raises. Waits go through a fake clock, so nothing really sleeps.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from kvcache import KVBackendError, KVConfigError, open_kv
from kvcache.kv._cloudflare_bulk import BULK_BODY_MAX, split_bodies
from kvcache.kv._cloudflare_http import Pacer
from kvcache.kv.cloudflare import CloudflareKV

TOKEN = "secret-token-0f9e8d7c"
ACCOUNT = "acct"
NS = "ns1"


@dataclass
class Answer:
    status: int = 200
    body: bytes | str | dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def ok(result: Any = None, **extra: Any) -> Answer:
    return Answer(200, {"success": True, "errors": [], "messages": [], "result": result, **extra})


def fail(status: int, code: int, message: str, **headers: str) -> Answer:
    body = {"success": False, "errors": [{"code": code, "message": message}], "messages": []}
    return Answer(status, {**body, "result": None}, headers)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Script:
    """The server's next answers, in order (an empty envelope once they run out)."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.seen: list[Seen] = []
        self.lock = threading.Lock()

    def next(self, seen: Seen) -> Answer:
        with self.lock:
            self.seen.append(seen)
            return self.answers.pop(0) if self.answers else ok()


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            answer = script.next(Seen(self.command, self.path, dict(self.headers), body))
            data = answer.body
            if isinstance(data, dict):
                data = json.dumps(data)
            raw = data.encode() if isinstance(data, str) else (data or b"")
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_PUT = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def script() -> Iterator[tuple[Script, str]]:
    script = Script()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield script, f"http://127.0.0.1:{server.server_address[1]}/client/v4"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class FakeTime:
    """A monotonic clock and a sleep that only moves it (and records each wait)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


@pytest.fixture
def time_() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def kv(script: tuple[Script, str], time_: FakeTime) -> AsyncIterator[CloudflareKV]:
    store = CloudflareKV(
        ACCOUNT,
        NS,
        api_token=TOKEN,
        api_url=script[1],
        pacer=Pacer(clock=time_, sleep=time_.sleep),
        sleep=time_.sleep,
    )
    try:
        yield store
    finally:
        await store.close()


def answers(script: tuple[Script, str], *items: Answer) -> Script:
    script[0].answers.extend(items)
    return script[0]


async def test_429_waits_for_retry_after(
    kv: CloudflareKV, script: tuple[Script, str], time_: FakeTime
) -> None:
    seen = answers(script, fail(429, 10429, "Too many requests", **{"Retry-After": "7"}), ok([]))
    page = await kv.list()
    assert page.keys == [] and page.list_complete
    assert time_.waits == [7.0]
    assert len(seen.seen) == 2


async def test_429_without_retry_after_backs_off(
    kv: CloudflareKV, script: tuple[Script, str], time_: FakeTime
) -> None:
    limited = fail(429, 10429, "Too many requests")
    answers(script, limited, limited, limited, Answer(200, b"v"))
    assert await kv.get("k") == "v"
    assert time_.waits == [1.0, 2.0, 4.0]


async def test_429_gives_up_after_five_retries(
    kv: CloudflareKV, script: tuple[Script, str], time_: FakeTime
) -> None:
    seen = answers(script, *[fail(429, 10429, "slow down", **{"Retry-After": "1"})] * 6, ok())
    with pytest.raises(KVBackendError, match="HTTP 429, rate limited 6 times") as info:
        await kv.put("k", "v")
    assert info.value.backend == "cloudflare"
    assert len(seen.seen) == 6
    assert time_.waits == [1.0] * 5


async def test_a_429_holds_back_the_next_requests(
    kv: CloudflareKV, script: tuple[Script, str], time_: FakeTime
) -> None:
    answers(script, fail(429, 10429, "wait", **{"Retry-After": "30"}), ok(), ok())
    await kv.delete("a")
    assert time_.waits == [30.0]
    await kv.delete("b")  # the hold is over: no more waiting
    assert time_.waits == [30.0]


async def test_5xx_is_retried_then_reported_with_cloudflare_code(
    kv: CloudflareKV, script: tuple[Script, str], time_: FakeTime
) -> None:
    answers(script, Answer(502, "bad gateway"), ok())
    await kv.delete("k")
    assert time_.waits == [1.0]
    seen = answers(script, *[fail(503, 10503, "Service unavailable")] * 4)
    with pytest.raises(KVBackendError) as info:
        await kv.delete("k")
    assert "HTTP 503 after 4 tries, Cloudflare error 10503: Service unavailable" in str(info.value)
    assert len(seen.seen) == 2 + 4


@pytest.mark.parametrize(
    "answer",
    [
        Answer(200, "<html>not json</html>"),
        Answer(200, {"result": []}),  # no "success"
        Answer(400, "plain text error"),
        Answer(200, b""),
    ],
)
async def test_malformed_envelope_is_backend_error(
    kv: CloudflareKV, script: tuple[Script, str], answer: Answer
) -> None:
    answers(script, answer)
    with pytest.raises(KVBackendError, match="not a Cloudflare API answer"):
        await kv.list()


async def test_success_false_with_200_is_an_error(
    kv: CloudflareKV, script: tuple[Script, str]
) -> None:
    answers(script, fail(200, 10050, "odd"))
    with pytest.raises(KVBackendError, match="Cloudflare error 10050: odd"):
        await kv.delete("k")


@pytest.mark.parametrize(
    ("call", "permission"),
    [("put", "Workers KV Storage Write"), ("get", "Workers KV Storage Read")],
)
async def test_auth_error_names_the_missing_permission(
    kv: CloudflareKV,
    script: tuple[Script, str],
    call: str,
    permission: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    answers(script, fail(403, 10000, "Authentication error"))
    with pytest.raises(KVBackendError) as info:
        if call == "put":
            await kv.put("k", "v")
        else:
            await kv.get("k")
    message = str(info.value)
    assert f"'{permission}' permission" in message
    assert "CLOUDFLARE_API_TOKEN" in message and "Cloudflare error 10000" in message
    assert TOKEN not in message and TOKEN not in repr(kv) and TOKEN not in caplog.text


async def test_other_errors_carry_code_and_message(
    kv: CloudflareKV, script: tuple[Script, str]
) -> None:
    answers(script, fail(404, 10013, "list keys: 'namespace not found'"))
    with pytest.raises(KVBackendError) as info:
        await kv.list()
    assert "HTTP 404, Cloudflare error 10013: list keys: 'namespace not found'" in str(info.value)


async def test_key_not_found_is_absent_but_other_404s_are_not(
    kv: CloudflareKV, script: tuple[Script, str]
) -> None:
    answers(script, fail(404, 10009, "get: 'key not found'"))
    assert await kv.get("k") is None
    answers(script, fail(404, 7003, "No route for that URI"))
    with pytest.raises(KVBackendError, match="7003"):
        await kv.get("k")


async def test_the_token_goes_only_into_the_authorization_header(
    kv: CloudflareKV, script: tuple[Script, str]
) -> None:
    seen = answers(script, Answer(200, b"v"))
    await kv.get("a/b c")
    request = seen.seen[0]
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in request.path
    assert (
        request.path == f"/client/v4/accounts/{ACCOUNT}/storage/kv/namespaces/{NS}/values/a%2Fb%20c"
    )


async def test_unsuccessful_keys_are_retried_once(
    kv: CloudflareKV, script: tuple[Script, str]
) -> None:
    seen = answers(
        script,
        ok({"successful_key_count": 1, "unsuccessful_keys": ["b", "c"]}),
        ok({"successful_key_count": 2, "unsuccessful_keys": []}),
    )
    await kv.put_many([{"key": k, "value": k.upper()} for k in "abc"])
    first, second = (json.loads(s.body) for s in seen.seen)
    assert [e["key"] for e in first] == ["a", "b", "c"]
    assert second == [{"key": "b", "value": "B"}, {"key": "c", "value": "C"}]


async def test_keys_unsuccessful_twice_are_named(
    kv: CloudflareKV, script: tuple[Script, str]
) -> None:
    keys = [f"k{i:02}" for i in range(20)]
    answers(
        script,
        ok({"successful_key_count": 0, "unsuccessful_keys": keys}),
        ok({"successful_key_count": 5, "unsuccessful_keys": keys[5:]}),
    )
    with pytest.raises(KVBackendError) as info:
        await kv.put_many([{"key": k, "value": "v"} for k in keys])
    message = str(info.value)
    assert "15 keys were not written even on a second try" in message
    assert "'k05'" in message and "'k16'" in message and "'k17'" not in message
    assert "and 3 more" in message


async def test_bulk_delete_retries_and_names(kv: CloudflareKV, script: tuple[Script, str]) -> None:
    seen = answers(
        script,
        ok({"successful_key_count": 1, "unsuccessful_keys": ["y"]}),
        ok({"successful_key_count": 0, "unsuccessful_keys": ["y"]}),
    )
    with pytest.raises(KVBackendError, match="1 keys were not deleted even on a second try: 'y'"):
        await kv.delete_many(["x", "y", "x"])
    assert [json.loads(s.body) for s in seen.seen] == [["x", "y"], ["y"]]
    assert all(s.path.endswith("/bulk/delete") and s.method == "POST" for s in seen.seen)


async def test_bulk_write_is_split_by_body_size(
    kv: CloudflareKV, script: tuple[Script, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert BULK_BODY_MAX == 100_000_000
    monkeypatch.setattr(CloudflareKV, "bulk_body_max", 1000)
    entries = [{"key": f"k{i:03}", "value": "x" * 90} for i in range(30)]
    seen = script[0]
    await kv.put_many(entries)
    sizes = [len(s.body) for s in seen.seen]
    assert len(sizes) > 1 and max(sizes) <= 1000
    sent = [e["key"] for s in seen.seen for e in json.loads(s.body)]
    assert sent == [e["key"] for e in entries]


async def test_binary_values_travel_as_base64_and_metadata_as_json(
    kv: CloudflareKV, script: tuple[Script, str]
) -> None:
    seen = script[0]
    await kv.put_many(
        [
            {"key": "bin", "value": "/w==", "base64": True, "metadata": {"m": 1}},
            {"key": "ttl", "value": "é", "expiration_ttl": 120},
        ]
    )
    assert json.loads(seen.seen[0].body) == [
        {"key": "bin", "value": "/w==", "base64": True, "metadata": {"m": 1}},
        {"key": "ttl", "value": "é", "expiration_ttl": 120},
    ]


async def test_put_with_metadata_is_multipart_not_inside_the_value(
    kv: CloudflareKV, script: tuple[Script, str]
) -> None:
    seen = script[0]
    await kv.put("k", b"\x00raw", metadata={"tag": "x"}, expiration_ttl=90)
    await kv.put("plain", "text")
    multipart, raw = seen.seen
    assert multipart.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert multipart.path.endswith("/values/k?expiration_ttl=90")
    assert b'name="metadata"\r\n\r\n{"tag":"x"}\r\n' in multipart.body
    assert b'name="value"; filename="value"' in multipart.body and b"\x00raw" in multipart.body
    assert raw.body == b"text" and "multipart" not in raw.headers.get("Content-Type", "")


async def test_connection_refused_is_retried_then_backend_error(time_: FakeTime) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = CloudflareKV(
        ACCOUNT,
        NS,
        api_token=TOKEN,
        api_url=f"http://127.0.0.1:{port}/client/v4",
        pacer=Pacer(clock=time_, sleep=time_.sleep),
        sleep=time_.sleep,
    )
    try:
        with pytest.raises(KVBackendError, match="ConnectError") as info:
            await store.get("k")
        assert time_.waits == [1.0, 2.0, 4.0]
        assert TOKEN not in str(info.value)
    finally:
        await store.close()


async def test_pacer_allows_bursts_within_the_window(time_: FakeTime) -> None:
    pacer = Pacer(3, 10.0, clock=time_, sleep=time_.sleep)
    for _ in range(3):
        await pacer.wait()
    assert time_.waits == []
    await pacer.wait()  # the 4th waits until the first leaves the window
    assert time_.waits == [10.0]
    time_.now += 100
    for _ in range(3):
        await pacer.wait()
    assert time_.waits == [10.0]


def test_split_bodies_keeps_each_body_under_the_limit() -> None:
    entries = ['{"key":"a","value":"' + "x" * n + '"}' for n in (10, 20, 30, 40)]
    bodies = split_bodies(entries, 60)
    assert all(len(b.encode()) <= 60 for b in bodies[:-1])
    assert [json.loads(b) for b in bodies] == [[json.loads(e)] for e in entries]
    assert split_bodies(entries, 10_000) == ["[" + ",".join(entries) + "]"]
    assert split_bodies([], 10) == []


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("cloudflare://acct", "cloudflare://ACCOUNT_ID/NAMESPACE_ID"),
        ("cloudflare:///ns", "cloudflare://ACCOUNT_ID/NAMESPACE_ID"),
        ("cloudflare://acct/ns/extra", "cloudflare://ACCOUNT_ID/NAMESPACE_ID"),
        ("cloudflare://acct/ns?rate_limit=0", "rate_limit"),
        ("cloudflare://acct/ns?rate_limit=fast", "rate_limit"),
        ("cloudflare://acct/ns?api_url=ftp://x", "api_url"),
        ("cloudflare://acct/ns?colour=blue", "unknown option 'colour'"),
    ],
)
async def test_bad_urls_are_config_errors(
    url: str, match: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", TOKEN)
    with pytest.raises(KVConfigError, match=match) as info:
        await open_kv(url)
    assert TOKEN not in str(info.value)


async def test_missing_token_is_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOUDFLARE_API_TOKEN", raising=False)
    with pytest.raises(KVConfigError, match="CLOUDFLARE_API_TOKEN"):
        await open_kv("cloudflare://acct/ns")


async def test_token_from_the_environment_never_shows(
    monkeypatch: pytest.MonkeyPatch, script: tuple[Script, str]
) -> None:
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", TOKEN)
    seen = answers(script, Answer(200, b"v"))
    async with open_kv(f"cloudflare://{ACCOUNT}/{NS}?api_url={script[1]}") as kv:
        assert await kv.get("k") == "v"
        assert TOKEN not in repr(kv) and TOKEN not in str(vars(kv))
        assert kv.namespace == NS
    assert seen.seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
