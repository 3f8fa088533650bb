"""docs/reference.md is what docs/reference.py makes of the proto comments: the reference
of every config key and Prediction field cannot drift from protos/."""

from __future__ import annotations

import importlib.util

from tests.support.server import ROOT


def _generator():
    spec = importlib.util.spec_from_file_location("docs_reference", ROOT / "docs" / "reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_reference_is_the_generated_one():
    generator = _generator()
    assert (ROOT / "docs" / "reference.md").read_text(encoding="utf-8") == generator.render(), (
        "docs/reference.md is stale: run .venv/bin/python docs/reference.py"
    )


def test_every_config_key_and_prediction_field_is_documented_with_a_comment():
    from kato_grpc._proto.kato.v1 import types_pb2

    text = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    rows = {
        line.split("|")[1].strip().strip("`"): line.split("|")[3].strip()
        for line in text.splitlines()
        if line.startswith("| `")
    }
    for message in (types_pb2.SessionConfig, types_pb2.Prediction):
        for field in message.DESCRIPTOR.fields:
            assert rows.get(field.name), f"{message.DESCRIPTOR.name}.{field.name} has no documented meaning"
