#!/usr/bin/env bash
# Prepares a Debian 12 machine (root, PostgreSQL 15 server installed) to build, run and test pganalytics_ml.
# Idempotent: every step checks first and says briefly when there is nothing to do.
# DEV_TOOLS=0 installs only what the server needs (the Docker image does that).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON_LIBDIR=${PYTHON_LIBDIR:?PYTHON_LIBDIR is not set (run through make deps)}
VENV=${VENV:-.venv}
DEV_TOOLS=${DEV_TOOLS:-1}
SYSTEM_PYTHON=/usr/bin/python3 # the interpreter PL/Python links against

# postgresql-15-hypopg: hypothetical indexes for the what-if scenarios (optional at run time: CREATE EXTENSION hypopg).
server_packages=(postgresql-plpython3-15 postgresql-15-cron postgresql-15-hypopg postgresql-server-dev-15 python3-pip)
# golang-go and golang-github-lib-pq-dev: the Go backend's driver runs the contract (tests/go/, GOPATH mode, offline).
dev_packages=(postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl python3-venv wrk golang-go golang-github-lib-pq-dev)

say() { printf 'deps: %s\n' "$*"; }
stamp_of() { sha256sum "$@" | sha256sum | cut -c1-16; }
is_current() { [[ -f $1 && $(cat "$1") == "$2" ]]; }
# This machine's pip configuration may name local wheel folders that are absent; that warning is noise.
pip_quiet() { "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }

install_debian_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if ((${#missing[@]} == 0)); then
    say "Debian packages present"
    return
  fi
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_plpython_libraries() {
  local stamp
  stamp=$(stamp_of requirements/runtime.txt)
  if is_current "$PYTHON_LIBDIR/.stamp" "$stamp"; then
    say "PL/Python libraries in $PYTHON_LIBDIR up to date"
    return
  fi
  say "installing PL/Python libraries into $PYTHON_LIBDIR for $SYSTEM_PYTHON"
  rm -rf "$PYTHON_LIBDIR"
  mkdir -p "$PYTHON_LIBDIR"
  pip_quiet "$SYSTEM_PYTHON" -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    --no-deps --target "$PYTHON_LIBDIR" -r requirements/runtime.txt
  chmod -R a+rX,go-w "$PYTHON_LIBDIR"
  echo "$stamp" >"$PYTHON_LIBDIR/.stamp"
}

install_virtualenv() {
  local stamp
  stamp=$(stamp_of requirements/dev.txt requirements/runtime.txt)
  if is_current "$VENV/.stamp" "$stamp"; then
    say "virtualenv $VENV up to date"
    return
  fi
  say "building virtualenv $VENV for $SYSTEM_PYTHON"
  rm -rf "$VENV"
  "$SYSTEM_PYTHON" -m venv "$VENV"
  pip_quiet "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements/dev.txt
  echo "$stamp" >"$VENV/.stamp"
}

install_node_driver() {
  local stamp
  if ! command -v npm >/dev/null; then
    install_debian_packages nodejs npm
  fi
  stamp=$(stamp_of tests/node/package.json tests/node/package-lock.json)
  if is_current tests/node/node_modules/.stamp "$stamp"; then
    say "node-postgres for the driver contract test up to date"
    return
  fi
  say "installing node-postgres for the driver contract test"
  (cd tests/node && npm ci --no-audit --no-fund --silent)
  echo "$stamp" >tests/node/node_modules/.stamp
}

if [[ $DEV_TOOLS == 1 ]]; then
  install_debian_packages "${server_packages[@]}" "${dev_packages[@]}"
else
  install_debian_packages "${server_packages[@]}"
fi
install_plpython_libraries
if [[ $DEV_TOOLS == 1 ]]; then
  install_virtualenv
  install_node_driver
fi
