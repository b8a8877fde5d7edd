# wxmp as a container image: `docker build -t wxmp .`
#
# Two stages: the official Rust image compiles the release binary from the locked
# dependencies; the runtime image is Debian slim with the binary alone, run as an
# unprivileged user. The binary needs nothing from the image at run time: the TLS roots for
# WeChat and Redis are compiled in (rustls with the webpki roots, no system CA store) and
# SQLite is bundled. Both stages are Debian bookworm, so the glibc the binary was linked
# against is the one it runs on.
#
# Run it with a config mounted at /etc/wxmp/wxmp.toml whose `listen` is "0.0.0.0:8080" (a
# loopback address inside the container is unreachable from outside it), secrets in the
# environment, and a volume on /var/lib/wxmp for the SQLite file. docs/deploy.md has the
# details, including a stop timeout longer than the 15 s drain.

# At least the workspace's rust-version (Cargo.toml).
ARG RUST_VERSION=1.88

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Only what the build reads; .dockerignore keeps target/, fuzz/ and the rest out of the context.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN cargo build --release --locked -p wxmp \
    && install -m 0755 target/release/wxmp /usr/local/bin/wxmp

FROM debian:bookworm-slim
RUN useradd --system --user-group --uid 10001 --home-dir /var/lib/wxmp --no-create-home \
        --shell /usr/sbin/nologin wxmp \
    && mkdir -p /var/lib/wxmp /etc/wxmp \
    && chown wxmp:wxmp /var/lib/wxmp \
    && chmod 0750 /var/lib/wxmp
COPY --from=build /usr/local/bin/wxmp /usr/local/bin/wxmp
USER wxmp
# The working directory is where relative paths in the config land, the default SQLite path
# (wxmp-data/wxmp.db) included; a volume here keeps tokens across container restarts.
WORKDIR /var/lib/wxmp
VOLUME ["/var/lib/wxmp"]
EXPOSE 8080
# No HEALTHCHECK: the slim image has no HTTP client to call /healthz with. Let the
# orchestrator probe GET /healthz (see docs/deploy.md).
ENTRYPOINT ["wxmp"]
CMD ["serve", "--config", "/etc/wxmp/wxmp.toml"]
