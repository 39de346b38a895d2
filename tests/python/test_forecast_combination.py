"""The online combination on a real cluster: its state, its columns, its calibration, its regression alarm."""

from __future__ import annotations

import math
import random
import struct
from datetime import UTC, datetime, timedelta

import pytest

from conftest import Database
from history_builder import History, statements
from pganalytics_ml.forecasting.online import SUMS
from workload import pgbench

pytestmark = pytest.mark.integration

SERVER = "db-1"
FORECASTERS = ["last", "ewma", "since_change", "longrun", "trend", "server_load", "seasonal", "model", "server_next"]


def learned(packed: bytes) -> tuple[dict[str, float], list[float]]:
    """forecasts.packed: the counts of sums and forecasters, the sums (online.SUMS), the statement's own weights."""
    values = struct.unpack(f"<{len(packed) // 8}d", packed)
    sums, forecasters = int(values[0]), int(values[1])
    return dict(zip(SUMS, values[2 : 2 + sums], strict=True)), list(values[2 + sums : 2 + sums + forecasters])


def row(db: Database, query: str, params=None) -> dict:
    cur = db.conn.execute(query, params)
    return dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))


def steady_means(history: History, queries: dict[int, float], factor: dict[int, float] | None = None) -> dict:
    """The next interval as History.steady would make it, without noise, times ``factor`` for some statements."""
    load = 1 + 0.5 * math.sin(history.captures / 4)
    return {q: level * load ** (abs(q) % 3 * 0.5) * (factor or {}).get(q, 1.0) for q, level in queries.items()}


@pytest.fixture
def history(db: Database) -> History:
    h = History(db.conn, SERVER)
    h.steady(statements(12), intervals=30)
    return h


def test_every_capture_updates_the_weights_and_pgml_predict_names_the_forecaster(db: Database, history: History):
    state = db.all(
        "SELECT packed, cardinality(expert_ms) FROM pganalytics_ml.forecasts WHERE server_id = %s", (SERVER,)
    )
    assert len(state) == 12 and {s[1] for s in state} == {len(FORECASTERS)}
    assert {learned(s[0])[0]["updates"] for s in state} == {28}  # 29 intervals; the first only starts the state
    weights = [learned(s[0])[1] for s in state]
    assert all(len(w) == len(FORECASTERS) and sum(w) == pytest.approx(1.0, abs=1e-9) for w in weights)
    assert len({tuple(w) for w in weights}) > 1  # each statement learns its own
    cur = db.conn.execute("SELECT * FROM pgml_predict(%s, %s)", (next(iter(statements(12))), SERVER))
    # Added at the end (forecaster, then issue 15's plan and scenario): positional readers keep working.
    assert [c.name for c in cur.description][14:16] == ["forecaster", "total_cost"]
    p = dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))
    assert p["source"] == "baseline" and p["forecaster"]
    assert p["forecaster"] in FORECASTERS or p["forecaster"].startswith("mix(")
    assert p["lower_bound_ms"] < p["predicted_execution_time_ms"] < p["upper_bound_ms"]
    logged = row(
        db,
        "SELECT forecaster, expert_ms FROM pganalytics_ml.predictions WHERE prediction_id = %s",
        (p["prediction_id"],),
    )
    assert logged["forecaster"] == p["forecaster"] and len(logged["expert_ms"]) == len(FORECASTERS)
    assert logged["expert_ms"][FORECASTERS.index("model")] is None  # no model yet: it sleeps
    assert logged["expert_ms"][FORECASTERS.index("seasonal")] is None  # no known cycle
    assert db.one("SELECT pgml_predict_json(%s, %s)->>'forecaster'", (next(iter(statements(12))), SERVER))


def test_training_reports_each_forecaster_beside_the_combination_and_seeds_the_pool(db: Database, history: History):
    result = row(db, "SELECT * FROM pgml_train(90, 'linear_regression', %s)", (SERVER,))
    assert set(result["forecasters"]) == {*FORECASTERS, "combination"}
    for name in ("last", "ewma", "longrun", "trend", "model"):
        assert result["forecasters"][name]["q_error_p50"] >= 1.0
    assert "q_error_p50" not in result["forecasters"]["seasonal"]  # training knows no cycle
    assert result["forecasters"]["model"]["q_error_p90"] == result["q_error_p90"]
    assert result["combination_q_error_p90"] == result["forecasters"]["combination"]["q_error_p90"]
    assert 0 <= result["model_weight"] <= 1
    assert result["forecaster_note"].startswith("the model ")
    pool = row(db, "SELECT weights, q, q_start FROM pganalytics_ml.forecaster_pool WHERE server_id = %s", (SERVER,))
    assert pool["q"] == pool["q_start"] and sum(pool["weights"]) == pytest.approx(1.0, abs=1e-4)
    share = pool["weights"][FORECASTERS.index("model")] / sum(
        w for i, w in enumerate(pool["weights"]) if FORECASTERS[i] not in ("seasonal", "server_load", "server_next")
    )
    assert share == pytest.approx(result["model_weight"], abs=0.02)
    sources = db.all("SELECT DISTINCT source FROM pganalytics_ml.forecasts WHERE server_id = %s", (SERVER,))
    assert sources == [("model",)]


def test_a_model_that_adds_nothing_gets_almost_no_weight_and_says_so(db: Database):
    # Means that only repeat the last interval: nothing for a model to learn beyond it.
    h = History(db.conn, SERVER)
    rng = random.Random(3)
    levels = {q: 5.0 for q in statements(10)}
    for _ in range(40):
        levels = {q: v * math.exp(rng.gauss(0, 0.4)) for q, v in levels.items()}
        h.capture(levels)
    result = row(db, "SELECT * FROM pgml_train(90, 'decision_tree', %s)", (SERVER,))
    assert result["forecasters"]["last"]["weight"] > 0.5
    assert result["model_weight"] < 0.05
    assert "adds nothing" in result["forecaster_note"]


def test_live_coverage_comes_back_to_90_percent_when_the_noise_triples(db: Database):
    h = History(db.conn, SERVER)
    queries = statements(30)
    rng = random.Random(5)
    for k in range(60):
        noise = 0.1 if k < 30 else 0.3
        if k >= 30:
            db.conn.execute("SELECT count(*) FROM pgml_predict_all(%s, log => true)", (SERVER,))
        h.capture({q: level * math.exp(rng.gauss(0, noise)) for q, level in queries.items()})
    late = db.one(
        "SELECT avg(CASE WHEN within_interval THEN 1.0 ELSE 0 END)::float8 FROM pganalytics_ml.predictions"
        " WHERE validated_at > (SELECT captured_at FROM pganalytics_ml.snapshots WHERE server_id = %s"
        " ORDER BY captured_at LIMIT 1 OFFSET 36)",
        (SERVER,),
    )
    assert 0.85 <= late <= 0.95
    accuracy = row(db, "SELECT * FROM pganalytics_ml.prediction_accuracy WHERE server_id = %s", (SERVER,))
    assert {"last", "ewma", "since_change", "longrun", "trend", "server_load"} <= set(accuracy["forecaster_q_errors"])
    assert accuracy["forecaster_q_errors"]["last"]["q_error_p90"] >= 1.0
    confidence = db.one("SELECT avg(confidence) FROM pganalytics_ml.predictions WHERE validated_at IS NOT NULL")
    within = db.one(
        "SELECT avg(CASE WHEN greatest(predicted_ms / actual_ms, actual_ms / predicted_ms) <= 1.25 THEN 1.0 ELSE 0 END)"
        " FROM pganalytics_ml.predictions WHERE validated_at IS NOT NULL"
    )
    assert float(confidence) == pytest.approx(float(within), abs=0.1)


def test_a_known_cycle_wakes_the_seasonal_forecaster(db: Database, history: History):
    assert db.one("SELECT pgml_set_season(3600, %s)", (SERVER,)) == 12
    history.capture(steady_means(history, statements(12)))
    proposals = db.all("SELECT expert_ms[7] FROM pganalytics_ml.forecasts WHERE server_id = %s", (SERVER,))
    assert all(p[0] is not None and p[0] > 0 for p in proposals)
    assert db.one("SELECT pgml_set_season(NULL, %s)", (SERVER,)) == 12


def test_a_cycle_the_patterns_job_found_wakes_the_seasonal_forecaster(db: Database):
    # Captures a day apart: a daily cycle has an interval one period before the next one to forecast.
    day_ago = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=25)
    history = History(db.conn, "db-season", start=day_ago)
    queries = statements(12)
    for _ in range(6):
        history.capture(steady_means(history, queries))
    cyclic = next(iter(queries))
    db.conn.execute(
        "INSERT INTO pganalytics_ml.seasonal_profiles (server_id, query_hash, metric, period_hours, factors, strength,"
        " lookback_days, window_end, detected_at) VALUES ('db-season', %s, 'mean_time', 24,"
        " array_fill(1.0::float8, ARRAY[24]), 0.9, 7, now(), now())",
        (cyclic,),
    )
    history.captures = 285  # a day on: the next forecast's target ends one period after the 2nd capture
    for _ in range(4):
        history.capture(steady_means(history, queries))
    proposals = dict(db.all("SELECT queryid, expert_ms[7] FROM pganalytics_ml.forecasts WHERE server_id = 'db-season'"))
    assert proposals[cyclic] is not None and proposals[cyclic] > 0
    assert all(proposals[q] is None for q in queries if q != cyclic)
    # the detected cycle is read where the patterns job keeps it, not copied into the operator's setting
    assert db.one("SELECT count(*) FROM pganalytics_ml.forecasts WHERE season_seconds IS NOT NULL") == 0


def test_one_interval_above_the_bound_is_not_an_alarm_two_are(db: Database, history: History):
    queries = statements(12)
    slow = next(iter(queries))
    history.capture(steady_means(history, queries, {slow: 20}))
    assert db.all("SELECT query_hash FROM pganalytics_ml.regressions") == []
    assert db.one("SELECT consecutive_above FROM pganalytics_ml.forecasts WHERE queryid = %s", (slow,)) == 1
    at = history.capture(steady_means(history, queries, {slow: 20}))
    alarm = row(db, "SELECT * FROM pganalytics_ml.regressions")
    assert alarm["query_hash"] == slow and alarm["intervals_above"] == 2 and alarm["observed_at"] == at
    assert alarm["times_upper_bound"] > 1 and alarm["since"] < at
    assert db.one("SELECT pgml_status()->'regressions'") == 1
    history.capture(steady_means(history, queries))
    assert db.all("SELECT query_hash FROM pganalytics_ml.regressions") == []


def test_the_whole_server_slowing_down_is_not_a_regression_of_each_statement(db: Database, history: History):
    queries = statements(12)
    for _ in range(3):
        history.capture(steady_means(history, queries, dict.fromkeys(queries, 6.0)))
    assert db.all("SELECT query_hash FROM pganalytics_ml.regressions") == []


def test_a_dropped_index_is_flagged_within_two_snapshots_and_stable_statements_raise_no_alarm(db: Database):
    db.conn.execute("CREATE TABLE probe (id int PRIMARY KEY, k int NOT NULL, v int NOT NULL)")
    db.conn.execute("INSERT INTO probe SELECT g, g % 50000, g FROM generate_series(1, 200000) g")
    db.conn.execute("CREATE INDEX probe_k ON probe (k)")
    db.conn.execute("CREATE TABLE small (id int PRIMARY KEY, v int)")
    db.conn.execute("INSERT INTO small SELECT g, g FROM generate_series(1, 100) g")
    db.conn.execute("ANALYZE")
    script = (
        "\\set id random(1, 200000)\n\\set k random(0, 49999)\n"
        "SELECT v FROM probe WHERE k = :k;\n"
        "SELECT v FROM probe WHERE id = :id;\n"
        "UPDATE probe SET v = v + 1 WHERE id = :id;\n"
        "SELECT count(*) FROM small WHERE v < :k;\n"
        "SELECT sum(v) FROM small;\n"
        "SELECT id FROM small ORDER BY v DESC LIMIT 3;\n"
    )
    db.conn.execute("SELECT * FROM pgml_snapshot()")
    alarms = []
    for i in range(24):
        if i == 22:
            db.conn.execute("DROP INDEX probe_k")
        # the load changes as it runs: more clients and transactions in some intervals
        pgbench(db.cluster, db.name, script, transactions=15 + 10 * (i % 3), clients=1 + i % 2)
        db.conn.execute("SELECT * FROM pgml_snapshot()")
        alarms.append({r[0] for r in db.all("SELECT query_hash FROM pganalytics_ml.regressions")})
        if i == 20:
            db.conn.execute("SELECT * FROM pgml_train(1, 'linear_regression')")
    lookup = db.one(
        "SELECT queryid FROM pganalytics_ml.statements WHERE query LIKE 'SELECT v FROM probe WHERE k = $1%%'"
        " AND database = %s",
        (db.name,),
    )
    assert lookup in alarms[23]  # two snapshots after the drop
    false_alarms = sum(len(a - {lookup}) for a in alarms[:22]) + len(alarms[22] - {lookup}) + len(alarms[23] - {lookup})
    assert false_alarms <= 1
    internal = db.all("SELECT queryid FROM pganalytics_ml.statements WHERE is_internal")
    assert internal, "the test's own pgml_snapshot() calls are captured, and flagged"
    listed = {r[0] for r in db.all("SELECT query_hash FROM pgml_predict_all()")}
    assert listed and not listed & {r[0] for r in internal}
    forecast_ids = {r[0] for r in db.all("SELECT queryid FROM pganalytics_ml.forecasts WHERE server_id = 'local'")}
    assert forecast_ids & {r[0] for r in internal}, "internal statements are still forecast"


def test_a_statement_first_forecast_over_a_long_history_starts_its_long_run_from_its_last_7_days(db: Database):
    h = History(db.conn, "long-history", start=datetime.now(UTC).replace(microsecond=0) - timedelta(days=11))
    for _ in range(3):
        h.capture({42: 100.0})  # ten days ago
    h.captures += 10 * 288  # ten days of 5-minute captures later
    for _ in range(3):
        h.capture({42: 10.0})
    # The statement's forecasts begin again over that history (as after an upgrade or an import).
    db.conn.execute("DELETE FROM pganalytics_ml.forecasts WHERE server_id = 'long-history'")
    h.capture({42: 10.0})
    longrun = db.one(
        "SELECT expert_ms[%s] FROM pganalytics_ml.forecasts WHERE server_id = 'long-history' AND queryid = 42",
        (FORECASTERS.index("longrun") + 1,),
    )
    assert longrun == pytest.approx(10.0, rel=0.01)  # summing every interval, the 100 ms ones too: 40 ms


def test_a_hot_row_slowing_with_its_own_rate_is_not_a_regression_a_slowdown_at_the_same_rate_is(db: Database):
    """Lock waits on a hot row grow with how often it is updated: its time follows its rate of calls while
    the server's median statement does not move. The alarm learns that elasticity and excuses it; a statement
    that gets slower at an unchanged rate (an index dropped) is still flagged within two snapshots."""
    history = History(db.conn, SERVER)
    queries = statements(12)
    hot, slow = list(queries)[:2]
    rng = random.Random(3)
    rates = [50, 200, 100, 400, 100, 300]  # the clients come and go: every statement's calls follow

    def interval(k: int, factor: float = 1.0) -> datetime:
        rate = rates[(k // 3) % len(rates)]
        means = {q: level * math.exp(rng.gauss(0, 0.05)) for q, level in queries.items()}
        means[hot] *= (rate / 50) ** 2  # x16 at 200 calls, x64 at 400
        means[slow] *= factor
        return history.capture(means, calls=dict.fromkeys(queries, rate))

    for k in range(36):
        interval(k)
    learned = dict(db.all("SELECT queryid, rate_elasticity FROM pganalytics_ml.forecasts"))
    assert 1.2 < learned[hot] <= 3 and max(v for q, v in learned.items() if q != hot) < 0.5
    alarms = []
    for k in range(36, 54):
        interval(k, factor=20.0 if k >= 50 else 1.0)
        alarms.append({r[0] for r in db.all("SELECT query_hash FROM pganalytics_ml.regressions")})
    assert all(not a for a in alarms[:14])  # six switches of the rate, hot's time x4 to x16 at each
    assert slow not in alarms[14] and alarms[15] == {slow}  # flagged at its second interval, alone
