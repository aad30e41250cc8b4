"""The private event loop behind `kvcache.sync`: one thread, one loop, owned by one store.

Why a thread of its own: the async core (stores, `Cache`, `Idempotency`) is written
for one event loop and keeps loop-bound state (redis connections, single-flight
tasks, counters). Running every sync call on that one loop keeps all of the core's
state on one thread, so the core needs no locks and no second, blocking
implementation; callers on any number of threads hand their coroutine over and
wait for its outcome.

A `Portal` belongs to the sync store that made it (there is no module-level loop);
caches and idempotency objects over that store share it, and closing the store
closes it. After that, calls still run the same core code, each on a throwaway
loop in the calling thread, one at a time: a closed store then fails exactly as
the async one does (validation first, then `KVBackendError`).

Plain callables the core must call (a `get_or_set` fetch, an idempotency handler)
are wrapped with `on_caller`: the loop hands them back to the thread that is
waiting for the call and resumes when they return, so a slow fetch blocks its own
caller, never the loop that every other thread shares.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import queue
import threading
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Final, ParamSpec, TypeVar

from .. import KVError

__all__ = ["ForkedStoreError", "Portal", "RunningLoopError", "on_caller", "refuse_running_loop"]

T = TypeVar("T")
P = ParamSpec("P")

# What a waiting thread finds in its mailbox: (kind, payload).
_RESULT: Final = 0  # payload: the call's result
_RAISED: Final = 1  # payload: the exception the call raised
_REQUEST: Final = 2  # payload: (callable, asyncio future for its outcome)
#: A request's answer when its thread stopped waiting: run it on a worker thread.
_ELSEWHERE: Final[Any] = object()


class RunningLoopError(KVError, RuntimeError):
    """A `kvcache.sync` call was made on a thread that is running an asyncio event loop.

    Waiting there would stall that loop (and, on the store's own loop thread,
    wait for itself forever). Use the async API on such threads, or hand the
    sync call to a worker thread: `await asyncio.to_thread(cache.get, key)`.
    """


class ForkedStoreError(KVError, RuntimeError):
    """A `kvcache.sync` store opened in another process was used after a `fork`.

    Its loop thread did not come along (fork copies only the calling thread), and
    its connections are the parent's. Open the store in each worker process: in
    Celery's `worker_process_init`, gunicorn's `post_fork`, or on first use.
    """


def refuse_running_loop() -> None:
    """Raise `RunningLoopError` if this thread runs an event loop."""
    if asyncio._get_running_loop() is not None:
        raise RunningLoopError(
            "kvcache.sync was called on a thread that is running an asyncio event loop, "
            "which it would block: use the async API there (await kvcache.open_kv(...), "
            "kvcache.Cache, kvcache.Idempotency), or run the sync call in a worker thread "
            "(await asyncio.to_thread(...) or loop.run_in_executor)"
        )


class _Call:
    """One sync call in flight: the waiting thread's mailbox and the task serving it."""

    __slots__ = ("finished", "inline", "mailbox", "task")

    def __init__(self, inline: bool = False) -> None:
        self.mailbox: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        self.task: asyncio.Task[Any] | None = None
        #: Set on the loop thread once the caller takes no more work (see `on_caller`).
        self.finished = False
        #: The caller runs the loop itself (a closed portal): work runs in place.
        self.inline = inline


#: The call a task serves; context-local, inherited by tasks it starts (single-flight fills).
_CURRENT: ContextVar[_Call | None] = ContextVar("kvcache_sync_call", default=None)


def _discard(aw: Awaitable[Any]) -> None:
    """Close a coroutine that will never run, so Python does not warn it was never awaited."""
    if inspect.iscoroutine(aw):
        aw.close()


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if future.done():
        return
    if isinstance(exc, StopIteration):  # a future refuses it; a coroutine turns it into this
        error = RuntimeError(f"{type(exc).__name__} raised by a kvcache.sync callable")
        error.__cause__ = exc
        exc = error
    future.set_exception(exc)


def _closed_while_running() -> BaseException:
    return RuntimeError("kvcache.sync: the store was closed while this call was running")


class Portal:
    """An event loop on a daemon thread, and the way other threads run coroutines on it."""

    def __init__(self, name: str = "kvcache-sync") -> None:
        refuse_running_loop()
        self._loop = asyncio.new_event_loop()
        self._lock = threading.Lock()  # orders submissions against close
        self._closing = False
        self._here_lock = threading.Lock()  # one call at a time once closed
        self._in_flight_error: Callable[[], BaseException] = _closed_while_running
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._serve_forever, name=name, daemon=True)
        self._thread.start()

    @property
    def closed(self) -> bool:
        return self._closing

    @property
    def forked(self) -> bool:
        """True in a child process forked after this portal started: its thread is not here."""
        return self._pid != os.getpid()

    def run(self, aw: Awaitable[T]) -> T:
        """Run `aw` on the loop and return its result, or raise what it raised.

        Meanwhile this thread runs whatever `on_caller` work the call hands back.
        Interrupted (KeyboardInterrupt), it cancels the call before re-raising.
        """
        if asyncio._get_running_loop() is not None or self._pid != os.getpid():
            _discard(aw)
            self._refuse()
        call = _Call()
        with self._lock:
            submitted = not self._closing
            if submitted:
                self._loop.call_soon_threadsafe(self._loop.create_task, self._serve(call, aw))
        if not submitted:
            result: T = self._run_here(call, aw)
            return result
        mailbox = call.mailbox
        failed: Exception | None = None  # the last handed-back work's own error
        try:
            kind, payload = mailbox.get()
            while kind == _REQUEST:
                failed = self._do(*payload)
                kind, payload = mailbox.get()
        except BaseException:
            self._post(self._abandon, call)
            raise
        outcome: T = self._unwrap(kind, payload, failed)
        return outcome

    def _refuse(self) -> None:
        refuse_running_loop()
        raise ForkedStoreError(
            f"this kvcache.sync store was opened in process {self._pid}, not in this one "
            f"({os.getpid()}): a forked child has neither its loop thread nor its own "
            "connections; open the store in each worker process (Celery worker_process_init, "
            "gunicorn post_fork, or on first use)"
        )

    def _unwrap(self, kind: int, payload: Any, failed: Exception | None = None) -> Any:
        """The call's result, or its error; a call cut short by `close` gets the closed error,
        unless work it handed back to this thread failed first: that error is the one to see."""
        if kind == _RESULT:
            return payload
        try:
            if isinstance(payload, asyncio.CancelledError) and self._closing:
                if failed is not None:
                    failed.add_note("kvcache.sync: the store was closed while this call ran")
                    raise failed
                raise self._in_flight_error() from payload
            raise payload
        finally:
            del payload, failed  # no cycle through the traceback

    async def _serve(self, call: _Call, aw: Awaitable[Any]) -> None:
        """The task of one call: every outcome, even a cancellation, goes to the mailbox.

        Catching BaseException keeps the loop alive when a user's async fetch raises
        SystemExit or KeyboardInterrupt; the waiting thread re-raises it. Every such
        task starts before `close` cancels it (its creation was queued before the stop),
        so every waiting thread gets an answer.
        """
        if call.finished:  # its caller was interrupted before the task started
            _discard(aw)
            return
        call.task = asyncio.current_task()
        _CURRENT.set(call)
        try:
            outcome = (_RESULT, await aw)
        except GeneratorExit:
            raise
        except BaseException as exc:
            outcome = (_RAISED, exc)
        call.finished = True
        call.mailbox.put(outcome)

    def _do(self, work: Callable[[], Any], future: asyncio.Future[Any]) -> Exception | None:
        """Run handed-back work on this (the calling) thread; report its outcome to the loop."""
        try:
            value = work()
        except Exception as exc:
            self._post(_fail, future, exc)
            return exc
        except BaseException:
            # Never hand KeyboardInterrupt or SystemExit to the loop: it would stop it.
            # The core sees a cancellation (claims are released, fills end).
            self._post(future.cancel)
            raise
        self._post(_settle, future, value)
        return None

    def _post(self, callback: Callable[..., object], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass  # the loop is closed: nothing there waits for this any more

    def _abandon(self, call: _Call) -> None:
        """On the loop: the caller stopped waiting; cancel its task, reroute its work."""
        call.finished = True
        if call.task is not None:
            call.task.cancel()
        while True:
            try:
                kind, payload = call.mailbox.get_nowait()
            except queue.Empty:
                return
            if kind == _REQUEST:
                _settle(payload[1], _ELSEWHERE)

    def _run_here(self, call: _Call, aw: Awaitable[Any]) -> Any:
        """After close: the same core code on a throwaway loop in this thread, one at a time."""
        call.inline = True
        with self._here_lock, asyncio.Runner() as runner:
            runner.run(self._serve(call, aw))
        return self._unwrap(*call.mailbox.get_nowait())

    # -- lifecycle -----------------------------------------------------------

    def close(self, in_flight_error: Callable[[], BaseException] | None = None) -> None:
        """Stop the loop and wait for its thread. Idempotent.

        Calls still running are cancelled; their callers get `in_flight_error()`
        (the store passes its closed-store `KVBackendError`). Worker threads running
        background refreshes are waited for.
        """
        if asyncio._get_running_loop() is not None or self._pid != os.getpid():
            self._refuse()
        with self._lock:
            if not self._closing:
                self._closing = True
                if in_flight_error is not None:
                    self._in_flight_error = in_flight_error
                self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    def stop_soon(self) -> None:
        """Stop the loop without waiting (for finalizers, which may run on any thread)."""
        if self.forked:
            return  # the loop and its thread are the parent's
        with self._lock:
            if not self._closing:
                self._closing = True
                self._post(self._loop.stop)

    def _serve_forever(self) -> None:
        """Run the loop until `close`, then wind down.

        asyncio re-raises SystemExit and KeyboardInterrupt out of the loop when a
        task (a user's async fetch) raises one; the task has recorded it for its
        awaiters, so the loop is simply run again for everyone else.
        """
        loop = self._loop
        try:
            while True:
                try:
                    loop.run_forever()
                    break
                except (KeyboardInterrupt, SystemExit):
                    if self._closing:  # the stop may have been lost with the exception
                        break
            wind_down = loop.create_task(self._wind_down())
            while not wind_down.done():
                try:
                    loop.run_until_complete(wind_down)
                except (KeyboardInterrupt, SystemExit):
                    pass
        finally:
            loop.close()

    async def _wind_down(self) -> None:
        """Cancel what still runs (until nothing does), then async generators, then workers."""
        current = asyncio.current_task()
        while True:
            tasks = [task for task in asyncio.all_tasks() if task is not current]
            if not tasks:
                break
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._loop.shutdown_asyncgens()
        await self._loop.shutdown_default_executor()

    def __repr__(self) -> str:
        state = "closed" if self._closing else "running"
        return f"<Portal {self._thread.name} {state}>"


def on_caller(fn: Callable[P, Any]) -> Callable[P, Awaitable[Any]]:
    """`fn` as an async callable that runs `fn` on the thread waiting for the current call.

    The loop stays free while `fn` runs. With no thread waiting any more (a
    background refresh that outlives its call), `fn` runs on a worker thread. An
    awaitable that `fn` returns is awaited on the loop. A coroutine function, or
    anything not callable, is returned unchanged: the core awaits or refuses it
    as it would in async code.
    """
    if not callable(fn) or inspect.iscoroutinefunction(fn):
        return fn

    @functools.wraps(fn)
    async def run_on_caller(*args: P.args, **kwargs: P.kwargs) -> Any:
        work = functools.partial(fn, *args, **kwargs)
        call = _CURRENT.get()
        if call is None or call.finished:
            value = await asyncio.to_thread(work)
        elif call.inline:
            value = work()
        else:
            future = asyncio.get_running_loop().create_future()
            call.mailbox.put((_REQUEST, (work, future)))
            value = await future
            if value is _ELSEWHERE:
                value = await asyncio.to_thread(work)
        if inspect.isawaitable(value):
            value = await value
        return value

    return run_on_caller
