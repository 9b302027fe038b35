# syntax=docker/dockerfile:1

# ---- build ------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
WORKDIR /src

COPY Cargo.toml Cargo.lock ./
COPY domain/ domain/
COPY commands/ commands/
COPY projections/ projections/
COPY api/ api/
COPY src/ src/
COPY tests/ tests/

# Registry and target dir are BuildKit cache mounts (reused across builds), so
# the binary is copied out of target/ inside the same RUN.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin crm \
    && install -m 0755 target/release/crm /usr/local/bin/crm

# ---- runtime ----------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 crm \
    && useradd --system --uid 10001 --gid crm --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin crm

COPY --from=builder /usr/local/bin/crm /usr/local/bin/crm

USER crm:crm
ENV CRM_ADDR=0.0.0.0:8080
EXPOSE 8080

ENTRYPOINT ["/usr/local/bin/crm"]
CMD ["serve"]
