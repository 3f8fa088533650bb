"""Session-state size: the server limits on a client-held state, and the size reported back.

A client-held `SessionState` travels with every call and grows with the STM and the
emotive / metadata accumulators. The engine keeps a state it writes within the limits
(``--max-stm-events``, ``--max-accumulator-entries``, ...: the oldest entries are
dropped), but a state arriving from a client was written by the client. So, before the
servicer sees it, `StateSizeInterceptor` rejects a client-held state (``state`` of a
request, ``open.state`` of a stream) over the limits with RESOURCE_EXHAUSTED
(``LIMIT_EXCEEDED``, one field violation per limit: ``state.stm`` over
``max_stm_events``, ``state.stm[3].symbols`` over ``max_symbols_per_event`` plus
``max_vectors_per_observation`` (an event holds an observation's strings and its vector
names), ``state.emotive_acc`` / ``state.metadata_acc`` over
``max_accumulator_entries``), nothing done. Symbol sizes are not checked here (vector
names are longer than a small ``max_symbol_bytes``); the whole request is bounded by
``--max-request-bytes``.

Every session call then reports the serialized size of the session state it ended
with, in bytes, as ``x-kato-state-bytes`` trailing metadata (and to the metrics): the
state returned (client-held writes), the state sent (client-held reads), or the stored
record (server-held calls, measured where the session store's codec encodes or decodes
it; see `measuring_codec`). Clients watch it to see a state approach the request limit.
"""

from __future__ import annotations

import contextlib
from typing import Any

import grpc

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
from kato_grpc.core.errors import FieldViolation, LimitExceeded
from kato_grpc.core.model import Limits, SessionState
from kato_grpc.server import request_context
from kato_grpc.server.errors import rich_status, status_for_exception
from kato_grpc.server.handlers import Interceptor, Method, peek
from kato_grpc.sessions.runner import Codec

__all__ = ["StateSizeInterceptor", "state_violations", "measuring_codec", "note_state_bytes", "STATE_BYTES_HEADER"]

STATE_BYTES_HEADER = "x-kato-state-bytes"
_SERVICE = api.DESCRIPTOR.services_by_name["KatoService"]
KATO_SERVICE = _SERVICE.full_name


def state_violations(state, limits: Limits, prefix: str = "state") -> list[FieldViolation]:
    """Every way a `kato.v1.SessionState` message exceeds `limits` (empty if none)."""
    violations = []
    if len(state.stm) > limits.max_stm_events:
        violations.append(
            FieldViolation(f"{prefix}.stm", f"{len(state.stm)} events exceed max_stm_events={limits.max_stm_events}")
        )
    # An event holds the observation's strings plus one `VCTR|…` name per vector.
    per_event = limits.max_symbols_per_event + limits.max_vectors_per_observation
    for i, event in enumerate(state.stm):
        if len(event.symbols) > per_event:
            violations.append(
                FieldViolation(
                    f"{prefix}.stm[{i}].symbols",
                    f"{len(event.symbols)} symbols exceed"
                    f" max_symbols_per_event + max_vectors_per_observation={per_event}",
                )
            )
    for name in ("emotive_acc", "metadata_acc"):
        count = len(getattr(state, name))
        if count > limits.max_accumulator_entries:
            violations.append(
                FieldViolation(
                    f"{prefix}.{name}",
                    f"{count} entries exceed max_accumulator_entries={limits.max_accumulator_entries}",
                )
            )
    return violations


def note_state_bytes(size: int) -> None:
    """Record the size of the session state the current call holds (last one wins)."""
    info = request_context.current()
    if info is not None:
        info.state_bytes = size


def measuring_codec(codec: Codec) -> Codec:
    """`codec`, noting the size of every state it encodes or decodes for the current call."""

    def encode(state: SessionState) -> bytes:
        data = codec.encode(state)
        note_state_bytes(len(data))
        return data

    def decode(data: bytes) -> SessionState:
        note_state_bytes(len(data))
        return codec.decode(data)

    return Codec(encode=encode, decode=decode)


def _response_state_bytes(request: Any, response: Any) -> int | None:
    if response is not None and "state" in response.DESCRIPTOR.fields_by_name and response.HasField("state"):
        return response.state.ByteSize()
    if "session" in request.DESCRIPTOR.oneofs_by_name and request.WhichOneof("session") == "state":
        return request.state.ByteSize()
    return None


class StateSizeInterceptor(Interceptor):
    """Rejects client-held states over the limits; reports `x-kato-state-bytes`.

    Its plan for a KatoService method: whether the method's request may hold a state.
    """

    def __init__(self, limits: Limits) -> None:
        super().__init__()
        self._limits = limits

    def prepare(self, method: Method, handler: grpc.RpcMethodHandler) -> bool | None:
        if method.service != KATO_SERVICE:
            return None
        return "session" in _SERVICE.methods_by_name[method.name].input_type.oneofs_by_name

    async def unary_unary(self, request, context, plan: bool, call_next):
        if plan and request.WhichOneof("session") == "state":
            await self._check(request.state, "state", context)
        response = await call_next(request, context)
        self._report(context, _response_state_bytes(request, response))
        return response

    async def stream_stream(self, requests, context, plan: bool, call_next):
        peeked = await peek(requests)
        if peeked is None:
            return
        first, requests = peeked
        if (
            isinstance(first, api.StreamObservationsRequest)
            and first.WhichOneof("step") == "open"
            and first.open.WhichOneof("session") == "state"
        ):
            await self._check(first.open.state, "open.state", context)
        size = None
        async with contextlib.aclosing(call_next(requests, context)) as responses:
            async for response in responses:
                if isinstance(response, api.StreamObservationsResponse) and response.HasField("closed"):
                    size = response.closed.state.ByteSize()
                yield response
        self._report(context, size)

    async def _check(self, state: Any, field: str, context: grpc.aio.ServicerContext) -> None:
        """Abort the call with RESOURCE_EXHAUSTED if `state` is over the limits."""
        violations = state_violations(state, self._limits, field)
        if violations:
            await context.abort_with_status(rich_status(status_for_exception(LimitExceeded(violations))))

    def _report(self, context: grpc.aio.ServicerContext, size: int | None) -> None:
        info = request_context.current()
        if size is None and info is not None:
            size = info.state_bytes
        if size is None:
            return
        if info is not None:
            info.state_bytes = size
        context.set_trailing_metadata(((STATE_BYTES_HEADER, str(size)),))
