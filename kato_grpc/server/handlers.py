"""Wrapping a method handler: the one mechanism our interceptors share.

A `grpc.aio.ServerInterceptor` sees a call before its request is deserialized. To look
at the request (auth reads its kb id), the outcome (metrics, the access log) or the
response (state size), an interceptor returns a copy of the method's handler whose
behavior is wrapped; the wrapper runs in the call's own task and context, so a
`contextvars.ContextVar` set there is seen by the servicer and by outer wrappers.

Handlers are looked up once per method and the wrapped copy is cached: nothing here is
per call except the wrapper's own work.

Only asynchronous behaviors are wrapped (coroutine functions and async generator
functions, which is all this server has); a synchronous one runs on grpc's thread pool
with another context type, and `wrap_handler` refuses it rather than guess.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from typing import Any, Awaitable, Callable

import grpc

__all__ = ["KINDS", "kind_of", "wrap_handler", "around", "status_of", "split_method", "CachedWrapper"]

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


def wrap_handler(handler: grpc.RpcMethodHandler, wrap: Callable[[Behavior, str], Behavior],
                 request_deserializer: Callable[[bytes], Any] | None = None) -> grpc.RpcMethodHandler:
    """A copy of `handler` whose behavior is `wrap(behavior, kind)` (same shape), and
    whose request deserializer is `request_deserializer` when given."""
    kind = kind_of(handler)
    behavior = getattr(handler, kind)
    if not (inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)):
        raise TypeError(f"{behavior!r} is synchronous; only asynchronous handlers can be wrapped")
    return _FACTORIES[kind](
        wrap(behavior, kind),
        request_deserializer=request_deserializer or handler.request_deserializer,
        response_serializer=handler.response_serializer,
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
    finish: Callable[[grpc.aio.ServicerContext, Any, BaseException | None], None],
    inner_context: Callable[[grpc.aio.ServicerContext, Any], Any] | None = None,
) -> grpc.RpcMethodHandler:
    """`handler` run between ``token = await start(context)`` and ``finish(context, token, error)``.

    `finish` runs once per call, after the last response (or the error), before the
    status is sent; `error` is None when the behavior returned normally. With
    `inner_context`, the behavior gets ``inner_context(context, token)`` as its context.
    """

    def wrap(behavior: Behavior, kind: str) -> Behavior:
        if inspect.isasyncgenfunction(behavior):
            async def streaming(request: Any, context: grpc.aio.ServicerContext):
                token = await start(context)
                error: BaseException | None = None
                inner = inner_context(context, token) if inner_context is not None else context
                try:
                    async with contextlib.aclosing(behavior(request, inner)) as responses:
                        async for response in responses:
                            yield response
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    finish(context, token, error)

            return streaming

        async def single(request: Any, context: grpc.aio.ServicerContext):
            token = await start(context)
            inner = inner_context(context, token) if inner_context is not None else context
            try:
                result = await behavior(request, inner)
            except BaseException as exc:
                finish(context, token, exc)
                raise
            finish(context, token, None)
            return result

        return single

    return wrap_handler(handler, wrap)


class CachedWrapper:
    """Per-method cache of wrapped handlers (a handler never changes once served)."""

    def __init__(self, build: Callable[[str, grpc.RpcMethodHandler], grpc.RpcMethodHandler]) -> None:
        self._build = build
        self._cache: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def __call__(self, method: str, handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler | None:
        if handler is None:
            return None
        cached = self._cache.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._build(method, handler)
        self._cache[method] = (handler, wrapped)
        return wrapped
