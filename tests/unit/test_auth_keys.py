"""API key files and key rules (kato_grpc/server/auth.py), without a server."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import pytest

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
from kato_grpc.server.auth import (
    METHOD_ROLES,
    ApiKey,
    KeyFileError,
    KeyRing,
    Role,
    hash_key,
    load_keys_file,
    parse_keys,
)

DIGEST = hashlib.sha256(b"secret-key").hexdigest()


def entry(**changes):
    return {"name": "team-a", "key_sha256": DIGEST, "kb_ids": ["team-a-*", "shared"], "role": "write", **changes}


def test_hash_key_is_the_sha256_hex_digest_of_the_key():
    assert hash_key("secret-key") == DIGEST
    if shutil.which("sha256sum"):
        done = subprocess.run(["sha256sum"], input=b"secret-key", capture_output=True, check=True)
        assert done.stdout.split()[0].decode() == DIGEST


def test_a_json_keys_file(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [entry()]}))
    assert load_keys_file(path) == {DIGEST: ApiKey("team-a", ("team-a-*", "shared"), Role.WRITE)}


def test_a_json_list_keys_file(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps([entry(role="read")]))
    assert load_keys_file(path)[DIGEST].role is Role.READ


def test_a_toml_keys_file(tmp_path):
    path = tmp_path / "keys.toml"
    path.write_text(f'[[keys]]\nname = "team-a"\nkey_sha256 = "{DIGEST.upper()}"\nkb_ids = ["*"]\nrole = "ADMIN"\n')
    assert load_keys_file(path) == {DIGEST: ApiKey("team-a", ("*",), Role.ADMIN)}


@pytest.mark.parametrize(
    "bad, message",
    [
        (entry(key_sha256="secret-key"), "key_sha256 must be 64 hex digits"),
        (entry(role="owner"), "role 'owner' must be read, write or admin"),
        (entry(kb_ids=[]), "kb_ids must be a non-empty list"),
        (entry(kb_ids="team-a-*"), "kb_ids must be a non-empty list"),
        (entry(name=""), "name must be a non-empty string"),
        (entry(kb_id=["x"]), "unknown field(s) kb_id"),
        ("just a string", "must be a table/object"),
    ],
)
def test_a_bad_entry_is_named_and_explained(bad, message):
    with pytest.raises(KeyFileError, match="keys\\[0\\]") as raised:
        parse_keys([bad])
    assert message in str(raised.value)


def test_names_and_digests_are_unique():
    other = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(KeyFileError, match="used twice"):
        parse_keys([entry(), entry(key_sha256=other)])
    with pytest.raises(KeyFileError, match="the same key_sha256"):
        parse_keys([entry(), entry(name="team-b")])


def test_unreadable_and_malformed_files_are_errors(tmp_path):
    with pytest.raises(KeyFileError, match="cannot read keys file"):
        load_keys_file(tmp_path / "missing.json")
    bad = tmp_path / "keys.json"
    bad.write_text("{")
    with pytest.raises(KeyFileError, match="not valid JSON"):
        load_keys_file(bad)
    bad.write_text(json.dumps({"key": []}))
    with pytest.raises(KeyFileError, match="unknown top-level field"):
        load_keys_file(bad)


def test_kb_patterns_are_case_sensitive_whole_id_globs():
    key = ApiKey("k", ("team-a-*", "shared", "exact-[0-9]"), Role.READ)
    assert key.allows_kb("team-a-1") and key.allows_kb("team-a-") and key.allows_kb("shared")
    assert key.allows_kb("exact-7")
    for kb_id in ("team-a", "TEAM-A-1", "team-ab", "shared2", "xshared", "exact-x", ""):
        assert not key.allows_kb(kb_id), kb_id


def test_roles_are_ordered_and_every_rpc_has_one():
    assert Role.READ < Role.WRITE < Role.ADMIN
    assert set(METHOD_ROLES) == set(api.DESCRIPTOR.services_by_name["KatoService"].methods_by_name)
    assert METHOD_ROLES["Predict"] is Role.READ
    assert METHOD_ROLES["CreateSession"] is Role.WRITE
    assert {m for m, r in METHOD_ROLES.items() if r is Role.ADMIN} == {
        "ClearKnowledgeBase",
        "ClearAll",
        "ListKnowledgeBases",
    }


def test_a_session_is_owned_by_its_key_name_and_ownerless_ones_by_admins():
    writer, admin = ApiKey("w", ("*",), Role.WRITE), ApiKey("a", ("*",), Role.ADMIN)
    assert writer.owns("w") and not writer.owns("a") and not writer.owns("")
    assert admin.owns("") and not admin.owns("w")


def test_a_key_ring_reloads_and_keeps_its_keys_on_a_bad_file(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps([entry()]))
    ring = KeyRing(str(path))
    assert ring.lookup("secret-key").name == "team-a"
    assert ring.lookup("other-key") is None
    path.write_text(json.dumps([entry(name="renamed")]))
    assert ring.reload() and ring.lookup("secret-key").name == "renamed"
    path.write_text("not json")
    assert not ring.reload()
    assert ring.lookup("secret-key").name == "renamed"
