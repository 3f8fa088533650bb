#!/usr/bin/env bash
# `make serve`: the gRPC server and the HTTP/JSON gateway in front of it, stopped together.
#   gRPC      127.0.0.1:50051   (KATO_GRPC_PORT)
#   HTTP/JSON 127.0.0.1:8080    (KATO_HTTP_PORT): /v1/..., /openapi.json, /docs/ (Swagger UI)
# Arguments go to `kato-grpc serve`. Without Go the gateway is skipped (gRPC only), without
# npm the Swagger UI page is (the API and /openapi.json are still served).
set -euo pipefail
cd "$(dirname "$0")/.."
GRPC_PORT=${KATO_GRPC_PORT:-50051}
HTTP_PORT=${KATO_HTTP_PORT:-8080}
export PATH="$PWD/.venv/bin:$HOME/go/bin:/usr/local/go/bin:$PATH"

gateway=""
if command -v go >/dev/null; then
  make --no-print-directory -s gateway
  gateway=bin/kato-gateway
  if command -v npm >/dev/null; then
    make --no-print-directory -s gateway-assets
  else
    echo "serve: npm not found: /docs/ (Swagger UI) will be missing; the HTTP API is served"
  fi
else
  echo "serve: go not found: serving gRPC only (the HTTP/JSON gateway is a Go program; see gateway/README.md)"
fi

pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; }
trap stop EXIT
trap 'exit 130' INT TERM

kato-grpc serve --host 127.0.0.1 --port "$GRPC_PORT" "$@" &
pids+=($!)
if [ -n "$gateway" ]; then
  "$gateway" --listen "127.0.0.1:$HTTP_PORT" --grpc-target "127.0.0.1:$GRPC_PORT" --static-dir gateway/static &
  pids+=($!)
fi
# When either ends, stop the other (trap EXIT).
wait -n "${pids[@]}"
