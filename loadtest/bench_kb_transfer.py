"""Moving a 100k-pattern knowledge base embedded → ClickHouse → file → embedded, with the
`kato-grpc kb` command line, and checking that it comes back bit for bit.

The KB is the anchor workload's first `--patterns` patterns (../shared/bench/
anchor_workload.py), each with a frequency, an emotive window, metadata and an affinity
contribution drawn from random.Random(1) (floats of every magnitude), plus a few
vectors. Steps, each timed:

1. put into an embedded store (SqliteStore, a data directory);
2. ``kato-grpc kb copy --from <dir> --to clickhouse://…`` (progress bar on stderr);
3. ``kato-grpc kb export --from clickhouse://… -o kb.kbjsonl``;
4. ``kato-grpc kb import --to <new dir> -i kb.kbjsonl``;
5. compare the export text of the source and of the copy, line for line (floats are
   written as repr, so equal text means equal bits). Exit status 1 if they differ.

    .venv/bin/python loadtest/bench_kb_transfer.py                # 100k patterns
    .venv/bin/python loadtest/bench_kb_transfer.py --patterns 10000
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "loadtest"), "/work/shared/bench"]

KB = "anchor"


def records(count: int):
    from bench_kb_million import anchor_events

    from kato_grpc.core.learning import pattern_name
    from kato_grpc.core.model import PatternRecord

    rng = random.Random(1)
    for events in anchor_events(count):
        window = tuple(
            {"joy": rng.uniform(-1, 1) * 10 ** rng.randint(-12, 12), "calm": rng.random()}
            for _ in range(rng.randint(0, 5))
        )
        yield PatternRecord(
            name=pattern_name(events),
            events=events,
            frequency=rng.randint(1, 50),
            emotives=window,
            metadata={"source": (f"feed{rng.randrange(9)}",)} if rng.random() < 0.3 else {},
            affinity_contrib={"joy": rng.gauss(0, 1e6), "calm": -rng.random()} if window else {},
        )


def export_text(store) -> str:
    from kato_grpc.kb import transfer

    out = io.StringIO()
    transfer.export_kb(store, KB, out)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patterns", type=int, default=100_000)
    parser.add_argument("--clickhouse-url", default="", help="an existing server (default: start one on loopback)")
    args = parser.parse_args()

    from itertools import islice

    from kato_grpc.kb.sqlite import SqliteStore

    work = Path(tempfile.mkdtemp(prefix="bench-transfer-"))
    server = None
    timings = {}
    try:
        if not args.clickhouse_url:
            from tests.support.clickhouse import ClickHouseServer

            server = ClickHouseServer(work / "clickhouse").start()
            args.clickhouse_url = server.url
        url = args.clickhouse_url.rsplit("/", 1)[0] + "/transfer_bench"
        start = time.perf_counter()
        source = SqliteStore(work / "source")
        stream = records(args.patterns)
        while chunk := list(islice(stream, 10_000)):
            source.put_records(KB, chunk)
        rng = random.Random(2)
        source.put_records(KB, [], [(f"VCTR|{i}", tuple(rng.gauss(0, 1) for _ in range(8))) for i in range(100)])
        timings["fill embedded"] = time.perf_counter() - start

        def cli(step: str, *argv: str) -> None:
            began = time.perf_counter()
            subprocess.run([sys.executable, "-m", "kato_grpc", "kb", *argv], check=True, cwd=ROOT)
            timings[step] = time.perf_counter() - began

        cli("copy embedded -> ClickHouse", "copy", "--from", f"sqlite://{work / 'source'}", "--to", url, "--kb", KB)
        cli("export ClickHouse -> file", "export", "--from", url, "--kb", KB, "-o", str(work / "kb.kbjsonl"))
        cli("import file -> embedded", "import", "--to", str(work / "back"), "-i", str(work / "kb.kbjsonl"))
        before, after = export_text(source), export_text(SqliteStore(work / "back"))
        size = (work / "kb.kbjsonl").stat().st_size
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.patterns} patterns, export file {size / 2**20:.0f} MiB")
    for step, seconds in timings.items():
        print(f"  {step:<30} {seconds:>7.1f} s")
    same = before == after
    print(f"round trip bit for bit: {'yes' if same else 'NO'} ({before.count(chr(10))} lines compared)")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
