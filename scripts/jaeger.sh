#!/usr/bin/env bash
# Jaeger all-in-one for tests, built from source through the Go module proxy
# (no Docker, no GitHub release downloads here).
#   scripts/jaeger.sh build       print the binary path; build it first if not cached
#   scripts/jaeger.sh path        print the binary path if it is built, else fail (builds nothing)
#   scripts/jaeger.sh start DIR   run the built binary in the background on 127.0.0.1 (in-memory
#                                 storage); writes DIR/jaeger.yaml, .pid and .log
#   scripts/jaeger.sh stop DIR    stop the instance started with that DIR
# Ports (env): JAEGER_OTLP_GRPC_PORT=4317 JAEGER_OTLP_HTTP_PORT=4318
#              JAEGER_QUERY_PORT=16686 (HTTP API + UI) JAEGER_QUERY_GRPC_PORT=16685
# See docs/jaeger-notes.md for the query API and timings.
set -euo pipefail

JAEGER_VERSION=v1.76.0
MODULE=github.com/jaegertracing/jaeger
BIN=${BROKER_CACHE_DIR:-$HOME/.cache/browser-broker}/jaeger-$JAEGER_VERSION/jaeger
export PATH="$PATH:/usr/local/go/bin"
# local: never let go.mod's "toolchain" line download another Go.
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false

log() { printf '[jaeger] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

build() {
  if [ -x "$BIN" ]; then echo "$BIN"; return; fi
  command -v go >/dev/null || die "go not found (need Go 1.24+)"
  # `go install module/cmd/jaeger@version` is refused because jaeger's go.mod has a
  # replace directive, so fetch the module and build inside it (replace honoured).
  # The module cache is read-only but go build only writes to GOCACHE.
  log "downloading $MODULE@$JAEGER_VERSION"
  # cd /: outside any module, so no go.mod/go.sum of ours gets touched.
  local json src
  json=$(cd / && go mod download -json "$MODULE@$JAEGER_VERSION") || die "go mod download failed: $json"
  src=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$src" ] || die "go mod download gave no source dir: $json"
  mkdir -p "$(dirname "$BIN")"
  # Temp file in the same dir, then mv: an interrupted build never leaves a
  # half-written binary at $BIN, and concurrent builds each rename atomically.
  local tmp="$BIN.tmp.$$"
  trap 'rm -f "$tmp"' EXIT
  log "building $MODULE/cmd/jaeger $JAEGER_VERSION (cold: ~8-9 min on 2 cores)"
  # -s -w: smaller binary and faster link; version ldflag so `jaeger version` says so.
  (cd "$src" && go build -trimpath -o "$tmp" \
    -ldflags "-s -w -X $MODULE/internal/version.latestVersion=$JAEGER_VERSION" \
    ./cmd/jaeger) >&2
  mv -f "$tmp" "$BIN"
  trap - EXIT
  log "built $BIN"
  echo "$BIN"
}

# Jaeger v1.76's cmd/jaeger is "Jaeger v2" (an OpenTelemetry Collector); it takes a
# YAML config, not the old v1 flags. Only what tests need, bound to loopback:
# no self-tracing (it would export to localhost:4317, maybe someone else's),
# no internal metrics server (:8888), no batch processor (spans are stored at once).
write_config() {
  cat >"$1" <<EOF
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: info
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    enable_tracing: false
    http:
      endpoint: 127.0.0.1:$QUERY_PORT
    grpc:
      endpoint: 127.0.0.1:${JAEGER_QUERY_GRPC_PORT:-16685}
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:${JAEGER_OTLP_GRPC_PORT:-4317}
      http:
        endpoint: 127.0.0.1:${JAEGER_OTLP_HTTP_PORT:-4318}
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
EOF
}

path() {
  [ -x "$BIN" ] || die "Jaeger $JAEGER_VERSION is not built: run scripts/jaeger.sh build"
  echo "$BIN"
}

running() { [ -f "$1/jaeger.pid" ] && kill -0 "$(cat "$1/jaeger.pid")" 2>/dev/null; }

start() {
  local dir=$1 bin i t0
  QUERY_PORT=${JAEGER_QUERY_PORT:-16686}
  local url="http://127.0.0.1:$QUERY_PORT/api/services"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd) # absolute: the config path is given to jaeger
  running "$dir" && die "already running (pid $(cat "$dir/jaeger.pid")); stop it first"
  bin=$(path)
  write_config "$dir/jaeger.yaml"
  t0=$(date +%s%N)
  # setsid: own session, so the test runner's Ctrl-C/process group doesn't hit it
  # and it outlives this script.
  setsid "$bin" --config "file:$dir/jaeger.yaml" >"$dir/jaeger.log" 2>&1 </dev/null &
  echo $! >"$dir/jaeger.pid"
  # Ready = the collector logged that all receivers are bound (the query API comes
  # up before the OTLP receivers, and a bind failure there still kills the process)
  # and the query API answers (also proves nobody else owns that port: it would
  # have made our bind fail, so no "Everything is ready").
  for i in $(seq 1 300); do # 300 x 0.2 s = 60 s
    if grep -q "Everything is ready" "$dir/jaeger.log" && running "$dir" &&
      curl -fsS -o /dev/null "$url" 2>/dev/null; then
      log "ready in $((($(date +%s%N) - t0) / 1000000)) ms: query http://127.0.0.1:$QUERY_PORT, OTLP grpc 127.0.0.1:${JAEGER_OTLP_GRPC_PORT:-4317} http 127.0.0.1:${JAEGER_OTLP_HTTP_PORT:-4318} (pid $(cat "$dir/jaeger.pid"))"
      return 0
    fi
    running "$dir" || break # exited already (e.g. port in use): don't wait 60 s
    sleep 0.2
  done
  log "jaeger did not answer $url; last log lines:"
  tail -n 30 "$dir/jaeger.log" >&2
  stop "$dir"
  exit 1
}

stop() {
  local dir=$1 pid i
  [ -f "$dir/jaeger.pid" ] || return 0
  pid=$(cat "$dir/jaeger.pid")
  # comm check: a stale pid file must not make us kill a recycled pid.
  if kill -0 "$pid" 2>/dev/null && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = jaeger ]; then
    kill "$pid"
    # SIGTERM is a graceful collector shutdown; escalate after 10 s.
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/jaeger.pid"
}

case "${1:-}" in
  build) build ;;
  path) path ;;
  start) [ $# -eq 2 ] || die "usage: $0 start DIR"; start "$2" ;;
  stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
  *) die "usage: $0 build | path | start DIR | stop DIR" ;;
esac
