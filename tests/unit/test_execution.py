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
