#!/usr/bin/env bash
# Installs and builds what the examples in other languages and tests/polyglot need.
# Idempotent; a second run only checks versions (a few seconds).
#   buf                               npm @bufbuild/buf    (lint + breaking checks, codegen)
#   protoc-gen-go, protoc-gen-go-grpc go install           (examples/go/gen)
#   grpcurl                           go install           (README examples)
#   examples/node/node_modules        npm ci
#   the Go example client             go build            ($BIN/browserbroker-go-example)
#   examples/attach/node/node_modules npm ci               (Node Playwright, Puppeteer attached)
#   the chromedp attached client      go build            ($BIN/browserbroker-attach-chromedp)
#   bench/browserless/node_modules    npm ci               (Browserless, a peer in bench.peers)
#   jq, openssl                       apt-get, if missing  (documented examples)
# Tools land in $BIN=${BROKER_CACHE_DIR:-$HOME/.cache/browser-broker}/bin: put it on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

BUF_VERSION=1.75.0
PROTOBUF_GO_VERSION=v1.36.12 # protoc-gen-go; keep equal to google.golang.org/protobuf in examples/go/go.mod
GRPC_GO_PLUGIN_VERSION=v1.6.2 # protoc-gen-go-grpc
GRPCURL_VERSION=v1.9.4

CACHE=${BROKER_CACHE_DIR:-$HOME/.cache/browser-broker}
BIN=$CACHE/bin
mkdir -p "$BIN"
export PATH="$BIN:$PATH:/usr/local/go/bin"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
log() { printf '[polyglot] %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null || { log "$1 not found: $2"; exit 1; }; }
need go "install Go (the version in examples/go/go.mod, 1.26+)"
need npm "install Node.js >= 20 with npm"

# buf: the npm package ships the binary for this platform.
if [ "$(buf --version 2>/dev/null)" != "$BUF_VERSION" ]; then
  log "installing buf $BUF_VERSION"
  npm install --silent --no-audit --no-fund --prefix "$CACHE/npm-buf-$BUF_VERSION" "@bufbuild/buf@$BUF_VERSION"
  ln -sf "$CACHE/npm-buf-$BUF_VERSION/node_modules/.bin/buf" "$BIN/buf"
fi

# go_tool NAME PACKAGE VERSION: go install unless $BIN/NAME was built from that version.
go_tool() {
  if [ "$(go version -m "$BIN/$1" 2>/dev/null | awk '$1 == "mod" { print $3 }')" != "$3" ]; then
    log "installing $1 $3"
    GOBIN=$BIN go install "$2@$3"
  fi
}
go_tool protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOBUF_GO_VERSION"
go_tool protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$GRPC_GO_PLUGIN_VERSION"
go_tool grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl "$GRPCURL_VERSION"

for tool in jq openssl; do  # the grpcurl examples use jq; the TLS docs make certificates with openssl
  if ! command -v "$tool" >/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
      log "installing $tool with apt-get"
      apt-get update -qq >/dev/null || true
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
    else
      log "$tool not found (the documented examples use it); install it"
      exit 1
    fi
  fi
done

# npm_ci DIR NAME: npm ci in DIR when its package-lock.json changed or node_modules is gone.
npm_ci() {
  local stamp
  stamp=$CACHE/stamps/$2-$(sha1sum "$1/package-lock.json" | cut -c1-16)
  if [ ! -f "$stamp" ] || [ ! -f "$1/node_modules/.package-lock.json" ]; then
    log "npm ci in $1"
    (cd "$1" && npm ci --silent --no-audit --no-fund)
    mkdir -p "$CACHE/stamps" && touch "$stamp"
  fi
}
npm_ci examples/node node-example
npm_ci examples/attach/node attach-node  # playwright-core, puppeteer-core (tests/polyglot)
npm_ci bench/browserless peer-browserless  # @browserless.io/browserless (bench.peers; no downloads)

# Go programs: go build is incremental and fetches modules into Go's module cache.
log "building examples/go"
(cd examples/go && go build -o "$BIN/browserbroker-go-example" .)
log "building examples/attach/go"
(cd examples/attach/go && go build -o "$BIN/browserbroker-attach-chromedp" .)
log "ready: $BIN"
