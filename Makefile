# KATO gRPC — developer targets.
#
#   make serve       set up (venv + package) and serve on 127.0.0.1:50051, embedded store
#   make test        set up everything the tests need (venv, redis-server, clickhouse-server,
#                    grpcurl, Go and Node client deps) and run the whole suite
#   make setup       only the Python virtualenv with the package and its dev tools
#   make lint        buf lint of protos/ and a check that generated code matches protos/
#   make bench       the benchmarks in loadtest/ (figures, not pass/fail)
#
# Proto targets:
#   make proto       regenerate kato_grpc/_proto/ from protos/ (committed output),
#                    including kato_v1.binpb, a descriptor set with the comments
#                    (source info), for a reflection service that serves them
#                    (see kato_grpc/_proto/__init__.py)
#   make lint-proto  buf lint (STANDARD + COMMENTS) of protos/
#
# Generated imports: protoc writes `from kato.v1 import types_pb2`, an import
# rooted at protos/. `make proto` rewrites those lines (and the module names
# and the .pyi type references) to `kato_grpc._proto.kato.v1`, so generated
# code is a normal subpackage: `from kato_grpc._proto.kato.v1 import
# kato_service_pb2`. Nothing is added to sys.path and no top-level `kato`
# package exists, so a module can never be loaded twice under two names.
#
# google/api/field_behavior.proto comes from the installed
# googleapis-common-protos wheel (it is not vendored): protoc reads it from
# site-packages, buf from $(PROTO_DEPS), a git-ignored copy made by
# `make proto-deps`. buf needs no network.

PY ?= .venv/bin/python
BUF ?= .venv/bin/buf

PROTO_SRC := protos
PROTO_OUT := kato_grpc/_proto
PROTO_PKG := kato/v1
PROTO_DEPS := build/protodeps
PROTO_FILES := $(sort $(wildcard $(PROTO_SRC)/$(PROTO_PKG)/*.proto))
SERVICE_PROTO_FILES := $(sort $(wildcard $(PROTO_SRC)/$(PROTO_PKG)/*_service.proto))

# Include directories and plugin locations, asked of the interpreter so that
# they follow whatever venv PY points at.
PY_BIN_DIR = $(shell $(PY) -c 'import os, sys; print(os.path.dirname(sys.executable))')
GRPC_TOOLS_INCLUDE = $(shell $(PY) -c 'import os, grpc_tools; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')
GOOGLEAPIS_INCLUDE = $(shell $(PY) -c 'import os, google.api.field_behavior_pb2 as m; print(os.path.dirname(os.path.dirname(os.path.dirname(m.__file__))))')

PROTOC = $(PY) -m grpc_tools.protoc -I $(PROTO_SRC) -I $(GRPC_TOOLS_INCLUDE) -I $(GOOGLEAPIS_INCLUDE)

.PHONY: setup setup-system serve test test-only lint check-proto breaking bench proto proto-deps lint-proto

PYTHON ?= python3
VENV := .venv
GOBIN := $(HOME)/go/bin
export PATH := $(CURDIR)/$(VENV)/bin:$(GOBIN):/usr/local/go/bin:$(PATH)

# The virtualenv is rebuilt only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

serve: setup
	$(VENV)/bin/kato-grpc serve

# System packages and tools the integration and e2e tests use (Debian; needs root).
setup-system:
	./scripts/setup-system.sh

test: setup setup-system test-only

test-only:
	$(PY) -m pytest -q

lint: lint-proto check-proto

# Fails when the committed generated code differs from what protos/ generates.
check-proto: setup
	$(MAKE) --no-print-directory proto >/dev/null
	git diff --exit-code --stat -- $(PROTO_OUT) || (echo "generated code is stale: run make proto and commit" && exit 1)

# Breaking-change check of protos/ against the last commit that changed them.
breaking: proto-deps
	./scripts/buf-breaking.sh

bench: setup
	$(PY) loadtest/bench_core.py

proto:
	rm -rf $(PROTO_OUT)/kato $(PROTO_OUT)/kato_v1.binpb
	mkdir -p $(PROTO_OUT)/$(PROTO_PKG)
	$(PROTOC) \
	  --plugin=protoc-gen-mypy=$(PY_BIN_DIR)/protoc-gen-mypy \
	  --python_out=$(PROTO_OUT) --mypy_out=$(PROTO_OUT) \
	  --include_imports --include_source_info --descriptor_set_out=$(PROTO_OUT)/kato_v1.binpb \
	  $(PROTO_FILES)
	$(PROTOC) \
	  --plugin=protoc-gen-mypy_grpc=$(PY_BIN_DIR)/protoc-gen-mypy_grpc \
	  --grpc_python_out=$(PROTO_OUT) --mypy_grpc_out=$(PROTO_OUT) \
	  $(SERVICE_PROTO_FILES)
	sed -i.bak \
	  -e 's/^from kato\.v1 import /from kato_grpc._proto.kato.v1 import /' \
	  -e "s/'kato\.v1\.\([A-Za-z0-9_]*_pb2\)'/'kato_grpc._proto.kato.v1.\1'/" \
	  $(PROTO_OUT)/$(PROTO_PKG)/*.py
	sed -i.bak \
	  -e 's/^import kato\.v1\./import kato_grpc._proto.kato.v1./' \
	  -e 's/\([^A-Za-z0-9_./]\)kato\.v1\.\([A-Za-z0-9_]*_pb2\)/\1kato_grpc._proto.kato.v1.\2/g' \
	  $(PROTO_OUT)/$(PROTO_PKG)/*.pyi
	rm -f $(PROTO_OUT)/$(PROTO_PKG)/*.bak
	printf '"""Generated code for package kato.v1 (make proto)."""\n' > $(PROTO_OUT)/kato/__init__.py
	printf '"""Generated code for package kato.v1 (make proto)."""\n' > $(PROTO_OUT)/$(PROTO_PKG)/__init__.py
	$(PY) -c 'import kato_grpc._proto.kato.v1.kato_service_pb2_grpc'

proto-deps:
	mkdir -p $(PROTO_DEPS)/google/api
	cp $(GOOGLEAPIS_INCLUDE)/google/api/field_behavior.proto $(PROTO_DEPS)/google/api/

lint-proto: proto-deps
	$(BUF) lint
