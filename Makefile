# KATO gRPC — developer targets.
#
#   make serve       set up (venv + package) and serve gRPC on 127.0.0.1:50051, embedded store,
#                    and HTTP/JSON on 127.0.0.1:8080 (the gateway, when Go is installed)
#   make test        set up everything the tests need (venv, redis-server, clickhouse-server,
#                    grpcurl, Go and Node client deps) and run the whole suite
#   make test-fast   the pure and in-process tests only (no Redis, ClickHouse or server
#                    processes; markers in pyproject.toml): the edit-test loop, about a minute
#   make setup       only the Python virtualenv with the package and its dev tools
#   make lint        buf lint of protos/, a check that generated code matches protos/, lint-py, lint-rust
#   make lint-py     ruff check and ruff format --check over LINT_PATHS, mypy over MYPY_PATHS
#   make lint-rust   cargo fmt --check and cargo clippy (warnings are errors) over native/
#   make test-rust   cargo test: the Rust unit tests of native/
#   make bench       the in-process benchmarks in loadtest/ (figures, not pass/fail)
#   make loadtest-http  HTTP/JSON through the gateway vs gRPC, tracing on/off (loadtest/http-report.md)
#
# Proto targets:
#   make proto       regenerate kato_grpc/_proto/ (the server's) and
#                    clients/python/kato_client/_proto/ (the Python client's own copy,
#                    so the client ships without the server) from protos/ (committed output),
#                    including kato_v1.binpb, a descriptor set with the comments
#                    (source info), for a reflection service that serves them
#                    (see kato_grpc/_proto/__init__.py)
#   make lint-proto  buf lint (STANDARD + COMMENTS) of protos/
#
# Generated imports: protoc writes `from kato.v1 import types_pb2`, an import
# rooted at protos/. `make proto` rewrites those lines (and the module names
# and the .pyi type references) to `kato_grpc._proto.kato.v1` (the client's:
# `kato_client._proto.kato.v1`), so generated code is a normal subpackage:
# `from kato_grpc._proto.kato.v1 import kato_service_pb2`. Both copies register
# the same byte-identical files in protobuf's default pool, which accepts a
# file added twice when it is identical, so server and client load side by side. Nothing is added to sys.path and no top-level `kato`
# package exists, so a module can never be loaded twice under two names.
#
# google/api/{annotations,field_behavior,http}.proto come from the installed
# googleapis-common-protos wheel (it is not vendored): protoc reads it from
# site-packages, buf from $(PROTO_DEPS), a git-ignored copy made by
# `make proto-deps`. buf needs no network.

PY ?= .venv/bin/python
BUF ?= .venv/bin/buf

PROTO_SRC := protos
PROTO_OUT := kato_grpc/_proto
CLIENT_PROTO_OUT := clients/python/kato_client/_proto
PROTO_PKG := kato/v1
PROTO_DEPS := build/protodeps
PROTO_FILES := $(sort $(wildcard $(PROTO_SRC)/$(PROTO_PKG)/*.proto))
SERVICE_PROTO_FILES := $(sort $(wildcard $(PROTO_SRC)/$(PROTO_PKG)/*_service.proto))

# Include directories and plugin locations, asked of the interpreter so that
# they follow whatever venv PY points at.
PY_BIN_DIR = $(shell $(PY) -c 'import os, sys; print(os.path.dirname(sys.executable))')
GRPC_TOOLS_INCLUDE = $(shell $(PY) -c 'import os, grpc_tools; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')
GOOGLEAPIS_INCLUDE = $(shell $(PY) -c 'import os, google.api.field_behavior_pb2 as m; print(os.path.dirname(os.path.dirname(os.path.dirname(m.__file__))))')

# The google/api imports of protos/ (from the googleapis-common-protos wheel).
GOOGLE_API_PROTOS := annotations.proto field_behavior.proto http.proto

PROTOC = $(PY) -m grpc_tools.protoc -I $(PROTO_SRC) -I $(GRPC_TOOLS_INCLUDE) -I $(GOOGLEAPIS_INCLUDE)

.PHONY: setup setup-system serve test test-only test-fast lint lint-py check-proto breaking bench proto proto-deps lint-proto

PYTHON ?= python3
VENV := .venv
GOBIN := $(HOME)/go/bin
export PATH := $(CURDIR)/$(VENV)/bin:$(GOBIN):/usr/local/go/bin:$(HOME)/.cargo/bin:$(PATH)

# The package includes a compiled extension (native/, Rust): installing it needs cargo.
RUST_MIN := 1.74
NATIVE_SOURCES := native/Cargo.toml native/Cargo.lock $(wildcard native/src/*.rs)

.PHONY: check-rust
check-rust:
	@command -v cargo >/dev/null 2>&1 || { \
	  echo "make: the native engine (native/) needs a Rust toolchain >= $(RUST_MIN) and none was found."; \
	  echo "  Install it with: curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y"; \
	  echo "  then open a new shell (or: . \$$HOME/.cargo/env) and run make again."; exit 1; }
	@cargo --version | awk '{ split($$2, v, "."); if (v[1] < 1 || (v[1] == 1 && v[2] < 74)) { \
	  print "make: cargo " $$2 " is too old for native/ (needs >= $(RUST_MIN); Debian'"'"'s cargo is 1.63)."; \
	  print "  Install a current one with: curl --proto '"'"'=https'"'"' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y"; \
	  exit 1 } }'

# The virtualenv is rebuilt when a pyproject.toml changes, the extension when native/
# does. The Python client (clients/python, its own package) is installed too: the tests
# drive the server with it.
$(VENV)/.installed: pyproject.toml clients/python/pyproject.toml $(NATIVE_SOURCES) | check-rust
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]' -e clients/python
	touch $@

setup: $(VENV)/.installed

# The gRPC server on 127.0.0.1:50051 and the HTTP/JSON gateway on 127.0.0.1:8080 (built
# first; skipped with a note when Go is missing). Flags for the server: SERVE_ARGS="...".
SERVE_ARGS ?=
serve: setup
	./scripts/serve.sh $(SERVE_ARGS)

# System packages and tools the integration and e2e tests use (Debian; needs root).
setup-system:
	./scripts/setup-system.sh

test: setup-system setup test-only test-rust

test-only:
	$(PY) -m pytest -q

FAST_MARKERS := not redis and not clickhouse and not e2e and not slow

test-fast: setup
	$(PY) -m pytest -q -m "$(FAST_MARKERS)"

lint: lint-proto check-proto lint-py lint-rust

# The native engine's crate held to the same gates as the Python: format, lints, unit tests.
# Its tests link libpython (the crate is built without pyo3's extension-module feature, which
# maturin turns on), found through PYO3_PYTHON.
.PHONY: lint-rust test-rust

lint-rust: check-rust
	cd native && cargo fmt --check
	cd native && cargo clippy --quiet --all-targets -- -D warnings

test-rust: setup
	cd native && PYO3_PYTHON=$(abspath $(PY)) cargo test --quiet

# ruff (rules and format) over the whole tree; mypy over the server package and the client
# (strict on kato_grpc/core and kato_client, see pyproject.toml).
LINT_PATHS ?= kato_grpc clients/python tests loadtest
MYPY_PATHS ?= kato_grpc clients/python

lint-py: setup
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy $(MYPY_PATHS)

# Fails when the committed generated code differs from what protos/ generates.
check-proto: setup
	$(MAKE) --no-print-directory proto >/dev/null
	@stale="$$(git status --porcelain -- $(PROTO_OUT) $(CLIENT_PROTO_OUT) $(GATEWAY_GENERATED))"; \
	if [ -n "$$stale" ]; then echo "$$stale"; echo "generated code is stale: run make proto and commit"; exit 1; fi

# Breaking-change check of protos/ against the last commit that changed them.
breaking: proto-deps
	./scripts/buf-breaking.sh

bench: setup
	$(PY) loadtest/bench_core.py
	$(PY) loadtest/bench_engines.py

# $(call generate_python,OUT,PACKAGE): the protobuf, gRPC and mypy-protobuf modules
# of protos/ into OUT/kato/v1, their imports rewritten to PACKAGE.kato.v1.
define generate_python
	rm -rf $(1)/kato
	mkdir -p $(1)/$(PROTO_PKG)
	$(PROTOC) \
	  --plugin=protoc-gen-mypy=$(PY_BIN_DIR)/protoc-gen-mypy \
	  --python_out=$(1) --mypy_out=$(1) \
	  $(PROTO_FILES)
	$(PROTOC) \
	  --plugin=protoc-gen-mypy_grpc=$(PY_BIN_DIR)/protoc-gen-mypy_grpc \
	  --grpc_python_out=$(1) --mypy_grpc_out=$(1) \
	  $(SERVICE_PROTO_FILES)
	sed -i.bak \
	  -e 's/^from kato\.v1 import /from $(2).kato.v1 import /' \
	  -e "s/'kato\.v1\.\([A-Za-z0-9_]*_pb2\)'/'$(2).kato.v1.\1'/" \
	  $(1)/$(PROTO_PKG)/*.py
	sed -i.bak \
	  -e 's/^import kato\.v1\./import $(2).kato.v1./' \
	  -e 's/\([^A-Za-z0-9_./]\)kato\.v1\.\([A-Za-z0-9_]*_pb2\)/\1$(2).kato.v1.\2/g' \
	  $(1)/$(PROTO_PKG)/*.pyi
	rm -f $(1)/$(PROTO_PKG)/*.bak
	printf '"""Generated code for package kato.v1 (make proto)."""\n' > $(1)/kato/__init__.py
	printf '"""Generated code for package kato.v1 (make proto)."""\n' > $(1)/$(PROTO_PKG)/__init__.py
	$(PY) -c 'import $(2).kato.v1.kato_service_pb2_grpc'
endef

proto:
	$(call generate_python,$(PROTO_OUT),kato_grpc._proto)
	$(PROTOC) --include_imports --include_source_info \
	  --descriptor_set_out=$(PROTO_OUT)/kato_v1.binpb $(PROTO_FILES)
	$(call generate_python,$(CLIENT_PROTO_OUT),kato_client._proto)
	printf '"""Generated code for protos/ (make proto), owned by the client."""\n' > $(CLIENT_PROTO_OUT)/__init__.py

proto-deps:
	mkdir -p $(PROTO_DEPS)/google/api $(PROTO_DEPS)/google/rpc
	cp $(addprefix $(GOOGLEAPIS_INCLUDE)/google/api/,$(GOOGLE_API_PROTOS)) $(PROTO_DEPS)/google/api/
	cp $(GOOGLEAPIS_INCLUDE)/google/rpc/status.proto $(PROTO_DEPS)/google/rpc/

lint-proto: proto-deps
	$(BUF) lint

# Go stubs and the Node client's proto imports (committed output).
#
#   make proto-go    clients/go/katov1/*.pb.go with protoc-gen-go and
#                    protoc-gen-go-grpc, at the versions pinned below (their
#                    version is written into every generated file). Install
#                    them once with
#                      go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
#                      go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v$(PROTOC_GEN_GO_GRPC_VERSION)
#                    then generation is offline. Go import paths come from the
#                    `option go_package` lines of protos/kato/v1/*.proto.
#   make proto-node  clients/node/third_party/google/{api,rpc}/*.proto,
#                    copied from the googleapis-common-protos wheel (as
#                    proto-deps does for buf) and committed: the Node client
#                    loads protos/kato/v1/*.proto with @grpc/proto-loader at
#                    run time and needs these imports (google/protobuf/* ship
#                    inside protobufjs), but neither protoc nor this venv.
#                    No code is generated. Offline, venv only.
#
# `make proto` runs both, so one command regenerates every language.

GO ?= go
GO_BIN ?= $(shell $(GO) env GOPATH 2>/dev/null || echo $(HOME)/go)/bin
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := 1.6.2
GO_CLIENT := clients/go
GO_MODULE := github.com/kato-grpc/kato-grpc/clients/go
NODE_CLIENT := clients/node

.PHONY: proto-go proto-node proto-gateway
proto: proto-go proto-node proto-gateway

proto-go:
	@$(GO_BIN)/protoc-gen-go --version 2>/dev/null | grep -qx 'protoc-gen-go $(PROTOC_GEN_GO_VERSION)' || { \
	  echo "proto-go: needs protoc-gen-go $(PROTOC_GEN_GO_VERSION) in $(GO_BIN):"; \
	  echo "  go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)"; exit 1; }
	@$(GO_BIN)/protoc-gen-go-grpc --version 2>/dev/null | grep -qx 'protoc-gen-go-grpc $(PROTOC_GEN_GO_GRPC_VERSION)' || { \
	  echo "proto-go: needs protoc-gen-go-grpc $(PROTOC_GEN_GO_GRPC_VERSION) in $(GO_BIN):"; \
	  echo "  go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v$(PROTOC_GEN_GO_GRPC_VERSION)"; exit 1; }
	rm -rf $(GO_CLIENT)/katov1
	$(PROTOC) \
	  --plugin=protoc-gen-go=$(GO_BIN)/protoc-gen-go \
	  --plugin=protoc-gen-go-grpc=$(GO_BIN)/protoc-gen-go-grpc \
	  --go_out=$(GO_CLIENT) --go_opt=module=$(GO_MODULE) \
	  --go-grpc_out=$(GO_CLIENT) --go-grpc_opt=module=$(GO_MODULE) \
	  $(PROTO_FILES)

proto-node:
	rm -rf $(NODE_CLIENT)/third_party
	mkdir -p $(NODE_CLIENT)/third_party/google/api $(NODE_CLIENT)/third_party/google/rpc
	cp $(addprefix $(GOOGLEAPIS_INCLUDE)/google/api/,$(GOOGLE_API_PROTOS)) $(NODE_CLIENT)/third_party/google/api/
	cp $(GOOGLEAPIS_INCLUDE)/google/rpc/status.proto $(GOOGLEAPIS_INCLUDE)/google/rpc/error_details.proto \
	  $(NODE_CLIENT)/third_party/google/rpc/

# Load tests with ghz (loadtest/run.py): starts redis-server and the server(s) on
# loopback, runs every scenario (~10 s each, ~6-8 min in all) and writes
# loadtest/report.md and loadtest/report.png. Figures, not pass/fail.
#   make loadtest LOADTEST_ARGS=--smoke    seconds per scenario, report in a temp dir
#   make loadtest LOADTEST_ARGS="--only observe-client --seconds 15"
# Needs redis-server (make setup-system) and ghz, installed here when missing
# (go install github.com/bojand/ghz/cmd/ghz@latest, into ~/go/bin).
.PHONY: loadtest
LOADTEST_ARGS ?=

$(VENV)/.installed-loadtest: $(VENV)/.installed
	$(VENV)/bin/pip install --quiet -e '.[loadtest]'
	touch $@

loadtest: setup $(VENV)/.installed-loadtest
	@command -v ghz >/dev/null 2>&1 || $(GO) install github.com/bojand/ghz/cmd/ghz@latest
	$(PY) loadtest/run.py $(LOADTEST_ARGS)

# The HTTP/JSON gateway (gateway/, its own Go module): grpc-gateway v2 transcodes the
# google.api.http routes of protos/ to gRPC calls on the server.
#
#   make proto-gateway  gateway/katov1/kato_service.pb.gw.go (protoc-gen-grpc-gateway,
#                       standalone: it imports the Go client's katov1 stubs) and
#                       gateway/openapi/kato_service.swagger.json (protoc-gen-openapiv2),
#                       both committed and checked by check-proto. Plugins pinned below:
#                         go install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@$(GRPC_GATEWAY_VERSION)
#                         go install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@$(GRPC_GATEWAY_VERSION)
#   make gateway        the binary, bin/kato-gateway (Go; modules from the proxy)
#   make gateway-assets the Swagger UI it serves at /docs/: swagger-ui-dist, pinned in
#                       gateway/package-lock.json, installed with npm ci and copied into
#                       gateway/static/swagger-ui/ (git-ignored; see gateway/README.md)
GRPC_GATEWAY_VERSION := v2.34.0
GATEWAY := gateway
GATEWAY_GENERATED := $(GATEWAY)/katov1 $(GATEWAY)/openapi
SWAGGER_UI := $(GATEWAY)/static/swagger-ui

proto-gateway:
	@for p in protoc-gen-grpc-gateway protoc-gen-openapiv2; do \
	  $(GO_BIN)/$$p --version 2>/dev/null | grep -q 'Version $(GRPC_GATEWAY_VERSION),' || { \
	    echo "proto-gateway: needs $$p $(GRPC_GATEWAY_VERSION) in $(GO_BIN):"; \
	    echo "  go install github.com/grpc-ecosystem/grpc-gateway/v2/$$p@$(GRPC_GATEWAY_VERSION)"; exit 1; }; \
	done
	rm -rf $(GATEWAY_GENERATED)
	mkdir -p $(GATEWAY)/openapi
	$(PROTOC) \
	  --plugin=protoc-gen-grpc-gateway=$(GO_BIN)/protoc-gen-grpc-gateway \
	  --grpc-gateway_out=$(GATEWAY) --grpc-gateway_opt=module=$(GO_MODULE),standalone=true \
	  $(SERVICE_PROTO_FILES)
	$(PROTOC) \
	  --plugin=protoc-gen-openapiv2=$(GO_BIN)/protoc-gen-openapiv2 \
	  --openapiv2_out=$(GATEWAY)/openapi \
	  --openapiv2_opt=openapi_naming_strategy=simple,openapi_configuration=$(GATEWAY)/openapi.yaml \
	  $(SERVICE_PROTO_FILES)
	mv $(GATEWAY)/openapi/$(PROTO_PKG)/kato_service.swagger.json $(GATEWAY)/openapi/
	rm -rf $(GATEWAY)/openapi/kato

.PHONY: gateway gateway-assets
gateway:
	cd $(GATEWAY) && $(GO) build -o ../bin/kato-gateway .

gateway-assets: $(SWAGGER_UI)/.installed

$(SWAGGER_UI)/.installed: $(GATEWAY)/package.json $(GATEWAY)/package-lock.json
	cd $(GATEWAY) && npm ci --silent --no-audit --no-fund
	rm -rf $(SWAGGER_UI) && mkdir -p $(SWAGGER_UI)
	cp $(addprefix $(GATEWAY)/node_modules/swagger-ui-dist/,swagger-ui.css swagger-ui-bundle.js swagger-ui-standalone-preset.js favicon-32x32.png LICENSE) $(SWAGGER_UI)/
	touch $@

# HTTP/JSON through the gateway next to gRPC, and tracing on/off (loadtest/http_gateway.py,
# ~2 min): writes loadtest/http-report.md. Needs ghz and hey (installed here when missing).
.PHONY: loadtest-http
loadtest-http: setup
	@command -v ghz >/dev/null 2>&1 || $(GO) install github.com/bojand/ghz/cmd/ghz@latest
	@command -v hey >/dev/null 2>&1 || $(GO) install github.com/rakyll/hey@v0.1.4
	$(PY) loadtest/http_gateway.py $(LOADTEST_ARGS)
