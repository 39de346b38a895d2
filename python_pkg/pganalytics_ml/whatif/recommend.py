"""Index recommendations: the statements that cost the most time, their candidate indexes tried
hypothetically, a greedy choice in milliseconds, and a record to check against reality later.

1. The statements: the local server's statements that ran in the day before its latest capture (no
   INSERT, none of the extension's own), ranked by the time they are expected to cost per second: their
   calls per second over that day times their forecast (pganalytics_ml.forecasts).
2. Each is planned as the role that ran it (capture.plans.plan_many_as: never as the extension owner,
   never executed), and its candidate indexes read from its parse tree (whatif.candidates).
3. Each candidate is created hypothetically (hypopg) and the statements it may serve planned again: those
   with a candidate on the same table with the same leading column. Where the new plan uses it, its time
   is estimated by whatif.estimate.scaled from the statement's forecast and the two plans. Candidates whose
   statements read disjoint sets of tables are tried in one batch (one planning function per batch).
4. Greedy choice: each round takes the candidate that saves the most milliseconds per second beyond what
   the indexes already taken save (each statement counted at its best index so far, and only when its
   predicted speed-up is at least ``min_speedup`` and the index makes it at least MIN_GAIN (10%) faster
   than its best so far), so that overlapping indexes ((a) and (a, b)) are not all recommended. It stops
   at ``max_indexes`` or when nothing more is saved.
5. The indexes taken are created together, hypothetically, and their statements planned once more: a
   statement counts for an index only if this joint plan still uses it, and its predicted time is the
   joint plan's. A statement served by several of them (a join) shares its saving evenly.
The recommendations are recorded (pganalytics_ml.recommendations and recommendation_statements); nothing
else is written, and nothing is ever created.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pganalytics_ml.capture import plans
from pganalytics_ml.errors import (
    FEATURE_NOT_SUPPORTED,
    PgmlError,
    invalid,
    not_found,
    null_argument,
    shown,
    sql_entry,
)
from pganalytics_ml.servers import LOCAL_SERVER
from pganalytics_ml.whatif import candidates, estimate, hypothetical, served
from pganalytics_ml.whatif.candidates import Candidate

MAX_TOP_STATEMENTS = 10_000
MAX_INDEXES = 100
MAX_SPEEDUP = 1000.0
MIN_GAIN = 0.10  # a statement counts for a further index only when it makes it this much faster than the best so far
ARGUMENT_HINT = (
    "top_statements: how many of the costliest statements to look at (1 to 10000, default 50); "
    "min_speedup: the least predicted speed-up that counts a statement as helped (above 1, default 1.5); "
    "max_indexes: at most this many indexes (1 to 100, default 5)."
)

_TOP_SQL = """
    WITH latest AS (SELECT max(s.captured_at) AS at FROM pganalytics_ml.snapshots s WHERE s.server_id = $1),
    span AS (
        SELECT extract(epoch FROM max(s.captured_at) - min(s.interval_start))::float8 AS seconds
          FROM pganalytics_ml.snapshots s, latest
         WHERE s.server_id = $1 AND s.interval_start IS NOT NULL AND s.captured_at > latest.at - interval '1 day'),
    ran AS (
        SELECT q.queryid, sum(q.calls)::float8 AS calls
          FROM pganalytics_ml.query_stats q, latest
         WHERE q.server_id = $1 AND q.interval_end > latest.at - interval '1 day' AND q.interval_end <= latest.at
         GROUP BY q.queryid)
    SELECT r.queryid, r.calls / span.seconds AS calls_per_s,
           f.predicted_ms, f.lower_ms, f.upper_ms
      FROM ran r CROSS JOIN span
      JOIN pganalytics_ml.statements st ON st.server_id = $1 AND st.queryid = r.queryid
      JOIN pganalytics_ml.forecasts f ON f.server_id = $1 AND f.queryid = r.queryid
     WHERE span.seconds > 0 AND NOT st.is_internal AND st.statement_kind IN ('select', 'update', 'delete', 'merge')
     ORDER BY r.calls * f.predicted_ms DESC, r.queryid
     LIMIT $2
"""
_RECORD_SQL = """
    WITH rec AS (
        INSERT INTO pganalytics_ml.recommendations
               (server_id, recommended_at, index_sql, relation, columns, estimated_size_bytes, saved_ms_per_s,
                saved_lower_ms_per_s, saved_upper_ms_per_s, source, model_id)
        SELECT $1, pg_catalog.now(), r.index_sql, r.relation, r.columns, r.size, r.saved, r.saved_lower,
               r.saved_upper, r.source, r.model_id
          FROM pg_catalog.jsonb_to_record($2::jsonb) AS r(index_sql text, relation text, columns text[], size bigint,
               saved float8, saved_lower float8, saved_upper float8, source text, model_id bigint)
        RETURNING recommendation_id, recommended_at)
    INSERT INTO pganalytics_ml.recommendation_statements
           (recommendation_id, queryid, calls_per_s, current_ms, current_lower_ms, current_upper_ms, predicted_ms,
            lower_ms, upper_ms, current_cost, predicted_cost)
    SELECT rec.recommendation_id, s.queryid, s.calls_per_s, s.current_ms, s.current_lower_ms, s.current_upper_ms,
           s.predicted_ms, s.lower_ms, s.upper_ms, s.current_cost, s.predicted_cost
      FROM rec, pg_catalog.jsonb_to_recordset($3::jsonb) AS s(queryid bigint, calls_per_s float8, current_ms float8,
           current_lower_ms float8, current_upper_ms float8, predicted_ms float8, lower_ms float8, upper_ms float8,
           current_cost float8, predicted_cost float8)
    RETURNING recommendation_id, (SELECT recommended_at FROM rec) AS recommended_at
"""


@dataclass
class Statement:
    queryid: int
    query: str
    role: str
    calls_per_s: float
    ms: float  # its forecast, and interval
    lower_ms: float
    upper_ms: float
    current: dict[str, Any] = field(default_factory=dict)  # its plan now (plan_features.describe)
    served_cost: float | None = None  # random_page_cost its plans are costed with as served (whatif.served)
    current_served: dict[str, Any] | None = None  # its plan now, costed so
    candidates: list[Candidate] = field(default_factory=list)


@dataclass
class Trial:
    estimate: estimate.Estimate
    description: dict[str, Any]


def check_arguments(
    plpy: Any, server_id: Any, top_statements: Any, min_speedup: Any, max_indexes: Any
) -> tuple[int, float, int]:
    for name, value in (
        ("server_id", server_id),
        ("top_statements", top_statements),
        ("min_speedup", min_speedup),
        ("max_indexes", max_indexes),
    ):
        if value is None:
            raise null_argument(name, hint=ARGUMENT_HINT)
    if not 1 <= top_statements <= MAX_TOP_STATEMENTS:
        raise invalid(
            f"top_statements must be from 1 to {MAX_TOP_STATEMENTS}, got {shown(top_statements)}", ARGUMENT_HINT
        )
    if not 1 < min_speedup <= MAX_SPEEDUP:  # NaN fails this too
        raise invalid(
            f"min_speedup must be above 1 and at most {MAX_SPEEDUP:g}, got {shown(min_speedup)}", ARGUMENT_HINT
        )
    if not 1 <= max_indexes <= MAX_INDEXES:
        raise invalid(f"max_indexes must be from 1 to {MAX_INDEXES}, got {shown(max_indexes)}", ARGUMENT_HINT)
    known = plpy.execute(
        plpy.prepare("SELECT EXISTS (SELECT FROM pganalytics_ml.snapshots WHERE server_id = $1) AS known", ["text"]),
        [server_id],
    )[0]["known"]
    if not known:
        raise not_found(
            f"no history captured for server {shown(server_id)}",
            hint="Capture history first: pgml_snapshot() (twice: a first capture is only a baseline).",
        )
    if server_id != LOCAL_SERVER:  # as for index scenarios of pgml_predict (whatif/predict.py)
        raise PgmlError(
            f"indexes can be recommended only for this database's own statements, not server {shown(server_id)}'s",
            sqlstate=FEATURE_NOT_SUPPORTED,
            hint="Trying an index means planning its statements against their tables, and only this database's "
            "catalog is here: call pgml_recommend_indexes() in that server's database, with server_id 'local'.",
        )
    return int(top_statements), float(min_speedup), int(max_indexes)


@sql_entry
def recommend_sql(
    plpy: Any, server_id: Any, top_statements: Any, min_speedup: Any, max_indexes: Any
) -> list[dict[str, Any]]:
    """pgml_recommend_indexes(server_id, top_statements, min_speedup, max_indexes)."""
    top, speedup, most = check_arguments(plpy, server_id, top_statements, min_speedup, max_indexes)
    hypothetical.require_hypopg(plpy)
    found = recommend(plpy, top, speedup, most)
    return record(plpy, found)


def top_statements(plpy: Any, limit: int) -> list[Statement]:
    """The costliest local statements with the text pg_stat_statements holds and the role that ran them most."""
    rows = plpy.execute(plpy.prepare(_TOP_SQL, ["text", "integer"]), [LOCAL_SERVER, limit])
    if not len(rows):
        raise not_found(
            "no statement of server 'local' ran in the day before its latest capture",
            hint="Run the workload, then pgml_snapshot(): the statements' times and forecasts come from captures.",
        )
    texts = _texts(plpy, [int(r["queryid"]) for r in rows])
    out = []
    for r in rows:
        text, role = texts.get(int(r["queryid"]), (None, None))
        if text is not None and role is not None:
            out.append(Statement(int(r["queryid"]), text, role, float(r["calls_per_s"]), *map(float, _forecast(r))))
    return out


def _forecast(row: dict[str, Any]) -> tuple[float, float, float]:
    return row["predicted_ms"], row["lower_ms"], row["upper_ms"]


def _texts(plpy: Any, queryids: list[int]) -> dict[int, tuple[str, str]]:
    """queryid: (text, role) from this database's pg_stat_statements entries (the role with most calls)."""
    schema = plans._pss_schema(plpy)
    if schema is None:
        return {}
    rows = plpy.execute(
        plpy.prepare(
            f"""
            SELECT DISTINCT ON (s.queryid) s.queryid, s.query, r.rolname
              FROM {plpy.quote_ident(schema)}.pg_stat_statements(true) s
              JOIN pg_catalog.pg_roles r ON r.oid = s.userid
             WHERE s.queryid = ANY ($1::bigint[]) AND s.query IS NOT NULL
               AND s.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
             ORDER BY s.queryid, s.toplevel DESC, s.calls DESC
            """,
            ["bigint[]"],
        ),
        [queryids],
    )
    return {int(r["queryid"]): (r["query"], r["rolname"]) for r in rows}


def _plan_groups(
    plpy: Any, statements: list[Statement], paths: dict[str, str], baseline: dict[str, Any], as_served: bool = False
) -> dict[int, plans.Planned]:
    """Plans of ``statements``, each as its own role, under the hypothetical indexes of the moment; with
    ``as_served``, those that have a served cost, costed with it (whatif.served)."""
    by_role: dict[tuple[str, float | None], list[Statement]] = {}
    for s in statements:
        if not as_served or s.served_cost is not None:
            by_role.setdefault((s.role, s.served_cost if as_served else None), []).append(s)
    out = {}
    for (role, cost), group in by_role.items():
        texts = [s.query for s in group]
        settings = None if cost is None else {"random_page_cost": repr(cost)}
        results = plans.plan_many_as(plpy, texts, role, paths[role], baseline, settings)
        for s, result in zip(group, results, strict=True):
            if isinstance(result, plans.Planned):
                out[s.queryid] = result
    return out


def _uses(description: dict[str, Any], index_name: str) -> bool:
    return index_name in (description.get("indexes") or [])


def _estimate(
    plpy: Any, s: Statement, scenario: dict[str, Any], scenario_served: dict[str, Any] | None = None
) -> estimate.Estimate:
    adjust = served.ratio(s.current, scenario, s.current_served, scenario_served)
    return estimate.scaled(plpy, LOCAL_SERVER, s.current, scenario, s.ms, s.lower_ms, s.upper_ms, served_ratio=adjust)


@dataclass
class Recommendation:
    candidate: Candidate
    size: int
    statements: list[tuple[Statement, Trial, float]]  # (statement, joint plan's estimate, share of its saving)


def recommend(plpy: Any, top: int, min_speedup: float, max_indexes: int) -> list[Recommendation]:
    """The search described above; returns the recommendations, best first (nothing recorded yet)."""
    statements = top_statements(plpy, top)
    baseline = plans.session_state(plpy)
    paths = {s.role: plans._quote_path(plpy, s.role) for s in statements}
    for queryid, planned in _plan_groups(plpy, statements, paths, baseline).items():
        next(s for s in statements if s.queryid == queryid).current = planned.description
    statements = [s for s in statements if s.current]
    _serve(plpy, statements, paths, baseline)
    for s in statements:
        s.candidates = candidates.for_statement(plpy, s.query, paths[s.role], user=s.role)
    pool = _pools(statements)
    trials: dict[Candidate, dict[int, Trial]] = {}
    sizes: dict[Candidate, int] = {}
    for cands, helped in _batches(pool):
        made, tried = _try(plpy, cands, helped, paths, baseline)
        sizes |= made
        for cand in made:
            mine = {s.queryid for s in pool[cand]}
            trials[cand] = {
                q: t for q, t in tried.items() if q in mine and t.description["uses"] == [cand.create_sql()]
            }
    chosen = _greedy(statements, trials, sizes, min_speedup, max_indexes)
    return _joint(plpy, statements, chosen, trials, sizes, paths, baseline, min_speedup)


def _serve(plpy: Any, statements: list[Statement], paths: dict[str, str], baseline: dict[str, Any]) -> None:
    """Each statement's served random_page_cost (from its hit ratio) and its current plan costed with it."""
    hits = served.hit_ratios(plpy, LOCAL_SERVER, [s.queryid for s in statements])
    seq, random = served.page_costs(plpy)
    for s in statements:
        cost = served.random_page_cost(hits[s.queryid], seq, random) if s.queryid in hits else None
        s.served_cost = cost if cost is not None and cost != random else None
    for queryid, planned in _plan_groups(plpy, statements, paths, baseline, as_served=True).items():
        next(s for s in statements if s.queryid == queryid).current_served = planned.description


def _pools(statements: list[Statement]) -> dict[Candidate, list[Statement]]:
    """Each candidate and the statements it may serve: those with a candidate on its table and leading column."""
    leading: dict[tuple[str, str], list[Statement]] = {}
    for s in statements:
        for cand in s.candidates:
            may_serve = leading.setdefault((cand.relation, cand.columns[0]), [])
            if s not in may_serve:
                may_serve.append(s)
    pool: dict[Candidate, list[Statement]] = {}
    for s in statements:
        for cand in s.candidates:
            pool.setdefault(cand, leading[(cand.relation, cand.columns[0])])
    return pool


def _batches(pool: dict[Candidate, list[Statement]]) -> list[tuple[list[Candidate], list[Statement]]]:
    """Candidates tried together: within a batch, no statement reads the table of another batch member's
    candidate (their served statements read disjoint sets of tables), so each plan sees only one of them."""
    batches: list[tuple[list[Candidate], list[Statement], set[str]]] = []
    for cand, helped in pool.items():
        tables = {t for s in helped for t in s.current.get("relations", [])}
        for cands, statements, taken in batches:
            if not tables & taken:
                cands.append(cand)
                statements += [s for s in helped if s not in statements]
                taken |= tables
                break
        else:
            batches.append(([cand], list(helped), tables))
    return [(cands, statements) for cands, statements, _ in batches]


def _try(
    plpy: Any,
    cands: list[Candidate],
    helped: list[Statement],
    paths: dict[str, str],
    baseline: dict[str, Any],
) -> tuple[dict[Candidate, int], dict[int, Trial]]:
    """``cands`` created hypothetically together, ``helped`` planned under them: each candidate's size, and
    per statement whose plan uses some of them, its estimate (the Trial's description lists them in
    "uses"); those statements are planned once more costed as served (whatif.served). A candidate hypopg
    refuses (a column type without a btree operator class) is left out."""
    made: dict[Candidate, int] = {}
    sizes: dict[Candidate, int] = {}
    using: dict[int, list[Candidate]] = {}
    try:
        for cand in cands:
            try:
                with plpy.subtransaction():
                    made[cand], sizes[cand] = hypothetical.create(plpy, cand.create_sql())
            except (PgmlError, plpy.SPIError):
                continue
        names = hypothetical.names(plpy, list(made.values()))
        results = _plan_groups(plpy, helped, paths, baseline) if made else {}
        for queryid, planned in results.items():
            used = [c for c, relid in made.items() if _uses(planned.description, names.get(relid, ""))]
            if used:
                using[queryid] = used
        costed = _plan_groups(plpy, [s for s in helped if s.queryid in using], paths, baseline, as_served=True)
    finally:
        hypothetical.drop(plpy, list(made.values()))
    trials = {}
    for s in helped:
        used = using.get(s.queryid, [])
        if used:
            planned = results[s.queryid]
            described = dict(planned.description, uses=[c.create_sql() for c in used])
            as_served = costed.get(s.queryid)
            trials[s.queryid] = Trial(
                _estimate(plpy, s, planned.description, as_served.description if as_served else None), described
            )
    return sizes, trials


def _greedy(
    statements: list[Statement],
    trials: dict[Candidate, dict[int, Trial]],
    sizes: dict[Candidate, int],
    min_speedup: float,
    max_indexes: int,
) -> list[Candidate]:
    by_id = {s.queryid: s for s in statements}
    best = {s.queryid: s.ms for s in statements}
    chosen: list[Candidate] = []
    taken: set[Candidate] = set()
    sql = {cand: cand.create_sql() for cand in trials}
    while len(chosen) < max_indexes:
        scored = []
        for cand, per in trials.items():
            if cand in taken:
                continue
            gain = 0.0
            for queryid, trial in per.items():
                s, ms = by_id[queryid], trial.estimate.predicted_ms
                if s.ms >= min_speedup * ms and ms < (1 - MIN_GAIN) * best[queryid]:
                    gain += s.calls_per_s * (best[queryid] - ms)
            if gain > 0:
                scored.append((-gain, sizes[cand], len(cand.columns), sql[cand], cand))
        if not scored:
            break
        pick = min(scored, key=lambda x: x[:4])[-1]
        chosen.append(pick)
        taken.add(pick)
        for queryid, trial in trials[pick].items():
            best[queryid] = min(best[queryid], trial.estimate.predicted_ms)
    return chosen


def _joint(
    plpy: Any,
    statements: list[Statement],
    chosen: list[Candidate],
    trials: dict[Candidate, dict[int, Trial]],
    sizes: dict[Candidate, int],
    paths: dict[str, str],
    baseline: dict[str, Any],
    min_speedup: float,
) -> list[Recommendation]:
    """The chosen indexes together: which statements each still serves, and their predicted times."""
    ids = {queryid for cand in chosen for queryid in trials[cand]}
    their = [s for s in statements if s.queryid in ids]
    if not chosen:
        return []
    joint = _try(plpy, chosen, their, paths, baseline)[1]
    out = []
    for cand in chosen:
        helped = []
        for s in their:
            trial = joint.get(s.queryid)
            if trial is None or cand.create_sql() not in trial.description["uses"]:
                continue
            if s.ms < min_speedup * trial.estimate.predicted_ms:
                continue
            helped.append((s, trial, 1.0 / len(trial.description["uses"])))
        if helped:
            out.append(Recommendation(cand, sizes[cand], helped))
    out.sort(key=lambda r: -_saved(r)[0])
    return out


def _saved(rec: Recommendation) -> tuple[float, float, float]:
    """Milliseconds saved per second of workload, and its interval: each statement's calls per second times
    its forecast minus its predicted time, at the forecast's lower and upper ends, times its share."""
    mid = lo = hi = 0.0
    for s, trial, share in rec.statements:
        est = trial.estimate
        mid += share * s.calls_per_s * (s.ms - est.predicted_ms)
        low_end, high_end = s.lower_ms - est.lower_ms, s.upper_ms - est.upper_ms
        lo += share * s.calls_per_s * min(low_end, high_end)
        hi += share * s.calls_per_s * max(low_end, high_end)
    return mid, lo, hi


def record(plpy: Any, found: list[Recommendation]) -> list[dict[str, Any]]:
    """Records each recommendation with its statements; the rows pgml_recommend_indexes returns."""
    plan = plpy.prepare(_RECORD_SQL, ["text", "text", "text"])
    rows = []
    for rec in found:
        saved, lower, upper = _saved(rec)
        first = rec.statements[0][1].estimate
        head = {
            "index_sql": rec.candidate.create_sql(concurrently=True),
            "relation": rec.candidate.relation,
            "columns": list(rec.candidate.columns),
            "size": rec.size,
            "saved": saved,
            "saved_lower": lower,
            "saved_upper": upper,
            "source": first.source,
            "model_id": first.model_id,
        }
        per = [
            {
                "queryid": s.queryid,
                "calls_per_s": s.calls_per_s,
                "current_ms": s.ms,
                "current_lower_ms": s.lower_ms,
                "current_upper_ms": s.upper_ms,
                "predicted_ms": t.estimate.predicted_ms,
                "lower_ms": t.estimate.lower_ms,
                "upper_ms": t.estimate.upper_ms,
                "current_cost": float(s.current["total_cost"]),
                "predicted_cost": float(t.description["total_cost"]),
            }
            for s, t, _ in rec.statements
        ]
        done = plpy.execute(plan, [LOCAL_SERVER, json.dumps(head), json.dumps(per)])
        rows.append(
            {
                "recommendation_id": done[0]["recommendation_id"],
                "index_sql": head["index_sql"],
                "table_name": rec.candidate.relation,
                "columns": head["columns"],
                "query_hashes": [p["queryid"] for p in per],
                "saved_ms_per_s": round(saved, 6),
                "saved_lower_ms_per_s": round(lower, 6),
                "saved_upper_ms_per_s": round(upper, 6),
                "speedups": [round(p["current_ms"] / max(p["predicted_ms"], 1e-9), 3) for p in per],
                "estimated_size_bytes": rec.size,
                "source": head["source"],
                "recommended_at": done[0]["recommended_at"],
            }
        )
    return rows
