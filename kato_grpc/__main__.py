"""`kato-grpc` command line: ``kato-grpc serve [--flags]``, ``health``, ``kb export | import | copy``."""

from __future__ import annotations

import sys

from kato_grpc.server.app import serve
from kato_grpc.server.settings import build_parser, settings_from_args


def health(
    target: str, timeout: float, tls_ca: str = "", tls_cert: str = "", tls_key: str = "", tls_server_name: str = ""
) -> int:
    """0 when the server at `target` answers SERVING, 1 otherwise (for container healthchecks).

    With `tls_ca` the check goes over TLS (with a client certificate if `tls_cert` is given).
    """
    from pathlib import Path

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if tls_ca:
        read = lambda path: Path(path).read_bytes() if path else None  # noqa: E731
        credentials = grpc.ssl_channel_credentials(read(tls_ca), read(tls_key), read(tls_cert))
        options = [("grpc.ssl_target_name_override", tls_server_name)] if tls_server_name else []
        channel = grpc.secure_channel(target, credentials, options=options)
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        try:
            stub = health_pb2_grpc.HealthStub(channel)
            # types-grpcio-health-checking declares HealthStub without its methods.
            answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout)  # type: ignore[attr-defined]
        except grpc.RpcError as error:
            print(f"{target}: {error.code().name} {error.details()}", file=sys.stderr)
            return 1
    print(f"{target}: {health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)}")
    return 0 if answer.status == health_pb2.HealthCheckResponse.SERVING else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "health":
        return health(args.target, args.timeout, args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name)
    if args.command == "kb":
        from kato_grpc.kb.transfer import run_cli

        return run_cli(args)
    serve(settings_from_args(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
