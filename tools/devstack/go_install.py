"""Programs written in Go, built from the Go module proxy at a pinned version.

`go install module@version` first asks the proxy for the module's version list (to look for a
deprecation notice), which some proxies refuse for some modules; so the build runs inside a
throw-away module that requires exactly that version, with go.sum resolved from the pinned
requirement (checksums still verified against the checksum database). The binary goes to
`bin_dir`, stamped with its version, and a later call with the same version does nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from tools.devstack.errors import DevstackError


def go_binary() -> str:
    found = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if found is None:
        raise DevstackError("the Go toolchain (go) is needed to build this program")
    return found


def program_name(package: str) -> str:
    """The binary's name, as `go install` picks it: the last path element, or the one before
    it when that is a major version suffix (github.com/x/y/v5 builds `y`)."""
    parts = package.split("/")
    return parts[-2] if re.fullmatch(r"v[0-9]+", parts[-1]) else parts[-1]


def go_install(
    module: str, package: str, version: str, bin_dir: Path, ldflags: str = "", timeout_s: float = 1200
) -> Path:
    """Build `package` (of `module` at `version`) into `bin_dir`; the binary's path."""
    binary = bin_dir / program_name(package)
    stamp = bin_dir / f"{binary.name}.version"
    if binary.exists() and stamp.exists() and stamp.read_text().strip() == version:
        return binary
    bin_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{binary.name}-build-") as work:
        (Path(work) / "go.mod").write_text(
            f"module tapewire.local/{binary.name}-build\n\ngo 1.23.0\n\nrequire {module} {version}\n"
        )
        env = {**os.environ, "GOBIN": str(bin_dir), "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
        command = [go_binary(), "install", "-trimpath", *(["-ldflags", ldflags] if ldflags else []), package]
        try:
            result = subprocess.run(
                command, cwd=work, env=env, capture_output=True, text=True, timeout=timeout_s
            )
        except subprocess.TimeoutExpired as exc:
            raise DevstackError(f"go install {package}@{version} took over {timeout_s:.0f} s") from exc
    if result.returncode != 0:
        raise DevstackError(f"go install {package}@{version} failed:\n{result.stderr[-4000:]}")
    stamp.write_text(version + "\n")
    return binary
