"""`python -m services.history_writer`: the one start-up shape (tapewire/startup.py)."""

import sys

from tapewire.startup import main

from .service import serve
from .settings import HistoryWriterSettings

if __name__ == "__main__":
    sys.exit(main("history_writer", HistoryWriterSettings, serve))
