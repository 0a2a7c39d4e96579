"""Schema migrations: numbered SQL files applied once each, in order, inside one transaction.

Run `python -m tapewire.db.migrate` (make run does) before starting the services; it is safe
to run any number of times and from several processes at once (an advisory lock serialises them).
"""

from __future__ import annotations

import logging
from importlib import resources

import psycopg
from psycopg import sql

from tapewire.logs import configure_logging
from tapewire.settings import PostgresSettings

log = logging.getLogger(__name__)

# Any constant shared by every migrating process; pg_advisory_xact_lock takes a bigint.
_MIGRATION_LOCK_ID = 0x7461_7065_7769_7265 & 0x7FFF_FFFF_FFFF_FFFF


def available_migrations() -> list[tuple[int, str, str]]:
    """(number, name, sql) of every migration shipped with tapewire, in order."""
    folder = resources.files("tapewire.db").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number = int(entry.name.split("_", 1)[0])
            found.append((number, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def migrate(postgres: PostgresSettings) -> list[str]:
    """Bring the schema up to date; return the names of the migrations applied now."""
    schema = sql.Identifier(postgres.schema_name)
    applied_now: list[str] = []
    with psycopg.connect(postgres.url.get_secret_value(), autocommit=False) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_ID,))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(schema))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " number integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT number FROM schema_migrations")}
        for number, name, statements in available_migrations():
            if number in done:
                continue
            conn.execute(statements.encode())
            conn.execute("INSERT INTO schema_migrations (number, name) VALUES (%s, %s)", (number, name))
            applied_now.append(name)
        conn.commit()
    return applied_now


def main() -> None:
    configure_logging("migrate")
    postgres = PostgresSettings()
    applied = migrate(postgres)
    log.info("schema up to date", extra={"schema": postgres.schema_name, "applied": applied})


if __name__ == "__main__":
    main()
