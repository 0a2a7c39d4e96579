"""Profile the stage that limits throughput: py-spy samples a running process, and the top of
the profile goes into the report.

    rows = profile(pid, seconds=10)      # [] when py-spy is missing or fails (logged)
    print(render_markdown(rows))

py-spy attaches to the process from outside (ptrace: root, or CAP_SYS_PTRACE), samples it at
200 Hz without pausing it (`--nonblocking`) and aggregates by function (`--function`, so
`file:line` is where the function starts). Idle threads are left out, so the percentages are
of the samples where some thread was running Python code. Each row has

- `self_pct`: samples whose innermost (leaf) Python frame is the function: where the time is
  spent (native code called from it, e.g. hashing or protobuf's C parser, counts as its self);
- `total_pct`: samples with the function anywhere on the stack (counted once per sample, even
  when recursive): what the time is spent under.

Profiling must never stop a benchmark: every failure (py-spy not installed, not permitted, the
process gone, a timeout) is logged and gives an empty list.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

log = logging.getLogger("bench.profile")

RATE_HZ = 200
# A raw (collapsed) frame: `function (file:line)`.
_FRAME = re.compile(r"^(?P<function>.*) \((?P<location>[^()]*)\)$")


# {"function", "file:line", "self_pct", "total_pct"}
Row = dict[str, str | float]


def py_spy_path() -> str | None:
    """py-spy next to this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("py-spy")


def profile(pid: int, seconds: float, top: int = 15, *, subprocesses: bool = False) -> list[Row]:
    """Sample `pid` for `seconds`; the `top` functions by self samples, then up to `top` more
    by inclusive samples, as {"function", "file:line", "self_pct", "total_pct"}. An empty list
    (and the reason logged) when profiling fails."""
    exe = py_spy_path()
    if exe is None:
        log.error("profiling skipped: py-spy not found (pip install py-spy)")
        return []
    with tempfile.TemporaryDirectory(prefix="tapewire-profile-") as folder:
        output = Path(folder) / "profile.raw"
        command = [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            str(RATE_HZ),
            "--format",
            "raw",
            "--output",
            str(output),
            "--nonblocking",
            "--function",
        ]
        if subprocesses:
            command.append("--subprocesses")
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            log.error("profiling pid %d failed: %s", pid, exc)
            return []
        raw = output.read_text(encoding="utf-8", errors="replace") if output.is_file() else ""
    if done.returncode != 0 or not raw.strip():
        # py-spy's first line says what went wrong; a Rust backtrace may follow.
        error = done.stderr.strip().split("\n\nStack backtrace:", 1)[0][-2000:] or "no samples"
        log.error("profiling pid %d failed (py-spy exit %d): %s", pid, done.returncode, error)
        return []
    rows, samples = summarize_raw(raw, top)
    log.info("profiled pid %d for %ss: %d samples", pid, seconds, samples)
    return rows


def summarize_raw(raw: str, top: int = 15) -> tuple[list[Row], int]:
    """py-spy's raw output (`frame;frame;...;leaf count` per line, root first) as rows (see
    profile()) and the number of samples."""
    own: Counter[tuple[str, str]] = Counter()
    under: Counter[tuple[str, str]] = Counter()
    callees: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
    samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_parse_frame(frame) for frame in stack.split(";") if frame]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            under[frame] += count
        for caller, callee in itertools.pairwise(frames):
            callees[caller].add(callee)
    if not samples:
        return [], 0
    chosen = [key for key, _ in own.most_common(top)]
    # A frame with no time of its own that always calls the same function (`<module>`, main,
    # asyncio.run, ...) says nothing its callee does not: it is left out of the inclusive list.
    passing = {key for key, called in callees.items() if len(called) == 1 and not own[key]}
    chosen += [key for key, _ in under.most_common() if key not in chosen and key not in passing][:top]
    return [_row(key, own[key], under[key], samples) for key in chosen], samples


def render_markdown(rows: list[Row]) -> str:
    """A Markdown table of profile rows (empty text when there are none)."""
    if not rows:
        return ""
    lines = ["| function | file:line | self % | total % |", "|---|---|---:|---:|"]
    for row in rows:
        function = str(row["function"]).replace("`", "'").replace("|", "\\|")
        location = str(row["file:line"]).replace("|", "\\|")
        lines.append(f"| `{function}` | {location} | {row['self_pct']:.1f} | {row['total_pct']:.1f} |")
    return "\n".join(lines) + "\n"


def _parse_frame(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame.strip())
    if match is None:  # a thread or process header, or a native frame without a location
        return frame.strip(), ""
    return match["function"], match["location"]


def _row(key: tuple[str, str], own: int, under: int, samples: int) -> Row:
    return {
        "function": key[0],
        "file:line": key[1],
        "self_pct": round(100 * own / samples, 2),
        "total_pct": round(100 * under / samples, 2),
    }


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.profile PID [SECONDS]`: print the table."""
    import argparse

    from tapewire.logs import configure_logging

    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("pid", type=int)
    parser.add_argument("seconds", type=float, nargs="?", default=5.0)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    configure_logging("profile")
    print(render_markdown(profile(args.pid, args.seconds, args.top)) or "(no profile)")


if __name__ == "__main__":
    main()
