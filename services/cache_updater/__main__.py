"""`python -m services.cache_updater`: the one start-up shape (tapewire/startup.py)."""

import sys

from tapewire.startup import main

from .service import serve
from .settings import CacheUpdaterSettings

if __name__ == "__main__":
    sys.exit(main("cache_updater", CacheUpdaterSettings, serve))
