"""Models as data: pickled estimators signed with an HMAC only this extension can compute.

A pickle is code. Bytes are unpickled only after their signature checks out against the key in
pganalytics_ml.model_key (readable by the extension owner alone), so a row changed by anyone else,
even a superuser with a plain UPDATE, is refused before it can run.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import pickle
import secrets
import sys
from dataclasses import dataclass
from typing import Any

from pganalytics_ml.errors import PREREQUISITE_STATE, PgmlError, invalid, not_found, null_argument, sql_entry

_cache: dict[tuple[int, bytes], LoadedModel] = {}


@dataclass
class LoadedModel:
    model_id: int
    server_id: str
    model_type: str
    version: int
    estimator: Any
    feature_names: list[str]
    calibration: dict[str, Any]


def _key(plpy: Any) -> bytes:
    row = plpy.execute("SELECT key FROM pganalytics_ml.model_key")
    if not len(row):
        plan = plpy.prepare("INSERT INTO pganalytics_ml.model_key (key) VALUES ($1) ON CONFLICT DO NOTHING", ["bytea"])
        plpy.execute(plan, [secrets.token_bytes(32)])
        row = plpy.execute("SELECT key FROM pganalytics_ml.model_key")
    return bytes(row[0]["key"])


def _signed_metadata(record: dict[str, Any]) -> bytes:
    fields = ("model_id", "server_id", "model_type", "version", "feature_names", "calibration", "sklearn_version")
    values = {f: record[f] for f in fields}
    if isinstance(values["calibration"], str):
        values["calibration"] = json.loads(values["calibration"])
    return json.dumps(values, sort_keys=True, separators=(",", ":")).encode()


def signature(key: bytes, blob: bytes, record: dict[str, Any]) -> bytes:
    return hmac.new(key, blob + b"\0" + _signed_metadata(record), hashlib.sha256).digest()


def save(plpy: Any, record: dict[str, Any], estimator: Any) -> int:
    """Stores a trained estimator with its metadata; returns the new model_id (not activated)."""
    import numpy
    import sklearn

    # pickle, not joblib: in memory (a bytea) joblib's files are no smaller and load 2 to 14 times slower,
    # through Python's pure-Python unpickler (bench/bench_serialization.py).
    blob = pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL)
    model_id = plpy.execute("SELECT pg_catalog.nextval('pganalytics_ml.models_model_id_seq') AS id")[0]["id"]
    # Versions of one server are numbered one after the other: concurrent trainings wait here (until the
    # transaction that saved the previous version ends) instead of both reading the same max(version).
    plpy.execute(
        plpy.prepare(
            "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('pganalytics_ml.models:' || $1, 0))",
            ["text"],
        ),
        [record["server_id"]],
    )
    version = plpy.execute(
        plpy.prepare(
            "SELECT coalesce(max(version), 0) + 1 AS v FROM pganalytics_ml.models WHERE server_id = $1", ["text"]
        ),
        [record["server_id"]],
    )[0]["v"]
    record = record | {"model_id": model_id, "version": version, "sklearn_version": sklearn.__version__}
    plan = plpy.prepare(
        """
        INSERT INTO pganalytics_ml.models (model_id, server_id, model_type, version, window_start, window_end,
               lookback_days, parameters, metrics, calibration, feature_names, sklearn_version, numpy_version,
               python_version, model, signature)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb, $10::jsonb, $11, $12, $13, $14, $15, $16)
        """,
        [
            "bigint",
            "text",
            "text",
            "integer",
            "timestamptz",
            "timestamptz",
            "integer",
            "text",
            "text",
            "text",
            "text[]",
            "text",
            "text",
            "text",
            "bytea",
            "bytea",
        ],
    )
    plpy.execute(
        plan,
        [
            model_id,
            record["server_id"],
            record["model_type"],
            version,
            record["window_start"],
            record["window_end"],
            record["lookback_days"],
            json.dumps(record["parameters"], allow_nan=False),
            json.dumps(record["metrics"], allow_nan=False),
            json.dumps(record["calibration"], allow_nan=False),
            list(record["feature_names"]),
            sklearn.__version__,
            numpy.__version__,
            sys.version.split()[0],
            blob,
            signature(_key(plpy), blob, record),
        ],
    )
    return int(model_id)


# Modules that moved since a release: models pickled by that release name the old place of their classes.
MOVED_MODULES = {"pganalytics_ml.training": "pganalytics_ml.forecasting.training"}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(MOVED_MODULES.get(module, module), name)


def load(plpy: Any, model_id: int) -> LoadedModel:
    """The model's estimator, after its signature and scikit-learn version are checked."""
    plan = plpy.prepare(
        "SELECT model_id, server_id, model_type, version, feature_names, calibration, sklearn_version, model,"
        " signature FROM pganalytics_ml.models WHERE model_id = $1",
        ["bigint"],
    )
    rows = plpy.execute(plan, [model_id])
    if not len(rows):
        raise not_found(f"model {model_id} does not exist", hint="SELECT * FROM pgml_models() lists the models.")
    row = rows[0]
    blob, stored = bytes(row["model"]), bytes(row["signature"])
    # Verified on every load, cached or not: the row may have changed since this session unpickled it.
    if not hmac.compare_digest(signature(_key(plpy), blob, dict(row)), stored):
        raise PgmlError(
            f"model {model_id} failed its integrity check: its bytes or metadata were changed outside pganalytics_ml",
            sqlstate="XX001",
            hint="Do not load it. Train a new model with SELECT * FROM pgml_train(); then remove this one.",
        )
    cached = _cache.get((model_id, stored))
    if cached is not None:
        return cached
    import sklearn

    if row["sklearn_version"] != sklearn.__version__:
        raise PgmlError(
            f"model {model_id} was written by scikit-learn {row['sklearn_version']}; "
            f"this server runs scikit-learn {sklearn.__version__}",
            sqlstate=PREREQUISITE_STATE,
            hint="Retrain with SELECT * FROM pgml_train(); models do not move between scikit-learn versions.",
        )
    loaded = LoadedModel(
        model_id=model_id,
        server_id=row["server_id"],
        model_type=row["model_type"],
        version=row["version"],
        estimator=_Unpickler(io.BytesIO(blob)).load(),
        feature_names=list(row["feature_names"]),
        calibration=json.loads(row["calibration"]),
    )
    _cache[(model_id, stored)] = loaded
    return loaded


def active_model_id(plpy: Any, server_id: str) -> int | None:
    plan = plpy.prepare("SELECT model_id FROM pganalytics_ml.models WHERE server_id = $1 AND is_active", ["text"])
    rows = plpy.execute(plan, [server_id])
    return int(rows[0]["model_id"]) if len(rows) else None


def mark_active(plpy: Any, model_id: int, server_id: str) -> None:
    """Makes ``model_id`` the active model of ``server_id``; the caller then refreshes its forecasts.

    Takes the lock a capture of the server holds (pganalytics_ml._capture) until the transaction ends:
    activations of a server happen one after the other, never while a capture refreshes its forecasts,
    and each sees the one before it committed.
    """
    plpy.execute(
        plpy.prepare(
            "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('pganalytics_ml.capture:' || $1, 0))",
            ["text"],
        ),
        [server_id],
    )
    plan = plpy.prepare(
        """
        WITH off AS (UPDATE pganalytics_ml.models SET is_active = false WHERE server_id = $2 AND is_active
                     AND model_id <> $1 RETURNING 1)
        SELECT count(*) FROM off
        """,
        ["bigint", "text"],
    )
    plpy.execute(plan, [model_id, server_id])
    plan = plpy.prepare(
        "UPDATE pganalytics_ml.models SET is_active = true, activated_at = now() WHERE model_id = $1", ["bigint"]
    )
    plpy.execute(plan, [model_id])


@sql_entry
def activate(plpy: Any, model_id: int | None) -> list[dict[str, Any]]:
    """pgml_activate_model(model_id): make a model active (also a rollback), after checking it loads."""
    from pganalytics_ml.forecasting import forecasts

    if model_id is None:
        raise null_argument("model_id", hint="SELECT * FROM pgml_models() lists the models.")
    loaded = load(plpy, model_id)
    mark_active(plpy, model_id, loaded.server_id)
    forecasts.refresh(plpy, loaded.server_id)
    plan = plpy.prepare("SELECT * FROM pganalytics_ml._models($1) WHERE model_id = $2", ["text", "bigint"])
    return list(plpy.execute(plan, [loaded.server_id, model_id]))


def cleanup_models(plpy: Any, keep_count: int) -> int:
    """Deletes all but the newest ``keep_count`` models of each server, never an active one."""
    plan = plpy.prepare(
        """
        WITH ranked AS (
            SELECT model_id, is_active,
                   row_number() OVER (PARTITION BY server_id ORDER BY model_id DESC) AS newest
              FROM pganalytics_ml.models
        ), gone AS (
            DELETE FROM pganalytics_ml.models m USING ranked r
             WHERE m.model_id = r.model_id AND r.newest > $1 AND NOT r.is_active
            RETURNING 1
        )
        SELECT count(*) AS deleted FROM gone
        """,
        ["integer"],
    )
    return int(plpy.execute(plan, [keep_count])[0]["deleted"])


@sql_entry
def cleanup(plpy: Any, keep_count: int | None) -> int:
    """pgml_cleanup_models(keep_count)."""
    if keep_count is None:
        raise null_argument("keep_count", hint="Say how many of the newest models of each server to keep, e.g. 5.")
    if keep_count < 0:
        raise invalid(
            f"keep_count must be 0 or more, got {keep_count}",
            hint="The active model is always kept; keep_count counts the newest models of each server.",
        )
    return cleanup_models(plpy, keep_count)
