"""What a first-time DBA meets: the scheduler's hints and the status, clean errors, readable output, jobs."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import psycopg
import pytest

from conftest import Database
from history_builder import History, statements
from pgcluster import PG_BIN, Cluster

pytestmark = pytest.mark.integration

SERVER = "db-1"


def problems(conn: psycopg.Connection) -> list[str]:
    return conn.execute("SELECT pgml_status()->'problems'").fetchone()[0]


def error(conn: psycopg.Connection, query: str) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(query)
    return caught.value


# --- the scheduler and the status ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def cron_db_cluster() -> Iterator[Cluster]:
    """A server whose cron.database_name is 'crondb', where pganalytics_ml is created before pg_cron."""
    pg = Cluster(name="pganalytics_ml-crondb", settings={"cron.database_name": "crondb"}).init().start()
    try:
        pg.create_database("crondb")
        with pg.connect("crondb") as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            conn.execute("CREATE EXTENSION pganalytics_ml CASCADE")
        yield pg
    finally:
        pg.destroy()


def test_in_the_cron_database_status_and_hints_say_what_to_do_step_by_step(cron_db_cluster: Cluster):
    with cron_db_cluster.connect("crondb") as conn:
        err = error(conn, "SELECT * FROM pgml_schedule()")
        assert err.sqlstate == "55000"
        assert "This is pg_cron's database" in err.diag.message_hint
        assert "CREATE EXTENSION pg_cron" in err.diag.message_hint
        assert "install pganalytics_ml there" not in err.diag.message_hint
        status = conn.execute("SELECT pgml_status()").fetchone()[0]
        assert status["status"] == "degraded" and status["scheduler"]["state"] == "not installed"
        assert any(p.startswith("no scheduler: pg_cron is not created in this database") for p in status["problems"])
        assert any(p.startswith("no snapshot yet") for p in status["problems"])

        conn.execute("CREATE EXTENSION pg_cron")
        assert any(p.startswith("unscheduled:") for p in problems(conn))
        conn.execute("SELECT * FROM pgml_schedule()")
        conn.execute("SELECT * FROM pgml_snapshot()")
        assert problems(conn) == []

        conn.execute(
            "SELECT cron.alter_job(jobid, active => false) FROM cron.job WHERE jobname = 'pganalytics_ml:drain'"
        )
        assert problems(conn) == [
            "scheduled jobs missing or inactive: pganalytics_ml:drain; SELECT * FROM pgml_schedule()"
        ]
        conn.execute("SELECT * FROM pgml_schedule()")
        assert problems(conn) == []

        # a last snapshot older than three cadences (300 s by default) is a problem
        conn.execute("UPDATE pganalytics_ml.snapshots SET captured_at = captured_at - interval '16 minutes'")
        stale = problems(conn)
        assert len(stale) == 1 and stale[0].startswith("the last snapshot is 00:16:")
        assert "more than 3 times the expected 300 seconds" in stale[0]
        conn.execute("SELECT * FROM pgml_unschedule()")


def test_without_pg_cron_loaded_the_hint_and_the_status_say_so(tmp_path):
    pg = Cluster(name="pganalytics_ml-nocron", settings={"shared_preload_libraries": "pg_stat_statements"})
    pg.init().start()
    try:
        with pg.connect() as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            conn.execute("CREATE EXTENSION pganalytics_ml CASCADE")
            err = error(conn, "SELECT * FROM pgml_schedule()")
            assert err.sqlstate == "55000" and err.diag.message_primary == "pg_cron is not loaded by this server"
            assert "shared_preload_libraries" in err.diag.message_hint
            conn.execute("SELECT * FROM pgml_snapshot()")
            status = conn.execute("SELECT pgml_status()").fetchone()[0]
    finally:
        pg.destroy()
    assert status["status"] == "degraded" and status["scheduler"]["state"] == "none"
    assert [p for p in status["problems"] if p.startswith("no scheduler: pg_cron is not in shared_preload_libraries")]


def test_failed_jobs_are_the_dead_lettered_and_the_cancelled_ones(db: Database):
    db.conn.execute("""SELECT pgml_job_enqueue('sleep', '{"fail": "boom"}', max_attempts => 1)""")
    cancelled = db.one("""SELECT job_id FROM pgml_job_enqueue('sleep', '{"seconds": 0}', run_at => now() + '1 day')""")
    db.conn.execute("SELECT pgml_job_cancel(%s)", (cancelled,))
    db.conn.execute("CALL pganalytics_ml.run_jobs()")
    status = db.one("SELECT pgml_status()")
    assert (status["failed_jobs"], status["dead_lettered_jobs"], status["cancelled_jobs"]) == (2, 1, 1)


def test_run_jobs_says_what_it_did(db: Database):
    notices: list[str] = []
    db.conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    for _ in range(2):
        db.conn.execute("""SELECT pgml_job_enqueue('sleep', '{"seconds": 0}')""")
    db.conn.execute("""SELECT pgml_job_enqueue('sleep', '{"fail": "boom"}')""")
    db.conn.execute("""SELECT pgml_job_enqueue('sleep', '{"seconds": 0}', run_at => now() + '1 day')""")
    db.conn.execute("CALL pganalytics_ml.run_jobs()")
    summary = [n for n in notices if n.startswith("run_jobs:")]
    assert len(summary) == 1
    assert summary[0].startswith("run_jobs: 3 jobs run in ")
    # the failed one is retried later (its backoff), the one for tomorrow waits: two pending
    assert summary[0].endswith("(2 completed, 1 to retry, 0 failed); 2 pending")


# --- errors for the caller read as PL/pgSQL ones --------------------------------------------------------

ARGUMENT_ERRORS = [
    ("SELECT * FROM pgml_train(model_type => 'neural_net')", "22023", "unknown model_type"),
    ("SELECT * FROM pgml_train(0)", "22023", "lookback_days must be between 1 and 3650"),
    ("SELECT * FROM pgml_train(NULL)", "22004", "lookback_days must not be NULL"),
    ("SELECT * FROM pgml_train(1, 'auto', 'never-seen')", "P0002", "no history captured"),
    ("SELECT * FROM pgml_train_async(90, 'nonsense')", "22023", "unknown model_type"),
    ("SELECT * FROM pgml_job_enqueue('explode')", "22023", "unknown job kind"),
    ("""SELECT * FROM pgml_job_enqueue('sleep', '{"seconds": -1}')""", "22023", "seconds must be a number"),
    ("""SELECT pgml_ingest_stats('db-9', '[{"queryid": 1}]')""", "22023", "has no calls"),
    ("SELECT pgml_ingest_stats(NULL, '[]')", "22004", "server_id must not be NULL"),
    ("SELECT * FROM pgml_activate_model(4242)", "P0002", "model 4242 does not exist"),
    ("SELECT * FROM pgml_detect_patterns(0)", "22023", "lookback_days"),
    ("SELECT pgml_detect_patterns_json(7, NULL)", "22004", "server_id"),
    ("SELECT * FROM pgml_capture_plans(NULL)", "22023", "only_new must be true or false"),
    ("SELECT * FROM pgml_recommend_indexes(top_statements => 0)", "22023", "top_statements must be from 1"),
    ("SELECT pgml_cleanup_models(-1)", "22023", "keep_count must be 0 or more"),
    ("CALL pganalytics_ml.run_jobs(max_jobs => 0)", "22023", "max_jobs must be at least 1"),
    ("CALL pganalytics_ml.run_jobs(max_seconds => NULL)", "22004", "max_seconds must not be NULL"),
    ("CALL pganalytics_ml.run_jobs(kinds => '{explode}')", "22023", "unknown job kinds: 'explode'"),
    ("CALL pganalytics_ml.run_snapshots(0)", "22023", "every_seconds must be between 1 and 3600"),
    ("CALL pganalytics_ml.run_snapshots(10, NULL)", "22004", "within_seconds must not be NULL"),
]


@pytest.mark.parametrize(("query", "sqlstate", "message"), ARGUMENT_ERRORS)
def test_argument_errors_carry_no_python_traceback(db: Database, query: str, sqlstate: str, message: str):
    err = db.error(query)
    assert err.sqlstate == sqlstate and message in err.diag.message_primary
    assert err.diag.message_primary.startswith("pganalytics_ml: ")
    assert err.diag.message_hint
    assert "Traceback" not in (err.diag.context or "") and "PL/Python" not in (err.diag.context or "")
    assert "PL/pgSQL function" in err.diag.context


def test_snapshot_without_pg_stat_statements_carries_no_traceback(db: Database):
    db.conn.execute("DROP EXTENSION pg_stat_statements")
    err = db.error("SELECT * FROM pgml_snapshot()")
    assert err.sqlstate == "55000" and "Traceback" not in err.diag.context


def test_psql_shows_the_error_without_a_traceback(db: Database):
    result = subprocess.run(
        [PG_BIN / "psql", "-X", "-c", "SELECT * FROM pgml_train(model_type => 'neural_net')"],
        env=db.cluster.libpq_env(db.name),
        capture_output=True,
        text=True,
    )
    assert "ERROR:  pganalytics_ml: unknown model_type 'neural_net'" in result.stderr
    assert "HINT:  Valid model types" in result.stderr
    assert "Traceback" not in result.stderr


# --- pgml_jobs: a name that can be written, a compact default -------------------------------------------


@pytest.fixture
def trained(db: Database) -> Database:
    db.history = History(db.conn, SERVER)
    db.history.steady(statements(8), intervals=30)
    job = db.one("SELECT job_id FROM pgml_train_async(1, 'random_forest', %s)", (SERVER,))
    db.conn.execute("CALL pganalytics_ml.run_jobs()")
    db.job = job
    return db


def test_pgml_jobs_takes_max_rows_and_still_the_quoted_limit(trained: Database):
    for _ in range(3):
        trained.conn.execute("""SELECT pgml_job_enqueue('sleep', '{"seconds": 0}')""")
    for call in (
        "pgml_jobs(max_rows => 2)",
        'pgml_jobs("limit" => 2)',
        "pgml_jobs(NULL, 2)",
        "pgml_jobs(NULL, 9, false, 2)",
    ):
        assert trained.one(f"SELECT count(*) FROM {call}") == 2, call
    assert trained.one("SELECT count(*) FROM pgml_jobs()") == 4
    assert trained.one("SELECT count(*) FROM pgml_jobs('completed', max_rows => 5)") == 1
    # the reserved word itself cannot be an argument name in PostgreSQL's grammar: documented
    assert trained.error("SELECT * FROM pgml_jobs(limit => 3)").sqlstate == "42601"


def widest_line(db: Database, query: str) -> int:
    out = subprocess.run(
        [PG_BIN / "psql", "-X", "-c", query], env=db.cluster.libpq_env(db.name), capture_output=True, text=True
    ).stdout
    return max(len(line) for line in out.splitlines())


def test_pgml_jobs_is_compact_by_default_and_whole_on_request(trained: Database):
    compact = trained.one("SELECT result FROM pgml_jobs() WHERE job_id = %s", (trained.job,))
    whole = trained.one("SELECT result FROM pgml_jobs(details => true) WHERE job_id = %s", (trained.job,))
    assert "feature_importance" in whole and "feature_importance" not in compact
    scalars = {k: v for k, v in whole.items() if not isinstance(v, dict | list)}
    assert compact.keys() < scalars.keys() and {"model_id", "q_error_p90", "activated"} <= compact.keys()
    scalars = {k: v for k, v in scalars.items() if k in compact}
    for key, value in scalars.items():  # long texts shortened to 60 characters, numbers to 4 decimals
        if isinstance(value, str) and len(value) > 60:
            assert compact[key] == value[:57] + "...", key
        elif isinstance(value, int | float) and not isinstance(value, bool):
            assert compact[key] == pytest.approx(round(value, 4), abs=1e-9), key
        else:
            assert compact[key] == value, key
    assert compact["model_id"] == whole["model_id"]
    assert trained.one("SELECT result FROM pgml_job_status(%s)", (trained.job,)) == whole
    failed = trained.one(
        """SELECT job_id FROM pgml_job_enqueue('sleep', %s, max_attempts => 1)""", (json.dumps({"fail": "x" * 500}),)
    )
    trained.conn.execute("CALL pganalytics_ml.run_jobs()")
    short = trained.one("SELECT error FROM pgml_jobs() WHERE job_id = %s", (failed,))
    assert len(short) == 120 and short.endswith("...")
    assert trained.one("SELECT errors FROM pgml_jobs() WHERE job_id = %s", (failed,)) is None
    assert len(trained.one("SELECT errors FROM pgml_jobs(details => true) WHERE job_id = %s", (failed,))) == 1
    narrow, wide = (
        widest_line(trained, "SELECT * FROM pgml_jobs()"),
        widest_line(trained, "SELECT * FROM pgml_jobs(details => true)"),
    )
    # a training job's row and a failed one's, each with every column: 1,900 characters wide and more before
    assert narrow < 1000 and wide > 3 * narrow, (narrow, wide)


# --- readable figures, statement text -------------------------------------------------------------------


def decimals(value: float) -> int:
    text = repr(value)
    return len(text.split(".")[1]) if "." in text and "e" not in text else 0


def test_people_read_rounded_figures_and_the_log_keeps_every_digit(trained: Database):
    queryid = next(iter(statements(8)))
    prediction = trained.one("SELECT prediction_id FROM pgml_predict(%s, %s)", (queryid, SERVER))
    validated = trained.conn.execute(
        "SELECT error_percent, accuracy_score FROM pgml_validate(%s, pi())", (prediction,)
    ).fetchone()
    stored = trained.conn.execute(
        "SELECT error_percent, accuracy_score FROM pganalytics_ml.predictions WHERE prediction_id = %s", (prediction,)
    ).fetchone()
    assert decimals(validated[0]) <= 2 and decimals(validated[1]) <= 4
    assert validated[0] == pytest.approx(stored[0], abs=0.005) and validated[1] == pytest.approx(stored[1], abs=5e-5)
    assert decimals(stored[0]) > 2  # pi against a forecast of 4 significant digits (3.0 gave 2 for some)

    trained.conn.execute("SELECT * FROM pgml_predict_all(%s, log => true)", (SERVER,))
    trained.history.capture({q: 5.0 for q in statements(8)})
    rows = trained.conn.execute(
        "SELECT mean_accuracy, median_error_percent, p95_error_percent, q_error_p50, q_error_p90,"
        " interval_coverage::text FROM pganalytics_ml.prediction_accuracy"
    ).fetchall()
    assert rows
    for accuracy, median, p95, q50, q90, coverage in rows:
        assert decimals(accuracy) <= 4 and decimals(median) <= 2 and decimals(p95) <= 2
        assert decimals(q50) <= 3 and decimals(q90) <= 3 and len(coverage.split(".")[1]) == 3
    # programs keep every digit in the JSON of a prediction
    doc = trained.one("SELECT pgml_predict_json(%s, %s)", (queryid, SERVER))
    assert doc["predicted_execution_time_ms"] == trained.one(
        "SELECT predicted_ms FROM pganalytics_ml.forecasts WHERE server_id = %s AND queryid = %s", (SERVER, queryid)
    )


def test_predictions_show_the_statement_text(trained: Database):
    rows = trained.all("SELECT query_hash, query FROM pgml_predict_all(%s)", (SERVER,))
    assert len(rows) == 8
    assert all(q == f"SELECT * FROM table_{abs(h)} WHERE id = $1" for h, q in rows)
    queryid = rows[0][0]
    assert trained.one("SELECT query FROM pgml_predict(%s, %s)", (queryid, SERVER)) == rows[0][1]
    long_text = "SELECT " + ", ".join(f"column_{i}" for i in range(40)) + " FROM t"
    trained.conn.execute("UPDATE pganalytics_ml.statements SET query = %s WHERE queryid = %s", (long_text, queryid))
    shown = trained.one("SELECT query FROM pgml_predict(%s, %s)", (queryid, SERVER))
    assert len(shown) == 80 and shown == long_text[:77] + "..."


# --- regressions end when the statement stops ------------------------------------------------------------


def test_a_regression_clears_once_the_statement_has_not_run_for_three_captures(trained: Database):
    queries = statements(8)
    slow = next(iter(queries))
    history = trained.history
    upper = trained.one(
        "SELECT upper_ms FROM pganalytics_ml.forecasts WHERE server_id = %s AND queryid = %s", (SERVER, slow)
    )
    for _ in range(2):  # an alarm takes two intervals in a row above the bound
        history.capture({q: (upper * 10 if q == slow else level) for q, level in queries.items()})
    assert trained.one("SELECT count(*) FROM pganalytics_ml.regressions WHERE query_hash = %s", (slow,)) == 1
    others = {q: level for q, level in queries.items() if q != slow}
    for expected in (1, 1, 0):  # it stops running: the third capture without it clears it
        history.capture(others)
        assert trained.one("SELECT count(*) FROM pganalytics_ml.regressions WHERE query_hash = %s", (slow,)) == expected
    assert trained.one("SELECT pgml_status()->'regressions'") == trained.one(
        "SELECT count(*) FROM pganalytics_ml.regressions"
    )
