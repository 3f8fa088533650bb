"""How server-held session stores hold a `SessionState`: deterministic `kato.v1.SessionState` bytes.

The same bytes a client-held call carries: the session, not its last answer (the last
Observe's predictions are computed again by GetCognitionData from `cognition_basis`).
"""

from __future__ import annotations

from kato_grpc._proto.kato.v1 import types_pb2 as pb
from kato_grpc.core.model import SessionState
from kato_grpc.server import convert
from kato_grpc.sessions.runner import Codec

__all__ = ["STATE_CODEC", "encode_state", "decode_state"]


def encode_state(state: SessionState) -> bytes:
    return convert.serialize_state(convert.state_to_proto(state))


def decode_state(data: bytes) -> SessionState:
    return convert.state_from_proto(pb.SessionState.FromString(data))


STATE_CODEC = Codec(encode=encode_state, decode=decode_state)
