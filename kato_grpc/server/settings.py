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
    clickhouse_url: str = ""
    session_ttl_seconds: int = 3600
    session_auto_extend: bool = True
    request_id_window_seconds: int = 86400
    log_level: str = "INFO"
    log_format: str = "text"
    access_log: bool = False
    auth_keys_file: str = ""
    auth_redis_keys: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    metrics_port: int = 0
    cpu_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    kb_threads: int = 4
    session_threads: int = 16
    cpu_queue_length: int = 0
    kb_queue_length: int = 0
    session_queue_length: int = 0
    max_bytes_in_flight: int = 128 * 1024 * 1024
    kb_timeout_seconds: float = 10.0
    redis_timeout_seconds: float = 5.0
    health_probe_seconds: float = 1.0
    engine: str = "native"
    state_keys_file: str = ""
    limits: Limits = field(default_factory=Limits)


_HELP = {
    "host": "address to bind",
    "port": "port to listen on (0 picks a free port and prints it)",
    "data_dir": "directory of the embedded knowledge base (SQLite, WAL mode)",
    "workers": "server processes sharing the port with SO_REUSEPORT (one per core is typical)",
    "max_request_bytes": "largest request accepted; larger ones get RESOURCE_EXHAUSTED",
    "grace_seconds": "on SIGTERM, how long in-flight calls may finish before the server stops",
    "redis_url": "redis://host:port/db for server-held sessions (default: in-process memory)",
    "clickhouse_url": "clickhouse://host:9000/db to keep knowledge bases in ClickHouse, shared by every replica;"
    " settings such as ?insert_quorum=2 ride along (default: the embedded store in data_dir)",
    "session_ttl_seconds": "default TTL of a server-held session",
    "session_auto_extend": "whether each session access slides its expiry",
    "request_id_window_seconds": "how long an applied request_id is remembered, so a retry is answered and not"
    " applied twice: by a server-held session (never less than its TTL) and, for a client-held call's effects,"
    " by the embedded knowledge store (pruned after it)",
    "log_level": "DEBUG, INFO, WARNING or ERROR (symbols and metadata are logged only at DEBUG)",
    "log_format": "text, or json for one JSON object per line (with the call's request id)",
    "access_log": "log every call at INFO (method, code, duration, request id); otherwise only server-side"
    " failures are logged, at WARNING",
    "auth_keys_file": "JSON or TOML file of API keys (SHA-256 digests, kb id patterns, roles); turns auth on;"
    " re-read on SIGHUP (default: auth off)",
    "auth_redis_keys": "also look API keys up in the hash kato:auth:keys of --redis-url; turns auth on",
    "tls_cert": "PEM certificate chain of the server; with --tls-key the port speaks TLS only",
    "tls_key": "PEM private key of --tls-cert",
    "tls_client_ca": "PEM CA bundle: require client certificates signed by it (mutual TLS)",
    "metrics_port": "serve Prometheus /metrics on --host at this port (worker i of --workers uses port + i; 0 = off)",
    "cpu_threads": "threads running the engine (observe, predict); calls beyond them queue",
    "kb_threads": "threads calling the knowledge store (SQLite commits, ClickHouse queries)",
    "session_threads": "threads calling Redis for server-held sessions (with --redis-url)",
    "cpu_queue_length": "engine work allowed to wait for a cpu thread; more is refused with RESOURCE_EXHAUSTED"
    " (LANE_QUEUE_FULL) and a RetryInfo (0 = 32 per --cpu-threads)",
    "kb_queue_length": "knowledge-store calls allowed to wait for a kb thread (0 = 32 per --kb-threads)",
    "session_queue_length": "Redis calls allowed to wait for a session thread (0 = 32 per --session-threads)",
    "max_bytes_in_flight": "request bytes the server holds at once across all calls; a request that does not fit"
    " is refused unread with RESOURCE_EXHAUSTED (REQUEST_BYTES_EXHAUSTED), which bounds the memory calls take"
    " (at least --max-request-bytes)",
    "kb_timeout_seconds": "longest a call waits for the knowledge store before UNAVAILABLE (also ClickHouse's"
    " socket timeout)",
    "redis_timeout_seconds": "longest a call waits for Redis before UNAVAILABLE (also Redis's socket timeout)",
    "health_probe_seconds": "how often Redis and ClickHouse are probed for the kato.v1.KatoService health"
    " status (NOT_SERVING while one does not answer within this time)",
    "engine": "prediction engine: native (compiled, the default) or python (the readable reference core)",
    "state_keys_file": "JSON file of the HMAC keys that sign client-held session states (the first signs, all"
    " verify); give every replica the same file (default: <data-dir>/state-keys.json, created"
    " with a random key on first start)",
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
    health.add_argument(
        "--target",
        default=os.environ.get("KATO_HEALTH_TARGET", "127.0.0.1:50051"),
        help="host:port to check (env KATO_HEALTH_TARGET; default 127.0.0.1:50051)",
    )
    health.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer")
    for flag, env, what in (
        ("--tls-ca", "KATO_HEALTH_TLS_CA", "PEM CA bundle: check over TLS, trusting it"),
        ("--tls-cert", "KATO_HEALTH_TLS_CERT", "PEM client certificate (mutual TLS)"),
        ("--tls-key", "KATO_HEALTH_TLS_KEY", "PEM key of --tls-cert"),
        (
            "--tls-server-name",
            "KATO_HEALTH_TLS_SERVER_NAME",
            "name the server certificate must carry, if not the target's host",
        ),
    ):
        health.add_argument(flag, default=os.environ.get(env, ""), help=f"{what} (env {env})")
    from kato_grpc.kb.transfer import add_cli

    add_cli(sub)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    values = vars(args)
    limits = Limits(**{f.name: values[f.name] for f in fields(Limits)})
    return Settings(limits=limits, **{f.name: values[f.name] for f in fields(Settings) if f.name != "limits"})
