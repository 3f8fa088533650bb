# KATO gRPC on its embedded default (SQLite in /data). The build runs `make setup`,
# the same step a developer runs, so the image and a checkout install the same way.
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 kato \
 && mkdir -p /app /data && chown kato:kato /app /data

WORKDIR /app
COPY --chown=kato:kato . .
USER kato
RUN make setup

ENV KATO_HOST=0.0.0.0 \
    KATO_PORT=50051 \
    KATO_DATA_DIR=/data \
    KATO_HEALTH_TARGET=127.0.0.1:50051
VOLUME ["/data"]
EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/app/.venv/bin/kato-grpc", "health"]
CMD ["/app/.venv/bin/kato-grpc", "serve"]
