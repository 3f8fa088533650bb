"""`kato`: the everyday calls from a shell, over `KatoClient` (nothing from the server).

    kato session create my-kb                      # prints the session id
    kato observe --session ID hello world          # or --state FILE --kb my-kb (client-held)
    kato learn --session ID
    kato predict --session ID
    kato stm --session ID | kato clear --session ID
    kato kb list | kato kb get my-kb [NAME] | kato kb stats my-kb | kato kb delete my-kb NAME
    kato session get ID | kato session delete ID

The server is ``--addr`` or ``$KATO_ADDR`` (default 127.0.0.1:50051). Output is a table
for people, or ``--json`` (the response message in proto JSON, field names as in the
.proto) for scripts. A client-held session lives in a state file (``--state``): read
before the call, replaced (atomically) by the state the call returns; a missing file
starts a fresh session on ``--kb``.

Exit status: 0 on success; 64 + the gRPC status code of a failed call (grpcurl's
convention: 67 INVALID_ARGUMENT, 69 NOT_FOUND, 78 UNAVAILABLE, ...); 2 for a usage
error; 1 for a local failure (a state file that cannot be read).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from kato_client._proto.kato.v1 import kato_service_pb2 as api
from kato_client._proto.kato.v1 import types_pb2 as pb
from kato_client.client import KatoClient, ServerSession, Session, config_message
from kato_client.errors import KatoClientError
from kato_client.retry import Retry

__all__ = ["main"]

DEFAULT_ADDR = "127.0.0.1:50051"
EXIT_LOCAL = 1
EXIT_USAGE = 2
EXIT_RPC_BASE = 64


class UsageError(Exception):
    """Arguments that cannot make a call (exit 2)."""


class LocalError(Exception):
    """A local file that cannot be used (exit 1)."""


# --- output ------------------------------------------------------------------------------
def as_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns, two spaces apart; '(none)' for no rows."""
    if not rows:
        return "(none)"
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def events_text(events: Sequence[pb.Event]) -> str:
    return " ".join("[" + " ".join(e.symbols) + "]" for e in events)


def predictions_table(predictions: Sequence[pb.Prediction]) -> str:
    rows = [
        (
            p.name,
            f"{p.similarity:.3f}",
            f"{p.potential:.3f}",
            p.frequency,
            events_text(p.present),
            events_text(p.future),
        )
        for p in predictions
    ]
    return table(("name", "similarity", "potential", "frequency", "present", "future"), rows)


# --- sessions ------------------------------------------------------------------------------
class StateFile:
    """A client-held `SessionState` kept in a JSON file (proto JSON: the signature is base64)."""

    def __init__(self, path: Path, kb_id: str | None) -> None:
        self.path = path
        if path.exists():
            try:
                self.state = json_format.Parse(path.read_text(encoding="utf-8"), pb.SessionState())
            except (OSError, json_format.ParseError) as exc:
                raise LocalError(f"{path}: not a session state file: {exc}") from None
            if kb_id and kb_id != self.state.kb_id:
                raise UsageError(f"{path} holds a session on {self.state.kb_id!r}, not --kb {kb_id!r}")
        elif kb_id:
            self.state = pb.SessionState(kb_id=kb_id)
        else:
            raise UsageError(f"{path} does not exist: give --kb to start a session in it")

    def save(self, state: pb.SessionState) -> None:
        """Replace the file in one rename, so an interrupted write never leaves half a state."""
        text = json.dumps(as_json(state), indent=2, sort_keys=True) + "\n"
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


def open_session(kato: KatoClient, args: argparse.Namespace) -> tuple[Session | ServerSession, Callable[[], None]]:
    """The session the flags name, and what keeps its state after a call (a state file's save)."""
    if bool(args.session) == bool(args.state):
        raise UsageError("name the session: --session ID (server-held) or --state FILE (client-held)")
    if args.session:
        if args.kb:
            raise UsageError("--kb goes with --state; a server-held session has its knowledge base")
        return ServerSession(kato, args.session), lambda: None
    file = StateFile(Path(args.state), args.kb)
    session = Session(kato, file.state)
    return session, lambda: file.save(session.state)


def parse_config(pairs: Sequence[str]) -> pb.SessionConfig:
    """``key=value`` pairs as a SessionConfig, each value read by its field's type."""
    values: dict[str, Any] = {}
    fields = pb.SessionConfig.DESCRIPTOR.fields_by_name
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or key not in fields:
            raise UsageError(f"--config {pair!r}: expected key=value with a key of SessionConfig ({', '.join(fields)})")
        field = fields[key]
        try:
            if key == "filter_pipeline":
                values[key] = [s for s in text.split(",") if s]
            elif field.type == field.TYPE_BOOL:
                if text.lower() not in ("true", "false"):
                    raise ValueError("expected true or false")
                values[key] = text.lower() == "true"
            elif field.type == field.TYPE_DOUBLE:
                values[key] = float(text)
            elif field.type == field.TYPE_INT32:
                values[key] = int(text)
            else:
                values[key] = text
        except ValueError as exc:
            raise UsageError(f"--config {pair!r}: {exc}") from None
    return config_message(values)


def parse_emotives(pairs: Sequence[str]) -> dict[str, float]:
    emotives = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            if not sep:
                raise ValueError(pair)
            emotives[name] = float(value)
        except ValueError:
            raise UsageError(f"--emotive {pair!r}: expected name=number") from None
    return emotives


# --- commands -------------------------------------------------------------------------------
Printed = tuple[Message | dict[str, Any], str]
"""What a command shows: the JSON form (a message or a dict) and the human text."""


def cmd_observe(kato: KatoClient, args: argparse.Namespace) -> Printed:
    session, save = open_session(kato, args)
    response = session.observe(args.symbols, emotives=parse_emotives(args.emotive), return_predictions=args.predictions)
    save()
    lines = [f"observed at time {response.time}: stm {response.stm_length} event(s)"]
    if response.auto_learned_pattern:
        lines.append(f"auto-learned {response.auto_learned_pattern}")
    if args.predictions:
        lines.append(predictions_table(response.predictions))
    response.ClearField("state")  # the state went to the file; it is no output
    return response, "\n".join(lines)


def cmd_learn(kato: KatoClient, args: argparse.Namespace) -> Printed:
    session, save = open_session(kato, args)
    name = session.learn()
    save()
    return {"pattern_name": name}, name or "(nothing learned: fewer than 2 symbols)"


def cmd_predict(kato: KatoClient, args: argparse.Namespace) -> Printed:
    session, _ = open_session(kato, args)
    response = session.predict()
    return response, predictions_table(response.predictions)


def cmd_stm(kato: KatoClient, args: argparse.Namespace) -> Printed:
    session, _ = open_session(kato, args)
    stm = session.stm()
    rows = [(i, " ".join(symbols)) for i, symbols in enumerate(stm)]
    return {"stm": [{"symbols": s} for s in stm]}, table(("event", "symbols"), rows)


def cmd_clear(kato: KatoClient, args: argparse.Namespace) -> Printed:
    session, save = open_session(kato, args)
    session.clear_stm()
    save()
    return {}, "short-term memory cleared"


def cmd_kb_list(kato: KatoClient, args: argparse.Namespace) -> Printed:
    kbs = list(kato.list_knowledge_bases(page_size=args.page_size))
    rows = [(kb.kb_id, kb.pattern_count) for kb in kbs]
    return {"knowledge_bases": [as_json(kb) for kb in kbs]}, table(("kb_id", "patterns"), rows)


def pattern_text(p: pb.Pattern) -> str:
    lines = [
        f"name       {p.name}",
        f"frequency  {p.frequency}",
        f"length     {p.length}",
        f"events     {events_text(p.events)}",
    ]
    if p.emotives:
        lines.append("emotives   " + " ".join(json.dumps(dict(e.values), sort_keys=True) for e in p.emotives))
    if p.metadata:
        lines.append("metadata   " + json.dumps({k: list(v.values) for k, v in sorted(p.metadata.items())}))
    return "\n".join(lines)


def cmd_kb_get(kato: KatoClient, args: argparse.Namespace) -> Printed:
    if args.name:
        pattern = kato.get_pattern(args.kb_id, args.name)
        return pattern, pattern_text(pattern)
    patterns = list(kato.list_patterns(args.kb_id, page_size=args.page_size))
    rows = [(p.name, p.frequency, p.length, events_text(p.events)) for p in patterns]
    return {"patterns": [as_json(p) for p in patterns]}, table(("name", "frequency", "length", "events"), rows)


def cmd_kb_delete(kato: KatoClient, args: argparse.Namespace) -> Printed:
    if args.name:
        kato.delete_pattern(args.kb_id, args.name)
        return {}, f"deleted {args.name} from {args.kb_id}"
    if not args.yes:
        raise UsageError(f"deleting every pattern of {args.kb_id!r} needs --yes (or name one pattern)")
    kato.clear_knowledge_base(args.kb_id)
    return {}, f"cleared knowledge base {args.kb_id}"


def cmd_kb_stats(kato: KatoClient, args: argparse.Namespace) -> Printed:
    stats = kato.symbol_stats(args.kb_id)
    head = (
        f"patterns {stats.total_unique_patterns}, symbols in patterns (by frequency) "
        f"{stats.total_symbols_in_patterns_frequencies}"
    )
    rows = [(s.symbol, s.frequency, s.pattern_member_frequency) for s in stats.symbol_stats]
    return stats, head + "\n" + table(("symbol", "frequency", "pattern_member_frequency"), rows)


def session_text(s: pb.Session) -> str:
    return table(
        ("session_id", "kb_id", "ttl_seconds", "expires_at"),
        [(s.session_id, s.kb_id, s.ttl_seconds, s.expires_at.ToJsonString() if s.HasField("expires_at") else "")],
    )


def cmd_session_create(kato: KatoClient, args: argparse.Namespace) -> Printed:
    request = api.CreateSessionRequest(kb_id=args.kb_id)
    if args.config:
        request.config.CopyFrom(parse_config(args.config))
    if args.ttl is not None:
        request.ttl_seconds = args.ttl
    created = kato.call("CreateSession", request).session
    return created, created.session_id if args.quiet else session_text(created)


def cmd_session_get(kato: KatoClient, args: argparse.Namespace) -> Printed:
    found = ServerSession(kato, args.session_id).info_now()
    return found, session_text(found)


def cmd_session_delete(kato: KatoClient, args: argparse.Namespace) -> Printed:
    ServerSession(kato, args.session_id).delete()
    return {}, f"deleted session {args.session_id}"


# --- the parser -------------------------------------------------------------------------------
def _session_flags(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("the session (one of)")
    where.add_argument("--session", "-s", metavar="ID", help="a server-held session id")
    where.add_argument("--state", metavar="FILE", help="a client-held session's state file")
    where.add_argument("--kb", help="with --state: the knowledge base of a new state file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kato", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--addr",
        default=os.environ.get("KATO_ADDR", DEFAULT_ADDR),
        help=f"server host:port (env KATO_ADDR, default {DEFAULT_ADDR})",
    )
    parser.add_argument("--json", action="store_true", help="print the response as JSON")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per call, retries included")
    verbs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def verb(sub: Any, name: str, run: Callable[..., Printed], help: str) -> argparse.ArgumentParser:
        made: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
        made.set_defaults(run=run)
        return made

    observe = verb(verbs, "observe", cmd_observe, "observe one event (its symbols)")
    observe.add_argument("symbols", nargs="*", help="the event's symbols")
    observe.add_argument("--emotive", "-e", action="append", default=[], metavar="NAME=VALUE")
    observe.add_argument("--predictions", "-p", action="store_true", help="show the predictions computed")
    _session_flags(observe)
    for name, run, text in (
        ("learn", cmd_learn, "learn the short-term memory as a pattern"),
        ("predict", cmd_predict, "predict from the short-term memory"),
        ("stm", cmd_stm, "show the short-term memory"),
        ("clear", cmd_clear, "clear the short-term memory"),
    ):
        _session_flags(verb(verbs, name, run, text))

    kb = verbs.add_parser("kb", help="knowledge bases: list, get, delete, stats").add_subparsers(
        dest="kb_command", required=True, metavar="KB_COMMAND"
    )
    listed = verb(kb, "list", cmd_kb_list, "list the knowledge bases holding a pattern")
    listed.add_argument("--page-size", type=int, default=0, help="knowledge bases per call (default: the server's)")
    get = verb(kb, "get", cmd_kb_get, "show one pattern, or list a knowledge base's patterns")
    get.add_argument("kb_id")
    get.add_argument("name", nargs="?", help="a pattern name (PTRN|... or 40 hex); absent: every pattern")
    get.add_argument("--page-size", type=int, default=0, help="patterns per call (default: the server's)")
    delete = verb(kb, "delete", cmd_kb_delete, "delete one pattern, or (with --yes) every pattern")
    delete.add_argument("kb_id")
    delete.add_argument("name", nargs="?", help="the pattern to delete; absent: the whole knowledge base")
    delete.add_argument("--yes", action="store_true", help="confirm deleting every pattern of the knowledge base")
    stats = verb(kb, "stats", cmd_kb_stats, "symbol statistics of a knowledge base")
    stats.add_argument("kb_id")

    session = verbs.add_parser("session", help="server-held sessions: create, get, delete").add_subparsers(
        dest="session_command", required=True, metavar="SESSION_COMMAND"
    )
    create = verb(session, "create", cmd_session_create, "create a server-held session")
    create.add_argument("kb_id")
    create.add_argument("--ttl", type=int, help="seconds the session lives after its last access")
    create.add_argument("--config", "-c", action="append", default=[], metavar="KEY=VALUE", help="a config key")
    create.add_argument("--quiet", "-q", action="store_true", help="print only the session id")
    for name, run, text in (
        ("get", cmd_session_get, "show a server-held session"),
        ("delete", cmd_session_delete, "delete a server-held session"),
    ):
        verb(session, name, run, text).add_argument("session_id")
    return parser


def _print(shown: Message | dict[str, Any], text: str, as_json_output: bool) -> None:
    if as_json_output:
        data = as_json(shown) if isinstance(shown, Message) else shown
        print(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))
    else:
        print(text)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # --timeout bounds the whole call, retries included (Retry's deadline).
        with KatoClient(args.addr, timeout=args.timeout, retry=Retry(deadline=args.timeout)) as kato:
            shown, text = args.run(kato, args)
    except UsageError as exc:
        print(f"kato: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LocalError as exc:
        print(f"kato: {exc}", file=sys.stderr)
        return EXIT_LOCAL
    except KatoClientError as exc:
        print(f"kato: {exc.code.name}: {exc.message}", file=sys.stderr)
        for violation in exc.field_violations:
            print(f"  {violation.field}: {violation.description}", file=sys.stderr)
        if exc.reason:
            print(f"  reason: {exc.reason}", file=sys.stderr)
        if exc.request_id:
            print(f"  request id: {exc.request_id}", file=sys.stderr)
        return EXIT_RPC_BASE + exc.code.value[0]
    _print(shown, text, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
