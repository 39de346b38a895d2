"""Plan capture: EXPLAIN each statement as the role that ran it, never executing it, never as the owner.

Planning runs code: IMMUTABLE functions are folded, STABLE ones evaluated for estimates, and any of
them may call more. ``plan_as`` confines that code to the privileges of the statement's own role:

* the EXPLAIN runs inside a SECURITY DEFINER function *owned by that role*, created for the call in a
  subtransaction. In a security-definer context PostgreSQL refuses to change ``role`` or
  ``session_authorization`` (guc.c, GUC_NOT_WHILE_SEC_REST), so RESET ROLE, SET ROLE, set_config('role')
  and SET SESSION AUTHORIZATION all fail, though session_user is a superuser;
* the function is read only (SET transaction_read_only = on in its definition: a SET LOCAL run by an
  earlier plpy.execute would end with that call's own subtransaction, which restores the read-write
  state). Inside a subtransaction a read-only transaction cannot be made read-write again
  (check_transaction_read_only), so nothing can be written, temporary tables and sequences included;
* the subtransaction is always rolled back, so settings and catalog changes made by the planned code
  vanish; prepared statements and session advisory locks (not transactional) are removed afterwards;
* search_path is pinned to the role's own setting with pg_temp last, lock_timeout is short, the text
  must be a single SELECT/INSERT/UPDATE/DELETE/MERGE, and it is only ever EXPLAINed (no ANALYZE).

``plan_as`` is the reusable entry point (a text, a role: the plan and its features, or why not).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pganalytics_ml.capture import plan_features
from pganalytics_ml.capture.statements import KINDS, parse_tree
from pganalytics_ml.errors import PREREQUISITE_STATE, PgmlError, invalid, sql_entry
from pganalytics_ml.servers import LOCAL_SERVER

LOCK_TIMEOUT = "500ms"
PREPARED_NAME = "pganalytics_ml_plan"
# Why a statement has no plan; pgml_capture_plans counts each.
SKIP_REASONS = (
    "no_text",  # pg_stat_statements kept no text (or it is gone)
    "utility",  # not a SELECT, INSERT, UPDATE, DELETE or MERGE (or SELECT INTO)
    "unparsable",  # the parser refuses the text, or it holds more than one statement
    "other_database",  # it ran in another database: only this one's catalog can plan it
    "role_missing",  # the role that ran it no longer exists
    "temp_object",  # it reads a temporary table of the session that ran it
    "prepare_failed",  # PREPARE refused it (a missing relation, an undeterminable parameter type...)
    "plan_failed",  # planning failed (an error raised by a function folded at plan time...)
    "lock_timeout",  # a lock was not granted within LOCK_TIMEOUT
    "stalled",  # an earlier attempt never finished (its worker was terminated): not retried
)
MAX_UNFINISHED = 2  # after this many attempts that never finished, a statement is skipped as stalled
JOB_BATCH = 100  # statements the job marks, plans and stores per commit


_PREPARED: dict[tuple[int, str], Any] = {}


def _prepared(plpy: Any, query: str, types: list[str]) -> Any:
    """plpy.prepare once per session (per plpy module) and query."""
    key = (id(plpy), query)
    if key not in _PREPARED:
        _PREPARED[key] = plpy.prepare(query, types)
    return _PREPARED[key]


class _RolledBack(Exception):
    """Raised to leave the planning subtransaction by rollback, carrying the plan out."""

    def __init__(self, plan: str):
        super().__init__("rolled back on purpose")
        self.plan = plan


@dataclass
class Planned:
    plan: Any  # EXPLAIN (FORMAT JSON, VERBOSE) without output lists
    description: dict[str, Any]  # plan_features.describe: fingerprint, summary, features ...


@dataclass
class Skipped:
    reason: str
    detail: str | None = None


class NotPlannable(ValueError):
    """A text that is not one plannable statement: ``reason`` as SKIP_REASONS names it, ``detail`` the
    parser's message or the command, ``statements`` how many the text holds when that is the reason."""

    def __init__(self, reason: str, detail: str, statements: int | None = None):
        super().__init__(detail)
        self.reason, self.detail, self.statements = reason, detail, statements


def plannable_statement(sql: str) -> tuple[dict[str, Any], str, int]:
    """The one statement of a text: its parse tree, its command and its number of $n parameters, from
    PostgreSQL's parser (within the bounds capture holds every text to: a text past them is not parsed)."""
    try:
        tree = parse_tree(sql)
    except ValueError as exc:
        raise NotPlannable("unparsable", str(exc)) from None
    stmts = [s["stmt"] for s in tree.get("stmts", []) if "stmt" in s]
    if len(stmts) != 1:
        raise NotPlannable("unparsable", f"{len(stmts)} statements", len(stmts))
    ((command, body),) = stmts[0].items()
    if command not in KINDS or (command == "SelectStmt" and body.get("intoClause")):
        raise NotPlannable("utility", command)
    return stmts[0], command, _max_param(stmts[0])


def statement_shape(sql: str) -> tuple[str | None, int]:
    """(skip reason or None, number of $n parameters) of a normalized text."""
    try:
        return None, plannable_statement(sql)[2]
    except NotPlannable as exc:
        return exc.reason, 0


def _max_param(tree: Any) -> int:
    stack, top = [tree], 0
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("ParamRef")
            if isinstance(ref, dict):
                top = max(top, int(ref.get("number", 0)))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return top


def _definer_sql(search_path: str) -> str:
    """The planning function: a plpgsql SECURITY DEFINER function, made owned by the statement's role."""
    return f"""
        CREATE FUNCTION pg_temp.pganalytics_ml_plan_as(p_sql text, p_params text) RETURNS text
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER
        SET search_path = {search_path} SET plan_cache_mode = force_generic_plan
        SET transaction_read_only = on SET lock_timeout = '{LOCK_TIMEOUT}'
        AS $body$
        DECLARE
            v_plan text;
        BEGIN
            EXECUTE 'PREPARE {PREPARED_NAME} AS ' || p_sql;
            EXECUTE 'EXPLAIN (FORMAT JSON, VERBOSE) EXECUTE {PREPARED_NAME}' || p_params INTO v_plan;
            RETURN v_plan;
        END
        $body$"""


def _quote_path(plpy: Any, role: str) -> str:
    """The role's own search_path for this database (ALTER ROLE ... SET), else the default; pg_temp last."""
    rows = plpy.execute(
        _prepared(
            plpy,
            """
            SELECT substr(c, 13) AS path
              FROM pg_catalog.pg_db_role_setting s, pg_catalog.unnest(s.setconfig) c
             WHERE s.setrole = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1)
               AND s.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database
                                          WHERE datname = pg_catalog.current_database()))
               AND c LIKE 'search_path=%'
             ORDER BY s.setdatabase DESC LIMIT 1
            """,
            ["text"],
        ),
        [role],
    )
    path = rows[0]["path"] if len(rows) else '"$user", public'
    parts = [p.strip() for p in path.split(",") if p.strip() and p.strip().strip('"') != "pg_temp"]
    # Identifiers as SET search_path takes them: "$user" stays quoted, a bare name is quoted if it must be.
    quoted = [p if p.startswith('"') and p.endswith('"') else plpy.quote_ident(p) for p in parts]
    return ", ".join([*quoted, "pg_temp"])


def plan_as(
    plpy: Any, sql: str, role: str, search_path: str | None = None, baseline: dict[str, Any] | None = None
) -> Planned | Skipped:
    """EXPLAIN ``sql`` (normalized, $n parameters bound to NULL) as ``role``, confined to its privileges.

    Never raises for the statement's sake: an error of the statement is a Skipped with its reason.
    ``search_path`` (already quoted for SET) overrides the role's own. ``baseline`` is the session's
    state (``session_state``) to come back to, when the caller already read it.
    """
    if search_path is None and not len(
        plpy.execute(_prepared(plpy, "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1", ["text"]), [role])
    ):
        return Skipped("role_missing")  # (a caller passing search_path found the role itself)
    return plan_many_as(plpy, [sql], role, search_path, baseline)[0]


def plan_many_as(
    plpy: Any,
    sqls: list[str],
    role: str,
    search_path: str | None = None,
    baseline: dict[str, Any] | None = None,
    settings: dict[str, str] | None = None,
) -> list[Planned | Skipped]:
    """``plan_as`` for several texts of one role: its planning function is created once, in a
    subtransaction rolled back at the end; each text is planned in a read-only subtransaction of its own,
    rolled back too (so that no transaction accumulates one aborted catalog write per statement).
    ``settings`` (planner settings such as random_page_cost) hold for the planning only: set local to the
    outer subtransaction, they end with its rollback."""
    before = baseline or session_state(plpy)
    if before["temp_objects"]:
        raise _temp_objects_error()
    shapes = [statement_shape(sql) for sql in sqls]
    results: list[Planned | Skipped | str] = [Skipped(reason) if reason else "" for reason, _ in shapes]
    if all(isinstance(r, Skipped) for r in results):
        return results  # type: ignore[return-value]
    path = search_path or _quote_path(plpy, role)
    try:
        with plpy.subtransaction():
            for name, value in (settings or {}).items():
                plpy.execute(
                    plpy.prepare("SELECT pg_catalog.set_config($1, $2, true)", ["text", "text"]), [name, value]
                )
            owner = "ALTER FUNCTION pg_temp.pganalytics_ml_plan_as(text, text) OWNER TO " + plpy.quote_ident(role)
            plpy.execute(f"{_definer_sql(path)};\n{owner}")
            call = plpy.prepare("SELECT pg_temp.pganalytics_ml_plan_as($1, $2) AS plan", ["text", "text"])  # new fn
            for i, (sql, (_, n_params)) in enumerate(zip(sqls, shapes, strict=True)):
                if isinstance(results[i], Skipped):
                    continue
                results[i] = _explain(plpy, call, sql, n_params, before)
            raise _RolledBack("")
    except _RolledBack:
        _restore_session(plpy, before)  # and the advisory locks, once for the batch
    except plpy.SPIError as exc:
        if getattr(exc, "sqlstate", None) == "42723":  # the planning function exists: someone made it
            raise PgmlError(
                "a temporary function pg_temp.pganalytics_ml_plan_as already exists in this session",
                sqlstate=PREREQUISITE_STATE,
                hint="Plan in a session without temporary objects (the job worker's), or drop it.",
            ) from None
        raise
    return [r if isinstance(r, Skipped) else _described(plpy, r) for r in results]  # type: ignore[arg-type]


def _explain(plpy: Any, call: Any, sql: str, n_params: int, before: dict[str, Any]) -> str | Skipped:
    """One EXPLAIN through the planning function, in a subtransaction always rolled back: its text, or why not."""
    params = f"({', '.join(['NULL'] * n_params)})" if n_params else ""
    try:
        with plpy.subtransaction():
            raise _RolledBack(plpy.execute(call, [sql, params])[0]["plan"])
    except _RolledBack as done:
        return done.plan
    except plpy.SPIError as exc:
        return _failure(plpy, exc)
    finally:
        _restore_session(plpy, before, locks=False)


def _described(plpy: Any, text: str) -> Planned | Skipped:
    plan = plan_features.strip_outputs(json.loads(text))
    if any(schema.startswith("pg_temp") for schema, _ in _plan_relations(plan)):
        return Skipped("temp_object", "it reads a temporary table")
    sizes = relation_sizes(plpy, plan)
    return Planned(plan, plan_features.describe(plan, sizes, time.time()))


def _temp_objects_error() -> PgmlError:
    """A session with temporary tables, views or types may not plan: a name in another role's statement
    would resolve to them (pg_temp is searched for relations and types wherever search_path puts it),
    and their code would run as that role."""
    return PgmlError(
        "plans cannot be captured in a session that has temporary tables, views or types",
        sqlstate=PREREQUISITE_STATE,
        hint="Another role's statement could name them and run their code as that role: call it from a "
        "session without temporary objects, or queue a 'plans' job for the job worker.",
    )


def _failure(plpy: Any, exc: Any) -> Skipped:
    sqlstate = getattr(exc, "sqlstate", None) or ""
    detail = str(exc).split("\n")[0][:200]
    if sqlstate == "55P03":
        return Skipped("lock_timeout", detail)
    if sqlstate == "42P01" and _names_temp_relation(plpy, detail):
        return Skipped("temp_object", detail)
    prepare = "PREPARE" in str(getattr(exc, "spidata", "") or "") or "PREPARE" in (getattr(exc, "context", None) or "")
    if sqlstate.startswith("42") or prepare:
        return Skipped("prepare_failed", detail)
    return Skipped("plan_failed", detail)


def _names_temp_relation(plpy: Any, message: str) -> bool:
    """Whether 'relation "x" does not exist' names a temporary relation of some session."""
    start = message.find('"')
    end = message.find('"', start + 1)
    if start < 0 or end < 0:
        return False
    name = message[start + 1 : end].split(".")[-1]
    found = plpy.execute(
        plpy.prepare("SELECT 1 FROM pg_catalog.pg_class WHERE relname = $1 AND relpersistence = 't' LIMIT 1", ["text"]),
        [name],
    )
    return bool(len(found))


# Temporary objects: pg_class and pg_type have no index on the namespace alone, so these counts scan them.
_TEMP_SQL = """
    SELECT (SELECT count(*) FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema())
         + (SELECT count(*) FROM pg_catalog.pg_type WHERE typnamespace = pg_catalog.pg_my_temp_schema()) AS n
"""
_PREPARED_SQL = "SELECT coalesce(array_agg(name), '{}') AS prepared FROM pg_catalog.pg_prepared_statements"
# pg_locks reads every lock of the server.
_LOCKS_SQL = """
    SELECT coalesce(array_agg(ARRAY[classid::text, objid::text, objsubid::text]), '{}') AS locks
      FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid() AND granted
"""


def session_state(plpy: Any, full: bool = True) -> dict[str, Any]:
    """What plans must leave as they found it: prepared statements; in ``full``, also temporary objects and
    advisory locks (read once per batch of plans, not per plan: see _explain)."""
    prepared = plpy.execute(_prepared(plpy, _PREPARED_SQL, []))[0]["prepared"]
    temp = plpy.execute(_prepared(plpy, _TEMP_SQL, []))[0]["n"] if full else 0
    held = plpy.execute(_prepared(plpy, _LOCKS_SQL, []))[0]["locks"] if full else []
    return {"temp_objects": temp, "prepared": set(prepared or []), "locks": [tuple(x) for x in held or []]}


def _restore_session(plpy: Any, before: dict[str, Any], locks: bool = True) -> None:
    """Removes what the planned code left that no rollback undoes: prepared statements, advisory locks.
    (It cannot leave temporary objects: it runs read only and is rolled back; checked per batch.)"""
    after = session_state(plpy, locks)
    if after["temp_objects"]:  # read only, rolled back: cannot happen, and must not go unnoticed
        raise _temp_objects_error()
    for name in after["prepared"] - before["prepared"]:
        plpy.execute("DEALLOCATE " + plpy.quote_ident(name))
    if not locks:
        return
    extra = list(after["locks"])
    for lock in before["locks"]:
        if lock in extra:
            extra.remove(lock)
    for classid, objid, subid in extra:  # session locks only: transaction locks ended with the rollback
        if subid == "1":
            key = (int(classid) << 32) | int(objid)
            key = key - 2**64 if key >= 2**63 else key
            plpy.execute(f"SELECT pg_catalog.pg_advisory_unlock({key}::bigint)")
        else:
            plpy.execute(f"SELECT pg_catalog.pg_advisory_unlock({int(classid)}::int4, {int(objid)}::int4)")


_SIZES_SQL = """
    SELECT x.schema || '.' || x.rel AS name, c.relpages::float8 AS pages, greatest(c.reltuples, 0)::float8 AS tuples,
           (SELECT count(*) FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid)::int AS indexes,
           extract(epoch FROM greatest(pg_catalog.pg_stat_get_last_analyze_time(c.oid),
                                       pg_catalog.pg_stat_get_last_autoanalyze_time(c.oid)))::float8 AS analyzed_epoch
      FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[])) AS x(schema, rel)
      JOIN pg_catalog.pg_namespace n ON n.nspname = x.schema
      JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = x.rel
"""


def _plan_relations(plan: Any) -> list[tuple[str, str]]:
    """(schema, relation) of every relation a plan reads (VERBOSE names the schema)."""
    found = []
    for _, node in plan_features.nodes(plan_features.root(plan)):
        rel, schema = node.get("Relation Name"), node.get("Schema")
        if isinstance(rel, str) and isinstance(schema, str) and (schema, rel) not in found:
            found.append((schema, rel))
    return found


def relation_sizes(plpy: Any, plan: Any) -> dict[str, dict[str, Any]]:
    """Pages, tuples, indexes and last ANALYZE of the relations a plan reads, from this server's catalog."""
    names = _plan_relations(plan)
    if not names:
        return {}
    rows = plpy.execute(
        _prepared(plpy, _SIZES_SQL, ["text[]", "text[]"]), [[n[0] for n in names], [n[1] for n in names]]
    )
    return {row["name"]: dict(row) for row in rows}


def _pss_schema(plpy: Any) -> str | None:
    rows = plpy.execute(
        "SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace"
        " WHERE e.extname = 'pg_stat_statements'"
    )
    return rows[0]["nspname"] if len(rows) else None


def _candidates(plpy: Any, only_new: bool) -> list[dict[str, Any]]:
    """Local statements to plan, with the text pg_stat_statements holds and the role that ran them most."""
    schema = _pss_schema(plpy)
    if schema is None:
        return []
    new_only = "AND c.queryid IS NULL" if only_new else ""
    query = f"""
        WITH here AS (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()),
        entries AS (  -- pg_stat_statements read once: per queryid, this database's entry most called
            SELECT DISTINCT ON (s.queryid) s.queryid, s.query, r.rolname, s.dbid = (SELECT oid FROM here) AS here
              FROM {plpy.quote_ident(schema)}.pg_stat_statements(true) s
              LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.userid
             WHERE s.queryid IS NOT NULL
             ORDER BY s.queryid, s.dbid = (SELECT oid FROM here) DESC, s.calls DESC)
        SELECT st.queryid, p.query, p.rolname, coalesce(p.here, false) AS here,
               CASE WHEN c.attempted_at > pg_catalog.now() - interval '1 day' THEN c.unfinished_attempts ELSE 0 END
                   AS unfinished
          FROM pganalytics_ml.statements st
          LEFT JOIN pganalytics_ml.plan_capture c ON c.server_id = st.server_id AND c.queryid = st.queryid
          LEFT JOIN entries p ON p.queryid = st.queryid
         WHERE st.server_id = '{LOCAL_SERVER}' {new_only}
         ORDER BY st.queryid
    """
    return [dict(r) for r in plpy.execute(query)]


def _precheck(candidate: dict[str, Any]) -> Skipped | None:
    """Why a candidate cannot be planned before any planning, or None."""
    if candidate["unfinished"] >= MAX_UNFINISHED:
        return Skipped("stalled", "an earlier attempt to plan it never finished")
    if candidate["query"] is None:
        return Skipped("no_text")
    if not candidate["here"]:
        return Skipped("other_database")
    if candidate["rolname"] is None:
        return Skipped("role_missing")
    return None


BATCH = 500  # statements of one role planned under one planning function (by hand)


_MARK_SQL = """
    INSERT INTO pganalytics_ml.plan_capture AS c (server_id, queryid, outcome, attempted_at, unfinished_attempts)
    SELECT $1, q, 'started', pg_catalog.clock_timestamp(), 1 FROM pg_catalog.unnest($2::bigint[]) q
    ON CONFLICT (server_id, queryid) DO UPDATE
       SET unfinished_attempts = c.unfinished_attempts + 1, attempted_at = EXCLUDED.attempted_at
"""
_STORE_SQL = "SELECT pganalytics_ml._store_plan($1, $2, $3, $4, $5::jsonb, $6, $7) AS changed"


def store(
    plpy: Any, server_id: str, queryid: int, result: Planned | Skipped, role: str | None, at: str | None = None
) -> bool:
    """Records the outcome; returns whether it is a plan change."""
    plan = _prepared(plpy, _STORE_SQL, ["text", "bigint", "text", "text", "text", "text", "timestamptz"])
    if isinstance(result, Planned):
        args = ["planned", None, json.dumps(result.description | {"plan": result.plan})]
    else:
        args = [result.reason, result.detail, None]
    return bool(plpy.execute(plan, [server_id, queryid, *args, role, at])[0]["changed"])


def capture(
    plpy: Any,
    only_new: bool = False,
    commit: Callable[[], None] | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> dict[str, Any]:
    """Plans the local server's statements (only those never planned when ``only_new``); returns counts.

    With ``commit`` (the job worker), attempts are marked and committed before planning starts, so a
    statement whose planning never ends (the worker is terminated at its hard limit) is found: planned
    alone next time, then skipped as stalled instead of stalling every run.
    """
    candidates = _candidates(plpy, only_new)
    paths: dict[str, str] = {}  # each role's pinned search_path, read once per capture
    baseline = session_state(plpy)  # what each plan's clean-up restores
    counts = {"statements": len(candidates), "planned": 0, "changed": 0, "skipped": dict.fromkeys(SKIP_REASONS, 0)}

    def path_of(role: str) -> str:
        if role not in paths:
            paths[role] = _quote_path(plpy, role)
        return paths[role]

    def record(candidate: dict[str, Any], result: Planned | Skipped) -> None:
        counts["changed"] += store(plpy, LOCAL_SERVER, candidate["queryid"], result, candidate["rolname"])
        if isinstance(result, Planned):
            counts["planned"] += 1
        else:
            counts["skipped"][result.reason] += 1

    plannable: dict[str, list[dict[str, Any]]] = {}
    for candidate in candidates:
        skipped = _precheck(candidate)
        if skipped:
            record(candidate, skipped)
        else:
            plannable.setdefault(candidate["rolname"], []).append(candidate)
    if commit is None:
        for role, group in plannable.items():
            for start in range(0, len(group), BATCH):
                batch = group[start : start + BATCH]
                results = plan_many_as(plpy, [c["query"] for c in batch], role, path_of(role), baseline)
                for candidate, result in zip(batch, results, strict=True):
                    record(candidate, result)
        return counts

    # The job: each batch's attempts are committed before its planning starts. A batch whose worker was
    # terminated is planned again one statement at a time, so that only the one that stalls is skipped.
    mark = plpy.prepare(_MARK_SQL, ["text", "bigint[]"])
    batches = []
    for role, group in plannable.items():
        suspects = [c for c in group if c["unfinished"]]
        batches += [(role, [c]) for c in suspects]
        rest = [c for c in group if not c["unfinished"]]
        batches += [(role, rest[i : i + JOB_BATCH]) for i in range(0, len(rest), JOB_BATCH)]
    done = 0
    for role, batch in batches:
        if progress:
            progress("planning", 100 * done / max(len(candidates), 1))
        plpy.execute("SET LOCAL synchronous_commit = off")  # a mark lost in a crash only means a retry
        plpy.execute(mark, [LOCAL_SERVER, [c["queryid"] for c in batch]])
        commit()  # the attempts are on record before their planning starts
        results = plan_many_as(plpy, [c["query"] for c in batch], role, path_of(role), baseline)
        for candidate, result in zip(batch, results, strict=True):
            record(candidate, result)
        done += len(batch)
    commit()
    return counts


@sql_entry
def capture_plans(plpy: Any, only_new: bool | None) -> list[dict[str, Any]]:
    """pgml_capture_plans(only_new): one row per outcome, with how many statements had it."""
    if only_new is None:
        raise invalid("only_new must be true or false", hint="false (the default) plans every statement again.")
    counts = capture(plpy, only_new=bool(only_new))
    rows = [
        {"outcome": "planned", "statements": counts["planned"]},
        {"outcome": "changed", "statements": counts["changed"]},
    ]
    rows += [{"outcome": reason, "statements": n} for reason, n in counts["skipped"].items()]
    return rows


def queue_new(plpy: Any) -> None:
    """After a local snapshot: queue a plans job for statements never planned, unless one is waiting.

    The snapshot itself never plans: planning runs other roles' code, which belongs in the job worker,
    where a statement that stalls is found and skipped (see ``capture``). The setting
    pganalytics_ml.plan_new_statements = off stops the queueing (the hourly capture still runs).
    """
    setting = plpy.execute("SELECT pg_catalog.current_setting('pganalytics_ml.plan_new_statements', true) AS s")
    if (setting[0]["s"] or "on").lower() in ("off", "false", "0", "no"):
        return
    plpy.execute(
        """
        SELECT pganalytics_ml._enqueue('plans', '{"only_new": true}'::jsonb, 1, interval '4 min', interval '5 min')
         WHERE EXISTS (SELECT FROM pganalytics_ml.statements st
                        WHERE st.server_id = 'local'
                          AND NOT EXISTS (SELECT FROM pganalytics_ml.plan_capture c
                                           WHERE c.server_id = st.server_id AND c.queryid = st.queryid))
           AND NOT EXISTS (SELECT FROM pganalytics_ml.jobs j
                            WHERE j.kind = 'plans' AND j.status IN ('pending', 'running')
                              AND j.arguments @> '{"only_new": true}')
        """
    )


MAX_PUSHED_PLAN_BYTES = 8 * 1024 * 1024  # all the plans of one push together
PUSH_HINT = (
    'A row may carry "plan": the EXPLAIN (FORMAT JSON) output of its statement, and "relations": '
    '[{"relation": "public.orders", "pages": 120, "tuples": 5000, "indexes": 2,'
    ' "last_analyze": "2026-11-28T17:00:00Z"}].'
)


def pushed_items(items: str | None, captured_epoch: float) -> list[tuple[int, Planned]]:
    """The plans a collector sent with some of its rows: ``items`` is a JSON array of
    {"index", "queryid", "plan", "relations"}, one per row that has a plan or relations, as
    pgml_ingest_stats picks them out of the payload.

    Checked before anything is written; raises 22023 naming the row. Rows without a plan are as before.
    """
    from datetime import datetime

    found, total = [], 0
    for item in json.loads(items) if items else []:
        where = f"stats.rows[{item['index']}] (queryid {item.get('queryid')})"
        try:
            if item.get("plan") is None:
                raise plan_features.PlanError(f"{where}.relations comes without a plan")
            plan = plan_features.check_pushed_plan(item["plan"], f"{where}.plan")
            total += len(json.dumps(plan))
            if total > MAX_PUSHED_PLAN_BYTES:
                raise plan_features.PlanError(f"the plans of one push may total at most {MAX_PUSHED_PLAN_BYTES} bytes")
            sizes = plan_features.check_pushed_sizes(item.get("relations") or [], f"{where}.relations")
            for name, entry in sizes.items():
                last = entry.pop("last_analyze")
                entry["analyzed_epoch"] = None
                if last is not None:
                    try:
                        at = datetime.fromisoformat(last.replace("Z", "+00:00"))
                    except ValueError:
                        at = None
                    if at is None or at.tzinfo is None:
                        raise plan_features.PlanError(
                            f"{where}.relations ({name}).last_analyze must be an ISO 8601 timestamp with a time zone"
                        )
                    entry["analyzed_epoch"] = at.timestamp()
            plan = plan_features.strip_outputs(plan)
            found.append((int(item["queryid"]), Planned(plan, plan_features.describe(plan, sizes, captured_epoch))))
        except plan_features.PlanError as exc:
            message = str(exc) if str(exc).startswith(("stats.", "the plans")) else f"{where}.plan: {exc}"
            raise invalid(message, hint=PUSH_HINT) from None
    return found


def store_pushed(plpy: Any, server_id: str, captured_at: str, found: list[tuple[int, Planned]]) -> int:
    """Stores a push's plans at its capture time; returns how many were plan changes."""
    return sum(store(plpy, server_id, queryid, planned, None, captured_at) for queryid, planned in found)
