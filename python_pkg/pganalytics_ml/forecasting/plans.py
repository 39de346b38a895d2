"""The PLAN features of statements: their current captured plan (capture/plans.py), as feature rows."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from pganalytics_ml.forecasting.chunks import in_chunk
from pganalytics_ml.forecasting.features import PLAN

_PLAN_SQL = f"""
    SELECT c.queryid, p.features::text AS features
      FROM pganalytics_ml.plan_capture c
      JOIN pganalytics_ml.plans p ON p.server_id = c.server_id AND p.queryid = c.queryid
       AND p.fingerprint = c.fingerprint
     WHERE c.server_id = $1 AND {in_chunk("c")}
"""


def plan_rows(plpy: Any, server_id: str, queryids: np.ndarray) -> np.ndarray:
    """One PLAN row per entry of ``queryids`` (repeats allowed), zeros where a statement has no plan."""

    out = np.zeros((len(queryids), len(PLAN)))
    if not len(queryids):
        return out
    unique = sorted({int(q) for q in queryids})
    rows = plpy.execute(plpy.prepare(_PLAN_SQL, ["text", "bigint[]"]), [server_id, unique])
    known = {}
    for row in rows:
        values = json.loads(row["features"])
        known[row["queryid"]] = [float(values.get(name, 0.0)) for name in PLAN]
    for i, q in enumerate(queryids):
        found = known.get(int(q))
        if found is not None:
            out[i] = found
    return out
