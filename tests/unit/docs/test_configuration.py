"""docs/configuration.md documents every setting: a variable added to a settings class and not
to the tables fails here, so the documentation cannot fall behind the code."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic_settings import BaseSettings

from services.cache_updater.settings import CacheUpdaterSettings
from services.dashboard_api.settings import DashboardApiSettings
from services.history_writer.settings import HistoryWriterSettings
from services.ingester.settings import IngesterSettings
from services.processor.settings import ProcessorSettings
from tapewire.auth import AuthSettings
from tapewire.settings import KafkaSettings, LogSettings, PostgresSettings, RedisSettings, TopicSettings
from tapewire.tracing import TracingSettings

DOC = Path(__file__).parents[3] / "docs" / "configuration.md"
SETTINGS: tuple[type[BaseSettings], ...] = (
    KafkaSettings,
    TopicSettings,
    RedisSettings,
    PostgresSettings,
    LogSettings,
    TracingSettings,
    AuthSettings,
    ProcessorSettings,
    HistoryWriterSettings,
    CacheUpdaterSettings,
    IngesterSettings,
    DashboardApiSettings,
)


def variables(settings: type[BaseSettings]) -> set[str]:
    """The environment variables a settings class reads (shared pieces nested in it read their
    own prefix, and are checked as classes of their own)."""
    prefix = settings.model_config.get("env_prefix", "")
    names = set()
    for name, field in settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
            continue
        names.add(field.alias if field.alias else f"{prefix}{name}".upper())
    return names


def documented() -> set[str]:
    """Every variable named in the first cell of a table row; `_SUFFIX` after a full name in the
    same cell means that name's prefix (its words up to the service's) plus the suffix."""
    found: set[str] = set()
    for line in DOC.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        tokens = re.findall(r"`([A-Z_][A-Z0-9_]*)`", line.split("|")[1])
        full = [token for token in tokens if not token.startswith("_")]
        found.update(full)
        for suffix in (token for token in tokens if token.startswith("_")):
            words = full[0].split("_") if full else []
            found.update("_".join(words[:cut]) + suffix for cut in range(1, len(words)))
    return found


def test_every_setting_is_in_the_configuration_tables() -> None:
    missing = {name for settings in SETTINGS for name in variables(settings)} - documented()
    assert not missing, f"add these to docs/configuration.md: {sorted(missing)}"
