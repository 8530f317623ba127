# pgate container image: a static-ish release binary on a slim Debian base.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
# The commit for pgate_build_info (no .git in the build context): --build-arg PGATE_COMMIT=...
ARG PGATE_COMMIT=unknown
ENV PGATE_COMMIT=${PGATE_COMMIT}
RUN cargo build --release --locked --bin pgate

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/pgate /usr/local/bin/pgate
COPY config/pgate.toml /etc/pgate/pgate.toml
USER 65534:65534
EXPOSE 5432 9127
ENV PGATE_LOG_FORMAT=json
ENTRYPOINT ["/usr/local/bin/pgate"]
CMD ["run", "--config", "/etc/pgate/pgate.toml"]
