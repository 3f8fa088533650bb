"""Moving knowledge bases between stores: ``kato-grpc kb export | import | copy``.

    kato-grpc kb export --from sqlite:///var/lib/kato --kb main -o main.kbjsonl
    kato-grpc kb import --to clickhouse://ch:9000/kato -i main.kbjsonl
    kato-grpc kb copy --from /var/lib/kato --to clickhouse://ch:9000/kato --kb main

Store URLs: ``sqlite:///path/to/data-dir`` or a bare data directory (the embedded store,
``<dir>/kato.db``), ``clickhouse://host:port/database`` (any clickhouse-driver URL).

The export format (``kato-kb`` JSON lines, version 1), one JSON object per line:

    {"format": "kato-kb", "version": 1, "kb_id": "main"}                       header, first
    {"type": "pattern", "name": "…", "events": [["a"], ["b"]], "frequency": 3,
     "emotives": [{"joy": 0.5}], "metadata": {"k": ["v"]}, "affinity_contrib": {"joy": 1.5}}
    {"type": "vector", "name": "VCTR|…", "vector": [0.25, -1.0]}
    {"type": "end", "patterns": 2, "vectors": 1}                                 trailer, last

Patterns come in ascending name order, then vectors in name order. Floats are written as
Python's ``repr`` (shortest text that reads back to the same double), so every value
round-trips bit for bit; non-finite values (never valid as emotives) would appear as
``NaN`` / ``Infinity``. Emotive maps keep their key order. The trailer's counts let an
import refuse a truncated file. A reader must reject a header whose version it does not
know; a later version may add fields, and version-1 readers ignore fields they do not know.

Writing is **resumable**, not atomic: records are written whole (never re-derived by
replaying learns), in name order, in chunks of `CHUNK` per commit, each commit atomic.
An interrupted import or copy leaves the target holding an exact prefix of the source;
running it again with ``--resume`` skips every record the target already holds
identically and writes the rest. (Atomic would mean staging a whole KB and swapping it
in; neither store can swap a KB, and a million-pattern copy is safer continued than
restarted.) The target KB must be empty unless ``--resume``; do not serve it until the
copy has finished.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from kato_grpc.core.model import PatternRecord

__all__ = ["FORMAT", "FORMAT_VERSION", "open_store", "export_kb", "import_kb", "copy_kb", "add_cli", "run_cli"]

FORMAT = "kato-kb"
FORMAT_VERSION = 1
CHUNK = 5000
"""Records per commit when writing a KB."""

Vector = tuple[float, ...]


class TransferError(Exception):
    """A file or store that cannot be read or written as asked (exit code 2)."""


def open_store(url: str):
    """The store a URL names: ``clickhouse://…``, ``sqlite:///dir`` or a bare directory."""
    if url.startswith(("clickhouse://", "clickhouses://")):
        from kato_grpc.kb.clickhouse import ClickHouseStore

        return ClickHouseStore(url)
    from kato_grpc.kb.sqlite import SqliteStore

    path = url[len("sqlite://") :] if url.startswith("sqlite://") else url
    if not path:
        raise TransferError(f"{url!r}: name the data directory, e.g. sqlite:///var/lib/kato")
    return SqliteStore(Path(path))


# --- reading a store -------------------------------------------------------------------
def records_of(store, kb_id: str) -> Iterator[PatternRecord]:
    """The KB's patterns in name order, streamed where the store can."""
    if hasattr(store, "iter_records"):
        yield from store.iter_records(kb_id)
        return
    after = ""
    while page := store.list_patterns(kb_id, after, CHUNK):
        yield from page
        after = page[-1].name


def vectors_of(store, kb_id: str) -> list[tuple[str, Vector]]:
    vectors = store.iter_vectors(kb_id) if hasattr(store, "iter_vectors") else store.view(kb_id).vectors().items()
    return sorted(vectors)


def require_kb(store, kb_id: str) -> None:
    """A KB to read must exist: a mistyped id would otherwise export or copy nothing
    and look like success. Asked cheaply where the store can (no index is built)."""
    count = count_of(store, kb_id)
    if count is None:
        view = store.view(kb_id)
        found = bool(view.pattern_count()) or view.vector_dimension() is not None
    else:
        found = count > 0 or bool(vectors_of(store, kb_id))
    if not found:
        raise TransferError(
            f"knowledge base {kb_id!r} does not exist in the source store (it holds no pattern and no vector)"
        )


def count_of(store, kb_id: str) -> int | None:
    """Patterns in the KB, if the store can say cheaply (for the progress bar)."""
    return store.pattern_count(kb_id) if hasattr(store, "pattern_count") else None


# --- the format --------------------------------------------------------------------------
def _line(value: dict) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n"


def pattern_line(r: PatternRecord) -> str:
    return _line(
        {
            "type": "pattern",
            "name": r.name,
            "events": [list(e) for e in r.events],
            "frequency": r.frequency,
            "emotives": [dict(m) for m in r.emotives],
            "metadata": {k: list(v) for k, v in r.metadata.items()},
            "affinity_contrib": dict(r.affinity_contrib),
        }
    )


def pattern_from(obj: dict) -> PatternRecord:
    return PatternRecord(
        name=obj["name"],
        events=tuple(tuple(e) for e in obj["events"]),
        frequency=obj["frequency"],
        emotives=tuple(obj["emotives"]),
        metadata={k: tuple(v) for k, v in obj["metadata"].items()},
        affinity_contrib=obj["affinity_contrib"],
    )


def export_kb(store, kb_id: str, out: IO[str], progress=None) -> tuple[int, int]:
    """Write the KB to `out` in the kato-kb format; (patterns, vectors) written."""
    out.write(_line({"format": FORMAT, "version": FORMAT_VERSION, "kb_id": kb_id}))
    patterns = 0
    for record in records_of(store, kb_id):
        out.write(pattern_line(record))
        patterns += 1
        if progress is not None:
            progress.update(1)
    vectors = vectors_of(store, kb_id)
    for name, vector in vectors:
        out.write(_line({"type": "vector", "name": name, "vector": list(vector)}))
    out.write(_line({"type": "end", "patterns": patterns, "vectors": len(vectors)}))
    return patterns, len(vectors)


def read_header(lines: Iterator[str]) -> dict:
    first = next(lines, "")
    try:
        header = json.loads(first)
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise TransferError(f"not a {FORMAT} file: the first line must be its header")
    if header.get("version") != FORMAT_VERSION:
        raise TransferError(
            f"{FORMAT} version {header.get('version')!r} is not supported (this reads {FORMAT_VERSION})"
        )
    return header


def parse_body(lines: Iterable[str]) -> Iterator[PatternRecord | tuple[str, Vector]]:
    """Patterns and (name, vector) pairs of a file after its header; raises at the end
    if the trailer is missing or its counts disagree (a truncated or edited file)."""
    patterns = vectors = 0
    for number, line in enumerate(lines, start=2):
        obj = json.loads(line)
        kind = obj.get("type")
        if kind == "pattern":
            patterns += 1
            yield pattern_from(obj)
        elif kind == "vector":
            vectors += 1
            yield obj["name"], tuple(obj["vector"])
        elif kind == "end":
            if (obj.get("patterns"), obj.get("vectors")) != (patterns, vectors):
                raise TransferError(
                    f"line {number}: the trailer counts {obj.get('patterns')} patterns and"
                    f" {obj.get('vectors')} vectors, the file holds {patterns} and {vectors}"
                )
            return
        else:
            raise TransferError(f"line {number}: unknown line type {kind!r}")
    raise TransferError("the file ends without its trailer line: truncated?")


# --- writing a store ---------------------------------------------------------------------
def write_kb(
    store, kb_id: str, items: Iterable[PatternRecord | tuple[str, Vector]], *, resume: bool = False, progress=None
) -> tuple[int, int]:
    """Put whole records (and vectors) into the KB, `CHUNK` per commit; with `resume`,
    skip records the KB already holds identically. (patterns, vectors) written."""
    view = store.view(kb_id)
    if not resume and (view.pattern_count() or view.vector_dimension() is not None):
        raise TransferError(f"knowledge base {kb_id!r} is not empty; use --resume to continue an interrupted copy")
    written = [0, 0]
    records: list[PatternRecord] = []
    vectors: list[tuple[str, Vector]] = []

    def flush() -> None:
        if records or vectors:
            store.put_records(kb_id, records, vectors)
            written[0] += len(records)
            written[1] += len(vectors)
        if progress is not None:
            progress.update(len(records))
        records.clear()
        vectors.clear()

    for item in items:
        if isinstance(item, PatternRecord):
            if not resume or view.get_pattern(item.name) != item:
                records.append(item)
            elif progress is not None:
                progress.update(1)
        else:
            vectors.append(item)
        if len(records) + len(vectors) >= CHUNK:
            flush()
    flush()
    return written[0], written[1]


def import_kb(
    store, lines: Iterable[str], kb_id: str | None = None, *, resume: bool = False, progress=None
) -> tuple[int, int]:
    lines = iter(lines)
    header = read_header(lines)
    return write_kb(store, kb_id or header["kb_id"], parse_body(lines), resume=resume, progress=progress)


def copy_kb(
    source, target, kb_id: str, to_kb: str | None = None, *, resume: bool = False, progress=None
) -> tuple[int, int]:
    def items() -> Iterator[PatternRecord | tuple[str, Vector]]:
        yield from records_of(source, kb_id)
        yield from vectors_of(source, kb_id)

    return write_kb(target, to_kb or kb_id, items(), resume=resume, progress=progress)


# --- the command line --------------------------------------------------------------------
def add_cli(sub: argparse._SubParsersAction) -> None:
    kb = sub.add_parser(
        "kb",
        help="export, import or copy knowledge bases between stores",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = kb.add_subparsers(dest="kb_command", required=True)
    export = verbs.add_parser("export", help="write one KB as kato-kb JSON lines")
    export.add_argument("--from", dest="source", required=True, help="store URL")
    export.add_argument("--kb", required=True, help="knowledge base id")
    export.add_argument("-o", "--output", default="-", help="file to write (default: stdout)")
    imp = verbs.add_parser("import", help="read one KB from kato-kb JSON lines")
    imp.add_argument("--to", dest="target", required=True, help="store URL")
    imp.add_argument("--kb", default=None, help="knowledge base id to write (default: the file's)")
    imp.add_argument("-i", "--input", default="-", help="file to read (default: stdin)")
    imp.add_argument("--resume", action="store_true", help="continue an interrupted import")
    copy = verbs.add_parser("copy", help="copy KBs from one store to another")
    copy.add_argument("--from", dest="source", required=True, help="store URL to read")
    copy.add_argument("--to", dest="target", required=True, help="store URL to write")
    copy.add_argument("--kb", action="append", required=True, help="knowledge base id (repeat for several)")
    copy.add_argument("--to-kb", default=None, help="write under this id instead (one --kb only)")
    copy.add_argument("--resume", action="store_true", help="continue an interrupted copy")
    for verb in (export, imp, copy):
        verb.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _progress(args, total: int | None, what: str):
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit=" patterns",
        desc=what,
        disable=args.no_progress,
        file=sys.stderr,
        unit_scale=True,
        mininterval=0.5,
    )


def run_cli(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except TransferError as exc:
        print(f"kato-grpc kb {args.kb_command}: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.kb_command == "export":
        store = open_store(args.source)
        try:
            require_kb(store, args.kb)
        except TransferError:
            store.close()
            raise
        out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
        try:
            with _progress(args, count_of(store, args.kb), f"export {args.kb}") as bar:
                patterns, vectors = export_kb(store, args.kb, out, bar)
        finally:
            if out is not sys.stdout:
                out.close()
            store.close()
        print(f"exported {patterns} patterns and {vectors} vectors of {args.kb!r}", file=sys.stderr)
        return 0
    if args.kb_command == "import":
        store = open_store(args.target)
        source = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")  # noqa: SIM115 (closed below)
        try:
            with _progress(args, None, "import") as bar:
                patterns, vectors = import_kb(store, source, args.kb, resume=args.resume, progress=bar)
        finally:
            if source is not sys.stdin:
                source.close()
            store.close()
        print(f"imported {patterns} patterns and {vectors} vectors", file=sys.stderr)
        return 0
    if args.to_kb and len(args.kb) > 1:
        raise TransferError("--to-kb renames one knowledge base: give one --kb")
    source, target = open_store(args.source), open_store(args.target)
    try:
        for kb_id in args.kb:  # all checked before any is copied
            require_kb(source, kb_id)
        for kb_id in args.kb:
            with _progress(args, count_of(source, kb_id), f"copy {kb_id}") as bar:
                patterns, vectors = copy_kb(source, target, kb_id, args.to_kb, resume=args.resume, progress=bar)
            print(f"copied {patterns} patterns and {vectors} vectors of {kb_id!r}", file=sys.stderr)
    finally:
        source.close()
        target.close()
    return 0
