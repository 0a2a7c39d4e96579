"""`python -m services.ingester`: the one start-up shape (tapewire/startup.py)."""

import sys

from tapewire.startup import main

from .run import serve
from .settings import IngesterSettings

if __name__ == "__main__":
    sys.exit(main("ingester", IngesterSettings, serve))
