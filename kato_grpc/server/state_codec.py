"""How server-held session stores hold a `SessionState`: deterministic `kato.v1.SessionState` bytes.

A transition (Observe, Learn, ...) decodes the stored state without its
`last_predictions`: the core never reads them in a transition, it only replaces them
(Observe) or clears them (ClearStm). They stay as the parsed messages and are copied
back unchanged when the step left them alone, exactly as a client-held call carries the
request's predictions over (`convert.state_from_proto(decode_predictions=False)`).
Decoding and re-encoding them in Python would otherwise cost more than the rest of the
call (about 2 ms each way for 20 predictions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from kato_grpc._proto.kato.v1 import types_pb2 as pb
from kato_grpc.core.model import SessionState
from kato_grpc.server import convert
from kato_grpc.sessions.runner import Codec

__all__ = ["STATE_CODEC", "encode_state", "decode_state", "decode_for_step", "encode_after_step"]


class _StoredPredictions(tuple):
    """An empty tuple standing for the stored `last_predictions`, kept as messages."""

    def __new__(cls, messages: Sequence[pb.Prediction]) -> _StoredPredictions:
        self = super().__new__(cls)
        self.messages = messages
        return self


def encode_state(state: SessionState) -> bytes:
    return convert.serialize_state(convert.state_to_proto(state))


def decode_state(data: bytes) -> SessionState:
    return convert.state_from_proto(pb.SessionState.FromString(data))


def decode_for_step(data: bytes) -> SessionState:
    """The state for a transition; `last_predictions` reads as empty until replaced."""
    msg = pb.SessionState.FromString(data)
    state = convert.state_from_proto(msg, decode_predictions=False)
    if not msg.last_predictions:
        return state
    return replace(state, last_predictions=_StoredPredictions(msg.last_predictions))


def encode_after_step(state: SessionState) -> bytes:
    """`encode_state`, copying stored predictions the step did not replace."""
    kept = state.last_predictions
    if isinstance(kept, _StoredPredictions):
        msg = convert.state_to_proto(replace(state, last_predictions=()), predictions=kept.messages)
        return convert.serialize_state(msg)
    return encode_state(state)


STATE_CODEC = Codec(
    encode=encode_state, decode=decode_state, decode_for_step=decode_for_step, encode_after_step=encode_after_step
)
