"""One start-up shape for every service: `python -m services.<name>` reads the settings (or
says which variable is wrong and exits 2), configures logging, turns SIGTERM/SIGINT into a stop
event and hands over to the service's `serve(settings, stop, registry)`, which the tests call
too, so they run the wiring that ships."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar, cast

from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, CollectorRegistry
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from .errors import Wedged
from .logs import configure_logging
from .settings import LogSettings
from .shutdown import install_stop_event

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2

log = logging.getLogger(__name__)


class ServiceSettings(Protocol):
    @property
    def log(self) -> LogSettings: ...


S = TypeVar("S", bound=ServiceSettings)
Serve = Callable[[S, threading.Event, CollectorRegistry], int | None]


def explain(error: ValidationError, settings: type[BaseSettings]) -> str:
    """One line per problem, naming the environment variable to fix: `settings`' own prefix, or
    that of the shared piece nested in it that failed."""
    prefixes = {cls.__name__: cls.model_config.get("env_prefix", "") for cls in _pieces(settings)}
    prefix = prefixes.get(error.title, "")
    lines = []
    for problem in error.errors():
        name = "_".join(str(part) for part in problem["loc"]).upper()
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"  {prefix}{name}: {message}" if name else f"  {message}")
    return "\n".join(lines)


def main(name: str, settings: type[S], serve: Serve[S]) -> int:
    """The whole of a service's `__main__`: its exit code. `settings` is a BaseSettings class."""
    try:
        loaded = settings()
    except ValidationError as exc:
        detail = explain(exc, cast(type[BaseSettings], settings))
        print(f"{name}: invalid settings\n{detail}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(name, loaded.log.log_level)
    try:
        code = serve(loaded, install_stop_event(), process_registry())
    except Wedged as exc:
        log.critical("wedged, exiting at once", extra={"error": str(exc)})
        logging.shutdown()  # flush the log; nothing else runs
        os._exit(EXIT_FAILURE)
    return EXIT_OK if code is None else code


def process_registry() -> CollectorRegistry:
    """A registry of the service's own, holding the process, platform and GC metrics the
    default registry would have had (CPU, memory, open descriptors, collections)."""
    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry


def _pieces(settings: type[BaseSettings]) -> Iterator[type[BaseSettings]]:
    """`settings` and the settings classes nested in it, at any depth."""
    yield settings
    for field in settings.model_fields.values():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
            yield from _pieces(annotation)
