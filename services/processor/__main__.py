"""`python -m services.processor`: the one start-up shape (tapewire/startup.py)."""

import sys

from tapewire.startup import main

from .service import serve
from .settings import ProcessorSettings

if __name__ == "__main__":
    sys.exit(main("processor", ProcessorSettings, serve))
