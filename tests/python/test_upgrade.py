"""ALTER EXTENSION pganalytics_ml UPDATE from each released version, as it was released (releases/).

The release's install script goes into the server's extension directory and its Python package into a
directory of its own, loaded through pganalytics_ml.python_path next to today's pinned libraries (the
releases pin the same ones). After the update that setting is reset, as an operator would, and new
sessions load today's package. The upgraded database must then have the catalog of a fresh install and
every row it had before.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from history_builder import History, statements
from pganalytics_ml import __version__
from pgcluster import Cluster

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RELEASES = sorted(p.name.removeprefix("pganalytics_ml-").removesuffix(".tar.gz") for p in (ROOT / "releases").glob("*"))
LIBDIR = Path(os.environ.get("PGML_PYTHON_LIBDIR", f"/usr/local/lib/pganalytics_ml/{__version__}"))
UPGRADED, FRESH = "postgres", "fresh"  # pg_cron lives in postgres (cron.database_name)
TABLES = ("snapshots", "statements", "query_stats", "models", "model_key", "forecasts", "predictions", "jobs",
          "schedule_config")  # fmt: skip
# Since 0.3.0 each server's counter baseline is one array (one row per entry before): compared entry by entry.
BASELINE_PER_ENTRY = "SELECT server_id, captured_at, counters::text FROM pganalytics_ml.counter_baseline"
BASELINE_PER_SERVER = (
    "SELECT b.server_id, b.captured_at, c::text FROM pganalytics_ml.counter_baseline b, unnest(b.counters) c"
)

CATALOG = {
    "members": """
        SELECT pg_describe_object(d.classid, d.objid, d.objsubid)
          FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
         WHERE d.deptype = 'e' AND e.extname = 'pganalytics_ml'""",
    "functions": """
        SELECT p.oid::regprocedure::text, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid),
               p.prosrc, p.proconfig::text, p.prosecdef, p.provolatile, p.proparallel, p.prokind,
               (SELECT array_agg(a::text ORDER BY a::text) FROM unnest(p.proacl) a), obj_description(p.oid)
          FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
          JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pganalytics_ml'""",
    "relations": """
        SELECT c.relname, c.relkind, c.reloptions::text,
               (SELECT array_agg(a::text ORDER BY a::text) FROM unnest(c.relacl) a),
               obj_description(c.oid), CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END,
               CASE WHEN c.relkind = 'i' THEN pg_get_indexdef(c.oid) END
          FROM pg_class c WHERE c.relnamespace = 'pganalytics_ml'::regnamespace""",
    "columns": """
        SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(ad.adbin, ad.adrelid), (SELECT array_agg(x::text ORDER BY x::text) FROM unnest(a.attacl) x)
          FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
         WHERE c.relnamespace = 'pganalytics_ml'::regnamespace""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
          FROM pg_constraint WHERE connamespace = 'pganalytics_ml'::regnamespace""",
    "config_dump": """
        SELECT (SELECT array_agg(c::regclass::text ORDER BY c::regclass::text) FROM unnest(extconfig) c), extcondition
          FROM pg_extension WHERE extname = 'pganalytics_ml'""",
    "schema": "SELECT nspname, nspacl::text FROM pg_namespace WHERE nspname = 'pganalytics_ml'",
}


def catalog(conn) -> dict[str, list]:
    return {name: sorted(map(repr, conn.execute(query).fetchall())) for name, query in CATALOG.items()}


def columns(conn) -> dict[str, list[str]]:
    query = "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
    return {t: [r[0] for r in conn.execute(query + " ORDER BY attnum", (f"pganalytics_ml.{t}",))] for t in TABLES}


def contents(conn, kept: dict[str, list[str]]) -> dict[str, list]:
    """Every row of every table, in the columns the release had (a new version may add columns)."""
    out = {}
    for t in TABLES:
        names = ", ".join(f"x.{c}" for c in kept[t])
        out[t] = conn.execute(f"SELECT {names} FROM pganalytics_ml.{t} x ORDER BY ({names})::text").fetchall()
    version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'pganalytics_ml'").fetchone()[0]
    baseline = BASELINE_PER_SERVER if version == __version__ else BASELINE_PER_ENTRY
    out["counter_baseline"] = sorted(conn.execute(baseline).fetchall())
    return out


# Row counts and sums of the history, which moves into the partitioned layout.
TOTALS = """
    SELECT (SELECT (count(*), sum(calls), round(sum(total_exec_time)::numeric, 6), sum(rows),
                    min(interval_end), max(interval_end))::text
              FROM pganalytics_ml.query_stats),
           (SELECT (count(*), round(sum(predicted_ms)::numeric, 6), sum(prediction_id), min(predicted_at))::text
              FROM pganalytics_ml.predictions)"""


@pytest.fixture
def released(request) -> Iterator[tuple[str, Path]]:
    """Installs release ``request.param``: its script into the extension directory, its package into a folder."""
    version = request.param
    sharedir = subprocess.run(
        [os.environ.get("PG_CONFIG", "pg_config"), "--sharedir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    script = Path(sharedir) / "extension" / f"pganalytics_ml--{version}.sql"
    had_script = script.exists()
    folder = Path(tempfile.mkdtemp(prefix=f"pganalytics_ml-{version}-"))
    (folder / "python").mkdir()
    archive = ROOT / "releases" / f"pganalytics_ml-{version}.tar.gz"
    subprocess.run(["tar", "-xzf", archive, "-C", folder / "python"], check=True)
    shutil.copyfile(folder / "python" / script.name, script)
    os.chmod(folder, 0o755)
    subprocess.run(["chmod", "-R", "a+rX", str(folder)], check=True)
    try:
        yield version, folder / "python"
    finally:
        if not had_script:
            script.unlink()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def upgrade_cluster() -> Iterator[Cluster]:
    pg = Cluster(name="pganalytics_ml-upgrade").init().start()
    try:
        yield pg
    finally:
        pg.destroy()


@pytest.mark.parametrize("released", [v for v in RELEASES if v != __version__], indirect=True)
def test_update_from_a_release_keeps_the_data_and_reaches_a_fresh_installs_catalog(
    released: tuple[str, Path], upgrade_cluster: Cluster
):
    pg = upgrade_cluster
    old, package = released
    pg.configure({"pganalytics_ml.python_path": f"{package}:{LIBDIR}"})
    pg.execute("SELECT pg_reload_conf()")
    queries = statements(6)
    with pg.connect(UPGRADED) as conn:
        for extension in ("pg_stat_statements", "pg_cron"):
            conn.execute(f"CREATE EXTENSION {extension}")
        conn.execute(f"CREATE EXTENSION pganalytics_ml VERSION '{old}' CASCADE")
        assert conn.execute("SELECT pganalytics_ml._load_python()").fetchone() == (old,)
        History(conn, "db-1").steady(queries, intervals=25)
        # History across two UTC days, three days back: it lands in two day partitions.
        midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)
        History(conn, "db-2", start=midnight - timedelta(hours=1)).steady(statements(4, seed=2), intervals=25)
        for q in queries:
            conn.execute("SELECT * FROM pgml_predict(%s, 'db-1')", (q,))
        model_id = conn.execute("SELECT model_id FROM pgml_train(90, 'linear_regression', 'db-1')").fetchone()[0]
        queryid = next(iter(queries))
        predicted = conn.execute("SELECT predicted_execution_time_ms FROM pgml_predict(%s, 'db-1')", (queryid,))
        predicted = predicted.fetchone()[0]
        conn.execute("SELECT * FROM pgml_snapshot()")
        conn.execute("SELECT job_id FROM pgml_job_enqueue('sleep', '{\"seconds\": 0}')")
        conn.execute("SELECT * FROM pgml_schedule(snapshot_seconds => 600)")
        kept = columns(conn)
        before = contents(conn, kept)
        totals = conn.execute(TOTALS).fetchone()
        schedules = conn.execute("SELECT jobname, schedule, command FROM cron.job ORDER BY 1").fetchall()
    assert all(before.values()), [t for t, rows in before.items() if not rows]

    pg.configure({"pganalytics_ml.python_path": ""})  # the later line wins: back to the versioned directory
    pg.execute("SELECT pg_reload_conf()")
    with pg.connect(UPGRADED) as conn:
        conn.execute("ALTER EXTENSION pganalytics_ml UPDATE")
    with pg.connect(UPGRADED) as conn:
        assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'pganalytics_ml'").fetchone() == (
            __version__,
        )
        assert conn.execute("SELECT pganalytics_ml._load_python()").fetchone() == (__version__,)
        assert contents(conn, kept) == before
        assert conn.execute(TOTALS).fetchone() == totals
        assert conn.execute("SELECT jobname, schedule, command FROM cron.job ORDER BY 1").fetchall() == schedules
        upgraded = catalog(conn)
        # The released model still loads (same key, same features) and predicts what it did.
        conn.execute("SELECT * FROM pgml_activate_model(%s)", (model_id,))
        again = conn.execute("SELECT pgml_predict_json(%s, 'db-1')", (queryid,)).fetchone()[0]
        # The forecast is now a combination (issue 12); the model's own proposal in it is what it predicted.
        proposal = conn.execute(
            "SELECT expert_ms[8] FROM pganalytics_ml.forecasts WHERE server_id = 'db-1' AND queryid = %s", (queryid,)
        ).fetchone()[0]
        assert float(f"{proposal:.4g}") == predicted and again["model_id"] == model_id
        assert again["query_hash_text"] == str(queryid)

    pg.create_database(FRESH)
    with pg.connect(FRESH) as conn:
        conn.execute("CREATE EXTENSION pganalytics_ml CASCADE")
        fresh = catalog(conn)
    for part in CATALOG:
        assert upgraded[part] == fresh[part], part

    # The history the update kept in the default partitions moves into day partitions at the first upkeep.
    with pg.connect(UPGRADED) as conn:
        in_default = conn.execute(
            "SELECT (SELECT count(*) FROM pganalytics_ml.query_stats_default)"
            " + (SELECT count(*) FROM pganalytics_ml.predictions_default)"
        ).fetchone()[0]
        totals, before = conn.execute(TOTALS).fetchone(), contents(conn, kept)  # with the prediction made above
        cleaned = conn.execute("SELECT * FROM pganalytics_ml._cleanup('1000 days', '1000 days', '1000 days')")
        cleaned = dict(zip([c.name for c in cleaned.description], cleaned.fetchone(), strict=True))
        assert cleaned["rows_moved"] == in_default > 0
        assert cleaned["query_stats"] == cleaned["predictions"] == 0
        assert conn.execute(TOTALS).fetchone() == totals
        assert contents(conn, kept) == before
        assert conn.execute(
            "SELECT (SELECT count(*) FROM pganalytics_ml.query_stats_default),"
            " (SELECT count(*) FROM pganalytics_ml.predictions_default)"
        ).fetchone() == (0, 0)
        days = conn.execute(
            "SELECT count(DISTINCT tableoid) FROM pganalytics_ml.query_stats WHERE server_id = 'db-2'"
        ).fetchone()[0]
        assert days == 2


def test_every_upgrade_step_is_committed_and_reaches_this_version():
    steps = sorted(p.name for p in (ROOT / "sql" / "upgrades").glob("pganalytics_ml--*--*.sql"))
    reached = {s.removesuffix(".sql").split("--")[2] for s in steps}
    assert __version__ in reached or not RELEASES
    for version in RELEASES:
        if version != __version__:
            assert any(s.startswith(f"pganalytics_ml--{version}--") for s in steps), f"no upgrade from {version}"
