#!/usr/bin/env bash
# Installs what ferry's tests need, once; later runs find it cached.
#   - MinIO, built from the Go module proxy (the tests start it on 127.0.0.1)
#   - Centrifugo, built from the Go module proxy (the peer that
#     `ferry bench fanout --peer centrifugo` measures; a test runs it)
#   - nats-server, built from the Go module proxy (the cluster tests run a
#     3-node NATS cluster of it), the version go.mod requires: the one
#     `ferry serve` embeds
#   - Chromium (browser tests), docker-compose (checks docker-compose.yml),
#     Node.js (runs the browser client's unit tests) and openssl (makes the
#     TLS tests' certificates), from Debian's packages
set -euo pipefail

MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
CENTRIFUGO_VERSION=v6.9.1
NATS_SERVER_VERSION=$(go list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2)
GOBIN="$(go env GOPATH)/bin"

if [ ! -x "$GOBIN/minio" ]; then
	echo "test-deps: building MinIO $MINIO_VERSION (about two minutes, once)"
	GOFLAGS= go install "github.com/minio/minio@$MINIO_VERSION"
fi
if [ ! -x "$GOBIN/centrifugo" ]; then
	echo "test-deps: building Centrifugo $CENTRIFUGO_VERSION (about three minutes, once)"
	GOFLAGS= go install "github.com/centrifugal/centrifugo/v6@$CENTRIFUGO_VERSION"
fi
if [ ! -x "$GOBIN/nats-server" ]; then
	echo "test-deps: building nats-server $NATS_SERVER_VERSION"
	GOFLAGS= go install "github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION"
fi

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
		echo "test-deps: missing ${missing[*]} and cannot install them here (needs root and apt-get)" >&2
		exit 0 # the tests themselves skip, or fail when FERRY_REQUIRE_ALL=1
	fi
	echo "test-deps: installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
