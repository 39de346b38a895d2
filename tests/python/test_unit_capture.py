"""Validation of collector payloads and the statements-table records (no server needed)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pganalytics_ml.capture.counters import COUNTER_FIELDS, parse_record, validate_header, validate_row
from pganalytics_ml.errors import PgmlError, sql_entry

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_a_minimal_row_gets_every_counter_with_defaults():
    row = validate_row(0, {"queryid": "-42", "calls": 3, "total_exec_time": 1.5})
    assert set(row) == set(COUNTER_FIELDS)
    assert (row["queryid"], row["calls"], row["total_exec_time"], row["rows"]) == (-42, 3, 1.5, 0)
    assert (row["userid"], row["dbid"], row["toplevel"], row["sum_sq_exec_time"]) == (0, 0, True, None)


def test_sum_of_squares_comes_from_mean_and_stddev():
    row = validate_row(0, {"queryid": 1, "calls": 4, "total_exec_time": 8.0, "stddev_exec_time": 1.0})
    assert row["sum_sq_exec_time"] == pytest.approx(4 * (1.0 + 2.0**2))


def test_payload_shapes():
    header = json.dumps({"captured_at": "2026-11-28T11:00:00Z", "stats_reset": "2026-11-27T00:00:00+00:00"})
    at, reset = validate_header(header, "array", 1, 100, NOW)
    assert at == NOW - timedelta(hours=1) and reset == datetime(2026, 11, 27, tzinfo=UTC)
    at, reset = validate_header("{}", "array", 1, 100, NOW)  # a bare array of rows
    assert at == NOW and reset is None


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ({"captured_at": "0001-01-01T00:00:00Z"}, "out of range"),
        ({"captured_at": "0001-01-01T00:00:00+14:00"}, "out of range"),
        ({"captured_at": "9999-12-31T23:00:00-14:00"}, "out of range"),
        ({"captured_at": "2026-11-28T11:00:00Z", "stats_reset": "2026-11-28T11:00:01Z"}, "is after"),
        ({"stats_reset": "1999-12-31T00:00:00Z"}, "out of range"),
    ],
)
def test_times_out_of_range_are_refused(header, message):
    with pytest.raises(PgmlError) as caught:
        validate_header(json.dumps(header), "array", 1, 100, NOW)
    assert caught.value.sqlstate == "22023" and message in caught.value.message and caught.value.hint


def test_a_push_is_bounded():
    for n_rows, size in ((100_001, 100), (1, 129 * 2**20)):
        with pytest.raises(PgmlError) as caught:
            validate_header("{}", "array", n_rows, size, NOW)
        assert caught.value.sqlstate == "54000" and caught.value.hint


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"queryid": 1, "calls": 1, "total_exec_time": 1, "query": "a\x00b"}, "must not contain a NUL"),
        ({"queryid": 1, "calls": True, "total_exec_time": 1}, "calls must be an integer"),
        ({"queryid": 1, "calls": 1, "total_exec_time": float("nan")}, "must be a number of milliseconds from 0"),
        ({"queryid": 1, "calls": 1, "total_exec_time": 1e300}, "must be a number of milliseconds from 0"),
        ({"queryid": 1, "calls": 10**16, "total_exec_time": 1}, "calls is out of range"),
        ({"queryid": 1, "calls": 1, "total_exec_time": 1, "userid": -1}, "userid is out of range"),
        ({"queryid": "١٢", "calls": 1, "total_exec_time": 1}, "queryid must be an integer"),
        ({"queryid": 1, "calls": "١٢", "total_exec_time": 1}, "calls must be an integer"),
        ({"queryid": 1, "calls": 1, "total_exec_time": "١٢"}, "must be a number of milliseconds"),
        ({"queryid": 1, "calls": 1, "total_exec_time": "1_000"}, "must be a number of milliseconds"),
        ({"queryid": 1, "calls": float("inf"), "total_exec_time": 1}, "calls is out of range"),
    ],
)
def test_bad_rows_are_named(row, message):
    with pytest.raises(PgmlError) as caught:
        validate_row(3, row)
    assert caught.value.sqlstate == "22023"
    assert caught.value.message.startswith("stats.rows[3]") and message in caught.value.message


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)
row_like = st.fixed_dictionaries(
    {},
    optional={name: json_values for name in ("queryid", "calls", "total_exec_time", "rows", "stddev_exec_time")},
)


@given(row_like | json_values)
def test_any_json_row_is_accepted_with_finite_counters_or_refused_with_22023(row):
    try:
        out = validate_row(0, row)
    except PgmlError as err:
        assert err.sqlstate == "22023"
        return
    for name, value in out.items():
        if isinstance(value, float):
            assert math.isfinite(value), name


def test_parse_record_keeps_text_the_parser_refuses():
    assert parse_record(1, "SELEC x")["parse_ok"] is False
    assert parse_record(2, None) == {
        "queryid": 2,
        "query": None,
        "parse_ok": False,
        "parse_error": "no statement text was captured",
        "is_internal": False,
    }
    good = parse_record(3, "SELECT 1")
    assert good["parse_ok"] is True and good["statement_kind"] == "select"


def test_parse_record_stores_no_string_literal_of_the_text():
    record = parse_record(4, "ALTER ROLE app PASSWORD 'hunter2'")
    assert record["query"] == "ALTER ROLE app PASSWORD '***'"
    assert record["parse_ok"] is True and record["command"] == "AlterRoleStmt"
    broken = parse_record(5, "CREATE ROLE app PASSWORD 'hunter2' NONSENSE")
    assert broken["parse_ok"] is False and "hunter2" not in broken["query"] + broken["parse_error"]
    unreadable = parse_record(6, "SELECT 'hunter2")
    assert unreadable["parse_ok"] is False and "hunter2" not in unreadable["query"] + unreadable["parse_error"]


class FakePlpy:
    """Stands in for PL/Python's plpy module: only its Error class is needed here."""

    class Error(Exception):
        pass


def test_sql_entry_turns_errors_into_sqlstates():
    @sql_entry
    def failing(plpy):
        raise PgmlError("bad thing", sqlstate="P0002", hint="do this")

    with pytest.raises(FakePlpy.Error) as caught:
        failing(FakePlpy())
    err = caught.value
    assert type(err).__name__ == "pganalytics_ml" and str(err) == "bad thing"
    assert (err.sqlstate, err.hint) == ("P0002", "do this")
    assert not hasattr(err, "detail") and err.__context__ is None
