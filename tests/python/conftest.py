"""Fixtures: one throwaway PostgreSQL 15 cluster per test session, a fresh database per test.

The cluster is pytest-postgresql's process fixture: tools/pg_ctl_as_postgres is its pg_ctl (it runs the
server as the postgres OS user when we are root), the server settings go on the command line, and its
template database has the extensions created, so each test's database is a copy of it.
"""

from __future__ import annotations

import itertools
import os
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pytest_postgresql import factories
from pytest_postgresql.executors import PostgreSQLExecutor

from pgcluster import DEFAULT_SETTINGS, Cluster

PG_CTL = Path(__file__).resolve().parents[2] / "tools" / "pg_ctl_as_postgres"
# The executor sets the port, the socket directory and where the server logs.
SETTINGS = {k: v for k, v in DEFAULT_SETTINGS.items() if k not in ("port", "unix_socket_directories")}
_names = itertools.count(1)


def server_options(settings: dict[str, Any]) -> str:
    """The settings as postgres command-line options (pg_ctl passes them through a shell)."""
    words = {True: "on", False: "off"}
    return " ".join(f"-c {name}={shlex.quote(str(words.get(value, value)))}" for name, value in settings.items())


def create_extension(**connection: Any) -> None:
    """Loads the fixture's template database: what every test database starts with."""
    connection.pop("autocommit", None)
    with psycopg.connect(**connection, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
        conn.execute("CREATE EXTENSION pganalytics_ml CASCADE")


def server_fixture(settings: dict[str, Any], dbname: str, load: list[Any] | None = None) -> Any:
    """A session-scoped process fixture: a server with ``settings`` and a template database ``dbname``_tmpl."""
    return factories.postgresql_proc(
        executable=str(PG_CTL), port=None, dbname=dbname, postgres_options=server_options(settings), load=load
    )


def attached(server: PostgreSQLExecutor, settings: dict[str, Any]) -> Cluster:
    """The fixture's server as a Cluster: its clients and helpers (psql, databases, a standby, its log)."""
    return Cluster.attach(
        data_dir=Path(server.datadir),
        socket_dir=Path(server.unixsocketdir),
        log_file=Path(server.logfile),
        port=server.port,
        settings=settings,
    )


pg_server = server_fixture(SETTINGS, "pgml", load=[create_extension])


@dataclass
class Database:
    """A database of the test cluster with the extension created, and an autocommit connection to it."""

    cluster: Cluster
    name: str
    conn: psycopg.Connection[Any]

    def one(self, query: str, params: Any = None) -> Any:
        row = self.conn.execute(query, params).fetchone()
        return None if row is None else row[0] if len(row) == 1 else row

    def all(self, query: str, params: Any = None) -> list[Any]:
        return self.conn.execute(query, params).fetchall()

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        return self.cluster.connect(self.name, **kwargs)

    def error(self, query: str, params: Any = None) -> psycopg.Error:
        """Runs ``query``, which must fail, and returns the error (its sqlstate, message and hint)."""
        with pytest.raises(psycopg.Error) as caught:
            self.conn.execute(query, params)
        return caught.value


@pytest.fixture(scope="session")
def cluster(pg_server: PostgreSQLExecutor, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    pg = attached(pg_server, SETTINGS)
    yield pg
    # The fixture removes its server's log with the server: keep a copy with the session's temporary files.
    (tmp_path_factory.getbasetemp() / "server.log").write_text(pg.log_text())


@pytest.fixture(scope="session")
def template(pg_server: PostgreSQLExecutor, cluster: Cluster) -> str:
    return pg_server.template_dbname


def fresh_database(cluster: Cluster, template: str) -> str:
    name = f"t{os.getpid()}_{next(_names)}"
    cluster.create_database(name, template=template)
    return name


@pytest.fixture
def db(cluster: Cluster, template: str) -> Iterator[Database]:
    name = fresh_database(cluster, template)
    conn = cluster.connect(name)
    try:
        yield Database(cluster, name, conn)
    finally:
        conn.close()
        cluster.drop_database(name)
