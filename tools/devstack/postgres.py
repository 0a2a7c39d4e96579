"""PostgreSQL on 127.0.0.1:15432, with role and database ``tapewire``.

``initdb``/``pg_ctl`` come from PATH or ``/usr/lib/postgresql/*/bin`` (the existing cluster's
version first). As root, PostgreSQL runs as the ``postgres`` system user (initdb refuses root)
and ``.local/pg`` belongs to it. ``down`` sends SIGINT, PostgreSQL's "fast" shutdown.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

from tools.devstack.errors import DevstackError
from tools.devstack.paths import HOST, PG_DATA, PG_DB, PG_DIR, PG_SOCKET_DIR, PG_USER, ROOT, port
from tools.devstack.process import (
    CMDLINE_HINT,
    START_TIMEOUT,
    apt_install,
    check_same_port,
    clean_env,
    is_root,
    log,
    log_file,
    log_tail,
    pid_alive,
    pid_file,
    port_open,
    port_taken_error,
    read_pid,
    rotate_log,
    run,
    started_port,
    stop_pid,
    wait_until,
)


def _pg_bindir_ok(d: Path) -> bool:
    return all((d / name).exists() for name in ("initdb", "pg_ctl", "postgres"))


def _pg_data_version() -> str | None:
    try:
        return (PG_DATA / "PG_VERSION").read_text().strip() or None
    except OSError:
        return None


def _pg_bindir_candidates() -> list[Path]:
    """Debian's dir for the existing cluster's version, then PATH, then the newest installed."""
    candidates: list[Path] = []
    data_version = _pg_data_version()
    if data_version:
        candidates.append(Path(f"/usr/lib/postgresql/{data_version}/bin"))
    for name in ("pg_ctl", "initdb"):
        exe = shutil.which(name)
        if exe:
            candidates.append(Path(exe).resolve().parent)

    def version_key(d: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", d.parent.name)) or (0,)

    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version_key, reverse=True))
    if data_version and Path(f"/usr/lib/postgresql/{data_version}").exists():
        # A Debian install of the cluster's own version exists: never use another one.
        candidates = [d for d in candidates if d.parent.name == data_version]
    return candidates


def _pg_bindir(install: bool) -> Path | None:
    """The directory with initdb/pg_ctl/postgres/psql, matching an existing cluster."""
    for d in _pg_bindir_candidates():
        if _pg_bindir_ok(d):
            return d
    if not install:
        return None
    if not is_root():
        raise DevstackError(
            "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH or in "
            "/usr/lib/postgresql/*/bin, and devstack is not root: install them "
            "(e.g. `sudo apt-get install postgresql`) or set DATABASE_URL"
        )
    apt_install("postgresql")
    found = _pg_bindir(install=False)
    if found is None:
        raise DevstackError("apt-get installed postgresql but no initdb/pg_ctl/postgres was found")
    return found


def server_binaries() -> Path:
    """The directory of initdb and postgres devstack uses: for tests that run a PostgreSQL of
    their own (a TLS one, say) beside devstack's."""
    found = _pg_bindir(install=False)
    if found is None:
        raise DevstackError("no PostgreSQL server binaries: run `python3 -m tools.devstack up` first")
    return found


def as_server_owner(cmd: list[str]) -> list[str]:
    """`cmd` run as the user PostgreSQL's files belong to (`postgres` when we are root)."""
    return _pg_as_owner(cmd)


def _pg_tool(bindir: Path | None, name: str) -> str:
    if bindir is not None and (bindir / name).exists():
        return str(bindir / name)
    exe = shutil.which(name)
    if exe:
        return exe
    raise DevstackError(f"{name} was not found (PostgreSQL client tools: apt-get install postgresql-client)")


def _pg_as_owner(cmd: list[str]) -> list[str]:
    """Run server-side commands as the ``postgres`` user when we are root."""
    if is_root():
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _pg_prepare_dirs() -> None:
    """Create .local/pg etc. and, as root, hand them to the postgres user."""
    PG_DIR.mkdir(parents=True, exist_ok=True)
    if is_root():
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            raise DevstackError(
                "running as root, but there is no `postgres` system user to run the server as "
                "(initdb refuses root): install the postgresql package or run devstack as a normal user"
            ) from None
        os.chown(PG_DIR, pw.pw_uid, pw.pw_gid)
        if _socket_dir() is not None:
            PG_SOCKET_DIR.mkdir(parents=True, exist_ok=True)
            os.chown(PG_SOCKET_DIR, pw.pw_uid, pw.pw_gid)
        if not _as_postgres_ok("-w", PG_DIR, "-a", "-x", PG_DIR):
            blocked = next((a for a in reversed(PG_DIR.parents) if not _as_postgres_ok("-x", a)), PG_DIR)
            raise DevstackError(
                f"the postgres user cannot reach {PG_DIR}: {blocked} is not traversable by it "
                "(chmod o+x that folder, or run devstack as a normal user)"
            )
    elif _socket_dir() is not None:
        PG_SOCKET_DIR.mkdir(parents=True, exist_ok=True)


def _as_postgres_ok(*test_args: str | Path) -> bool:
    """``test ARGS`` run as the postgres user."""
    cmd = ["runuser", "-u", "postgres", "--", "test", *map(str, test_args)]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def _socket_dir() -> Path | None:
    """Unix socket directory, or None (TCP only) when the path would be too long."""
    if len(str(PG_SOCKET_DIR)) + len(f"/.s.PGSQL.{port('postgres')}") >= 100:
        return None
    return PG_SOCKET_DIR


def pg_pid() -> int | None:
    """The postmaster pid from data/postmaster.pid, if that process is a live postgres."""
    pid = read_pid(PG_DATA / "postmaster.pid")
    if pid is None:
        # The data dir may be unreadable (root-owned run as non-root etc.): fall back to ours.
        pid = read_pid(pid_file("postgres"))
    return pid if pid is not None and pid_alive(pid, CMDLINE_HINT["postgres"]) else None


def _pg_ready(bindir: Path | None, p: int) -> bool:
    try:
        tool = _pg_tool(bindir, "pg_isready")
    except DevstackError:
        return port_open(p)
    proc = subprocess.run(
        [tool, "-q", "-h", HOST, "-p", str(p), "-U", "postgres", "-d", "postgres", "-t", "2"],
        env=clean_env(),
        capture_output=True,
    )
    return proc.returncode == 0


def pg_running() -> bool:
    return pg_pid() is not None and _pg_ready(
        _pg_bindir(install=False), started_port("postgres") or port("postgres")
    )


def _psql(bindir: Path | None, p: int, sql: str, db: str = "postgres") -> str:
    cmd = [
        _pg_tool(bindir, "psql"),
        "-X",
        "-q",
        "-t",
        "-A",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        HOST,
        "-p",
        str(p),
        "-U",
        "postgres",
        "-d",
        db,
        "-c",
        sql,
    ]
    return run(cmd, "psql").stdout.strip()


def _pg_bootstrap(bindir: Path | None, p: int) -> None:
    """Create role and database ``tapewire`` if missing."""
    have = _psql(
        bindir,
        p,
        f"SELECT (SELECT count(*) FROM pg_roles WHERE rolname = '{PG_USER}') || ',' || "
        f"(SELECT count(*) FROM pg_database WHERE datname = '{PG_DB}')",
    )
    has_role, has_db = (x == "1" for x in have.split(","))
    if not has_role:
        _psql(bindir, p, f'CREATE ROLE "{PG_USER}" LOGIN SUPERUSER')
    if not has_db:
        _psql(bindir, p, f'CREATE DATABASE "{PG_DB}" OWNER "{PG_USER}"')


def pg_up() -> None:
    p = port("postgres")
    bindir = _pg_bindir(install=False)
    pid = pg_pid()
    if pid is not None:
        check_same_port("postgres", pid)
        wait_until(
            "postgres",
            lambda: _pg_ready(bindir, p),
            lambda: pg_pid() is not None,
            log_file("postgres"),
            START_TIMEOUT["postgres"],
        )
        _pg_bootstrap(bindir, p)
        return
    if port_open(p):
        raise port_taken_error("postgres")
    bindir = _pg_bindir(install=True)
    assert bindir is not None
    _pg_prepare_dirs()
    env = dict(clean_env(), LC_ALL="C")
    if not (PG_DATA / "PG_VERSION").exists():
        if PG_DATA.exists():
            shutil.rmtree(PG_DATA)  # left over from an interrupted initdb
        log(f"initdb {PG_DATA.relative_to(ROOT)} ({bindir.parent.name})")
        run(
            _pg_as_owner(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(PG_DATA),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--encoding=UTF8",
                    "--locale=C",
                ]
            ),
            "initdb",
            cwd=PG_DIR,
            env=env,
        )
    else:
        stale = PG_DATA / "postmaster.pid"
        if stale.exists():
            # Not a live postgres (checked above): e.g. a pid reused after a reboot.
            stale.unlink()
    log_path = log_file("postgres")
    rotate_log(log_path)
    log_path.touch()
    if is_root():
        pw = pwd.getpwnam("postgres")
        os.chown(log_path, pw.pw_uid, pw.pw_gid)
    sock = _socket_dir()
    opts = [
        "-p",
        str(p),
        "-c",
        f"listen_addresses={HOST}",
        "-c",
        "max_connections=200",
        "-c",
        f"unix_socket_directories={sock if sock is not None else ''}",
    ]
    log(f"starting postgres on {HOST}:{p}")
    pg_ctl = _pg_as_owner(
        [
            str(bindir / "pg_ctl"),
            "start",
            "-w",
            "-t",
            str(int(START_TIMEOUT["postgres"])),
            "-D",
            str(PG_DATA),
            "-l",
            str(log_path),
            "-o",
            shlex.join(opts),
        ]
    )
    proc = subprocess.run(
        pg_ctl,
        cwd=PG_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    if proc.returncode != 0:
        raise DevstackError(
            f"pg_ctl start failed (exit {proc.returncode}): {proc.stdout.strip()}\n{log_tail(log_path)}"
        )
    pid = read_pid(PG_DATA / "postmaster.pid")
    if pid is not None:
        pid_file("postgres").write_text(f"{pid}\n{p}\n")
    wait_until(
        "postgres",
        lambda: _pg_ready(bindir, p),
        lambda: pg_pid() is not None,
        log_path,
        START_TIMEOUT["postgres"],
    )
    _pg_bootstrap(bindir, p)


def pg_down(wipe: bool) -> None:
    pid = pg_pid()
    if pid is not None:
        log(f"stopping postgres (pid {pid})")
        # SIGINT is PostgreSQL's "fast" shutdown (SIGTERM waits for clients to leave).
        stop_pid("postgres", pid, sig=signal.SIGINT)
    pid_file("postgres").unlink(missing_ok=True)
    if wipe and PG_DIR.exists():
        shutil.rmtree(PG_DIR)
