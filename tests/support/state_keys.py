"""Signing client-held states in tests, as a server holding the same key ring would.

Tests that hand-make a non-fresh `SessionState` (to reach a rule the API cannot reach
in a few calls, or to probe limits) sign it first, or the server refuses it as forged.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from kato_grpc._proto.kato.v1 import types_pb2 as pb
from kato_grpc.server.state_signing import DEFAULT_KEYS_FILE, StateKeyRing

__all__ = ["write_state_keys", "ring_of_data_dir", "signed"]


def write_state_keys(path: Path, *key_ids: str) -> StateKeyRing:
    """Write a key ring file with a random secret per id (the first signs); return the ring."""
    keys = [(key_id, secrets.token_bytes(32)) for key_id in key_ids]
    path.write_text(json.dumps({"keys": [{"id": key_id, "secret": secret.hex()} for key_id, secret in keys]}))
    return StateKeyRing(keys)


def ring_of_data_dir(data_dir: str | Path) -> StateKeyRing:
    """The key ring a server created in its data directory on first start."""
    return StateKeyRing.from_file(Path(data_dir) / DEFAULT_KEYS_FILE)


def signed(ring: StateKeyRing, state: pb.SessionState) -> pb.SessionState:
    """`state`, signed in place by `ring`."""
    ring.sign(state)
    return state
