"""Group commit: concurrent writes that arrive while one commit is running share the next.

    batcher = GroupCommit(commit)          # commit(items) sets each item's result or error
    result = batcher.submit(work)          # blocks until the commit holding `work` is done

No thread of its own: the first caller to find no commit running becomes the leader,
takes every waiting item (its own included) and commits them together; callers that
arrive meanwhile wait for the next round, whose leader is one of them. A caller returns
only once its own item's commit has finished, so an acknowledgement still means "stored".
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["GroupCommit", "Pending"]

W = TypeVar("W")


class Pending(Generic[W]):
    """One submitted piece of work; the commit sets `result` or `error`."""

    __slots__ = ("done", "error", "result", "work")

    def __init__(self, work: W) -> None:
        self.work = work
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class GroupCommit(Generic[W]):
    """Runs `commit(items)` on batches of submitted work, one batch at a time."""

    def __init__(self, commit: Callable[[list[Pending[W]]], None]) -> None:
        self._commit = commit
        self._cond = threading.Condition()
        self._queue: list[Pending[W]] = []
        self._busy = False
        self.batches = 0  # commits run (for benchmarks and tests)

    def submit(self, work: W) -> Any:
        item = Pending(work)
        with self._cond:
            self._queue.append(item)
            while self._busy and not item.done:
                self._cond.wait()
            if item.done:
                return item.outcome()
            self._busy = True
            batch, self._queue = self._queue, []
        try:
            self._commit(batch)
        except BaseException as exc:  # the whole batch failed: every item gets the error
            for pending in batch:
                if pending.error is None:
                    pending.error = exc
        finally:
            with self._cond:
                for pending in batch:
                    pending.done = True
                self.batches += 1
                self._busy = False
                self._cond.notify_all()
        return item.outcome()
