"""Thousands of WebSocket connections need thousands of file descriptors in one process."""

from __future__ import annotations

import resource


def raise_fd_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit as far as the hard limit allows; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1_048_576
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target
