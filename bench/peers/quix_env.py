"""The virtualenv of the Quix Streams processor peer: `.local/bench/venv-quix`, from PyPI only.

    python -m bench.peers.quix_env      # create it if needed; print its python

Quix Streams gets an environment of its own because quixstreams 3.28.1 requires
`confluent-kafka[avro,json,protobuf,schemaregistry]>=2.8.2,<2.13` while tapewire requires
confluent-kafka>=2.16: the two cannot share .venv.

Protobuf. tapewire's generated code (tapewire/v1/*_pb2.py, protoc 7.35.1) refuses a runtime
older than 7.35.1, and the peer imports it (it reuses tapewire's enrichment and codec, see
quix_processor.py). quixstreams itself does not depend on protobuf; confluent-kafka's
`protobuf` extra, which quixstreams pulls in, takes any protobuf and googleapis-common-protos
(1.76 accepts protobuf 7). Only quixstreams' own optional extra `quixstreams[protobuf]` pins
`protobuf<7`, for its ProtobufSerializer/Deserializer, and that extra is not installed: the
peer reads and writes the values as bytes and decodes and encodes them with tapewire's code,
exactly as tapewire's processor does. So `protobuf>=7.36,<8` (tapewire's own pin) is installed
next to quixstreams and `pip check` is clean (checked with pip's resolver: confluent-kafka
2.12.2, protobuf 7.36.2, googleapis-common-protos 1.76.0, rocksdict 0.3.29).

Nothing else is needed: services/processor/enrich.py and codec.py and tapewire/dead_letters.py
import only the standard library, protobuf and tapewire's own modules (no pydantic), found with
PYTHONPATH set to the repository root.

Idempotent: a stamp file inside the venv records what was installed; a matching stamp means
there is nothing to do (about 0.01 s), a different one rebuilds the venv from scratch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
VENV = ROOT / ".local" / "bench" / "venv-quix"
REQUIREMENTS = (
    "quixstreams==3.28.1",
    # tapewire's pin (pyproject.toml): the generated code needs the 7.x runtime (docstring).
    "protobuf>=7.36,<8",
)
_STAMP = ".tapewire-installed"


def quix_python(venv: Path = VENV) -> Path:
    """The venv's interpreter (it need not exist yet)."""
    return venv / "bin" / "python"


def ensure_quix_venv(venv: Path = VENV, quiet: bool = True) -> Path:
    """Create or update the Quix peer's venv if its stamp is missing or stale; return its python."""
    python = quix_python(venv)
    wanted = _stamp_text()
    stamp = venv / _STAMP
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    # --clear: a half-built or outdated venv is rebuilt rather than patched.
    subprocess.run([_base_python(), "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
    quiet_flag = ["-q"] if quiet else []
    subprocess.run([*pip, "install", *quiet_flag, *REQUIREMENTS], check=True)
    subprocess.run([*pip, "check"], check=True, stdout=subprocess.DEVNULL if quiet else None)
    # The peer's imports, protobuf's runtime check of the generated code included.
    subprocess.run(
        [
            str(python),
            "-c",
            "import quixstreams, tapewire.v1.market_pb2, services.processor.codec, tapewire.dead_letters",
        ],
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    stamp.write_text(wanted)
    return python


def _stamp_text() -> str:
    return json.dumps({"requirements": REQUIREMENTS, "python": sys.version_info[:2]}) + "\n"


def _base_python() -> str:
    """The interpreter .venv was made from: a venv made from inside another venv works too, but
    this keeps the two independent."""
    return getattr(sys, "_base_executable", None) or sys.executable


if __name__ == "__main__":
    print(ensure_quix_venv(quiet=False))
