#!/usr/bin/env bash
# Selenium Grid 4 standalone for the peer benchmark (bench/peers.py), from Maven Central,
# driving Debian's Chromium through Debian's ChromeDriver.
#   scripts/selenium.sh build    print the directory of the Grid's jars; fetch them first if not cached
#   scripts/selenium.sh path     print that directory if the jars and chromedriver are there, else fail
# Needs Java 11+ and Maven; installs chromium-driver with apt-get when run as root.
set -euo pipefail

GRID_VERSION=4.38.0
DIR=${BROKER_CACHE_DIR:-$HOME/.cache/browser-broker}/selenium-grid-$GRID_VERSION

log() { printf '[selenium] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

ensure_chromedriver() {
  command -v chromedriver >/dev/null && return
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    log "installing chromium-driver with apt-get"
    apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium-driver >/dev/null
  else
    die "chromedriver not found: install your distribution's chromium-driver"
  fi
}

build() {
  ensure_chromedriver
  if [ -f "$DIR/lib/selenium-grid-$GRID_VERSION.jar" ]; then echo "$DIR/lib"; return; fi
  command -v java >/dev/null || die "java not found (need Java 11+)"
  command -v mvn >/dev/null || die "mvn not found (need Maven to fetch the Grid's jars)"
  work=$(mktemp -d)
  trap 'rm -rf "${work:-}"' EXIT
  cat > "$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.bench</groupId><artifactId>grid</artifactId><version>1</version>
  <dependencies>
    <dependency>
      <groupId>org.seleniumhq.selenium</groupId><artifactId>selenium-grid</artifactId>
      <version>$GRID_VERSION</version>
    </dependency>
  </dependencies>
</project>
POM
  log "fetching selenium-grid $GRID_VERSION and its dependencies from Maven Central"
  (cd "$work" && mvn -q dependency:copy-dependencies -DoutputDirectory="$work/lib") >&2 \
    || die "mvn could not fetch selenium-grid $GRID_VERSION"
  mkdir -p "$DIR"
  rm -rf "$DIR/lib" && mv "$work/lib" "$DIR/lib"
  log "ready in $DIR/lib"
  echo "$DIR/lib"
}

path() {
  command -v chromedriver >/dev/null || die "chromedriver not found: run scripts/selenium.sh build"
  [ -f "$DIR/lib/selenium-grid-$GRID_VERSION.jar" ] \
    || die "Selenium Grid $GRID_VERSION is not fetched: run scripts/selenium.sh build"
  echo "$DIR/lib"
}

case "${1:-}" in
  build) build ;;
  path) path ;;
  *) die "usage: scripts/selenium.sh build | path" ;;
esac
