"""Where a call's work runs, so the event loop only routes (DESIGN.md, "Execution model").

Three bounded thread pools, each a `Lane` with a ceiling on how long a call waits for it:

- ``cpu`` (``--cpu-threads``): the engine (observe, predict, sequences);
- ``kb`` (``--kb-threads``, ``--kb-timeout-seconds``): knowledge-store calls (SQLite
  commits, ClickHouse queries);
- ``session`` (``--session-threads``, ``--redis-timeout-seconds``): Redis session-store
  calls. The in-process session store is called inline: it never blocks.

A lane's queue is ordered by priority, then arrival, so short work passed as urgent
(an Observe computing no predictions) never waits behind queued long work (Predict).

A lane's queue is bounded (``--cpu-queue-length``, ``--kb-queue-length``,
``--session-queue-length``): work that finds it full, or whose expected wait (the work
ahead of it times the lane's mean job time, divided among its threads) is longer than the
call's deadline allows, raises `Overloaded` instead of queueing, and the call is answered
RESOURCE_EXHAUSTED at once (server/admission.py). Only work before the call's commit is
ever refused: once a call has committed (a server-held session's compare-and-set), the
rest of its work runs `past_commit` and queues whatever the length.

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
    "Overloaded",
    "past_commit",
    "QUEUE_PER_THREAD",
    "start_budget",
    "check_budget",
    "budget_spent",
    "OffloadedSessionStore",
    "InlineSessionStore",
]

# Our own DEADLINE_EXCEEDED must reach the client before its deadline fires there.
DEADLINE_MARGIN = 0.1  # seconds, at most this; at most 10% of the time left


class DeadlineExceeded(Exception):
    """The call's deadline passed before its work was done; nothing was applied."""


class BackendTimeout(Exception):
    """A back end did not answer within its ceiling. Maps to UNAVAILABLE; nothing was applied."""


class Overloaded(Exception):
    """The server cannot take this call now; nothing was applied. Maps to RESOURCE_EXHAUSTED
    with `reason` (ErrorInfo), `metadata` and `retry_after` seconds (RetryInfo)."""

    def __init__(self, reason: str, message: str, retry_after: float, metadata: dict[str, str]) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after
        self.metadata = metadata


QUEUE_PER_THREAD = 32  # a lane's default queue length, per thread: a few hundred ms of Predicts
MIN_RETRY_SECONDS = 0.05
_PAST_COMMIT: ContextVar[bool] = ContextVar("kato_past_commit", default=False)


@contextmanager
def past_commit() -> Iterator[None]:
    """Around the work a call does after its commit: lanes queue it whatever their length,
    since refusing it would answer RESOURCE_EXHAUSTED for a call that changed something."""
    token = _PAST_COMMIT.set(True)
    try:
        yield
    finally:
        _PAST_COMMIT.reset(token)


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


def budget_spent() -> bool:
    """Whether the current call's budget (its deadline less the margin) has run out."""
    remaining = _BUDGET.get().remaining()
    return remaining is not None and remaining <= 0


URGENT, NORMAL = 0, 1  # queue priorities: short work never waits behind long work already queued


class Lane:
    """A bounded thread pool for one kind of work, with queue and busy counts for metrics.

    Its queue is ordered by priority, then arrival: work known to be short (an Observe
    that computes no predictions) is passed as `urgent` and runs before queued long work
    (Predict), so it waits for a free thread, not for the whole queue.
    """

    def __init__(
        self,
        name: str,
        threads: int,
        ceiling: float | None = None,
        what: str = "",
        *,
        max_queue: int = 0,
        clock: Callable[[], float] = time.monotonic,
        hold: Callable[[], None] | None = None,
    ) -> None:
        if threads < 1:
            raise ValueError(f"--{name}-threads must be >= 1, got {threads}")
        if max_queue < 0:
            raise ValueError(f"--{name}-queue-length must be >= 0, got {max_queue}")
        self.name = name
        self.threads = threads
        self.ceiling = ceiling  # seconds a call waits for this lane at most (None: the deadline only)
        self.what = what or name  # for messages: "Redis at ...", "the knowledge store"
        self.max_queue = max_queue or QUEUE_PER_THREAD * threads
        self._clock = clock
        self._hold = hold  # tests only: every job waits in it (see app.test_hold)
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._arrivals = itertools.count()
        self._count = threading.Lock()
        self.queued = 0
        self.queued_urgent = 0
        self.busy = 0
        self.job_seconds = 0.0  # mean time of a job here (exponentially weighted), 0 until one ran
        self.refused: dict[str, int] = {}  # by reason (LANE_QUEUE_FULL, QUEUE_WAIT_EXCEEDS_DEADLINE)
        self.withdrawn = 0  # queued work whose caller stopped waiting: it never ran
        # Called with (seconds queued, seconds run) after each job (the metrics' histograms).
        self.observe: Callable[[float, float], None] | None = None
        for i in range(threads):
            threading.Thread(target=self._work, name=f"kato-{name}-{i}", daemon=True).start()

    def _work(self) -> None:
        while True:
            priority, _, job = self._queue.get()
            if job is None:
                return
            future, queued_at, expires, fn, args, kwargs = job
            if not future.set_running_or_notify_cancel():
                continue  # withdrawn by its caller (counted there)
            tracing.job_started(future)
            try:
                future.set_result(self._run(priority, queued_at, expires, fn, args, kwargs))
            except BaseException as exc:
                future.set_exception(exc)

    def _run(
        self, priority: int, queued_at: float, expires: float | None, fn: Callable, args: tuple, kwargs: dict
    ) -> Any:
        with self._count:
            self._dequeued(priority)
            self.busy += 1
        if self._hold is not None:
            self._hold()
        began = self._clock()
        # The job sees its caller's budget: `check_budget` in it says whether anyone still waits.
        token = _BUDGET.set(Budget(expires))
        try:
            check_budget()
            return fn(*args, **kwargs)
        finally:
            _BUDGET.reset(token)
            took = self._clock() - began
            with self._count:
                self.busy -= 1
                self.job_seconds = took if not self.job_seconds else 0.8 * self.job_seconds + 0.2 * took
            if self.observe is not None:
                self.observe(began - queued_at, took)

    def _dequeued(self, priority: int) -> None:
        self.queued -= 1
        if priority == URGENT:
            self.queued_urgent -= 1

    def expected_wait(self, priority: int) -> float:
        """Seconds new work of `priority` would wait for a thread: the work ahead of it (queued
        at its priority or above, and the running jobs beyond the free threads) times the mean
        job time, shared among the threads; 0 while no job has run yet."""
        ahead = self.queued_urgent if priority == URGENT else self.queued
        return max(ahead + self.busy - self.threads + 1, 0) * self.job_seconds / self.threads

    def _admit(self, priority: int, remaining: float | None) -> None:
        """Raise `Overloaded` if this work is to be refused rather than queued."""
        if _PAST_COMMIT.get():
            return
        wait = self.expected_wait(priority)
        if self.queued >= self.max_queue:
            reason = "LANE_QUEUE_FULL"
            message = f"the {self.name} lane's queue is full ({self.queued} of {self.max_queue} waiting)"
        elif remaining is not None and wait > remaining:
            reason = "QUEUE_WAIT_EXCEEDS_DEADLINE"
            message = (
                f"the {self.name} lane's expected wait of {wait * 1000:.0f} ms exceeds the"
                f" {max(remaining, 0) * 1000:.0f} ms left of the call's deadline"
            )
        else:
            return
        self.refused[reason] = self.refused.get(reason, 0) + 1
        raise Overloaded(
            reason,
            f"{message}; nothing was applied: retry after the delay given",
            max(wait, MIN_RETRY_SECONDS),
            {"lane": self.name, "queued": str(self.queued), "maxQueue": str(self.max_queue)},
        )

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
            self._admit(priority, remaining)
            self.queued += 1
            if priority == URGENT:
                self.queued_urgent += 1
        expires = None if timeout is None else time.monotonic() + timeout
        future: Future = Future()
        self._queue.put((priority, next(self._arrivals), (future, self._clock(), expires, fn, args, kwargs)))
        try:
            with tracing.lane(self.name, future):
                return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            if future.cancel():  # still queued: it will never run
                with self._count:
                    self._dequeued(priority)
                    self.withdrawn += 1
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
