"""A throwaway cluster of its own for tests that need pg_cron in the database they use.

pg_cron 1.4 lives only in cron.database_name, fixed when the server starts; the session's cluster uses
'postgres' for it, which its other tests share.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pgcluster import Cluster

CRON_DB = "pgml_cron"


def create_cron_database(pg: Cluster, name: str = CRON_DB) -> None:
    pg.create_database(name)
    with pg.connect(name) as conn:
        for extension in ("pg_stat_statements", "pg_cron", "pganalytics_ml CASCADE"):
            conn.execute(f"CREATE EXTENSION {extension}")


@contextmanager
def cron_cluster(name: str) -> Iterator[Cluster]:
    """A started cluster whose database CRON_DB has pg_cron and pganalytics_ml."""
    pg = Cluster(name=name, settings={"cron.database_name": CRON_DB}).init().start()
    try:
        create_cron_database(pg)
        yield pg
    finally:
        pg.destroy()
