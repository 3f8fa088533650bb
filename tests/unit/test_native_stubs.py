"""`kato_grpc/_native.pyi` matches the built extension (mypy's stubtest): every class,
method and signature of the stub exists at run time and nothing is missing from it; and
the dicts the extension returns have exactly the fields the stub's TypedDicts name."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

native = pytest.importorskip("kato_grpc.kb.native")
if not native.native_available():  # pragma: no cover - depends on the build
    pytest.skip("the native extension is not built", allow_module_level=True)

from kato_grpc._native import PatternIndex  # noqa: E402
from kato_grpc.core.config import SessionConfig  # noqa: E402
from kato_grpc.core.learning import pattern_name  # noqa: E402
from kato_grpc.core.model import Anomaly, FuturePotential, Prediction  # noqa: E402

ALLOWLIST = Path(__file__).with_name("native_stubtest_allowlist.txt")


def test_the_stub_matches_the_module():
    done = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "kato_grpc._native", "--allowlist", str(ALLOWLIST)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_results_carry_every_field_by_name():
    index = PatternIndex()
    events = (("a", "b"), ("c", "d"), ("e",))
    index.put((pattern_name(events), events, 1, (), {}, {}))
    outcome = index.predict([["a", "b"], ["c", "x"]], SessionConfig(fuzzy_token_threshold=0.5), [])
    (prediction,) = outcome.predictions()
    assert set(prediction) == {f.name for f in fields(Prediction)}
    assert all(set(a) == {f.name for f in fields(Anomaly)} for a in prediction["anomalies"])
    (future,) = outcome.futures()
    assert set(future) == {f.name for f in fields(FuturePotential)}


@pytest.mark.parametrize(("key", "value"), [("rank_sort_algo", "potentail"), ("filter_pipeline", ("length", "bogus"))])
def test_an_unknown_name_is_a_value_error_naming_it(key, value):
    config = SessionConfig(**{key: value})
    bad = value if isinstance(value, str) else value[-1]
    with pytest.raises(ValueError, match=bad):
        PatternIndex().predict([["a"]], config, [])
