"""The state key ring (kato_grpc/server/state_signing.py): sign, verify, files, defaults."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass

import pytest

from kato_grpc._proto.kato.v1 import types_pb2 as pb
from kato_grpc.server.errors import KatoError
from kato_grpc.server.state_signing import StateKeyRing, is_fresh, load_state_keys


@dataclass
class FakeSettings:
    data_dir: str
    state_keys_file: str = ""


def state() -> pb.SessionState:
    made = pb.SessionState(kb_id="k", stm=[pb.Event(symbols=["a"])], time=1)
    made.emotive_acc.add().values.update({"b": 1.0, "a": 2.0})
    return made


def test_a_signed_state_verifies_and_keeps_its_signature():
    ring = StateKeyRing([("k1", b"s" * 32)])
    signed = state()
    ring.sign(signed)
    assert signed.signature_key_id == "k1" and len(signed.signature) == 32
    before = signed.SerializeToString()
    ring.verify(signed)
    assert signed.SerializeToString() == before  # left as it came


def test_map_order_on_the_wire_does_not_matter():
    ring = StateKeyRing([("k1", b"s" * 32)])
    signed = state()
    ring.sign(signed)
    reordered = pb.SessionState()
    reordered.ParseFromString(signed.SerializeToString(deterministic=False))
    ring.verify(reordered)


def test_the_first_key_signs_and_every_key_verifies():
    old, new = StateKeyRing([("old", b"o" * 32)]), StateKeyRing([("new", b"n" * 32), ("old", b"o" * 32)])
    by_old = state()
    old.sign(by_old)
    new.verify(by_old)
    by_new = state()
    new.sign(by_new)
    assert by_new.signature_key_id == "new"
    with pytest.raises(KatoError) as raised:
        old.verify(by_new)
    assert raised.value.reason == "STATE_KEY_UNKNOWN"


def test_missing_and_wrong_signatures_are_refused_but_a_fresh_state_is_not():
    ring = StateKeyRing([("k1", b"s" * 32)])
    with pytest.raises(KatoError) as missing:
        ring.verify(state())
    assert missing.value.reason == "STATE_SIGNATURE_MISSING"
    forged = state()
    ring.sign(forged)
    forged.time = 2
    with pytest.raises(KatoError) as wrong:
        ring.verify(forged)
    assert wrong.value.reason == "STATE_SIGNATURE_INVALID" and wrong.value.violations[0].field == "state.signature"
    fresh = pb.SessionState(kb_id="k", config=pb.SessionConfig(recall_threshold=0.5))
    assert is_fresh(fresh)
    ring.verify(fresh)


@pytest.mark.parametrize(
    "content, why",
    [
        ("not json", "Expecting value"),
        ('{"keys": []}', "at least one key"),
        ('{"keys": [{"id": "a", "secret": "zz"}]}', "non-hexadecimal"),
        ('{"keys": [{"id": "a", "secret": "abcd"}]}', "at least 16"),
        (
            '{"keys": [{"id": "a", "secret": "' + "ab" * 16 + '"}, {"id": "a", "secret": "' + "cd" * 16 + '"}]}',
            "unique",
        ),
    ],
)
def test_a_broken_keys_file_says_what_is_wrong(tmp_path, content, why):
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=why):
        StateKeyRing.from_file(path)


def test_the_default_ring_is_created_once_private_and_kept(tmp_path):
    settings = FakeSettings(data_dir=str(tmp_path / "data"))
    first = load_state_keys(settings)
    path = tmp_path / "data" / "state-keys.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_state_keys(settings).signing_key_id == first.signing_key_id
    assert len(json.loads(path.read_text())["keys"]) == 1
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["state-keys.json"]  # no temporary left
