# Burrow relay: a static binary on a minimal base, run as a non-root user.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/relay ./cmd/relay \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/relay /relay
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV RELAY_LISTEN=0.0.0.0:3334 RELAY_DATA_DIR=/data
EXPOSE 3334
VOLUME ["/data"]
ENTRYPOINT ["/relay"]
