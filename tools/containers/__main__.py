"""``python3 -m tools.containers setup|build|compose|health|env`` (see tools/containers/cli.py)."""

import sys

from tools.containers.cli import main

if __name__ == "__main__":
    sys.exit(main())
