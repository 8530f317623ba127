# pgate container image: a release binary on a slim Debian base, built in two stages.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, in a layer of their own: it is rebuilt only when Cargo.toml or
# Cargo.lock change, not on every source edit.
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && echo '' > src/lib.rs \
    && cargo build --release --locked --bin pgate \
    && rm -rf src
COPY src ./src
# The commit for pgate_build_info (no .git in the build context): --build-arg PGATE_COMMIT=...
ARG PGATE_COMMIT=unknown
ENV PGATE_COMMIT=${PGATE_COMMIT}
# The placeholder crate's fingerprints are older than the real sources: touch them so cargo
# rebuilds pgate itself (and only pgate).
RUN touch src/main.rs src/lib.rs build.rs && cargo build --release --locked --bin pgate

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/pgate /usr/local/bin/pgate
COPY config/pgate.toml /etc/pgate/pgate.toml
USER 65534:65534
# 5432: PostgreSQL clients; 9127: /metrics, /healthz, /readyz.
EXPOSE 5432 9127
# SIGTERM drains (idle clients told 57P01, transactions finish, the audit log is flushed);
# a second SIGTERM closes at once.
STOPSIGNAL SIGTERM
ENV PGATE_LOG_FORMAT=json PGATE_CONFIG=/etc/pgate/pgate.toml
ENTRYPOINT ["/usr/local/bin/pgate"]
CMD ["run", "--config", "/etc/pgate/pgate.toml"]
