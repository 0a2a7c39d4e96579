"""PostgreSQL: schema migrations and how every service connects."""

from __future__ import annotations

from typing import Any

from tapewire.settings import PostgresSettings


def connect_kwargs(postgres: PostgresSettings) -> dict[str, Any]:
    """psycopg connection arguments that put tapewire's schema first on the search path."""
    return {
        "conninfo": postgres.url.get_secret_value(),
        "options": f"-c search_path={postgres.schema_name}",
        "application_name": "tapewire",
    }
