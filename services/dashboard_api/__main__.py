"""`python -m services.dashboard_api`: the one start-up shape (tapewire/startup.py)."""

import sys

from tapewire.startup import main

from .server import serve
from .settings import DashboardApiSettings

if __name__ == "__main__":
    sys.exit(main("dashboard_api", DashboardApiSettings, serve))
