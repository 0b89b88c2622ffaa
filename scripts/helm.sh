#!/usr/bin/env bash
# Helm and the chart's strict checker, built from the Go module proxy (no release downloads).
#   scripts/helm.sh build         build both if needed; print the helm binary's path
#   scripts/helm.sh path helm     print helm's path if it is built, else fail (builds nothing)
#   scripts/helm.sh path check    the same for the checker (deploy/helm/check)
# helm is the Go module helm.sh/helm/v4; the checker is this repository's deploy/helm/check,
# rebuilt whenever its sources change (its binary is named after their hash).
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION=v4.3.2
CACHE=${BROKER_CACHE_DIR:-$HOME/.cache/browser-broker}
HELM_BIN=$CACHE/helm-$HELM_VERSION/helm
CHECK_SRC=deploy/helm/check
export PATH="$PATH:/usr/local/go/bin"
# local: never let a go.mod's "toolchain" line download another Go.
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false

log() { printf '[helm] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

check_bin() {
  local hash
  hash=$(cat "$CHECK_SRC"/go.mod "$CHECK_SRC"/go.sum "$CHECK_SRC"/*.go | sha256sum | cut -c1-16)
  echo "$CACHE/helm-check/check-$hash"
}

# Temp file in the same dir, then mv: an interrupted build never leaves a half-written binary.
build_helm() {
  [ -x "$HELM_BIN" ] && return
  command -v go >/dev/null || die "go not found (need Go 1.25+)"
  mkdir -p "$(dirname "$HELM_BIN")"
  local tmp
  tmp=$(mktemp -d "$(dirname "$HELM_BIN")/build.XXXXXX")
  log "building helm.sh/helm/v4/cmd/helm $HELM_VERSION (cold: 5-16 min on 2 cores)"
  # cd /: outside any module, so no go.mod of ours is touched.
  # -s -w: smaller binary, faster link; the version ldflag so `helm version` says v4.3.2.
  (cd / && GOBIN=$tmp go install -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION") >&2 ||
    { rm -rf "$tmp"; die "helm build failed"; }
  mv -f "$tmp/helm" "$HELM_BIN"
  rm -rf "$tmp"
  log "built $HELM_BIN"
}

build_check() {
  local bin
  bin=$(check_bin)
  [ -x "$bin" ] && return
  command -v go >/dev/null || die "go not found (need Go 1.25+)"
  mkdir -p "$(dirname "$bin")"
  log "building the chart checker ($CHECK_SRC)"
  (cd "$CHECK_SRC" && go vet ./... && go test ./... >&2 && go build -trimpath -o "$bin.tmp.$$" .) >&2 ||
    { rm -f "$bin.tmp.$$"; die "checker build failed"; }
  mv -f "$bin.tmp.$$" "$bin"
}

path() {
  case "$1" in
    helm) [ -x "$HELM_BIN" ] || die "helm $HELM_VERSION is not built: run scripts/helm.sh build"; echo "$HELM_BIN" ;;
    check) local bin; bin=$(check_bin)
      [ -x "$bin" ] || die "the chart checker is not built for these sources: run scripts/helm.sh build"; echo "$bin" ;;
    *) die "usage: $0 path helm|check" ;;
  esac
}

case "${1:-}" in
  build) build_helm; build_check; echo "$HELM_BIN" ;;
  path) [ $# -eq 2 ] || die "usage: $0 path helm|check"; path "$2" ;;
  *) die "usage: $0 build | path helm|check" ;;
esac
