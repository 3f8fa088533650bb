"""Building the responses that carry predictions: each crosses the wire once, as much as asked.

A caller chooses how many predictions come back (`max_predictions` on the request, at
most the session's own) and how much of each (`prediction_view`, AIP-157): BASIC keeps
what a feed acting on what comes next reads, FULL the whole explanation. Both only cut
the response: the engine's work, the ranking and the future potentials are those of the
session's configuration, so a smaller answer is a prefix of the full one, never another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
from kato_grpc._proto.kato.v1 import types_pb2 as pb
from kato_grpc.core import engine
from kato_grpc.core.engine import Predictor
from kato_grpc.core.errors import FieldViolation, ValidationError
from kato_grpc.core.model import FuturePotential, ObserveResult, Prediction, SessionState
from kato_grpc.server import convert

BASIC_FIELDS = ("type", "name", "frequency", "future", "potential")
_VIEWS = frozenset(pb.PredictionView.values())


@dataclass(frozen=True)
class PredictionsWanted:
    """How many predictions a caller wants back (0: all) and how much of each."""

    limit: int = 0
    basic: bool = False

    @classmethod
    def of(cls, request: Any, prefix: str = "") -> PredictionsWanted:
        """Read and check a request's `max_predictions` and `prediction_view`."""
        if request.max_predictions < 0:
            raise ValidationError(
                FieldViolation(f"{prefix}max_predictions", f"{request.max_predictions} must be 0 (all) or more")
            )
        if request.prediction_view not in _VIEWS:
            raise ValidationError(
                FieldViolation(
                    f"{prefix}prediction_view", f"{request.prediction_view} is not a PredictionView (BASIC or FULL)"
                )
            )
        return cls(request.max_predictions, request.prediction_view == pb.PREDICTION_VIEW_BASIC)


FULL = PredictionsWanted()


def add_predictions(
    predictions: Sequence[Prediction],
    future_potentials: Sequence[FuturePotential],
    response: Any,
    wanted: PredictionsWanted = FULL,
) -> None:
    """Encode predictions and future potentials into `response`, cut to what is `wanted`."""
    convert.predictions_to_proto(predictions, response, "predictions")
    convert.future_potentials_to_proto(future_potentials, response, "future_potentials")
    encoded = response.predictions
    if wanted.limit and len(encoded) > wanted.limit:
        del encoded[wanted.limit :]
    if wanted.basic:
        basic = [_basic(p) for p in encoded]
        del encoded[:]
        encoded.extend(basic)


def _basic(full: pb.Prediction) -> pb.Prediction:
    basic = pb.Prediction(type=full.type, name=full.name, frequency=full.frequency, potential=full.potential)
    basic.future.extend(full.future)
    return basic


def observe_response(
    result: ObserveResult, return_predictions: bool, wanted: PredictionsWanted = FULL
) -> api.ObserveResponse:
    """An ObserveResponse without state: the result, and the predictions when asked."""
    response = api.ObserveResponse(
        stm_length=result.stm_length,
        time=result.time,
        unique_id=result.unique_id,
        auto_learned_pattern=result.auto_learned_pattern,
    )
    if return_predictions:
        add_predictions(result.predictions, result.future_potentials, response, wanted)
    return response


def predict_response(
    state: SessionState, view: Any, predictor: Predictor, wanted: PredictionsWanted = FULL
) -> api.PredictResponse:
    """Predict's core call and its encoding (the costly part), together on the cpu lane."""
    result = engine.predict(state, view, predictor)
    response = api.PredictResponse()
    add_predictions(result.predictions, result.future_potentials, response, wanted)
    return response


def cognition_response(state: SessionState, view: Any, predictor: Predictor) -> api.GetCognitionDataResponse:
    """GetCognitionData's core call (it predicts again: the state does not carry them) and its encoding."""
    data = engine.cognition_data(state, view, predictor)
    response = api.GetCognitionDataResponse(emotives=data["emotives"], symbols=data["symbols"], time=data["time"])
    convert.predictions_to_proto(data["predictions"], response, "predictions")
    convert.events_to_proto(state.stm, response.short_term_memory)
    return response
