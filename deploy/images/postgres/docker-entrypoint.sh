#!/bin/sh
# The official postgres image's contract, for Debian's PostgreSQL: on an empty PGDATA, create
# the cluster with POSTGRES_USER (default postgres) as superuser and POSTGRES_PASSWORD as its
# password, password authentication (SCRAM) for every TCP client, and POSTGRES_DB (default the
# user's name). Initialisation runs without any listener (single-user mode), so a health check
# over TCP never sees a half-made database. Then the server runs in the foreground.
set -eu
if [ "${1:-}" = postgres ]; then
    shift
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD: the superuser's password}"
        user=${POSTGRES_USER:-postgres}
        db=${POSTGRES_DB:-$user}
        pwfile=$(mktemp)
        printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
        initdb --pgdata="$PGDATA" --username="$user" --pwfile="$pwfile" --encoding=UTF8 \
            --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 > /dev/null
        rm -f "$pwfile"
        echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
        if [ "$db" != postgres ]; then
            echo "CREATE DATABASE \"$db\" OWNER \"$user\"" | postgres --single -j -D "$PGDATA" postgres > /dev/null
        fi
        echo "PostgreSQL initialised: user $user, database $db"
    fi
    set -- postgres -c listen_addresses='*' "$@"
fi
exec "$@"
