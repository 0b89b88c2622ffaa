#!/usr/bin/env bash
# Selenium Grid 4 standalone for the peer benchmark (bench/peers.py), from Maven Central,
# driving Debian's Chromium through Debian's ChromeDriver.
#   scripts/selenium.sh build    print the directory of the Grid's jars; fetch them first if not cached
#   scripts/selenium.sh path     print that directory if the jars and chromedriver are there, else fail
# Needs Java 11+, Maven and chromedriver; as root, installs whichever is missing with apt-get
# (default-jre-headless, maven, chromium-driver).
set -euo pipefail

GRID_VERSION=4.38.0
DIR=${BROKER_CACHE_DIR:-$HOME/.cache/browser-broker}/selenium-grid-$GRID_VERSION

log() { printf '[selenium] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

apt_install() {  # apt_install PACKAGE...: as root with apt-get, else fail naming them
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    log "installing $* with apt-get"
    apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    die "not found: install $* (your distribution's packages)"
  fi
}

ensure_tools() {
  command -v chromedriver >/dev/null || apt_install chromium-driver
  command -v java >/dev/null || apt_install default-jre-headless
  command -v mvn >/dev/null || apt_install maven
}

build() {
  ensure_tools
  if [ -f "$DIR/lib/selenium-grid-$GRID_VERSION.jar" ]; then echo "$DIR/lib"; return; fi
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
