#!/usr/bin/env bash
# Prepares a Debian 12 machine (root, PostgreSQL 15 server installed) to build, run and test pganalytics_ml.
# Idempotent: every step checks first and says briefly when there is nothing to do.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON_LIBDIR=${PYTHON_LIBDIR:?PYTHON_LIBDIR is not set (run through make deps)}
VENV=${VENV:-.venv}
SYSTEM_PYTHON=/usr/bin/python3   # the interpreter PL/Python links against

debian_packages=(
  postgresql-plpython3-15
  postgresql-15-cron
  postgresql-15-pgtap
  libtap-parser-sourcehandler-pgtap-perl
  postgresql-server-dev-15
  python3-venv
  python3-pip
)

say() { printf 'deps: %s\n' "$*"; }

missing=()
for pkg in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "Debian packages present"
fi

# This machine's pip configuration names local wheel folders that may be absent; that warning is noise.
pip_quiet() { "$VENV/bin/pip" "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }

stamp_of() { sha256sum "$@" | sha256sum | cut -c1-16; }

venv_stamp=$(stamp_of requirements/dev.txt requirements/runtime.txt)
if [[ -f $VENV/.stamp && $(cat "$VENV/.stamp") == "$venv_stamp" ]]; then
  say "virtualenv $VENV up to date"
else
  say "building virtualenv $VENV for $SYSTEM_PYTHON"
  rm -rf "$VENV"
  "$SYSTEM_PYTHON" -m venv "$VENV"
  pip_quiet install -q --disable-pip-version-check -r requirements/dev.txt
  echo "$venv_stamp" >"$VENV/.stamp"
fi

command -v npm >/dev/null || { say "installing Node.js for the driver contract test"; \
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }
node_stamp=$(stamp_of tests/node/package.json tests/node/package-lock.json)
if [[ -f tests/node/node_modules/.stamp && $(cat tests/node/node_modules/.stamp) == "$node_stamp" ]]; then
  say "node-postgres for the contract test up to date"
else
  say "installing node-postgres for the contract test"
  (cd tests/node && npm ci --no-audit --no-fund --silent)
  echo "$node_stamp" >tests/node/node_modules/.stamp
fi

lib_stamp=$(stamp_of requirements/runtime.txt)
if [[ -f $PYTHON_LIBDIR/.stamp && $(cat "$PYTHON_LIBDIR/.stamp") == "$lib_stamp" ]]; then
  say "PL/Python libraries in $PYTHON_LIBDIR up to date"
else
  say "installing PL/Python libraries into $PYTHON_LIBDIR"
  rm -rf "$PYTHON_LIBDIR"
  mkdir -p "$PYTHON_LIBDIR"
  pip_quiet install -q --disable-pip-version-check --no-deps --target "$PYTHON_LIBDIR" -r requirements/runtime.txt
  chmod -R a+rX,go-w "$PYTHON_LIBDIR"
  echo "$lib_stamp" >"$PYTHON_LIBDIR/.stamp"
fi
