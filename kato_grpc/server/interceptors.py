"""The interceptor chain, in one explicit order, and the start-up checks of its flags.

Order (outermost first; each sees the call before the next and its outcome after):

1. `RequestContextInterceptor`: request id, access log. First, so every answer,
   refusals included, carries ``x-request-id`` and is logged.
   `tracing.TracingInterceptor` (when the OTEL_* variables turn traces on) right after:
   its span covers every other interceptor, and its trace id reaches the access log.
2. `MetricsInterceptor` (``--metrics-port``): before auth, so refused calls are
   counted by their code (UNAUTHENTICATED, PERMISSION_DENIED) like any other.
3. `AdmissionInterceptor` (admission.py): request bytes in flight; a call that does not
   fit is refused before its request is parsed, so before decoding.
4. `DecodeInterceptor`: a request that does not decode is INVALID_ARGUMENT saying
   what failed (grpc would answer UNKNOWN); before auth, which reads the request.
5. `AuthInterceptor` (``--auth-keys-file`` / ``--auth-redis-keys``): nothing after it
   runs for a caller it refuses.
6. `StateSizeInterceptor`: limits on a client-held state, ``x-kato-state-bytes``;
   after auth, so an unauthenticated caller learns nothing about its request.
7. `StateSignatureInterceptor`: verifies a client-held state's signature and signs
   the state a response returns; inside the size check, so the size reported is
   the signed state's and an oversized state is refused before it is hashed.

Each is a `handlers.Interceptor`: the base wraps a method's handler once and caches
it; the interceptor says only what it does to one call of each shape it handles.
"""

from __future__ import annotations

from typing import Any

import grpc

from kato_grpc.server import admission, auth, decoding, request_context, state_signing, state_size, tls, tracing
from kato_grpc.server.metrics import Metrics, MetricsInterceptor
from kato_grpc.server.settings import Settings

__all__ = ["build_interceptors", "check_settings"]

DEFAULT_BYTES = Settings.max_bytes_in_flight


def build_interceptors(
    settings: Any,
    sessions: Any,
    keys: auth.KeyRing | None = None,
    metrics: Metrics | None = None,
    state_keys: state_signing.StateKeyRing | None = None,
    budget: admission.ByteBudget | None = None,
) -> list[grpc.aio.ServerInterceptor]:
    """The chain for these settings; `keys` defaults to the settings' key ring (None = auth off),
    `state_keys` to the settings' state signing keys, `budget` to one of
    ``--max-bytes-in-flight``; `sessions` is the (async) session store auth reads a
    session's owner from."""
    chain: list[grpc.aio.ServerInterceptor] = [
        request_context.RequestContextInterceptor(every_call=getattr(settings, "access_log", False))
    ]
    if tracing.enabled():
        chain.append(tracing.TracingInterceptor())
    if metrics is not None:
        chain.append(MetricsInterceptor(metrics))
    chain.append(
        admission.AdmissionInterceptor(
            budget or admission.ByteBudget(getattr(settings, "max_bytes_in_flight", DEFAULT_BYTES))
        )
    )
    chain.append(decoding.DecodeInterceptor())
    if keys is None:
        keys = auth.keyring_from_settings(settings)
    if keys is not None:
        chain.append(auth.AuthInterceptor(keys, auth.session_owner_from(sessions)))
    chain.append(state_size.StateSizeInterceptor(settings.limits))
    chain.append(state_signing.StateSignatureInterceptor(state_keys or state_signing.load_state_keys(settings)))
    return chain


def check_settings(settings: Any) -> None:
    """Fail fast, before any process starts, on flags that cannot work (ValueError says why)."""
    if settings.log_format not in request_context.LOG_FORMATS:
        raise ValueError(
            f"--log-format {settings.log_format!r} must be one of {', '.join(request_context.LOG_FORMATS)}"
        )
    if settings.workers > 1 and settings.port == 0:
        raise ValueError("--port 0 with --workers > 1 would give every worker its own port: choose a port")
    if getattr(settings, "max_bytes_in_flight", DEFAULT_BYTES) < settings.max_request_bytes:
        raise ValueError(
            f"--max-bytes-in-flight {settings.max_bytes_in_flight} is below --max-request-bytes"
            f" {settings.max_request_bytes}: a request of the largest size allowed could never be served"
        )
    for lane in ("cpu", "kb", "session"):
        if getattr(settings, f"{lane}_queue_length", 0) < 0:
            raise ValueError(f"--{lane}-queue-length must be >= 0 (0: 32 per thread)")
    if not 0 <= settings.metrics_port <= 65535:
        raise ValueError(f"--metrics-port {settings.metrics_port} must be in [0, 65535]")
    if settings.metrics_port and settings.metrics_port + max(settings.workers, 1) - 1 > 65535:
        raise ValueError(f"--metrics-port {settings.metrics_port} + --workers {settings.workers} runs past port 65535")
    auth.keyring_from_settings(settings)  # reads and validates the keys file
    if settings.state_keys_file:
        state_signing.StateKeyRing.from_file(settings.state_keys_file)
    if tls.tls_enabled(settings):
        tls.server_credentials(settings)
    tracing.check_env()
