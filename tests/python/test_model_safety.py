"""Model bytes are pickles, so code: no route loads bytes that pganalytics_ml did not sign, and a model
of another scikit-learn version is refused before its bytes are touched.

A superuser can change any row with a plain UPDATE; these tests do, as an attacker with write access to
the table would. The crafted pickle creates a file if it is ever loaded: the file must never appear.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pickle
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from conftest import Database
from history_builder import History, statements

pytestmark = pytest.mark.integration

SERVER = "db-1"
STATEMENTS = statements(8)


class FileCreator:
    """Unpickling this runs ``touch <path>`` in the server process."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.fixture
def marker() -> Iterator[Path]:
    path = Path(f"/tmp/pgml-pickle-ran-{uuid.uuid4().hex}")
    yield path
    path.unlink(missing_ok=True)


@pytest.fixture
def trained(db: Database) -> Database:
    db.history = History(db.conn, SERVER)
    db.history.steady(STATEMENTS, intervals=30)
    db.model_id = db.one("SELECT model_id FROM pgml_train(90, 'linear_regression', %s)", (SERVER,))
    return db


def model_row(db: Database, model_id: int) -> dict:
    cur = db.conn.execute("SELECT * FROM pganalytics_ml.models WHERE model_id = %s", (model_id,))
    return dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))


def signed_by_the_key(db: Database, blob: bytes, record: dict) -> bytes:
    """The signature pganalytics_ml computes, with the key only the extension owner can read."""
    key = bytes(db.one("SELECT key FROM pganalytics_ml.model_key"))
    fields = ("model_id", "server_id", "model_type", "version", "feature_names", "calibration", "sklearn_version")
    meta = json.dumps({f: record[f] for f in fields}, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, blob + b"\0" + meta, hashlib.sha256).digest()


def refused(db: Database, model_id: int) -> psycopg.Error:
    err = db.error("SELECT * FROM pgml_activate_model(%s)", (model_id,))
    assert err.sqlstate == "XX001", err
    assert f"model {model_id} failed its integrity check" in err.diag.message_primary
    assert "pgml_train" in err.diag.message_hint
    return err


def test_a_malicious_pickle_never_runs_by_any_route(trained: Database, marker: Path):
    model_id = trained.model_id
    trained.conn.execute(
        "UPDATE pganalytics_ml.models SET model = %s WHERE model_id = %s", (pickle.dumps(FileCreator(marker)), model_id)
    )
    refused(trained, model_id)  # activation loads the model
    # A capture refreshes the forecasts with the active model: it falls back to the baseline instead.
    trained.history.capture({q: 5.0 for q in STATEMENTS})
    assert trained.all("SELECT DISTINCT source FROM pganalytics_ml.forecasts WHERE server_id = %s", (SERVER,)) == [
        ("baseline",)
    ]
    assert trained.one("SELECT source FROM pgml_predict(%s, %s)", (next(iter(STATEMENTS)), SERVER)) == "baseline"
    assert len(trained.all("SELECT * FROM pgml_predict_all(%s)", (SERVER,))) == len(STATEMENTS)
    # Training compares the new model with the active one: the refused one is replaced, not loaded.
    job_id = trained.one("SELECT job_id FROM pgml_train_async(90, 'linear_regression', %s)", (SERVER,))
    trained.conn.execute("CALL pganalytics_ml.run_jobs()")
    result = trained.one("SELECT result FROM pgml_job_status(%s)", (job_id,))
    assert trained.one("SELECT model_id FROM pganalytics_ml.models WHERE is_active") == result["model_id"]
    assert trained.one("SELECT pgml_status()->'active_models'") == 1
    assert not marker.exists()
    # The row is still there, still refused, until someone removes it.
    refused(trained, model_id)
    assert trained.one("SELECT pgml_cleanup_models(1)") == 1
    assert not marker.exists()


def test_signatures_bind_bytes_metadata_and_row(trained: Database, marker: Path):
    first = trained.model_id
    second = trained.one("SELECT model_id FROM pgml_train(90, 'decision_tree', %s)", (SERVER,))
    original = model_row(trained, first)
    # Bytes of another model with its valid signature, moved into this row: the model_id is signed.
    trained.conn.execute(
        "UPDATE pganalytics_ml.models m SET model = o.model, signature = o.signature"
        " FROM pganalytics_ml.models o WHERE m.model_id = %s AND o.model_id = %s",
        (first, second),
    )
    refused(trained, first)
    # Its own bytes back, but changed calibration: what shapes the interval is signed too.
    trained.conn.execute(
        "UPDATE pganalytics_ml.models SET model = %s, signature = %s,"
        " calibration = jsonb_set(calibration, '{q}', '0') WHERE model_id = %s",
        (original["model"], original["signature"], first),
    )
    refused(trained, first)
    # A forged row: a malicious pickle signed with a key of the attacker's choosing.
    blob = pickle.dumps(FileCreator(marker))
    trained.conn.execute(
        "INSERT INTO pganalytics_ml.models (model_id, server_id, model_type, version, window_start, window_end,"
        " lookback_days, parameters, metrics, calibration, feature_names, sklearn_version, numpy_version,"
        " python_version, model, signature)"
        " SELECT 999, server_id, model_type, 99, window_start, window_end, lookback_days, parameters, metrics,"
        " calibration, feature_names, sklearn_version, numpy_version, python_version, %s, %s"
        " FROM pganalytics_ml.models WHERE model_id = %s",
        (blob, hmac.new(b"\0" * 32, blob, hashlib.sha256).digest(), second),
    )
    refused(trained, 999)
    assert not marker.exists()
    # Restored exactly as written, the model loads again.
    trained.conn.execute(
        "UPDATE pganalytics_ml.models SET calibration = %s::jsonb WHERE model_id = %s",
        (json.dumps(original["calibration"]), first),
    )
    assert trained.one("SELECT model_id FROM pgml_activate_model(%s)", (first,)) == first


def test_a_model_changed_after_a_session_loaded_it_is_refused_there_too(trained: Database, marker: Path):
    # A session keeps unpickled models in memory; the signature is checked again on every load.
    with trained.connect() as session:
        assert session.execute("SELECT model_id FROM pgml_activate_model(%s)", (trained.model_id,)).fetchone()
        trained.conn.execute(
            "UPDATE pganalytics_ml.models SET model = %s WHERE model_id = %s",
            (pickle.dumps(FileCreator(marker)), trained.model_id),
        )
        with pytest.raises(psycopg.Error) as caught:
            session.execute("SELECT * FROM pgml_activate_model(%s)", (trained.model_id,))
    assert caught.value.sqlstate == "XX001"
    assert not marker.exists()


def test_another_scikit_learn_version_is_refused_before_its_bytes_are_loaded(trained: Database, marker: Path):
    # Even correctly signed (as if pganalytics_ml had written it under scikit-learn 1.0.0), the pickle is
    # not loaded: a pickle from another version of the library is not trusted to load right.
    record = model_row(trained, trained.model_id) | {"sklearn_version": "1.0.0"}
    blob = pickle.dumps(FileCreator(marker))
    trained.conn.execute(
        "UPDATE pganalytics_ml.models SET model = %s, sklearn_version = '1.0.0', signature = %s WHERE model_id = %s",
        (blob, signed_by_the_key(trained, blob, record), trained.model_id),
    )
    err = trained.error("SELECT * FROM pgml_activate_model(%s)", (trained.model_id,))
    assert err.sqlstate == "55000"
    assert f"model {trained.model_id} was written by scikit-learn 1.0.0" in err.diag.message_primary
    assert "Retrain" in err.diag.message_hint and "pgml_train()" in err.diag.message_hint
    trained.history.capture({q: 5.0 for q in STATEMENTS})
    assert not marker.exists()


def test_a_new_key_invalidates_every_model(trained: Database):
    trained.conn.execute("UPDATE pganalytics_ml.model_key SET key = decode(repeat('ab', 32), 'hex')")
    refused(trained, trained.model_id)
