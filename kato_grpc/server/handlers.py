"""Wrapping a method handler: the one mechanism our interceptors share.

A `grpc.aio.ServerInterceptor` sees a call before its request is deserialized. To look
at the request (auth reads its kb id), the outcome (metrics, the access log) or the
response (state size), an interceptor returns a copy of the method's handler whose
behavior is wrapped; the wrapper runs in the call's own task and context, so a
`contextvars.ContextVar` set there is seen by the servicer and by outer wrappers.

Every interceptor here subclasses `Interceptor`, which does that plumbing once: it
wraps each method's handler the first time the method is called and keeps the copy, so
nothing is per call except the interceptor's own work. A subclass says only what it
does to one call (see `Interceptor`).

Only asynchronous behaviors are wrapped (coroutine functions and async generator
functions, which is all this server has); a synchronous one runs on grpc's thread pool
with another context type, and `wrap_handler` refuses it rather than guess.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

__all__ = ["KINDS", "Interceptor", "Method", "kind_of", "wrap_handler", "around", "status_of", "split_method", "peek"]

KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
_FACTORIES = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}

Behavior = Callable[..., Any]


def kind_of(handler: grpc.RpcMethodHandler) -> str:
    """`unary_unary`, `unary_stream`, `stream_unary` or `stream_stream`."""
    return f"{'stream' if handler.request_streaming else 'unary'}_{'stream' if handler.response_streaming else 'unary'}"


def split_method(full_method: str) -> tuple[str, str]:
    """`/kato.v1.KatoService/Observe` → (`kato.v1.KatoService`, `Observe`)."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method


async def peek(requests: AsyncIterable[Any]) -> tuple[Any, AsyncIterator[Any]] | None:
    """The first message of a request stream and the stream again, that message first;
    None if the stream ends before any message."""
    messages = aiter(requests)
    try:
        first = await anext(messages)
    except StopAsyncIteration:
        return None
    return first, _replay(first, messages)


async def _replay(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    yield first
    async for message in rest:
        yield message


def wrap_handler(
    handler: grpc.RpcMethodHandler,
    wrap: Callable[[Behavior, str], Behavior],
    request_deserializer: Callable[[bytes], Any] | None = None,
    response_serializer: Callable[[Any], bytes] | None = None,
) -> grpc.RpcMethodHandler:
    """A copy of `handler` whose behavior is `wrap(behavior, kind)` (same shape), and
    whose request deserializer / response serializer are the ones given, if any."""
    kind = kind_of(handler)
    behavior = getattr(handler, kind)
    if not (inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)):
        raise TypeError(f"{behavior!r} is synchronous; only asynchronous handlers can be wrapped")
    return _FACTORIES[kind](
        wrap(behavior, kind),
        request_deserializer=request_deserializer or handler.request_deserializer,
        response_serializer=response_serializer or handler.response_serializer,
    )


def status_of(context: grpc.aio.ServicerContext, error: BaseException | None) -> grpc.StatusCode:
    """The status a call ended with, as far as the server knows it."""
    code = context.code()
    if isinstance(code, grpc.StatusCode) and (error is None or code is not grpc.StatusCode.OK):
        return code
    if error is None:
        return grpc.StatusCode.OK
    if isinstance(error, (asyncio.CancelledError, GeneratorExit)):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


def around(
    handler: grpc.RpcMethodHandler,
    start: Callable[[grpc.aio.ServicerContext], Awaitable[Any]],
    finish: Callable[[grpc.aio.ServicerContext, Any, grpc.StatusCode], None],
    inner_context: Callable[[grpc.aio.ServicerContext, Any], Any] | None = None,
    *,
    request_deserializer: Callable[[bytes], Any] | None = None,
    response_serializer: Callable[[Any], bytes] | None = None,
) -> grpc.RpcMethodHandler:
    """`handler` run between ``token = await start(context)`` and ``finish(context, token, code)``.

    `finish` runs once per call, with the status code the call ends with, always before
    that status is sent: after the last response or the error, and for a call ended with
    ``abort`` inside it, before the abort (which sends the status at once). So whatever
    `finish` records (a metric, a log line) is visible by the time the caller has its
    answer. With `inner_context`, the behavior gets ``inner_context(context, token)``;
    a `request_deserializer` / `response_serializer` given replaces the handler's.
    """

    def wrap(behavior: Behavior, kind: str) -> Behavior:
        if inspect.isasyncgenfunction(behavior):

            async def streaming(request: Any, context: grpc.aio.ServicerContext):
                call = _Call(context, await start(context), finish)
                try:
                    async with contextlib.aclosing(behavior(request, call.context(inner_context))) as responses:
                        async for response in responses:
                            yield response
                except BaseException as exc:
                    call.finish(status_of(context, exc))
                    raise
                call.finish(status_of(context, None))

            return streaming

        async def single(request: Any, context: grpc.aio.ServicerContext):
            call = _Call(context, await start(context), finish)
            try:
                result = await behavior(request, call.context(inner_context))
            except BaseException as exc:
                call.finish(status_of(context, exc))
                raise
            call.finish(status_of(context, None))
            return result

        return single

    return wrap_handler(handler, wrap, request_deserializer, response_serializer)


class _Call:
    """One call of an `around` wrapper: runs its `finish` exactly once."""

    __slots__ = ("_done", "_finish", "_outer", "_token")

    def __init__(self, outer: grpc.aio.ServicerContext, token: Any, finish: Callable) -> None:
        self._outer, self._token, self._finish, self._done = outer, token, finish, False

    def finish(self, code: grpc.StatusCode) -> None:
        if not self._done:
            self._done = True
            self._finish(self._outer, self._token, code)

    def context(self, inner_context: Callable | None) -> _FinishBeforeAbort:
        inner = inner_context(self._outer, self._token) if inner_context is not None else self._outer
        return _FinishBeforeAbort(inner, self)


class _FinishBeforeAbort:
    """The behavior's context: ``abort`` sends the status at once, so finish first."""

    __slots__ = ("_call", "_context")

    def __init__(self, context: Any, call: _Call) -> None:
        self._context, self._call = context, call

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata=()) -> None:
        self._context.set_code(code)  # what abort will send, readable by `finish`
        self._context.set_details(details)
        self._call.finish(code)
        await self._context.abort(code, details, trailing_metadata)

    async def abort_with_status(self, status: grpc.Status) -> None:
        self._context.set_code(status.code)
        self._context.set_details(status.details)
        self._call.finish(status.code)
        await self._context.abort_with_status(status)


@dataclass(frozen=True)
class Method:
    """The method a handler serves: ``/kato.v1.KatoService/Observe`` is service
    ``kato.v1.KatoService``, name ``Observe``; `kind` is its shape (see `kind_of`)."""

    full_name: str
    service: str
    name: str
    kind: str


def as_generator(behavior: Behavior, kind: str) -> Behavior:
    """A streaming behavior as the async generator an interceptor iterates.

    A handler may instead write its responses with ``context.write`` and return None
    (grpcio-health's ``Watch`` does): then the generator awaits it and yields nothing."""
    if kind not in ("unary_stream", "stream_stream") or inspect.isasyncgenfunction(behavior):
        return behavior

    async def generator(request: Any, context: grpc.aio.ServicerContext):
        await behavior(request, context)
        return
        yield  # unreachable: makes this function an async generator

    return generator


class Interceptor(grpc.aio.ServerInterceptor):
    """What our interceptors share: each method's handler wrapped once, cached, served.

    A subclass says what it does to one call by defining the methods named for the call
    shapes it handles, each run with the call's request (or request iterator), its context,
    the interceptor's `plan` for the method and `call_next`, the behavior it wraps::

        async def unary_unary(self, request, context, plan, call_next):
            ...  # look at the request
            response = await call_next(request, context)
            ...  # look at the response
            return response

    ``unary_stream`` and ``stream_stream`` are async generators yielding the responses;
    ``stream_unary`` returns one. A shape the subclass does not define is served as it is.

    `prepare` runs once per method and returns the plan: what the interceptor needs to
    know about the method (a role, whether its requests carry a state), or None to serve
    the method's handler as it is. An interceptor that builds the whole handler itself
    (the access log and metrics do, with `around`) overrides `wrap` instead.
    """

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(self, continuation, handler_call_details):
        full_name = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        cached = self._wrapped.get(full_name)
        if cached is not None and cached[0] is handler:  # a handler never changes once served
            return cached[1]
        service, name = split_method(full_name)
        wrapped = self.wrap(Method(full_name, service, name, kind_of(handler)), handler)
        self._wrapped[full_name] = (handler, wrapped)
        return wrapped

    def wrap(self, method: Method, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """`handler` with its behavior run through this interceptor's method for its shape."""
        plan = self.prepare(method, handler)
        around_call = getattr(self, method.kind, None)
        if plan is None or around_call is None:
            return handler
        return wrap_handler(
            handler,
            lambda behavior, kind: functools.partial(around_call, plan=plan, call_next=as_generator(behavior, kind)),
            request_deserializer=self.request_deserializer(plan),
        )

    def prepare(self, method: Method, handler: grpc.RpcMethodHandler) -> Any:
        """This interceptor's plan for `method`, or None to leave its calls alone (default: the method)."""
        return method

    def request_deserializer(self, plan: Any) -> Callable[[bytes], Any] | None:
        """A request deserializer to use instead of the handler's (default: None, keep the handler's)."""
        return None
