"""``python3 -m tools.devstack up|env|status|down|chromium`` (see tools/devstack/cli.py)."""

import sys

from tools.devstack.cli import main

if __name__ == "__main__":
    sys.exit(main())
