"""TLS for the gRPC port: ``--tls-cert`` / ``--tls-key``, and ``--tls-client-ca`` for mutual TLS.

With a certificate and its key the server listens with TLS only (`add_secure_port`).
With ``--tls-client-ca`` as well, every client must present a certificate signed by
that CA (PEM bundle); a client without one fails the handshake. Files are PEM, read
once at start; restart the process (or roll the workers) to change them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

__all__ = ["TlsConfigError", "tls_enabled", "server_credentials"]


class TlsConfigError(ValueError):
    """The TLS flags are incomplete or a file cannot be read."""


def tls_enabled(settings: Any) -> bool:
    """Whether the settings ask for TLS (both halves are checked by `server_credentials`)."""
    return bool(settings.tls_cert or settings.tls_key or settings.tls_client_ca)


def _read(path: str, flag: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"{flag} {path!r}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise TlsConfigError(f"{flag} {path!r} is not a PEM file")
    return data


def server_credentials(settings: Any) -> grpc.ServerCredentials:
    """Server credentials from ``tls_cert``, ``tls_key`` and optional ``tls_client_ca``."""
    if not settings.tls_cert or not settings.tls_key:
        raise TlsConfigError("TLS needs both --tls-cert and --tls-key (--tls-client-ca alone is not enough)")
    chain = _read(settings.tls_cert, "--tls-cert")
    key = _read(settings.tls_key, "--tls-key")
    client_ca = _read(settings.tls_client_ca, "--tls-client-ca") if settings.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
