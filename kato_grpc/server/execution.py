"""Where a call's work runs, so the event loop only routes (DESIGN.md, "Execution model").

Three bounded thread pools, each a `Lane` with a ceiling on how long a call waits for it:

- ``cpu`` (``--cpu-threads``): the engine (observe, predict, sequences);
- ``kb`` (``--kb-threads``, ``--kb-timeout-seconds``): knowledge-store calls (SQLite
  commits, ClickHouse queries);
- ``session`` (``--session-threads``, ``--redis-timeout-seconds``): Redis session-store
  calls. The in-process session store is called inline: it never blocks.

A lane's queue is ordered by priority, then arrival, so short work passed as urgent
(an Observe computing no predictions) never waits behind queued long work (Predict).

A call's `Budget` (its client's deadline, minus a margin so that our own status reaches
the client first) lives in a context variable set when the call starts; every lane call
waits at most the budget's remainder or the lane's ceiling, whichever is shorter, then
ends with DEADLINE_EXCEEDED or UNAVAILABLE. Work still queued then is withdrawn, so it
never runs; work already running cannot be interrupted and finishes in its thread (the
back end's own socket timeout equals the ceiling, so a stalled back end frees it).

`KbGuard` keeps engine reads of a knowledge base's in-process index apart from the
writes that change it, now that they run on different threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from kato_grpc.server import tracing

__all__ = [
    "Budget",
    "Lane",
    "KbGuard",
    "DeadlineExceeded",
    "BackendTimeout",
    "start_budget",
    "check_budget",
    "OffloadedSessionStore",
    "InlineSessionStore",
]

# Our own DEADLINE_EXCEEDED must reach the client before its deadline fires there.
DEADLINE_MARGIN = 0.1  # seconds, at most this; at most 10% of the time left


class DeadlineExceeded(Exception):
    """The call's deadline passed before its work was done; nothing was applied."""


class BackendTimeout(Exception):
    """A back end did not answer within its ceiling. Maps to UNAVAILABLE; nothing was applied."""


@dataclass(frozen=True)
class Budget:
    """Until when (time.monotonic) a call may run; None: no client deadline."""

    expires: float | None

    def remaining(self) -> float | None:
        return None if self.expires is None else self.expires - time.monotonic()


_BUDGET: ContextVar[Budget] = ContextVar("kato_budget", default=Budget(None))  # noqa: B039 (frozen: immutable)


def start_budget(time_remaining: float | None) -> Budget:
    """Set the current call's budget from its context's ``time_remaining()``."""
    if time_remaining is None:
        budget = Budget(None)
    else:
        budget = Budget(time.monotonic() + time_remaining - min(DEADLINE_MARGIN, 0.1 * max(time_remaining, 0.0)))
    _BUDGET.set(budget)
    return budget


def check_budget() -> None:
    """Raise DeadlineExceeded if the current call's deadline has passed (before a write)."""
    remaining = _BUDGET.get().remaining()
    if remaining is not None and remaining <= 0:
        raise DeadlineExceeded("deadline passed; nothing was applied")


URGENT, NORMAL = 0, 1  # queue priorities: short work never waits behind long work already queued


class Lane:
    """A bounded thread pool for one kind of work, with queue and busy counts for metrics.

    Its queue is ordered by priority, then arrival: work known to be short (an Observe
    that computes no predictions) is passed as `urgent` and runs before queued long work
    (Predict), so it waits for a free thread, not for the whole queue.
    """

    def __init__(self, name: str, threads: int, ceiling: float | None = None, what: str = "") -> None:
        if threads < 1:
            raise ValueError(f"--{name}-threads must be >= 1, got {threads}")
        self.name = name
        self.threads = threads
        self.ceiling = ceiling  # seconds a call waits for this lane at most (None: the deadline only)
        self.what = what or name  # for messages: "Redis at ...", "the knowledge store"
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._arrivals = itertools.count()
        self._count = threading.Lock()
        self.queued = 0
        self.busy = 0
        for i in range(threads):
            threading.Thread(target=self._work, name=f"kato-{name}-{i}", daemon=True).start()

    def _work(self) -> None:
        while True:
            _, _, job = self._queue.get()
            if job is None:
                return
            future, expires, fn, args, kwargs = job
            if not future.set_running_or_notify_cancel():
                continue  # withdrawn by its caller (counted there)
            tracing.job_started(future)
            try:
                future.set_result(self._run(expires, fn, args, kwargs))
            except BaseException as exc:
                future.set_exception(exc)

    def _run(self, expires: float | None, fn: Callable, args: tuple, kwargs: dict) -> Any:
        with self._count:
            self.queued -= 1
            self.busy += 1
        # The job sees its caller's budget: `check_budget` in it says whether anyone still waits.
        token = _BUDGET.set(Budget(expires))
        try:
            check_budget()
            return fn(*args, **kwargs)
        finally:
            _BUDGET.reset(token)
            with self._count:
                self.busy -= 1

    async def __call__(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` on this lane, within the call's budget and the ceiling."""
        return await self.run(NORMAL, fn, args, kwargs)

    async def urgent(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """As calling the lane, ahead of the normal work queued (for work known to be short)."""
        return await self.run(URGENT, fn, args, kwargs)

    async def run(self, priority: int, fn: Callable, args: tuple, kwargs: dict) -> Any:
        timeout, by_deadline = self.ceiling, False
        budget = _BUDGET.get()
        remaining = budget.remaining()
        if remaining is not None and (timeout is None or remaining <= timeout):
            timeout, by_deadline = remaining, True
        if timeout is not None and timeout <= 0:
            raise DeadlineExceeded("deadline passed; nothing was applied")
        with self._count:
            self.queued += 1
        expires = None if timeout is None else time.monotonic() + timeout
        future: Future = Future()
        self._queue.put((priority, next(self._arrivals), (future, expires, fn, args, kwargs)))
        try:
            with tracing.lane(self.name, future):
                return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            if future.cancel():  # still queued: it will never run
                with self._count:
                    self.queued -= 1
            if isinstance(exc, asyncio.CancelledError):
                raise
            if by_deadline:
                raise DeadlineExceeded(
                    f"deadline passed while waiting for {self.what}; "
                    "nothing was applied unless it was already being written"
                ) from None
            raise BackendTimeout(f"{self.what} did not answer within {self.ceiling:g}s; retry the call") from None

    def close(self) -> None:
        """Stop the threads once the work queued so far is done or withdrawn."""
        for _ in range(self.threads):
            self._queue.put((NORMAL + 1, next(self._arrivals), None))


class _ReadWriteLock:
    """Many readers or one writer; a waiting writer holds back new readers."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class KbGuard:
    """One reader/writer lock per knowledge base over its in-process index.

    The engine reads an index (shared); a store write changes it (exclusive: only while it
    changes the index, not while it commits), and so does a store read when the store
    refreshes the index from a shared back end on each read (ClickHouse catches up with
    other replicas' writes: there the whole store call is exclusive).
    """

    def __init__(self, refreshes_on_read: bool) -> None:
        self.refreshes_on_read = refreshes_on_read
        self._locks: dict[str, _ReadWriteLock] = {}
        self._make = threading.Lock()

    def _lock(self, kb_id: str) -> _ReadWriteLock:
        lock = self._locks.get(kb_id)
        if lock is None:
            with self._make:
                lock = self._locks.setdefault(kb_id, _ReadWriteLock())
        return lock

    def reading(self, kb_id: str):
        """Around engine work on the index."""
        return self._lock(kb_id).reading()

    def writing(self, kb_id: str):
        """Around a change to the index."""
        return self._lock(kb_id).writing()

    def fetching_view(self, kb_id: str):
        """Around fetching a view: exclusive where that refreshes the index (ClickHouse);
        else nothing, since the view is the index itself and only reading it needs a lock."""
        return self._lock(kb_id).writing() if self.refreshes_on_read else contextlib.nullcontext()

    def store_writing(self, kb_id: str):
        """Around a store write: the whole of it when the store refreshes on read (its reads
        change the index too); else nothing, the store takes `writing` around its index change
        (`IndexedStore.guard_index_writes`), so readers never wait for a commit."""
        return self._lock(kb_id).writing() if self.refreshes_on_read else contextlib.nullcontext()

    def store_reading(self, kb_id: str):
        """Around a store read (view, get_pattern, ...)."""
        return self._lock(kb_id).writing() if self.refreshes_on_read else self._lock(kb_id).reading()


class OffloadedSessionStore:
    """A blocking `SessionStore` (Redis) seen as an async one: each call on the sessions lane."""

    def __init__(self, store: Any, lane: Lane) -> None:
        self._store = store
        self._lane = lane

    async def create(self, record):
        return await self._lane(self._store.create, record)

    async def get(self, session_id):
        return await self._lane(self._store.get, session_id)

    async def status(self, session_id):
        return await self._lane(self._store.status, session_id)

    async def compare_and_set(self, record, expected_version):
        check_budget()  # the last moment a late call can still change nothing
        return await self._lane(self._store.compare_and_set, record, expected_version)

    async def touch(self, session_id, ttl_seconds, expires_at):
        return await self._lane(self._store.touch, session_id, ttl_seconds, expires_at)

    async def delete(self, session_id):
        return await self._lane(self._store.delete, session_id)


class InlineSessionStore:
    """A `SessionStore` that never blocks (in-process memory) seen as an async one."""

    def __init__(self, store: Any) -> None:
        self._store = store

    async def create(self, record):
        return self._store.create(record)

    async def get(self, session_id):
        return self._store.get(session_id)

    async def status(self, session_id):
        return self._store.status(session_id)

    async def compare_and_set(self, record, expected_version):
        check_budget()
        return self._store.compare_and_set(record, expected_version)

    async def touch(self, session_id, ttl_seconds, expires_at):
        return self._store.touch(session_id, ttl_seconds, expires_at)

    async def delete(self, session_id):
        return self._store.delete(session_id)
