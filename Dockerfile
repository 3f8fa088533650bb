# KATO gRPC, built in two stages.
#
# build:   the wheels of kato-grpc (with its Rust extension, native/) and of kato-client
#          (the `kato` command line), made with the same `pip wheel` that
#          tests/e2e/test_deploy.py runs; needs a Rust toolchain, which the runtime does not.
# runtime: those wheels and their runtime dependencies, nothing else (no source tree, no
#          compiler, no dev tools); a non-root user; gRPC on 50051, Prometheus /metrics on
#          9090; the standard gRPC health service as the HEALTHCHECK.
#
#   docker build -t kato-grpc .
#   docker run -p 50051:50051 -p 9090:9090 -v kato-data:/data kato-grpc
#   docker compose up            # with Redis (sessions) and ClickHouse (knowledge bases)
FROM python:3.11-slim AS build

RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/opt/rustup CARGO_HOME=/opt/cargo PATH=/opt/cargo/bin:$PATH
RUN curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --no-modify-path

WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . ./clients/python

FROM python:3.11-slim AS runtime

COPY --from=build /wheels /wheels
# The wheels' own requirements only: `.[dev]` (pytest, mypy, ruff, ...) is never installed.
RUN pip install --no-cache-dir /wheels/*.whl \
 && rm -rf /wheels \
 && useradd --create-home --uid 10001 kato \
 && mkdir -p /data && chown kato:kato /data
USER kato
WORKDIR /home/kato

ENV KATO_HOST=0.0.0.0 \
    KATO_PORT=50051 \
    KATO_METRICS_PORT=9090 \
    KATO_DATA_DIR=/data \
    KATO_HEALTH_TARGET=127.0.0.1:50051
VOLUME ["/data"]
EXPOSE 50051 9090
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["kato-grpc", "health"]
CMD ["kato-grpc", "serve"]
