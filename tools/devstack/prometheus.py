"""Prometheus and promtool, for the rules' tests and the suite's optional monitoring."""

from __future__ import annotations

import shutil

from tools.devstack.errors import DevstackError
from tools.devstack.process import apt_install

BINARIES = ("prometheus", "promtool")


def ensure_prometheus() -> str:
    """The path of `prometheus` (with `promtool` beside it on the PATH): the system's, else
    Debian's package. The package's own service is left alone: the suite starts a Prometheus
    of its own, on its own port and data, only when asked (`python -m tools.suite --prometheus`)."""
    if not all(shutil.which(name) for name in BINARIES):
        apt_install("prometheus")
    found = {name: shutil.which(name) for name in BINARIES}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise DevstackError(f"apt-get installed prometheus but {', '.join(missing)} was not found")
    return str(found["prometheus"])
