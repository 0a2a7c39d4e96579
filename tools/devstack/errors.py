"""The one exception devstack raises."""

from __future__ import annotations


class DevstackError(RuntimeError):
    """A server could not be installed, started, or stopped."""
