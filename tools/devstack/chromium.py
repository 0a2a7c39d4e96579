"""A Chromium for the browser tests."""

from __future__ import annotations

import shutil

from tools.devstack.errors import DevstackError
from tools.devstack.process import apt_install

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def ensure_chromium() -> str:
    """The path of a Chromium for the browser tests: the system's, else Debian's package.

    Playwright drives it through `executable_path`; its own browser download is never used
    (it needs the internet and pins a build the distribution does not patch).
    """
    for name in CHROMIUM_CANDIDATES:
        if found := shutil.which(name):
            return found
    apt_install("chromium")
    if found := shutil.which("chromium"):
        return found
    raise DevstackError("apt-get installed chromium but no chromium binary was found")
