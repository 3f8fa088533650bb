"""`kato-grpc kb export | import | copy` between the embedded store and a real ClickHouse.

The knowledge bases are the ones the conformance vectors build (every node of every
case, run on the pure core), plus one of awkward floats. A round trip
SQLite → ClickHouse → file → SQLite must give back every pattern, frequency, emotive
window, metadata, vector and affinity bit for bit: the export text, which writes each
float as its shortest round-trip repr, is compared line for line.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import pytest

from kato_grpc.core.learning import pattern_name
from kato_grpc.core.model import PatternRecord
from kato_grpc.kb import transfer
from kato_grpc.kb.clickhouse import ClickHouseStore
from kato_grpc.kb.sqlite import SqliteStore
from tests.conformance.core_adapter import CoreAdapter
from tests.conformance.runner import load_cases, run_case

pytestmark = pytest.mark.timeout(300)
VECTORS = Path(__file__).resolve().parents[1] / "conformance" / "vectors"
ODD = [0.1 + 0.2, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1 / 3, 1e16, 123456789.123456789]


def conformance_kbs() -> dict[str, tuple[list[PatternRecord], list]]:
    """kb id -> (records, vectors): every pattern and vector the conformance cases leave
    in their KBs, packed into a few KBs (a KB takes another's records when no name and
    no vector dimension clash), so the round trip costs a few KBs' round trips."""
    bins: list[tuple[dict[str, PatternRecord], dict[str, tuple]]] = []
    for case in load_cases(VECTORS):
        adapters: list[CoreAdapter] = []
        with contextlib.suppress(Exception):
            run_case(case, lambda: adapters.append(CoreAdapter(sleep=lambda s: None)) or adapters[-1])
        for adapter in adapters:
            for _node, kb in sorted(adapter._nodes.items()):
                records, vectors = {r.name: r for r in kb.list_patterns()}, kb.vectors()
                dims = {len(v) for v in vectors.values()}
                for held, held_vectors in bins:
                    clash = len(dims | {len(v) for v in held_vectors.values()}) > 1
                    if not (clash or held.keys() & records.keys() or held_vectors.keys() & vectors.keys()):
                        held.update(records)
                        held_vectors.update(vectors)
                        break
                else:
                    bins.append((records, dict(vectors)))
    kbs = {
        f"conformance-{i}": (sorted(held.values(), key=lambda r: r.name), sorted(held_vectors.items()))
        for i, (held, held_vectors) in enumerate(bins)
        if held
    }
    events = (("odd", "a"), ("b",))
    kbs["odd-floats"] = (
        [
            PatternRecord(
                name=pattern_name(events),
                events=events,
                frequency=7,
                emotives=tuple({"x": value, "é": -value} for value in ODD[:5]),
                metadata={"k": ("1", "v é")},
                affinity_contrib={"x": ODD[5], "y": ODD[6]},
            )
        ],
        [("VCTR|odd", tuple(ODD))],
    )
    return kbs


def export_text(store, kb_id: str) -> str:
    out = io.StringIO()
    transfer.export_kb(store, kb_id, out)
    return out.getvalue()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """An embedded store holding the conformance knowledge bases."""
    store = SqliteStore(tmp_path_factory.mktemp("source"))
    kbs = conformance_kbs()
    for kb_id, (records, vectors) in kbs.items():
        store.put_records(kb_id, records, vectors)
    yield store, sorted(kbs)
    store.close()


def test_round_trip_through_clickhouse_and_a_file_is_bit_for_bit(source, clickhouse_url, tmp_path):
    src, kb_ids = source
    assert sum(src.view(kb).pattern_count() for kb in kb_ids) > 300
    ch = ClickHouseStore(clickhouse_url)
    dst = SqliteStore(tmp_path / "back")
    for kb_id in kb_ids:
        transfer.copy_kb(src, ch, kb_id)
    fresh = ClickHouseStore(clickhouse_url)  # read back from ClickHouse itself, not the writer's index
    for kb_id in kb_ids:
        path = tmp_path / f"{kb_id}.kbjsonl"
        path.write_text(export_text(fresh, kb_id), encoding="utf-8")
        with path.open(encoding="utf-8") as lines:
            transfer.import_kb(dst, lines)
    for kb_id in kb_ids:
        assert export_text(dst, kb_id) == export_text(fresh, kb_id) == export_text(src, kb_id)
        for store in (fresh, dst):
            assert store.symbol_stats(kb_id) == src.symbol_stats(kb_id)
            assert store.symbol_affinity(kb_id, None) == src.symbol_affinity(kb_id, None)
    odd = fresh.get_pattern("odd-floats", src.list_patterns("odd-floats", "", 1)[0].name)
    assert [repr(m["x"]) for m in odd.emotives] == [repr(v) for v in ODD[:5]]  # -0.0 stays -0.0
    for store in (ch, fresh, dst):
        store.close()


def test_copy_resumes_after_an_interruption(source, clickhouse_url, monkeypatch):
    src, kb_ids = source
    kb_id = max(kb_ids, key=lambda kb: src.view(kb).pattern_count())
    total = src.view(kb_id).pattern_count()
    monkeypatch.setattr(transfer, "CHUNK", 10)
    target = ClickHouseStore(clickhouse_url)
    real, calls = target.put_records, []

    def failing(*args):
        calls.append(1)
        if len(calls) == 3:
            raise ConnectionError("lost the target half-way")
        real(*args)

    monkeypatch.setattr(target, "put_records", failing)
    with pytest.raises(ConnectionError):
        transfer.copy_kb(src, target, kb_id)
    assert target.view(kb_id).pattern_count() == 20  # two whole chunks, an exact prefix
    with pytest.raises(transfer.TransferError, match="not empty"):
        transfer.copy_kb(src, target, kb_id)
    written, _ = transfer.copy_kb(src, target, kb_id, resume=True)
    assert written == total - 20
    assert export_text(ClickHouseStore(clickhouse_url), kb_id) == export_text(src, kb_id)
    target.close()


def test_the_command_line_copies_exports_and_imports(source, clickhouse_url, tmp_path):
    src, _kb_ids = source
    kb_id = "odd-floats"

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "kato_grpc", "kb", *args, "--no-progress"],
            capture_output=True,
            text=True,
            timeout=120,
        )

    copied = run("copy", "--from", f"sqlite://{src.path.parent}", "--to", clickhouse_url, "--kb", kb_id)
    assert copied.returncode == 0, copied.stderr
    assert "copied 1 patterns and 1 vectors" in copied.stderr
    exported = run("export", "--from", clickhouse_url, "--kb", kb_id, "-o", str(tmp_path / "odd.kbjsonl"))
    assert exported.returncode == 0, exported.stderr
    imported = run("import", "--to", str(tmp_path / "dst"), "-i", str(tmp_path / "odd.kbjsonl"))
    assert imported.returncode == 0, imported.stderr
    assert export_text(SqliteStore(tmp_path / "dst"), kb_id) == export_text(src, kb_id)
    truncated = tmp_path / "cut.kbjsonl"
    truncated.write_text("".join((tmp_path / "odd.kbjsonl").read_text().splitlines(True)[:-1]))
    refused = run("import", "--to", str(tmp_path / "dst2"), "-i", str(truncated))
    assert refused.returncode == 2 and "truncated" in refused.stderr
