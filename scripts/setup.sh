#!/usr/bin/env bash
# Installs everything the broker needs into .venv and makes sure a browser exists.
#   scripts/setup.sh          runtime: the broker + a Chromium
#   scripts/setup.sh --dev    also test tools, Firefox, Camoufox's Python package
# Browsers: Playwright's own download where it works, else the system package manager's.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1
PY=${PYTHON:-python3}
VENV=${BROKER_VENV:-.venv}
log() { printf '[setup] %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
stamp="$VENV/.installed-$(cat pyproject.toml client/pyproject.toml | sha1sum | cut -c1-12)-$dev"
if [ ! -f "$stamp" ]; then
  log "installing Python packages"
  if [ "$dev" = 1 ]; then
    "${pip[@]}" -e ./client -e '.[dev,camoufox,prometheus]'
  else
    "${pip[@]}" -e ./client -e .
  fi
  touch "$stamp"
fi

apt_install() {
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    log "installing $* with apt-get"
    # The package lists may be stale or absent on a fresh machine.
    apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    log "cannot install $* (needs root and apt-get); install it and set BROKER_CHROMIUM_PATH / BROKER_FIREFOX_PATH"
    return 1
  fi
}

# ensure ENGINE PLAYWRIGHT_NAME APT_PACKAGE: found, else Playwright's installer, else apt.
ensure_browser() {
  if "$VENV/bin/browser-broker" find-browser "$1" >/dev/null 2>&1; then return 0; fi
  log "no $1 found; trying 'playwright install $2'"
  if "$VENV/bin/python" -m playwright install "$2" >/dev/null 2>&1; then return 0; fi
  apt_install "$3"
  "$VENV/bin/browser-broker" find-browser "$1" >/dev/null
}

# As root, browsers run as an unprivileged user so that their sandbox works (docs/security.md).
if [ "$(id -u)" = 0 ] && ! id browser-broker >/dev/null 2>&1; then
  log "creating the system user browser-broker that browsers run as"
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin browser-broker
fi

# Browsers start inside a bubblewrap filesystem jail (browser_jail); without it they run unjailed.
command -v bwrap >/dev/null || apt_install bubblewrap || log "no bubblewrap: browsers run without their filesystem jail"

ensure_browser chromium chromium chromium
if [ "$dev" = 1 ]; then
  ensure_browser firefox firefox firefox-esr
  # The cluster tests start their own Redis on loopback.
  command -v redis-server >/dev/null || apt_install redis-server
fi
log "ready"
