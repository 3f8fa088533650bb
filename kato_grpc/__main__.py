"""`kato-grpc` command line: ``kato-grpc serve [--flags]``."""

from __future__ import annotations

import sys

from kato_grpc.server.app import serve
from kato_grpc.server.settings import build_parser, settings_from_args


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        serve(settings_from_args(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
