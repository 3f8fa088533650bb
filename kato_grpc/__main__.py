"""`kato-grpc` command line: ``kato-grpc serve [--flags]``."""

from __future__ import annotations

import sys

from kato_grpc.server.app import serve
from kato_grpc.server.settings import build_parser, settings_from_args


def health(target: str, timeout: float) -> int:
    """0 when the server at `target` answers SERVING, 1 otherwise (for container healthchecks)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError as error:
            print(f"{target}: {error.code().name} {error.details()}", file=sys.stderr)
            return 1
    print(f"{target}: {health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)}")
    return 0 if answer.status == health_pb2.HealthCheckResponse.SERVING else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "health":
        return health(args.target, args.timeout)
    serve(settings_from_args(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
