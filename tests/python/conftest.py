"""Fixtures: one throwaway PostgreSQL 15 cluster per test session, a fresh database per test."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from pgcluster import Cluster

TEMPLATE = "pgml_template"
_names = itertools.count(1)


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
def cluster() -> Iterator[Cluster]:
    pg = Cluster(name="pganalytics_ml-test").init().start()
    try:
        yield pg
    finally:
        if os.environ.get("PGML_KEEP_CLUSTER"):
            print(f"\nkept test cluster: {pg.base_dir} (port {pg.port})")
        else:
            pg.destroy()


@pytest.fixture(scope="session")
def template(cluster: Cluster) -> str:
    cluster.create_database(TEMPLATE)
    with cluster.connect(TEMPLATE) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
        conn.execute("CREATE EXTENSION pganalytics_ml CASCADE")
    return TEMPLATE


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
