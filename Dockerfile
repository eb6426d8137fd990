# syntax=docker/dockerfile:1
#
# The `tasker` binary in a minimal image. See docs/deployment.md.
#
#   docker build -t tasker:dev .
#   docker run --rm -p 8080:8080 -e TASKER_DATABASE_URL=postgres://... tasker:dev
#
# Stages: `chef` (toolchain + cargo-chef), `planner` (the dependency recipe), `builder` (the
# dependencies in a layer of their own, then the workspace), and the runtime image. A change to
# the workspace's sources rebuilds only the last `cargo build`; the dependency layer is rebuilt
# only when a manifest or Cargo.lock changes.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
# The slim image already has gcc and libc headers, all the C that bundled SQLite and aws-lc need.
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --package tasker-server --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --package tasker-server \
    && install -D -m 0755 target/release/tasker /out/tasker

# distroless/cc: glibc, libgcc, CA certificates and a `nonroot` user (65532); no shell and no
# package manager. Debian 12 matches the builder's glibc.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="tasker" \
      org.opencontainers.image.description="Tasker: durable workflow orchestration (API server and worker)" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=builder /out/tasker /usr/local/bin/tasker

# JSON log lines for the collector; every setting can still be overridden with TASKER_*.
ENV TASKER_LOG__FORMAT=json
WORKDIR /home/nonroot
USER 65532:65532
EXPOSE 8080

# `tasker health` asks GET /v1/health/ready on 127.0.0.1:8080 (the image has no curl). Only
# `serve` answers HTTP: a `worker` container checks itself with `tasker health --local` (the
# database and cache from its own process), and `migrate` runs with the healthcheck disabled.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/tasker", "health"]
# `tasker` drains on SIGTERM for up to engine.shutdown_grace (30 s by default).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/tasker"]
CMD ["serve", "--bind", "0.0.0.0:8080"]
