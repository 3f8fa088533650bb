# KATO gRPC on its embedded default (SQLite in /data). The build stage runs `make setup`,
# the same step a developer runs, so the image and a checkout install the same way; it
# needs a Rust toolchain for the native engine (native/), which the runtime image does not.
FROM python:3.11-slim AS build

RUN apt-get update \
 && apt-get install -y --no-install-recommends make curl ca-certificates gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/opt/rustup CARGO_HOME=/opt/cargo PATH=/opt/cargo/bin:$PATH
RUN curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --no-modify-path

WORKDIR /app
COPY . .
RUN make setup && rm -rf native/target

FROM python:3.11-slim

RUN useradd --create-home --uid 10001 kato \
 && mkdir -p /data && chown kato:kato /data
COPY --from=build --chown=kato:kato /app /app
WORKDIR /app
USER kato

ENV KATO_HOST=0.0.0.0 \
    KATO_PORT=50051 \
    KATO_DATA_DIR=/data \
    KATO_HEALTH_TARGET=127.0.0.1:50051
VOLUME ["/data"]
EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/app/.venv/bin/kato-grpc", "health"]
CMD ["/app/.venv/bin/kato-grpc", "serve"]
