# The gateway's container image: the release binary on distroless, running as a non-root user.
#
#   docker build -t vmware-grpc-gateway:0.1.0 .
#   docker run --rm -v "$PWD/gateway.toml:/etc/gateway/gateway.toml:ro" -e VC1_PASSWORD \
#       -p 50051:50051 vmware-grpc-gateway:0.1.0
#   docker run --rm -v "$PWD/gateway.toml:/etc/gateway/gateway.toml:ro" -e VC1_PASSWORD \
#       vmware-grpc-gateway:0.1.0 check-config --config /etc/gateway/gateway.toml
#
# The configuration must set `[server] listen = "0.0.0.0:50051"`: the default, 127.0.0.1,
# cannot be reached from outside the container. deploy/kubernetes/ runs this image.
# In production, pin both base images by digest (`rust:1.95-bookworm@sha256:…`).

# Build stage. Cargo.toml says rust-version 1.85, but the versions Cargo.lock pins need more
# (tonic 0.14.9, time 0.3.55 and icu 2.4 declare 1.88, and cargo refuses an older rustc);
# 1.95 is the toolchain CI builds and tests with. tests/python/test_deploy.py checks this
# tag against both. bookworm matches the runtime's Debian 12, so the binary links against
# the same glibc. No protoc is needed (build.rs compiles proto/ with the pure-Rust protox)
# and TLS is rustls, so no OpenSSL either.
FROM rust:1.95-bookworm AS build
WORKDIR /src

# Dependencies first, in their own layer: with empty stand-ins for the crate's sources, this
# layer downloads and compiles every dependency, and is reused until Cargo.toml or
# Cargo.lock change. --locked: build exactly the versions in Cargo.lock, or fail.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

# The crate itself. COPY keeps the build context's file times, which can be older than the
# stand-ins compiled above; the touch makes cargo rebuild the crate instead of reusing them.
COPY build.rs ./
COPY proto ./proto
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && install -D -m 0755 target/release/vmware-grpc-gateway /out/vmware-grpc-gateway

# Runtime stage: glibc, libgcc and the CA certificates (rustls reads the system roots from
# /etc/ssl/certs), no shell, no package manager. The :nonroot variant's user is 65532; it is
# named by number so that Kubernetes' runAsNonRoot can verify it without an /etc/passwd lookup.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/vmware-grpc-gateway /usr/local/bin/vmware-grpc-gateway
USER 65532:65532

# 50051: gRPC (`[server] listen`). 9090: the admin listener (`[admin] listen`: /metrics,
# /healthz, /readyz), which is off unless the configuration turns it on.
EXPOSE 50051 9090

# No HEALTHCHECK: the image has no shell or client to run one. Orchestrators probe
# grpc.health.v1 on 50051, or /readyz on 9090 (deploy/kubernetes/deployment.yaml).
# The arguments are a CMD, so `docker run IMAGE check-config --config FILE` works too.
ENTRYPOINT ["/usr/local/bin/vmware-grpc-gateway"]
CMD ["serve", "--config", "/etc/gateway/gateway.toml"]
