"""`python -m services.ingester`: build the settings, then hand over to `serve`."""

from __future__ import annotations

import sys

from pydantic import ValidationError

from services.ingester.run import EXIT_CONFIG, serve
from services.ingester.settings import IngesterSettings, explain
from tapewire.logs import configure_logging
from tapewire.shutdown import install_stop_event


def main() -> int:
    try:
        settings = IngesterSettings()
    except ValidationError as exc:
        print(f"ingester: invalid settings\n{explain(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging("ingester", settings.log.log_level)
    return serve(settings, install_stop_event())


if __name__ == "__main__":
    sys.exit(main())
