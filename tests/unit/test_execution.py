"""The lanes and the per-KB guard of server/execution.py, with real threads."""

from __future__ import annotations

import asyncio
import threading

import pytest

from kato_grpc.server.execution import BackendTimeout, DeadlineExceeded, KbGuard, Lane, start_budget


def test_work_still_queued_when_its_deadline_passes_never_runs():
    lane = Lane("test", 1)
    release, ran = threading.Event(), threading.Event()

    async def scenario():
        blocker = asyncio.ensure_future(lane(release.wait, 30))
        while lane.busy == 0:  # the only thread is taken
            await asyncio.sleep(0.01)
        start_budget(0.3)
        with pytest.raises(DeadlineExceeded):
            await lane(ran.set)
        assert lane.queued == 0  # withdrawn from the queue
        release.set()
        await blocker

    try:
        asyncio.run(scenario())
        lane.close()
    finally:
        release.set()
    assert not ran.is_set()
    assert (lane.queued, lane.busy) == (0, 0)


def test_a_back_end_past_its_ceiling_is_unavailable_not_a_deadline():
    lane = Lane("test", 1, ceiling=0.2, what="the test back end")
    release = threading.Event()

    async def scenario():
        start_budget(None)  # no client deadline: the ceiling decides
        with pytest.raises(BackendTimeout, match="the test back end did not answer"):
            await lane(release.wait, 30)

    try:
        asyncio.run(scenario())
    finally:
        release.set()
        lane.close()


def test_a_job_sees_whether_its_caller_still_waits():
    lane = Lane("test", 1)

    async def scenario():
        start_budget(30)
        from kato_grpc.server.execution import check_budget

        await lane(check_budget)  # within the budget: no error

    asyncio.run(scenario())
    lane.close()


def test_a_writer_waits_for_the_readers_of_its_kb_only():
    guard = KbGuard(refreshes_on_read=False)
    reading, release, written = threading.Event(), threading.Event(), threading.Event()

    def reader() -> None:
        with guard.reading("kb-a"):
            reading.set()
            release.wait(30)

    def writer(kb_id: str) -> None:
        with guard.writing(kb_id):
            written.set()

    threads = [threading.Thread(target=reader)]
    threads[0].start()
    assert reading.wait(30)
    other = threading.Thread(target=writer, args=("kb-b",))
    other.start()
    other.join(30)
    assert written.is_set()  # another KB is not held back
    written.clear()
    same = threading.Thread(target=writer, args=("kb-a",))
    same.start()
    assert not written.wait(0.2)  # held back while the reader reads
    release.set()
    same.join(30)
    assert written.is_set()
    threads[0].join(30)


class _Clock:
    """Lane time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_work_that_would_wait_past_its_deadline_is_refused_not_queued():
    from kato_grpc.server.execution import Overloaded

    clock = _Clock()
    lane = Lane("test", 1, clock=clock)
    release = threading.Event()

    def slow_job() -> None:
        clock.now += 2.0  # each job takes two lane seconds

    async def scenario():
        start_budget(None)
        await lane(slow_job)  # the lane learns its mean job time: 2 s
        blocker = asyncio.ensure_future(lane(release.wait, 30))
        while lane.busy == 0:
            await asyncio.sleep(0.01)
        start_budget(30)  # 30 s to wait for ~2 s: queued
        queued = asyncio.ensure_future(lane(lambda: None))
        while lane.queued == 0:
            await asyncio.sleep(0.01)
        start_budget(3)  # two jobs ahead (~4 s) exceed the 3 s left: refused at once
        with pytest.raises(Overloaded) as refused:
            await lane(lambda: None)
        assert refused.value.reason == "QUEUE_WAIT_EXCEEDS_DEADLINE"
        assert refused.value.retry_after == pytest.approx(4.0)
        release.set()
        await blocker
        await queued

    try:
        asyncio.run(scenario())
    finally:
        release.set()
        lane.close()
    assert lane.refused == {"QUEUE_WAIT_EXCEEDS_DEADLINE": 1}


def test_a_full_queue_refuses_except_work_past_its_commit():
    from kato_grpc.server.execution import Overloaded, past_commit

    lane = Lane("test", 1, max_queue=1)
    release = threading.Event()

    async def scenario():
        start_budget(None)
        blocker = asyncio.ensure_future(lane(release.wait, 30))
        while lane.busy == 0:
            await asyncio.sleep(0.01)
        queued = asyncio.ensure_future(lane(lambda: "queued"))
        while lane.queued == 0:
            await asyncio.sleep(0.01)
        with pytest.raises(Overloaded, match="queue is full"):
            await lane(lambda: None)
        with past_commit():  # a committed call's remaining work is never refused
            committed = asyncio.ensure_future(lane(lambda: "committed"))
            while lane.queued < 2:
                await asyncio.sleep(0.01)
        release.set()
        return await blocker, await queued, await committed

    try:
        assert asyncio.run(scenario())[1:] == ("queued", "committed")
    finally:
        release.set()
        lane.close()
