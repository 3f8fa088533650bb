#!/usr/bin/env bash
# Installs what the integration and e2e tests need on a fresh Debian machine:
# redis-server and clickhouse-server (Debian packages), grpcurl (Go module proxy),
# the Go client's tools, the Node client's packages and the HTTP gateway's generators,
# modules and Swagger UI assets. Idempotent: skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v jq >/dev/null || need_apt+=(jq)
command -v clickhouse-server >/dev/null || need_apt+=(clickhouse-server clickhouse-client)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

# The native engine (native/) needs cargo >= 1.74; Debian's (1.63) is too old, so rustup.
export PATH="$HOME/.cargo/bin:$PATH"
cargo_ok() { command -v cargo >/dev/null && cargo --version | awk '{ split($2, v, "."); exit !(v[1] > 1 || v[2] >= 74) }'; }
if ! cargo_ok; then
  command -v curl >/dev/null || { SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo; $SUDO apt-get install -y -qq curl; }
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi

export PATH="$HOME/go/bin:/usr/local/go/bin:$PATH"
if command -v go >/dev/null; then
  command -v grpcurl >/dev/null || go install github.com/fullstorydev/grpcurl/cmd/grpcurl@latest
  command -v protoc-gen-go >/dev/null || go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
  command -v protoc-gen-go-grpc >/dev/null || go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
  if [ -f clients/go/go.mod ]; then (cd clients/go && go mod download); fi
  # The HTTP/JSON gateway: its generators (make proto-gateway) and modules.
  gw=$(sed -n 's/^GRPC_GATEWAY_VERSION := //p' Makefile)
  for p in protoc-gen-grpc-gateway protoc-gen-openapiv2; do
    "$p" --version 2>/dev/null | grep -q "Version $gw," || go install "github.com/grpc-ecosystem/grpc-gateway/v2/$p@$gw"
  done
  if [ -f gateway/go.mod ]; then (cd gateway && go mod download); fi
fi
if command -v npm >/dev/null && [ -f clients/node/package-lock.json ]; then
  (cd clients/node && npm ci --silent --no-audit --no-fund)
fi
# The gateway's Swagger UI page (swagger-ui-dist, pinned in gateway/package-lock.json).
if command -v npm >/dev/null && [ -f gateway/package-lock.json ]; then
  make --no-print-directory -s gateway-assets
fi

# What the suite needs, checked once here with a message that says what to do. Under CI
# (CI=true) anything missing stops the run: the tests would fail on it anyway, later.
PATH="$PATH:/usr/sbin:/sbin"
lacking=()
for tool in redis-server clickhouse-server jq curl cargo go grpcurl node npm make; do
  command -v "$tool" >/dev/null || lacking+=("$tool")
done
if [ ${#lacking[@]} -gt 0 ]; then
  echo "setup-system: not installed: ${lacking[*]} (the tests that need them skip; under CI=true they fail)" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
fi
