#!/usr/bin/env bash
# The image's entrypoint: the official docker-entrypoint.sh, with cron.database_name set to the
# default database, which is known only when the container starts. It is chosen as the official
# entrypoint chooses it: POSTGRES_DB, else POSTGRES_USER, else postgres (each may come from a *_FILE).
# A -c cron.database_name=... given on the command line still wins: it comes later.
set -Eeo pipefail

from_env() {
    local var=$1 file_var="${1}_FILE"
    if [ -n "${!var:-}" ]; then
        printf '%s' "${!var}"
    elif [ -n "${!file_var:-}" ]; then
        printf '%s' "$(<"${!file_var}")"
    fi
}

if [ "${1:0:1}" = '-' ]; then
    set -- postgres "$@"
fi
if [ "$1" = 'postgres' ]; then
    user=$(from_env POSTGRES_USER)
    database=$(from_env POSTGRES_DB)
    shift
    set -- postgres -c "cron.database_name=${database:-${user:-postgres}}" "$@"
fi
exec docker-entrypoint.sh "$@"
