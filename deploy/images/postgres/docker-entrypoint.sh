#!/bin/sh
# The official postgres image's contract, for Debian's PostgreSQL: on an empty PGDATA, create
# the cluster with POSTGRES_USER (default postgres) as superuser and POSTGRES_PASSWORD as its
# password, password authentication (SCRAM) for every TCP client, and POSTGRES_DB (default the
# user's name). Initialisation runs without any listener (single-user mode), so a health check
# over TCP never sees a half-made database; if it fails, PGDATA is emptied again, so that the
# next start retries it rather than serving a cluster without its database.
set -eu
if [ "${1:-}" = postgres ]; then
    shift
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD: the superuser's password}"
        user=${POSTGRES_USER:-postgres}
        db=${POSTGRES_DB:-$user}
        pwfile=$(mktemp)
        done=0
        trap 'rm -f "$pwfile"; [ "$done" = 1 ] || find "$PGDATA" -mindepth 1 -delete' EXIT
        printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
        initdb --pgdata="$PGDATA" --username="$user" --pwfile="$pwfile" --encoding=UTF8 \
            --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 > /dev/null
        echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
        if [ "$db" != postgres ]; then
            # exit_on_error: single-user mode otherwise carries on past a failed statement and
            # exits 0. Double quotes in the name are doubled, as an SQL identifier needs.
            quoted=$(printf '%s' "$db" | sed 's/"/""/g')
            printf 'CREATE DATABASE "%s"\n' "$quoted" | postgres --single -j -c exit_on_error=true -D "$PGDATA" postgres > /dev/null
        fi
        done=1
        rm -f "$pwfile"
        trap - EXIT
        echo "PostgreSQL initialised: user $user, database $db"
    fi
    set -- postgres -c listen_addresses='*' "$@"
fi
exec "$@"
