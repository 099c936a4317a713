# syntax=docker/dockerfile:1

# Build: a static binary, so the runtime image needs no C library.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ferry ./cmd/ferry

# Run: Alpine rather than distroless for busybox's wget, which the health
# check needs.
FROM alpine:3
RUN addgroup -S -g 10001 ferry \
 && adduser -S -D -H -u 10001 -G ferry ferry \
 && mkdir /data && chown ferry:ferry /data
COPY --from=build /out/ferry /usr/local/bin/ferry
USER ferry:ferry
# ferry's data folder: local disk storage and the server's own state. Every
# flag reads FERRY_<FLAG> from the environment.
ENV FERRY_DATA=/data
WORKDIR /data
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD wget -q -O /dev/null http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/ferry"]
CMD ["serve", "--addr", "0.0.0.0:8080"]
