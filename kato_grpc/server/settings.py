"""Server settings: every flag has an environment variable of the same name.

``--data-dir`` is also ``KATO_DATA_DIR``; a flag given on the command line wins over
the environment, which wins over the default.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields

from kato_grpc.core.model import Limits

__all__ = ["Settings", "build_parser", "settings_from_args"]


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 50051
    data_dir: str = "./kato-data"
    workers: int = 1
    max_request_bytes: int = 16 * 1024 * 1024
    grace_seconds: float = 10.0
    redis_url: str = ""
    session_ttl_seconds: int = 3600
    session_auto_extend: bool = True
    log_level: str = "INFO"
    limits: Limits = field(default_factory=Limits)


_HELP = {
    "host": "address to bind",
    "port": "port to listen on (0 picks a free port and prints it)",
    "data_dir": "directory of the embedded knowledge base (SQLite, WAL mode)",
    "workers": "server processes sharing the port with SO_REUSEPORT (one per core is typical)",
    "max_request_bytes": "largest request accepted; larger ones get RESOURCE_EXHAUSTED",
    "grace_seconds": "on SIGTERM, how long in-flight calls may finish before the server stops",
    "redis_url": "redis://host:port/db for server-held sessions (default: in-process memory)",
    "session_ttl_seconds": "default TTL of a server-held session",
    "session_auto_extend": "whether each session access slides its expiry",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "max_stm_events": "STM events kept per session; the oldest are dropped",
    "max_accumulator_entries": "emotive / metadata accumulator entries kept; the oldest are dropped",
    "max_symbols_per_event": "symbols allowed in one observation",
    "max_symbol_bytes": "UTF-8 bytes allowed in one symbol",
    "max_vector_dim": "largest vector dimension accepted",
    "max_vectors_per_observation": "vectors allowed in one observation",
    "max_emotive_keys": "emotive keys allowed in one observation",
    "max_observations_per_sequence": "observations allowed in one ObserveSequence call",
    "max_unique_id_chars": "characters allowed in an observation's unique_id",
}


def _env_name(name: str) -> str:
    return "KATO_" + name.upper()


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean")


def _add(parser: argparse.ArgumentParser, name: str, default) -> None:
    kind = type(default)
    convert = _bool if kind is bool else kind
    env = os.environ.get(_env_name(name))
    parser.add_argument(
        "--" + name.replace("_", "-"),
        dest=name,
        type=convert,
        default=convert(env) if env is not None else default,
        help=f"{_HELP[name]} (env {_env_name(name)}; default {default!r})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kato-grpc", description="KATO gRPC: deterministic pattern memory.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve kato.v1.KatoService", description="Serve kato.v1.KatoService.")
    defaults = Settings()
    for f in fields(Settings):
        if f.name != "limits":
            _add(serve, f.name, getattr(defaults, f.name))
    for f in fields(Limits):
        _add(serve, f.name, getattr(defaults.limits, f.name))
    health = sub.add_parser("health", help="check a server's gRPC health (exit 0 when SERVING)")
    health.add_argument("--target", default=os.environ.get("KATO_HEALTH_TARGET", "127.0.0.1:50051"),
                        help="host:port to check (env KATO_HEALTH_TARGET; default 127.0.0.1:50051)")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    values = vars(args)
    limits = Limits(**{f.name: values[f.name] for f in fields(Limits)})
    return Settings(limits=limits, **{f.name: values[f.name] for f in fields(Settings) if f.name != "limits"})
