"""Admission control: a call the server cannot take now is refused at once, changing nothing.

Two bounds keep overload an answer a client can act on instead of longer and longer waits
(and a process that grows until the machine runs out of memory):

- **Request bytes in flight** (``--max-bytes-in-flight``): the serialized requests of the
  calls being served, summed. A call is counted from the moment its request is read until
  its status is sent; a request that does not fit is refused before it is parsed (a parsed
  state costs several times its bytes). A call arriving while the budget is already spent
  is refused before its body is even read. One request is always admitted when nothing
  else is in flight, so any request under ``--max-request-bytes`` can be served.
- **Each lane's queue** (``--cpu-queue-length`` and its kin, server/execution.py): a call
  whose work would find the queue full, or whose expected wait there is longer than its
  deadline allows, is refused instead of queued.

A refusal is RESOURCE_EXHAUSTED with an ``ErrorInfo`` reason (``REQUEST_BYTES_EXHAUSTED``,
``LANE_QUEUE_FULL``, ``QUEUE_WAIT_EXCEEDS_DEADLINE``) and a ``google.rpc.RetryInfo``
saying when a retry has a fair chance. It is sent before the call has changed anything:
lanes refuse only work that precedes the call's commit (`execution.past_commit`).

The health and reflection services are never shed: an orchestrator must see a busy
server as busy, not dead.

A call whose client has stopped waiting is not answered: once its deadline has passed,
grpc core has ended the call on its side, and sending a response or a status then fails
inside grpc (an ``ExecuteBatchError`` traceback in the log, and a client may read a
half-sent answer as INTERNAL "unexpected EOF"). `_Impatient` ends such a call quietly
instead: it is recorded (metrics, access log at INFO) as DEADLINE_EXCEEDED, which is
what its client saw, and nothing is sent. A client may still stop waiting in the instant
between our check and grpc's send (its clock runs ahead of ours by the time the call took
to reach us): grpc then logs the failed send with a traceback, which `LateAnswerFilter`
turns into one INFO line and counts (``kato_late_answers_total``).

A stream counts the bytes of its first message (``open``, which may carry a client-held
state the stream keeps) for as long as it lasts, and each later message until the next
one is read: the stream answers in order, so that message's work is done by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from kato_grpc.server.errors import rich_status, status_for_exception
from kato_grpc.server.execution import Overloaded, budget_spent
from kato_grpc.server.handlers import Interceptor, Method

__all__ = ["ByteBudget", "AdmissionInterceptor", "LateAnswerFilter", "NEVER_SHED", "BYTES_RETRY_SECONDS"]

NEVER_SHED = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }
)
BYTES_RETRY_SECONDS = 0.25  # a near-limit call takes about this long: a fair time to try again


class LateAnswerFilter(logging.Filter):
    """grpc's "ExecuteBatchError raised in core by servicer method [...]" with its traceback:
    an answer sent after the client had gone (cancelled, or past its deadline). That is the
    client's impatience, not a fault: one INFO line, no traceback, counted in `late_answers`."""

    late_answers = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("ExecuteBatchError raised in core"):
            LateAnswerFilter.late_answers += 1
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "%s: the client had stopped waiting (cancelled or past its deadline) when the answer was sent"
            record.args = (record.args[0] if isinstance(record.args, tuple) and record.args else "a call",)
            record.exc_info, record.exc_text = None, None
        return True

    @classmethod
    def install(cls) -> None:
        logger = logging.getLogger("grpc._cython.cygrpc")
        if not any(isinstance(f, cls) for f in logger.filters):
            logger.addFilter(cls())


class ByteBudget:
    """Request bytes in flight, against a limit (shared by the calls of one process)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"--max-bytes-in-flight must be >= 1, got {limit}")
        self.limit = limit
        self.in_flight = 0
        self.refused = 0  # calls refused for want of bytes (the metrics' kato_shed_calls_total)
        self._lock = threading.Lock()  # released by finalizers, which may run on any thread

    def full(self) -> bool:
        return self.in_flight >= self.limit

    def take(self, size: int) -> bool:
        """Count `size` more bytes if they fit (or nothing else is in flight); False if not."""
        with self._lock:
            if self.in_flight and self.in_flight + size > self.limit:
                self.refused += 1
                return False
            self.in_flight += size
            return True

    def give(self, size: int) -> None:
        with self._lock:
            self.in_flight -= size

    def refusal(self, size: int | None) -> Overloaded:
        self.refused += size is None  # `take` counted the others
        what = "a request" if size is None else f"a request of {size} bytes"
        return Overloaded(
            "REQUEST_BYTES_EXHAUSTED",
            f"the server is at its limit of request bytes in flight ({self.in_flight} of {self.limit});"
            f" {what} was refused unread and nothing was applied: retry after the delay given",
            BYTES_RETRY_SECONDS,
            {"bytesInFlight": str(self.in_flight), "maxBytesInFlight": str(self.limit)},
        )


class _Admitted:
    """A request that was counted in the budget, and the bytes to give back once."""

    __slots__ = ("_budget", "message", "size")

    def __init__(self, budget: ByteBudget, message: Any, size: int) -> None:
        self._budget, self.message, self.size = budget, message, size

    def release(self) -> None:
        if self.size:
            self._budget.give(self.size)
            self.size = 0

    def __del__(self) -> None:  # a call that ended before its behavior ran still gives its bytes back
        self.release()


class _Refused:
    """A request that did not fit: the behavior answers it, unparsed."""

    __slots__ = ("error",)

    def __init__(self, error: Overloaded) -> None:
        self.error = error


async def _refuse(context: grpc.aio.ServicerContext, error: Overloaded) -> None:
    await _Impatient(context).abort_with_status(rich_status(status_for_exception(error)))


def _end_if_late(context: grpc.aio.ServicerContext) -> None:
    """Raise CancelledError (grpc then sends nothing) if the call's deadline has passed."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        context.set_code(grpc.StatusCode.DEADLINE_EXCEEDED)  # what the client saw, for metrics and the log
        raise asyncio.CancelledError("the client's deadline passed before the answer")


async def _answer_in_time(context: grpc.aio.ServicerContext, response: Any) -> Any:
    """`response`, unless the deadline leaves no time to send it.

    A response sent in the call's last moments (the margin of `execution.start_budget`) may
    be cut off by grpc core's own deadline halfway through its bytes, which a client reads
    as INTERNAL; the short DEADLINE_EXCEEDED status is sent instead."""
    _end_if_late(context)
    if budget_spent():
        await _Impatient(context).abort(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "the deadline left no time to send the answer; a call with a request_id can be retried for it",
        )
    return response


class _Impatient:
    """A servicer context whose ``abort`` sends nothing once the call's deadline has passed."""

    __slots__ = ("_context",)

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self._context = context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata=()) -> None:
        _end_if_late(self._context)
        await self._context.abort(code, details, trailing_metadata)

    async def abort_with_status(self, status: grpc.Status) -> None:
        _end_if_late(self._context)
        await self._context.abort_with_status(status)


class AdmissionInterceptor(Interceptor):
    """Counts each call's request bytes and refuses the calls that do not fit.

    Its plan for a method is the deserializer it wraps (the decode interceptor's, inside).
    Outside the decode interceptor, so a refused request is never parsed; inside the
    metrics and the access log, so refusals are counted and logged like any answer.
    """

    def __init__(self, budget: ByteBudget) -> None:
        super().__init__()
        self.budget = budget

    async def intercept_service(self, continuation, handler_call_details):
        handler = await super().intercept_service(continuation, handler_call_details)
        if handler is None or not self.budget.full():
            return handler
        service = handler_call_details.method.lstrip("/").rpartition("/")[0]
        if service in NEVER_SHED:
            return handler
        # Spent already: refuse without reading the body (a request-streaming handler need not).
        return _unread_refusal(handler, self.budget.refusal(None))

    def prepare(self, method: Method, handler: grpc.RpcMethodHandler) -> Any:
        if method.service in NEVER_SHED or handler.request_deserializer is None:
            return None
        return handler.request_deserializer

    def request_deserializer(self, plan: Any) -> Callable[[bytes], Any]:
        inner = plan
        budget = self.budget

        def deserialize(data: bytes) -> Any:
            if not budget.take(len(data)):
                return _Refused(budget.refusal(len(data)))
            return _Admitted(budget, inner(data), len(data))

        return deserialize

    async def unary_unary(self, request, context, plan, call_next):
        if isinstance(request, _Refused):
            await _refuse(context, request.error)
        try:
            response = await call_next(request.message, _Impatient(context))
        finally:
            request.release()
        return await _answer_in_time(context, response)

    async def unary_stream(self, request, context, plan, call_next):
        if isinstance(request, _Refused):
            await _refuse(context, request.error)
        try:
            async with contextlib.aclosing(call_next(request.message, _Impatient(context))) as responses:
                async for response in responses:
                    yield response
        finally:
            request.release()

    async def stream_unary(self, requests, context, plan, call_next):
        held: list[_Admitted] = []
        try:
            response = await call_next(_counted(requests, context, held), _Impatient(context))
        finally:
            for admitted in held:
                admitted.release()
        return await _answer_in_time(context, response)

    async def stream_stream(self, requests, context, plan, call_next):
        held: list[_Admitted] = []
        try:
            async with contextlib.aclosing(
                call_next(_counted(requests, context, held), _Impatient(context))
            ) as responses:
                async for response in responses:
                    yield response
        finally:
            for admitted in held:
                admitted.release()


async def _counted(requests: AsyncIterator[Any], context, held: list[_Admitted]) -> AsyncIterator[Any]:
    """The stream's messages unwrapped; `held` keeps the first one's ticket and the latest's."""
    async for request in requests:
        if isinstance(request, _Refused):
            await _refuse(context, request.error)
        if len(held) == 2:
            held.pop().release()  # the previous message was answered before this one was read
        held.append(request)
        yield request.message


def _unread_refusal(handler: grpc.RpcMethodHandler, error: Overloaded) -> grpc.RpcMethodHandler:
    """A handler of the same response shape that refuses without reading the request."""

    if handler.response_streaming:

        async def refuse_streaming(requests, context):
            await _refuse(context, error)
            yield  # pragma: no cover (an async generator: abort ends it first)

        return grpc.stream_stream_rpc_method_handler(refuse_streaming, response_serializer=handler.response_serializer)

    async def refuse(requests, context):
        await _refuse(context, error)

    return grpc.stream_unary_rpc_method_handler(refuse, response_serializer=handler.response_serializer)
