"""Throwaway PostgreSQL 15 clusters for the tests, the demo and the benchmarks.

initdb and pg_ctl refuse to run as root, so when we are root every server command runs as the
``postgres`` OS user, in a directory that user owns.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

PG_BIN = Path(os.environ.get("PGML_PG_BIN", "/usr/lib/postgresql/15/bin"))
SERVER_USER = "postgres"

DEFAULT_SETTINGS: dict[str, Any] = {
    "shared_preload_libraries": "pg_stat_statements,pg_cron",
    "cron.database_name": "postgres",
    "cron.use_background_workers": "on",
    "max_worker_processes": 32,
    "pg_stat_statements.max": 10000,
    "pg_stat_statements.track_planning": "on",
    "listen_addresses": "127.0.0.1",
    "max_connections": 100,
    "timezone": "UTC",
    "log_timezone": "UTC",
    "fsync": "off",
    "full_page_writes": "off",
    "log_min_messages": "warning",
    "log_line_prefix": "%m [%p] %q%u@%d ",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def as_server_user(cmd: Sequence[str | os.PathLike[str]]) -> list[str]:
    """The command, run as the postgres OS user when we are root."""
    args = [str(c) for c in cmd]
    return ["runuser", "-u", SERVER_USER, "--", *args] if os.geteuid() == 0 else args


def _quote(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


class Cluster:
    """One PostgreSQL server in its own directory, on its own port and socket."""

    def __init__(
        self,
        base_dir: Path | None = None,
        port: int | None = None,
        settings: Mapping[str, Any] | None = None,
        name: str = "pganalytics_ml",
    ):
        self.base_dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix=f"{name}-"))
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "sock"
        self.log_file = self.base_dir / "postgresql.log"
        self.port = port or free_port()
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}

    @classmethod
    def attach(
        cls, data_dir: Path, socket_dir: Path, log_file: Path, port: int, settings: Mapping[str, Any]
    ) -> Cluster:
        """A running cluster something else started (pytest-postgresql's process fixture)."""
        cluster = cls(base_dir=data_dir.parent, port=port, settings=settings)
        cluster.data_dir, cluster.socket_dir, cluster.log_file = data_dir, socket_dir, log_file
        cluster.settings = dict(settings)
        return cluster

    # --- lifecycle -------------------------------------------------------------------------------
    def _make_dirs(self) -> None:
        """The cluster's directory and socket directory, owned by the server user."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        self._own(self.base_dir)
        self._own(self.socket_dir)

    def init(self) -> Cluster:
        self._make_dirs()
        subprocess.run(
            as_server_user(
                [
                    PG_BIN / "initdb",
                    "-D",
                    self.data_dir,
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ]
            ),
            check=True,
            capture_output=True,
            text=True,
        )
        self.configure({"port": self.port, "unix_socket_directories": str(self.socket_dir), **self.settings})
        return self

    def configure(self, settings: Mapping[str, Any]) -> None:
        """Appends settings to postgresql.conf; they take effect at the next (re)start or reload."""
        lines = "".join(f"{k} = {_quote(v)}\n" for k, v in settings.items())
        conf = self.data_dir / "postgresql.conf"
        subprocess.run(as_server_user(["sh", "-c", f"cat >> '{conf}'"]), input=lines, text=True, check=True)

    def start(self, timeout: int = 60) -> Cluster:
        subprocess.run(
            as_server_user(
                [PG_BIN / "pg_ctl", "-D", self.data_dir, "-l", self.log_file, "-w", "-t", str(timeout), "start"]
            ),
            check=True,
            capture_output=True,
            text=True,
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        if self.is_running():
            subprocess.run(
                as_server_user([PG_BIN / "pg_ctl", "-D", self.data_dir, "-m", mode, "-w", "stop"]),
                check=True,
                capture_output=True,
                text=True,
            )

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def is_running(self) -> bool:
        if not self.data_dir.exists():
            return False
        result = subprocess.run(
            as_server_user([PG_BIN / "pg_ctl", "-D", self.data_dir, "status"]), capture_output=True, text=True
        )
        return result.returncode == 0

    def postmaster_pid(self) -> int:
        return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def create_standby(self, name: str = "pganalytics_ml-standby") -> Cluster:
        """A hot standby of this cluster (pg_basebackup -R over loopback), started and streaming."""
        standby = Cluster(name=name, settings=self.settings)
        standby._make_dirs()
        subprocess.run(
            as_server_user(
                [
                    PG_BIN / "pg_basebackup",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    "postgres",
                    "-D",
                    standby.data_dir,
                    "-R",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                ]
            ),
            check=True,
            capture_output=True,
            text=True,
        )
        # The primary's settings again: a primary may have had them on its command line, not in its files.
        standby.configure(
            {
                **self.settings,
                "port": standby.port,
                "unix_socket_directories": str(standby.socket_dir),
                "hot_standby": "on",
            }
        )
        return standby.start()

    def wait_for_replay(self, standby: Cluster, timeout: float = 30) -> None:
        """Waits until ``standby`` has replayed everything this primary has written so far."""
        with self.connect() as conn:
            target = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        with standby.connect() as conn:
            wait_for(
                lambda: conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()[0],
                timeout,
                what=f"the standby to replay up to {target}",
            )

    # --- clients ---------------------------------------------------------------------------------
    def conninfo(self, dbname: str = "postgres", user: str = "postgres", **extra: Any) -> str:
        params = {"host": str(self.socket_dir), "port": self.port, "dbname": dbname, "user": user, **extra}
        return make_conninfo(**{k: str(v) for k, v in params.items()})

    def connect(
        self, dbname: str = "postgres", user: str = "postgres", autocommit: bool = True, **kwargs: Any
    ) -> psycopg.Connection[Any]:
        return psycopg.connect(self.conninfo(dbname, user), autocommit=autocommit, **kwargs)

    def libpq_env(self, dbname: str = "postgres", user: str = "postgres") -> dict[str, str]:
        """Environment for client programs (psql, pgbench, pg_prove, pg_dump)."""
        return {
            **os.environ,
            "PGHOST": str(self.socket_dir),
            "PGPORT": str(self.port),
            "PGDATABASE": dbname,
            "PGUSER": user,
        }

    def psql(self, query: str, dbname: str = "postgres", *args: str, check: bool = True) -> str:
        result = subprocess.run(
            [PG_BIN / "psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", "-c", query, *args],
            env=self.libpq_env(dbname),
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"psql failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def execute(
        self, query: str, params: Sequence[Any] | None = None, dbname: str = "postgres"
    ) -> list[tuple[Any, ...]]:
        with self.connect(dbname) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str, template: str | None = None) -> None:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with self.connect() as conn:
            conn.execute(query)

    def drop_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    @staticmethod
    def _own(path: Path) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(path, user.pw_uid, user.pw_gid)


def wait_for(predicate: Any, timeout: float, interval: float = 0.2, what: str = "condition") -> Any:
    """Polls ``predicate`` until it returns something truthy; raises TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
