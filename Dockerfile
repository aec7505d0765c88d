# Burrow relay: a static binary on a minimal base, run as a non-root user.
# Build with the version stamped in:
#   docker build --build-arg VERSION=0.1.0 --build-arg COMMIT=$(git rev-parse HEAD) -t burrow .
# Signatures are verified by libsecp256k1 (go-nostr's libsecp256k1 build tag
# compiles the copy of the C library go-nostr ships; about 5x the pure-Go
# verifier): cgo, linked statically against glibc, so the binary still runs
# on a base with no libc. netgo and osusergo keep glibc's NSS (getaddrinfo,
# getpwnam) out of it, which a static glibc cannot load.
FROM golang:1.26 AS build
ARG VERSION=0.1.0-dev
ARG COMMIT=
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
# .dockerignore keeps data/, binaries and node_modules out of this copy.
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -buildvcs=false -tags libsecp256k1,netgo,osusergo \
      -ldflags "-s -w -linkmode external -extldflags -static -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/relay ./cmd/relay \
 && if readelf -lW /out/relay | grep -q INTERP; then echo "relay is dynamically linked" >&2; exit 1; fi \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/relay /relay
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV RELAY_LISTEN=0.0.0.0:3334 RELAY_DATA_DIR=/data
EXPOSE 3334
VOLUME ["/data"]
# No shell or curl in the image: the binary asks its own /readyz.
HEALTHCHECK --interval=10s --timeout=6s --start-period=10s --retries=3 CMD ["/relay", "healthcheck"]
ENTRYPOINT ["/relay"]
