"""`kato.v1.KatoService`: thin methods over the pure core.

Every session method does the same four things: decode the request, run one core
function on the caller's state (client-held) or the stored one (server-held, through
the compare-and-set runner), apply the effects to the knowledge base, encode. Nothing
about a session is kept on `self`.

The event loop only routes: engine work runs on the cpu lane (`_cpu`, `_with_view`: one
job decodes and checks a client-held state, steps and encodes the response),
knowledge-store calls on the kb lane (`_store_read`, `_store_write`), each within the
call's deadline (server/execution.py). Beside it: what a request must hold
(server/requests.py), responses that carry predictions (server/responses.py) and the
observation stream (server/streaming.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
from kato_grpc._proto.kato.v1 import kato_service_pb2_grpc as api_grpc
from kato_grpc._proto.kato.v1 import types_pb2 as pb
from kato_grpc.core import engine
from kato_grpc.core.engine import Predictor
from kato_grpc.core.errors import FieldViolation, NotFoundError, ValidationError
from kato_grpc.core.model import Limits, Outcome, SessionState
from kato_grpc.core.observation import metadata_violations, validate_state
from kato_grpc.core.predict import predict_patterns
from kato_grpc.kb.base import KnowledgeStore
from kato_grpc.server import convert, knowledge_bases, tracing
from kato_grpc.server.errors import map_exception, rich_status
from kato_grpc.server.execution import (
    NORMAL,
    URGENT,
    KbGuard,
    Lane,
    check_budget,
    start_budget,
)
from kato_grpc.server.requests import (
    bare_pattern_name,
    client_origin,
    page_size_of,
    page_token,
    pattern_not_found,
    pattern_update_paths,
    predicts_nothing,
    read_page_token,
    request_id_of,
    session_id_of,
    ttl_of,
    validate_kb_id,
)
from kato_grpc.server.responses import PredictionsWanted, cognition_response, observe_response, predict_response
from kato_grpc.server.streaming import ObservationStream
from kato_grpc.sessions.runner import SessionRunner

__all__ = ["KatoServicer"]


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
            error = map_exception(exc)
            if error is None:
                raise
        await context.abort_with_status(rich_status(error))

    return wrapper


T = TypeVar("T")

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
        self.limits = limits
        self.predictor = predictor
        self._cpu_lane = cpu
        self._kb_lane = kb_lane
        self._guard = guard

    def use_sessions(self, sessions: SessionRunner) -> None:
        """The runner of server-held sessions (it applies effects through `apply_effects`,
        so it is built after the servicer and handed over here)."""
        self._runner = sessions

    @property
    def sessions(self) -> SessionRunner:
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

    async def _with_view(self, kb_id: str, work: Callable[[Any], T], urgent: bool = False) -> T:
        """`work(view)` on the cpu lane under the KB's read guard: one hop per call.

        Where the view is the index in memory (the embedded store), it is looked up in the
        same job; a store that refreshes its index from a shared back end on every read
        (ClickHouse) is read on the kb lane first, so a stalled back end holds a kb thread,
        never an engine one."""
        if self._guard.refreshes_on_read:
            view = await self._view(kb_id)
            return await self._cpu(kb_id, work, view, urgent=urgent)
        return await self._cpu(kb_id, self._on_own_view, kb_id, work, urgent=urgent)

    def _on_own_view(self, kb_id: str, work: Callable[[Any], T]) -> T:
        return work(self._kb.view(kb_id))

    async def run_step(self, step: Step, state: SessionState, reads_kb: bool, short: bool = False) -> Outcome:
        """`short`: the step is short unless the session computes predictions (one Observe)."""
        if not reads_kb:  # learn, clear, config: a few microseconds, not worth a thread hop
            return step(state, None)
        urgent = short and not state.config.process_predictions
        return await self._with_view(state.kb_id, lambda view: step(state, view), urgent)

    # --- plumbing ----------------------------------------------------------------------
    def _checked_state(self, message: pb.SessionState, prefix: str, view) -> SessionState:
        """A client-held state, decoded and checked: signed or fresh, it still obeys every
        input rule (defence in depth). Pending vectors are checked against `view`'s dimension."""
        state = convert.state_from_proto(message, prefix=prefix)
        validate_state(state, self.limits, view.vector_dimension() if state.pending_vectors else None, prefix)
        return state

    async def client_state(self, message: pb.SessionState, prefix: str = "state") -> SessionState:
        """A client-held state, decoded and checked on the cpu lane (its cost grows with the state)."""
        kb_id = validate_kb_id(message.kb_id, f"{prefix}.kb_id")
        if message.pending_vectors:
            return await self._with_view(kb_id, lambda view: self._checked_state(message, prefix, view), urgent=True)
        return await self._cpu(kb_id, self._checked_state, message, prefix, None, urgent=True)

    async def _transition(
        self,
        request,
        step: Step,
        respond: Callable[[Outcome, bool], Any],
        response_type,
        reads_kb: bool = True,
        short: bool = False,
    ):
        """Run a state-changing step on whichever state the request names (`short`: see `_run_step`).

        Client-held: decode, check, step and encode the response in one cpu-lane job, then
        apply the effects. Server-held: the same step inside the session runner's
        compare-and-set (sessions/runner.py)."""
        request_id = request_id_of(request)
        if request.WhichOneof("session") == "state":
            message = request.state
            kb_id = validate_kb_id(message.kb_id, "state.kb_id")

            def job(view) -> tuple[Outcome, Any]:
                outcome = step(self._checked_state(message, "state", view), view)
                return outcome, respond(outcome, True)

            if reads_kb or message.pending_vectors:
                outcome, response = await self._with_view(kb_id, job, urgent=short and predicts_nothing(message))
            else:
                outcome, response = await self._cpu(kb_id, job, None, urgent=True)
            check_budget()
            if outcome.effects:
                await self.apply_effects(outcome.state.kb_id, outcome.effects, client_origin(request, request_id))
            return response
        session_id = session_id_of(request)

        async def stepped(state: SessionState) -> Outcome:
            outcome = await self.run_step(step, state, reads_kb, short)
            check_budget()
            return outcome

        response, replay = await self.sessions.transact(session_id, stepped, lambda o: respond(o, False), request_id)
        return response if replay is None else response_type.FromString(replay)

    async def _read_with_view(self, request, work: Callable[[SessionState, Any], T]) -> T:
        """`work(state, view)` for a read of the request's session, in one cpu-lane job
        (a client-held state is decoded and checked in it too)."""
        if request.WhichOneof("session") == "state":
            message = request.state
            kb_id = validate_kb_id(message.kb_id, "state.kb_id")
            return await self._with_view(kb_id, lambda view: work(self._checked_state(message, "state", view), view))
        state = await self.sessions.read(session_id_of(request))
        return await self._with_view(state.kb_id, lambda view: work(state, view))

    async def _read_state(self, request) -> SessionState:
        if request.WhichOneof("session") == "state":
            return await self.client_state(request.state)
        return await self.sessions.read(session_id_of(request))

    def _with_state(self, response, outcome: Outcome, include: bool):
        if include:
            convert.state_to_proto(outcome.state, response.state)
        return response

    # --- session operations ----------------------------------------------------------
    @_rpc
    async def Observe(self, request: api.ObserveRequest, context):
        observation = convert.observation_from_proto(request.observation if request.HasField("observation") else None)
        wanted = PredictionsWanted.of(request)

        def step(state: SessionState, view) -> Outcome:
            return engine.observe(state, observation, view, self.limits, self.predictor)

        def respond(outcome: Outcome, include_state: bool) -> api.ObserveResponse:
            response = observe_response(outcome.result, request.return_predictions, wanted)
            return self._with_state(response, outcome, include_state)

        return await self._transition(request, step, respond, api.ObserveResponse, short=True)

    @_rpc
    async def ObserveSequence(self, request: api.ObserveSequenceRequest, context):
        if len(request.observations) > self.limits.max_observations_per_sequence:
            from kato_grpc.core.errors import LimitExceeded

            raise LimitExceeded(
                FieldViolation(
                    "observations",
                    f"{len(request.observations)} observations exceed max_observations_per_sequence="
                    f"{self.limits.max_observations_per_sequence}",
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
                limits=self.limits,
                predictor=self.predictor,
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
        wanted = PredictionsWanted.of(request)
        return await self._read_with_view(
            request, lambda state, view: predict_response(state, view, self.predictor, wanted)
        )

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
        return await self._read_with_view(request, lambda state, view: cognition_response(state, view, self.predictor))

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
        name = bare_pattern_name(request.name)
        record = await self._store_read(kb_id, self._kb.get_pattern, kb_id, name)
        if record is None:
            raise pattern_not_found(kb_id, name)
        response = api.GetPatternResponse()
        convert.pattern_to_proto(record, response.pattern)
        return response

    @_rpc
    async def ListPatterns(self, request: api.ListPatternsRequest, context):
        kb_id = validate_kb_id(request.kb_id)
        size = page_size_of(request)
        after = read_page_token(request.page_token, kb_id)
        records = await self._store_read(kb_id, self._kb.list_patterns, kb_id, after, size + 1)
        response = api.ListPatternsResponse()
        for record in records[:size]:
            convert.pattern_to_proto(record, response.patterns.add())
        if len(records) > size:
            response.next_page_token = page_token(kb_id, records[size - 1].name)
        return response

    @_rpc
    async def UpdatePattern(self, request: api.UpdatePatternRequest, context):
        kb_id = validate_kb_id(request.kb_id)
        name = bare_pattern_name(request.name)
        paths = pattern_update_paths(request)
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
            raise pattern_not_found(kb_id, name) from None
        response = api.UpdatePatternResponse()
        convert.pattern_to_proto(record, response.pattern)
        return response

    @_rpc
    async def DeletePattern(self, request: api.DeletePatternRequest, context):
        kb_id = validate_kb_id(request.kb_id)
        name = bare_pattern_name(request.name)
        try:
            await self._store_write(kb_id, self._kb.delete_pattern, kb_id, name)
        except NotFoundError:
            raise pattern_not_found(kb_id, name) from None
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

    @_rpc
    async def ListKnowledgeBases(self, request: api.ListKnowledgeBasesRequest, context):
        return await knowledge_bases.list_page(request, functools.partial(self._kb_lane, self._kb.knowledge_bases))

    # --- server-held sessions ----------------------------------------------------------
    def _session_message(self, record, out: pb.Session) -> pb.Session:
        state = self.sessions.state_of(record)
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
        ttl = ttl_of(request.ttl_seconds if request.HasField("ttl_seconds") else self.sessions.default_ttl)
        state = engine.new_session(kb_id)
        if request.HasField("config"):
            state = engine.update_config(state, convert.overrides_from_proto(request.config))
        if request.HasField("metadata") and (
            bad := metadata_violations(convert.struct_to_dict(request.metadata), "metadata")
        ):
            raise ValidationError(bad)
        metadata = request.metadata.SerializeToString(deterministic=True) if request.HasField("metadata") else b""
        record = await self.sessions.create(state, ttl, metadata)
        response = api.CreateSessionResponse()
        self._session_message(record, response.session)
        return response

    @_rpc
    async def GetSession(self, request: api.GetSessionRequest, context):
        response = api.GetSessionResponse()
        self._session_message(await self.sessions.access(request.session_id), response.session)
        return response

    @_rpc
    async def DeleteSession(self, request: api.DeleteSessionRequest, context):
        await self.sessions.delete(request.session_id)
        return api.DeleteSessionResponse()

    @_rpc
    async def ExtendSession(self, request: api.ExtendSessionRequest, context):
        record = await self.sessions.extend(request.session_id, ttl_of(request.ttl_seconds))
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

        response, _replay = await self.sessions.transact(request.session_id, step, respond)
        return response

    @_rpc
    async def SessionExists(self, request: api.SessionExistsRequest, context):
        status = await self.sessions.exists(request.session_id)
        return api.SessionExistsResponse(exists=status.exists, expired=status.expired)

    # --- streaming -----------------------------------------------------------------------
    async def StreamObservations(self, request_iterator, context: grpc.aio.ServicerContext):
        """Answer each step of an observation feed in order (see the proto and server/streaming.py)."""
        start_budget(context.time_remaining())
        try:
            async for answer in ObservationStream(self).answers(request_iterator):
                yield answer
        except Exception as exc:
            error = map_exception(exc)
            if error is None:
                raise
            await context.abort_with_status(rich_status(error))
