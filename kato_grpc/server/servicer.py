"""`kato.v1.KatoService`: thin methods over the pure core.

Every session method does the same four things: decode the request, run one core
function on the caller's state (client-held) or the stored one (server-held, through
the compare-and-set runner), apply the effects to the knowledge base, encode. Nothing
about a session is kept on `self`.

The event loop only routes: engine work runs on the cpu lane (`_cpu`), knowledge-store
calls on the kb lane (`_store_read`, `_store_write`), each within the call's deadline
(server/execution.py).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import grpc

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
from kato_grpc._proto.kato.v1 import kato_service_pb2_grpc as api_grpc
from kato_grpc._proto.kato.v1 import types_pb2 as pb
from kato_grpc.core import engine
from kato_grpc.core.engine import Predictor
from kato_grpc.core.errors import EmptyStmError, FieldViolation, NotFoundError, ValidationError
from kato_grpc.core.learning import PATTERN_PREFIX, strip_prefix
from kato_grpc.core.model import Limits, Outcome, SessionState
from kato_grpc.core.observation import validate_state
from kato_grpc.core.predict import predict_patterns
from kato_grpc.kb.base import KnowledgeStore
from kato_grpc.server import convert, tracing
from kato_grpc.server.errors import KatoError, rich_status, status_for_exception, status_message
from kato_grpc.server.execution import (
    NORMAL,
    URGENT,
    BackendTimeout,
    DeadlineExceeded,
    KbGuard,
    Lane,
    check_budget,
    start_budget,
)
from kato_grpc.sessions.base import StoreUnavailable
from kato_grpc.sessions.request_ids import RequestAlreadyApplied
from kato_grpc.sessions.runner import ConflictExhausted, SessionRunner

__all__ = ["KatoServicer", "validate_kb_id"]

_KB_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_NAME = re.compile(r"[0-9a-f]{40}")
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_TTL_SECONDS = 2_592_000
MAX_REQUEST_ID_CHARS = 128


def validate_kb_id(kb_id: str, field: str = "kb_id") -> str:
    if not _KB_ID.fullmatch(kb_id or ""):
        raise ValidationError(FieldViolation(field, f"{kb_id[:40]!r} must be 1-128 characters of A-Z a-z 0-9 _ . : -"))
    return kb_id


def _pattern_name(name: str, field: str = "name") -> str:
    bare = strip_prefix(name)
    if not _NAME.fullmatch(bare):
        raise ValidationError(
            FieldViolation(field, f"{name[:60]!r} must be 40 lowercase hex digits, optionally prefixed PTRN|")
        )
    return bare


def _map_exception(exc: BaseException) -> KatoError | None:
    if isinstance(exc, ConflictExhausted):
        return KatoError(grpc.StatusCode.ABORTED, "CONFLICT", str(exc))
    if isinstance(exc, (StoreUnavailable, BackendTimeout)):
        return KatoError(grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE", str(exc))
    if isinstance(exc, DeadlineExceeded):
        return KatoError(grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", str(exc))
    if isinstance(exc, RequestAlreadyApplied):
        return KatoError(grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ALREADY_APPLIED", str(exc), metadata=exc.metadata)
    return status_for_exception(exc)


def _rpc(method: Callable) -> Callable:
    """Turn domain exceptions into rich gRPC statuses; honour an expired deadline."""

    @functools.wraps(method)
    async def wrapper(self, request, context: grpc.aio.ServicerContext):
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed before the call started")
        start_budget(remaining)
        try:
            return await method(self, request, context)
        except Exception as exc:
            error = _map_exception(exc)
            if error is None:
                raise
        await context.abort_with_status(rich_status(error))

    return wrapper


def _request_id(request) -> str:
    """The request's `request_id` ("" for none or a request without one), at most 128 characters."""
    request_id = getattr(request, "request_id", "")
    if len(request_id) > MAX_REQUEST_ID_CHARS:
        raise ValidationError(
            FieldViolation(
                "request_id", f"{len(request_id)} characters exceed {MAX_REQUEST_ID_CHARS} (a UUID4 is recommended)"
            )
        )
    return request_id


def _client_origin(request, request_id: str) -> tuple[str, int] | None:
    """The key under which the knowledge base counts a client-held call's effects once.

    A client-held call is identified by its request id together with the method and the
    state it carries (its signature, or the fresh state itself): a retry sends both again,
    and two clients that happen to pick the same id never share a key.
    """
    if not request_id:
        return None
    identity = request.state.signature or request.state.SerializeToString(deterministic=True)
    digest = hashlib.sha256(b"\0".join((request.DESCRIPTOR.full_name.encode(), request_id.encode(), identity)))
    return "request:" + digest.hexdigest()[:40], 1


Step = Callable[[SessionState, Any], Outcome]
"""A state-changing core call: (state, knowledge view or None) -> outcome; runs on the cpu lane."""


class KatoServicer(api_grpc.KatoServiceServicer):
    def __init__(
        self,
        kb: KnowledgeStore,
        sessions: SessionRunner | None,
        limits: Limits,
        *,
        cpu: Lane,
        kb_lane: Lane,
        guard: KbGuard,
        predictor: Predictor = predict_patterns,
    ) -> None:
        self._kb = kb
        self._runner = sessions
        self._limits = limits
        self._predictor = predictor
        self._cpu_lane = cpu
        self._kb_lane = kb_lane
        self._guard = guard

    def use_sessions(self, sessions: SessionRunner) -> None:
        """The runner of server-held sessions (it applies effects through `apply_effects`,
        so it is built after the servicer and handed over here)."""
        self._runner = sessions

    @property
    def _sessions(self) -> SessionRunner:
        if self._runner is None:
            raise RuntimeError("KatoServicer.use_sessions() was not called")
        return self._runner

    # --- where work runs ----------------------------------------------------------------
    async def _cpu(self, kb_id: str, fn: Callable, *args, urgent: bool = False, **kwargs):
        """Engine work on the cpu lane, reading knowledge base `kb_id`'s index; `urgent` work
        (known to be short) goes ahead of the long work queued."""
        tracing.note_kb(kb_id)
        return await self._cpu_lane.run(URGENT if urgent else NORMAL, self._guarded_read, (kb_id, fn, args, kwargs), {})

    def _guarded_read(self, kb_id: str, fn: Callable, args: tuple, kwargs: dict):
        with self._guard.reading(kb_id):
            return fn(*args, **kwargs)

    async def _store_read(self, kb_id: str, fn: Callable, *args):
        """A knowledge-store read (`view`, `get_pattern`, ...) on the kb lane."""
        tracing.note_kb(kb_id)
        return await self._kb_lane(self._guarded_store, self._guard.store_reading, kb_id, fn, args)

    async def _store_write(self, kb_id: str, fn: Callable, *args):
        """A knowledge-store write on the kb lane, sent only while the call is still wanted.

        A store that refreshes its index on every access (ClickHouse) is read first, on its
        own: a back end that stalls is then found by that read, whose call is abandoned
        before any write is sent (a write job, once running, cannot be withdrawn).
        """
        tracing.note_kb(kb_id)
        if self._guard.refreshes_on_read:
            await self._view(kb_id)
        check_budget()
        return await self._kb_lane(self._guarded_store, self._guard.store_writing, kb_id, fn, args)

    @staticmethod
    def _guarded_store(lock: Callable, kb_id: str, fn: Callable, args: tuple):
        with lock(kb_id):
            check_budget()  # the lock may have been held long: is the call still waiting?
            return fn(*args)

    async def _view(self, kb_id: str):
        tracing.note_kb(kb_id)
        return await self._kb_lane(self._guarded_store, self._guard.fetching_view, kb_id, self._kb.view, (kb_id,))

    async def apply_effects(self, kb_id: str, effects, origin: tuple[str, int] | None = None) -> None:
        """Apply a call's effects; `origin` makes them count once (sessions/runner.py, "Exactly once")."""
        await self._store_write(kb_id, self._kb.apply, kb_id, effects, origin)

    def _step_and_respond(self, step: Step, respond: Callable[[Outcome, bool], Any], state: SessionState, view):
        with self._guard.reading(state.kb_id):
            outcome = step(state, view)
        return outcome, respond(outcome, True)

    async def _run_step(self, step: Step, state: SessionState, reads_kb: bool, short: bool = False) -> Outcome:
        """`short`: the step is short unless the session computes predictions (one Observe)."""
        if not reads_kb:  # learn, clear, config: a few microseconds, not worth a thread hop
            return step(state, None)
        view = await self._view(state.kb_id)
        return await self._cpu(state.kb_id, step, state, view, urgent=short and not state.config.process_predictions)

    # --- plumbing ----------------------------------------------------------------------
    async def _client_state(self, request) -> SessionState:
        """The request's client-held state, checked."""
        state = convert.state_from_proto(request.state)
        await self._validate_client_state(state, "state")
        return state

    async def _validate_client_state(self, state: SessionState, prefix: str) -> None:
        """A state from a client, signed or fresh, still obeys every input rule (defence in depth).

        Pending vectors are checked against the KB's dimension, fetched on the kb lane: a
        view may query the store (ClickHouse), which must never block the event loop."""
        validate_kb_id(state.kb_id, f"{prefix}.kb_id")
        kb_dim = (await self._view(state.kb_id)).vector_dimension() if state.pending_vectors else None
        validate_state(state, self._limits, kb_dim, prefix)

    def _session_id(self, request) -> str:
        if request.WhichOneof("session") is None:
            raise ValidationError(
                FieldViolation("session", "set either state (client-held) or session_id (server-held)")
            )
        return request.session_id

    async def _transition(
        self,
        request,
        step: Step,
        respond: Callable[[Outcome, bool], Any],
        response_type,
        reads_kb: bool = True,
        short: bool = False,
    ):
        """Run a state-changing step on whichever state the request names (`short`: see `_run_step`)."""
        request_id = _request_id(request)
        if request.WhichOneof("session") == "state":
            state = await self._client_state(request)
            if reads_kb:  # the response (the new state, maybe predictions) is encoded on the cpu lane too
                view = await self._view(state.kb_id)
                priority = URGENT if short and not state.config.process_predictions else NORMAL
                outcome, response = await self._cpu_lane.run(
                    priority, self._step_and_respond, (step, respond, state, view), {}
                )
            else:
                outcome = step(state, None)
                response = respond(outcome, True)
            check_budget()
            if outcome.effects:
                await self.apply_effects(outcome.state.kb_id, outcome.effects, _client_origin(request, request_id))
            return response
        session_id = self._session_id(request)

        async def stepped(state: SessionState) -> Outcome:
            outcome = await self._run_step(step, state, reads_kb, short)
            check_budget()
            return outcome

        response, replay = await self._sessions.transact(session_id, stepped, lambda o: respond(o, False), request_id)
        return response if replay is None else response_type.FromString(replay)

    async def _read_state(self, request) -> SessionState:
        if request.WhichOneof("session") == "state":
            return await self._client_state(request)
        return await self._sessions.read(self._session_id(request))

    def _with_state(self, response, outcome: Outcome, include: bool):
        if include:
            convert.state_to_proto(outcome.state, response.state)
        return response

    # --- session operations ----------------------------------------------------------
    @_rpc
    async def Observe(self, request: api.ObserveRequest, context):
        observation = convert.observation_from_proto(request.observation if request.HasField("observation") else None)

        def step(state: SessionState, view) -> Outcome:
            return engine.observe(state, observation, view, self._limits, self._predictor)

        def respond(outcome: Outcome, include_state: bool) -> api.ObserveResponse:
            response = observe_response(outcome.result, request.return_predictions)
            if include_state:
                state = outcome.state
                if request.return_predictions:  # they are the new state's last predictions: encode once
                    state = replace(state, last_predictions=convert.EncodedPredictions(response.predictions))
                convert.state_to_proto(state, response.state)
            return response

        return await self._transition(request, step, respond, api.ObserveResponse, short=True)

    @_rpc
    async def ObserveSequence(self, request: api.ObserveSequenceRequest, context):
        if len(request.observations) > self._limits.max_observations_per_sequence:
            from kato_grpc.core.errors import LimitExceeded

            raise LimitExceeded(
                FieldViolation(
                    "observations",
                    f"{len(request.observations)} observations exceed max_observations_per_sequence="
                    f"{self._limits.max_observations_per_sequence}",
                )
            )
        observations = [convert.observation_from_proto(o) for o in request.observations]

        def step(state: SessionState, view) -> Outcome:
            return engine.observe_sequence(
                state,
                observations,
                view,
                learn_after_each=request.learn_after_each,
                learn_at_end=request.learn_at_end,
                clear_stm_between=request.clear_stm_between,
                limits=self._limits,
                predictor=self._predictor,
            )

        def respond(outcome: Outcome, include_state: bool) -> api.ObserveSequenceResponse:
            r = outcome.result
            response = api.ObserveSequenceResponse(
                observations_processed=r.observations_processed,
                initial_stm_length=r.initial_stm_length,
                final_stm_length=r.final_stm_length,
                auto_learned_patterns=list(r.auto_learned_patterns),
                final_learned_pattern=r.final_learned_pattern,
            )
            for item in r.results:
                response.results.add(
                    sequence_position=item.sequence_position,
                    stm_length=item.stm_length,
                    time=item.time,
                    unique_id=item.unique_id,
                    auto_learned_pattern=item.auto_learned_pattern,
                )
            return self._with_state(response, outcome, include_state)

        return await self._transition(request, step, respond, api.ObserveSequenceResponse)

    @_rpc
    async def Learn(self, request: api.LearnRequest, context):
        def respond(outcome: Outcome, include_state: bool) -> api.LearnResponse:
            return self._with_state(api.LearnResponse(pattern_name=outcome.result), outcome, include_state)

        return await self._transition(
            request, lambda s, _view: engine.learn(s), respond, api.LearnResponse, reads_kb=False
        )

    @_rpc
    async def Predict(self, request: api.PredictRequest, context):
        state = await self._read_state(request)
        view = await self._view(state.kb_id)
        return await self._cpu(state.kb_id, predict_response, state, view, self._predictor)

    @_rpc
    async def ClearStm(self, request: api.ClearStmRequest, context):
        def respond(outcome: Outcome, include_state: bool) -> api.ClearStmResponse:
            return self._with_state(api.ClearStmResponse(), outcome, include_state)

        return await self._transition(
            request,
            lambda s, _view: Outcome(state=engine.clear_stm(s)),
            respond,
            api.ClearStmResponse,
            reads_kb=False,
        )

    @_rpc
    async def ClearAll(self, request: api.ClearAllRequest, context):
        def respond(outcome: Outcome, include_state: bool) -> api.ClearAllResponse:
            return self._with_state(api.ClearAllResponse(), outcome, include_state)

        return await self._transition(
            request,
            lambda s, _view: engine.clear_all(s),
            respond,
            api.ClearAllResponse,
            reads_kb=False,
        )

    @_rpc
    async def GetStm(self, request: api.GetStmRequest, context):
        response = api.GetStmResponse()
        convert.events_to_proto((await self._read_state(request)).stm, response.stm)
        return response

    @_rpc
    async def GetPerceptData(self, request: api.GetPerceptDataRequest, context):
        state = await self._read_state(request)
        response = api.GetPerceptDataResponse()
        if state.percept is not None:
            convert.percept_to_proto(state.percept, response.percept)
        return response

    @_rpc
    async def GetCognitionData(self, request: api.GetCognitionDataRequest, context):
        state = await self._read_state(request)
        data = engine.cognition_data(state)
        response = api.GetCognitionDataResponse(emotives=data["emotives"], symbols=data["symbols"], time=data["time"])
        convert.predictions_to_proto(state.last_predictions, response, "predictions")
        convert.events_to_proto(state.stm, response.short_term_memory)
        return response

    @_rpc
    async def UpdateConfig(self, request: api.UpdateConfigRequest, context):
        overrides = convert.overrides_from_proto(request.config)

        def respond(outcome: Outcome, include_state: bool) -> api.UpdateConfigResponse:
            response = api.UpdateConfigResponse()
            convert.config_to_proto(outcome.state.config, response.config)
            return self._with_state(response, outcome, include_state)

        return await self._transition(
            request,
            lambda s, _view: Outcome(state=engine.update_config(s, overrides)),
            respond,
            api.UpdateConfigResponse,
            reads_kb=False,
        )

    @_rpc
    async def GetConfig(self, request: api.GetConfigRequest, context):
        response = api.GetConfigResponse()
        convert.config_to_proto((await self._read_state(request)).config, response.config)
        return response

    # --- knowledge base ------------------------------------------------------------------
    @_rpc
    async def GetPattern(self, request: api.GetPatternRequest, context):
        kb_id = validate_kb_id(request.kb_id)
        name = _pattern_name(request.name)
        record = await self._store_read(kb_id, self._kb.get_pattern, kb_id, name)
        if record is None:
            raise _pattern_not_found(kb_id, name)
        response = api.GetPatternResponse()
        convert.pattern_to_proto(record, response.pattern)
        return response

    @_rpc
    async def ListPatterns(self, request: api.ListPatternsRequest, context):
        kb_id = validate_kb_id(request.kb_id)
        if request.page_size < 0:
            raise ValidationError(FieldViolation("page_size", f"{request.page_size} must not be negative"))
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = _read_page_token(request.page_token, kb_id)
        records = await self._store_read(kb_id, self._kb.list_patterns, kb_id, after, size + 1)
        response = api.ListPatternsResponse()
        for record in records[:size]:
            convert.pattern_to_proto(record, response.patterns.add())
        if len(records) > size:
            response.next_page_token = _page_token(kb_id, records[size - 1].name)
        return response

    @_rpc
    async def UpdatePattern(self, request: api.UpdatePatternRequest, context):
        kb_id = validate_kb_id(request.kb_id)
        name = _pattern_name(request.name)
        paths = (
            set(request.update_mask.paths)
            if request.HasField("update_mask")
            else {
                path
                for path, present in (
                    ("frequency", request.frequency != 0),
                    ("emotives", len(request.emotives) > 0),
                    ("metadata", len(request.metadata) > 0),
                )
                if present
            }
        )
        if "*" in paths:  # the proto documents `*` as all three
            paths = paths - {"*"} | {"frequency", "emotives", "metadata"}
        unknown = paths - {"frequency", "emotives", "metadata"}
        violations = [
            FieldViolation("update_mask", f"unknown path {p!r}; paths are frequency, emotives, metadata or *")
            for p in sorted(unknown)
        ]
        if "frequency" in paths and request.frequency < 1:
            violations.append(FieldViolation("frequency", f"{request.frequency} must be >= 1"))
        if "emotives" in paths:
            if len(request.emotives) > 100:
                violations.append(FieldViolation("emotives", f"{len(request.emotives)} entries exceed 100"))
            for i, entry in enumerate(request.emotives):
                for key, value in entry.values.items():
                    if not key or not math.isfinite(value):
                        violations.append(
                            FieldViolation(
                                f"emotives[{i}]", f"{key!r}: {value!r} needs a non-empty name and a finite value"
                            )
                        )
        if not paths:
            violations.append(FieldViolation("update_mask", "nothing to update: set frequency, emotives or metadata"))
        if violations:
            raise ValidationError(violations)
        update = functools.partial(
            self._kb.update_pattern,
            kb_id,
            name,
            frequency=request.frequency if "frequency" in paths else None,
            emotives=[convert.emotives_from_proto(e.values) for e in request.emotives] if "emotives" in paths else None,
            metadata={k: list(v.values) for k, v in request.metadata.items()} if "metadata" in paths else None,
        )
        try:
            record = await self._store_write(kb_id, update)
        except NotFoundError:
            raise _pattern_not_found(kb_id, name) from None
        response = api.UpdatePatternResponse()
        convert.pattern_to_proto(record, response.pattern)
        return response

    @_rpc
    async def DeletePattern(self, request: api.DeletePatternRequest, context):
        kb_id = validate_kb_id(request.kb_id)
        name = _pattern_name(request.name)
        try:
            await self._store_write(kb_id, self._kb.delete_pattern, kb_id, name)
        except NotFoundError:
            raise _pattern_not_found(kb_id, name) from None
        return api.DeletePatternResponse()

    @_rpc
    async def GetSymbolStats(self, request: api.GetSymbolStatsRequest, context):
        kb_id = validate_kb_id(request.kb_id)
        stats = await self._store_read(kb_id, self._kb.symbol_stats, kb_id)
        response = api.GetSymbolStatsResponse(
            total_unique_patterns=stats.total_unique_patterns,
            total_pattern_frequencies=stats.total_pattern_frequencies,
            total_symbols_in_patterns_frequencies=stats.total_symbols_in_patterns_frequencies,
        )
        for symbol, frequency, pmf in stats.symbols:
            response.symbol_stats.add(symbol=symbol, frequency=frequency, pattern_member_frequency=pmf)
        return response

    @_rpc
    async def GetSymbolAffinity(self, request: api.GetSymbolAffinityRequest, context):
        kb_id = validate_kb_id(request.kb_id)
        response = api.GetSymbolAffinityResponse()
        if request.HasField("symbol"):
            affinities = {
                request.symbol: await self._store_read(kb_id, self._kb.symbol_affinity, kb_id, request.symbol)
            }
        else:
            affinities = await self._store_read(kb_id, self._kb.symbol_affinity, kb_id, None)
        for symbol, values in affinities.items():
            response.symbol_affinities.add(symbol=symbol, affinities=values)
        return response

    @_rpc
    async def ClearKnowledgeBase(self, request: api.ClearKnowledgeBaseRequest, context):
        kb_id = validate_kb_id(request.kb_id)
        await self._store_write(kb_id, self._kb.clear, kb_id)
        return api.ClearKnowledgeBaseResponse()

    @_rpc
    async def FinalizeTraining(self, request: api.FinalizeTrainingRequest, context):
        kb_id = validate_kb_id(request.kb_id)
        stats = await self._store_read(kb_id, self._kb.symbol_stats, kb_id)
        return api.FinalizeTrainingResponse(patterns_processed=stats.total_unique_patterns)

    # --- server-held sessions ----------------------------------------------------------
    def _session_message(self, record, out: pb.Session) -> pb.Session:
        state = self._sessions.state_of(record)
        out.session_id = record.session_id
        out.kb_id = record.kb_id
        out.ttl_seconds = record.ttl_seconds
        if record.metadata:
            out.metadata.ParseFromString(record.metadata)
        convert.config_to_proto(state.config, out.config)
        out.expires_at.FromNanoseconds(int(record.expires_at * 1e9))
        return out

    @_rpc
    async def CreateSession(self, request: api.CreateSessionRequest, context):
        kb_id = validate_kb_id(request.kb_id)
        ttl = request.ttl_seconds if request.HasField("ttl_seconds") else self._sessions.default_ttl
        if not 1 <= ttl <= MAX_TTL_SECONDS:
            raise ValidationError(FieldViolation("ttl_seconds", f"{ttl} must be in [1, {MAX_TTL_SECONDS}]"))
        state = engine.new_session(kb_id)
        if request.HasField("config"):
            state = engine.update_config(state, convert.overrides_from_proto(request.config))
        metadata = request.metadata.SerializeToString(deterministic=True) if request.HasField("metadata") else b""
        record = await self._sessions.create(state, ttl, metadata)
        response = api.CreateSessionResponse()
        self._session_message(record, response.session)
        return response

    @_rpc
    async def GetSession(self, request: api.GetSessionRequest, context):
        response = api.GetSessionResponse()
        self._session_message(await self._sessions.access(request.session_id), response.session)
        return response

    @_rpc
    async def DeleteSession(self, request: api.DeleteSessionRequest, context):
        await self._sessions.delete(request.session_id)
        return api.DeleteSessionResponse()

    @_rpc
    async def ExtendSession(self, request: api.ExtendSessionRequest, context):
        if not 1 <= request.ttl_seconds <= MAX_TTL_SECONDS:
            raise ValidationError(
                FieldViolation("ttl_seconds", f"{request.ttl_seconds} must be in [1, {MAX_TTL_SECONDS}]")
            )
        record = await self._sessions.extend(request.session_id, request.ttl_seconds)
        response = api.ExtendSessionResponse()
        self._session_message(record, response.session)
        return response

    @_rpc
    async def UpdateSessionConfig(self, request: api.UpdateSessionConfigRequest, context):
        overrides = convert.overrides_from_proto(request.config)

        def respond(outcome: Outcome) -> api.UpdateSessionConfigResponse:
            response = api.UpdateSessionConfigResponse()
            convert.config_to_proto(outcome.state.config, response.config)
            return response

        async def step(state: SessionState) -> Outcome:
            return Outcome(state=engine.update_config(state, overrides))

        response, _replay = await self._sessions.transact(request.session_id, step, respond)
        return response

    @_rpc
    async def SessionExists(self, request: api.SessionExistsRequest, context):
        status = await self._sessions.exists(request.session_id)
        return api.SessionExistsResponse(exists=status.exists, expired=status.expired)

    # --- streaming -----------------------------------------------------------------------
    async def StreamObservations(self, request_iterator, context: grpc.aio.ServicerContext):
        """Answer each step of an observation feed in order (see the proto)."""
        start_budget(context.time_remaining())
        stream = _Stream(self)
        try:
            async for message in request_iterator:
                try:
                    yield await stream.answer(message)
                except (ValidationError, EmptyStmError) as exc:
                    rejected = _map_exception(exc)
                    if not stream.opened or rejected is None:
                        raise
                    # A rejected step changed nothing: answer it in-band, keep the feed going.
                    yield api.StreamObservationsResponse(error=status_message(rejected))
            if stream.client_state is not None:
                yield api.StreamObservationsResponse(
                    closed=api.StreamClosed(state=convert.state_to_proto(stream.client_state))
                )
        except Exception as exc:
            error = _map_exception(exc)
            if error is None:
                raise
            await context.abort_with_status(rich_status(error))


class _Stream:
    """The state of one StreamObservations call: which session, and its state if client-held."""

    def __init__(self, servicer: KatoServicer) -> None:
        self._servicer = servicer
        self.opened = False
        self.client_state: SessionState | None = None
        self._session_id = ""
        self._return_predictions = False

    async def answer(self, message: api.StreamObservationsRequest) -> api.StreamObservationsResponse:
        kind = message.WhichOneof("step")
        if not self.opened:
            if kind != "open":
                raise ValidationError(FieldViolation("step", "the first message of a stream must be `open`"))
            return await self._open(message.open)
        if kind == "open" or kind is None:
            raise ValidationError(FieldViolation("step", "after `open`, send observation, learn or clear_stm"))
        servicer = self._servicer
        reads_kb = kind == "observation"
        if kind == "observation":
            observation = convert.observation_from_proto(message.observation)

            def step(state: SessionState, view) -> Outcome:
                return engine.observe(state, observation, view, servicer._limits, servicer._predictor)

            def respond(outcome: Outcome) -> api.StreamObservationsResponse:
                return api.StreamObservationsResponse(
                    observed=observe_response(outcome.result, self._return_predictions)
                )
        elif kind == "learn":

            def step(state: SessionState, view) -> Outcome:
                return engine.learn(state)

            def respond(outcome: Outcome) -> api.StreamObservationsResponse:
                return api.StreamObservationsResponse(learned=api.LearnResponse(pattern_name=outcome.result))
        else:

            def step(state: SessionState, view) -> Outcome:
                return Outcome(state=engine.clear_stm(state))

            def respond(outcome: Outcome) -> api.StreamObservationsResponse:
                return api.StreamObservationsResponse(cleared=api.ClearStmResponse())

        async def stepped(state: SessionState) -> Outcome:
            outcome = await servicer._run_step(step, state, reads_kb, short=True)
            check_budget()
            return outcome

        if self.client_state is None:
            response, _ = await servicer._sessions.transact(self._session_id, stepped, respond)
            return response
        outcome = await stepped(self.client_state)
        if outcome.effects:
            await servicer.apply_effects(outcome.state.kb_id, outcome.effects)
        self.client_state = outcome.state
        return respond(outcome)

    async def _open(self, opened: api.StreamOpen) -> api.StreamObservationsResponse:
        held = opened.WhichOneof("session")
        if held is None:
            raise ValidationError(FieldViolation("open.session", "set either state or session_id"))
        if held == "state":
            self.client_state = convert.state_from_proto(opened.state, prefix="open.state")
            await self._servicer._validate_client_state(self.client_state, "open.state")
            stm_length = len(self.client_state.stm)
        else:
            self._session_id = opened.session_id
            stm_length = len((await self._servicer._sessions.read(opened.session_id)).stm)
        self.opened = True
        self._return_predictions = opened.return_predictions
        return api.StreamObservationsResponse(opened=api.StreamOpened(stm_length=stm_length))


def predict_response(state: SessionState, view, predictor: Predictor) -> api.PredictResponse:
    """Predict's core call and its encoding (the costly part), together on the cpu lane."""
    result = engine.predict(state, view, predictor)
    response = api.PredictResponse()
    convert.predictions_to_proto(result.predictions, response, "predictions")
    convert.future_potentials_to_proto(result.future_potentials, response, "future_potentials")
    return response


def observe_response(result, return_predictions: bool) -> api.ObserveResponse:
    """An ObserveResponse without state: the result, and the predictions when asked."""
    response = api.ObserveResponse(
        stm_length=result.stm_length,
        time=result.time,
        unique_id=result.unique_id,
        auto_learned_pattern=result.auto_learned_pattern,
    )
    if return_predictions:
        convert.predictions_to_proto(result.predictions, response, "predictions")
        convert.future_potentials_to_proto(result.future_potentials, response, "future_potentials")
    return response


def _pattern_not_found(kb_id: str, name: str) -> KatoError:
    return KatoError(
        grpc.StatusCode.NOT_FOUND,
        "PATTERN_NOT_FOUND",
        f"pattern {PATTERN_PREFIX}{name} is not in knowledge base {kb_id!r}",
        metadata={"kbId": kb_id, "patternName": name},
    )


def _page_token(kb_id: str, after: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"kb": kb_id, "after": after}).encode()).decode()


def _read_page_token(token: str, kb_id: str) -> str:
    if not token:
        return ""
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        if data["kb"] == kb_id:
            return str(data["after"])
    except (ValueError, KeyError, TypeError):
        pass
    raise ValidationError(
        FieldViolation(
            "page_token", f"is not a token this server issued for kb_id {kb_id!r}; pass next_page_token unchanged"
        )
    )
