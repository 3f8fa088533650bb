"""StreamObservations: a feed of observations on one session, answered step by step.

The stream threads a client-held state in process (decoded and checked once at `open`,
signed once when it leaves in `closed`); a server-held session is stored after every
step, through the same compare-and-set runner as a unary call. A step the server rejects
(bad input, Learn on an empty memory) is answered in-band and changes nothing; the feed
goes on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
from kato_grpc.core import engine
from kato_grpc.core.errors import EmptyStmError, FieldViolation, ValidationError
from kato_grpc.core.model import Outcome, SessionState
from kato_grpc.server import convert
from kato_grpc.server.errors import map_exception, status_message
from kato_grpc.server.execution import check_budget
from kato_grpc.server.responses import PredictionsWanted, observe_response

if TYPE_CHECKING:
    from kato_grpc.server.servicer import KatoServicer


class ObservationStream:
    """The state of one StreamObservations call: which session, and its state if client-held."""

    def __init__(self, servicer: KatoServicer) -> None:
        self._servicer = servicer
        self.opened = False
        self.client_state: SessionState | None = None
        self._session_id = ""
        self._return_predictions = False
        self._wanted = PredictionsWanted()

    async def answers(self, messages: AsyncIterator[api.StreamObservationsRequest]):
        """The answer to each message in order, then (client-held) the final state."""
        async for message in messages:
            try:
                yield await self.answer(message)
            except (ValidationError, EmptyStmError) as exc:
                rejected = map_exception(exc)
                if not self.opened or rejected is None:
                    raise
                # A rejected step changed nothing: answer it in-band, keep the feed going.
                yield api.StreamObservationsResponse(error=status_message(rejected))
        if self.client_state is not None:
            yield api.StreamObservationsResponse(
                closed=api.StreamClosed(state=convert.state_to_proto(self.client_state))
            )

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
                return engine.observe(state, observation, view, servicer.limits, servicer.predictor)

            def respond(outcome: Outcome) -> api.StreamObservationsResponse:
                return api.StreamObservationsResponse(
                    observed=observe_response(outcome.result, self._return_predictions, self._wanted)
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
            outcome = await servicer.run_step(step, state, reads_kb, short=True)
            check_budget()
            return outcome

        if self.client_state is None:
            response, _ = await servicer.sessions.transact(self._session_id, stepped, respond)
            return response
        outcome = await stepped(self.client_state)
        if outcome.effects:
            await servicer.apply_effects(outcome.state.kb_id, outcome.effects)
        self.client_state = outcome.state
        return respond(outcome)

    async def _open(self, opened: api.StreamOpen) -> api.StreamObservationsResponse:
        held = opened.WhichOneof("session")
        self._wanted = PredictionsWanted.of(opened, "open.")
        if held is None:
            raise ValidationError(FieldViolation("open.session", "set either state or session_id"))
        if held == "state":
            self.client_state = await self._servicer.client_state(opened.state, "open.state")
            stm_length = len(self.client_state.stm)
        else:
            self._session_id = opened.session_id
            stm_length = len((await self._servicer.sessions.read(opened.session_id)).stm)
        self.opened = True
        self._return_predictions = opened.return_predictions
        return api.StreamObservationsResponse(opened=api.StreamOpened(stm_length=stm_length))
