"""What-if predictions: a statement never run (pgml_predict_sql) or a known one under a scenario.

Three steps, so that nothing the caller wrote is ever planned with the extension owner's privileges:
``request`` (extension owner: reads the text and the scenario, plans nothing), then the caller's own
PL/pgSQL step (sql/70_whatif.sql: creates the scenario's hypothetical indexes and EXPLAINs the caller's
text as the caller), then ``answer`` (extension owner: the plans' features, the estimate). A known
statement's text came from pg_stat_statements, so ``answer`` plans it only as the role that ran it
(capture.plans.plan_as).
"""

from __future__ import annotations

import json
import time
from typing import Any

from pganalytics_ml.capture import plan_features, plans
from pganalytics_ml.errors import FEATURE_NOT_SUPPORTED, PgmlError, invalid, not_found, null_argument, shown, sql_entry
from pganalytics_ml.forecasting import forecasts
from pganalytics_ml.servers import LOCAL_SERVER, SERVER_ID_PATTERN
from pganalytics_ml.whatif import estimate, scenarios

SYNTAX_ERROR = "42601"
MIN_GAIN = 0.10  # 'optimized' keeps a candidate index only when it cuts the plan's cost by at least this
MAX_CHOSEN = 3  # and at most this many, one per relation
SQL_HINT = "Pass one SELECT, INSERT, UPDATE, DELETE or MERGE statement, with literal values or $1, $2 ... parameters."


def _check_server(server_id: Any) -> str:
    if server_id is None:
        raise null_argument("server_id", hint="Use 'local' for this server.")
    if not isinstance(server_id, str) or not SERVER_ID_PATTERN.fullmatch(server_id):
        raise invalid(f"invalid server_id {shown(server_id)}", hint="Use 'local' for this server.")
    return server_id


def _shape(sql: Any) -> int:
    """The number of $n parameters of the caller's text; 42601 when it does not parse, 22023 when it is not
    one plannable statement."""
    if sql is None:
        raise null_argument("sql", hint=SQL_HINT)
    try:
        return plans.plannable_statement(sql)[2]
    except plans.NotPlannable as exc:
        if exc.reason == "utility":
            message = f"only statements that return or change rows can be predicted, got {exc.detail}"
        elif exc.statements is not None:
            message = f"sql must be one statement, got {exc.statements}"
        else:
            raise PgmlError(
                f"the statement does not parse: {exc.detail[:300]}", sqlstate=SYNTAX_ERROR, hint=SQL_HINT
            ) from None
        raise invalid(message, hint=SQL_HINT) from None


def _hypopg(plpy: Any) -> str:
    from pganalytics_ml.whatif import hypothetical

    return hypothetical.require_hypopg(plpy)


def _known(plpy: Any, server_id: str, queryid: int) -> dict[str, Any]:
    rows = plpy.execute(
        plpy.prepare(
            """
            SELECT f.*, s.query, c.fingerprint AS plan_fingerprint, p.plan::text AS plan, p.planned_as
              FROM pganalytics_ml.forecasts f
              JOIN pganalytics_ml.statements s ON s.server_id = f.server_id AND s.queryid = f.queryid
              LEFT JOIN pganalytics_ml.plan_capture c ON c.server_id = f.server_id AND c.queryid = f.queryid
              LEFT JOIN pganalytics_ml.plans p
                     ON p.server_id = c.server_id AND p.queryid = c.queryid AND p.fingerprint = c.fingerprint
             WHERE f.server_id = $1 AND f.queryid = $2
            """,
            ["text", "bigint"],
        ),
        [server_id, queryid],
    )
    if not len(rows):
        plpy.execute(
            plpy.prepare("SELECT pganalytics_ml._no_forecast($1, $2)", ["text", "bigint"]), [server_id, queryid]
        )
    return dict(rows[0])


def request(
    plpy: Any,
    caller: str,
    sql: str | None,
    query_hash: int | None,
    scenario: Any,
    server_id: Any,
    search_path: str | None,
) -> str:
    """What the caller's step must do: how many parameters to bind, which hypothetical indexes to create.
    ``caller``: the public function asked (pgml_predict_sql takes a text, the others a query_hash)."""
    if caller != "pgml_predict_sql" and query_hash is None:
        raise null_argument("query_hash", hint="Pass pg_stat_statements.queryid of the statement to predict.")
    server_id = _check_server(server_id)
    chosen = scenarios.parse(scenario)
    out: dict[str, Any] = {"scenario": chosen.as_json(), "n_params": 0, "hypopg": None, "indexes": chosen.indexes}
    out["candidates"] = []
    if caller == "pgml_predict_sql":
        out["n_params"] = _shape(sql)
    else:
        _known(plpy, server_id, query_hash)
        if chosen.needs_hypopg and server_id != LOCAL_SERVER:
            raise PgmlError(
                f"index scenarios can only be planned for this server's own statements, not server \"{server_id}\"'s",
                sqlstate=FEATURE_NOT_SUPPORTED,
                hint="growth and load scenarios work for every server; indexes need the server's own catalog.",
            )
    if chosen.needs_hypopg:
        out["hypopg"] = _hypopg(plpy)
    if chosen.optimized and query_hash is None:
        from pganalytics_ml.whatif import candidates

        found = candidates.for_statement(plpy, sql, search_path or "")
        out["candidates"] = [{"index": c.create_sql(), "relation": c.relation} for c in found]
    return json.dumps(out)


def _description(plpy: Any, plan: Any, growth: scenarios.Scenario | None = None) -> tuple[dict[str, Any], list[str]]:
    """describe() of a plan with this server's relation sizes (grown as the scenario says); and the growth
    document's names that the plan does not read. The plan is held to a pushed plan's bounds: a caller can
    hand any JSON to the step that calls this."""
    plan = plan if not isinstance(plan, str) else json.loads(plan)
    try:
        plan = plan_features.strip_outputs(plan_features.check_pushed_plan(plan, "plan"))
    except plan_features.PlanError as exc:
        raise invalid(str(exc)) from None
    sizes = plans.relation_sizes(plpy, plan)
    unmatched: list[str] = []
    if growth is not None and growth.growth is not None:
        named = (plan_features.relation_name(node) for _, node in plan_features.nodes(plan_features.root(plan)))
        relations = list(dict.fromkeys(r for r in named if r))
        plan, sizes = scenarios.grown(plan, sizes, scenarios.growth_of(growth, relations))
        unmatched = scenarios.unmatched_growth(growth, relations)
    return plan_features.describe(plan, sizes, time.time()), unmatched


def choose(plpy: Any, current_plan: str, trials: str) -> str:
    """'optimized': of the candidate indexes tried one at a time, those that cut the plan's cost by MIN_GAIN
    or more, best first, one per relation, at most MAX_CHOSEN."""
    base = float(plan_features.root(json.loads(current_plan))["Total Cost"])
    tried = []
    for trial in json.loads(trials or "[]"):
        cost = float(plan_features.root(trial["plan"])["Total Cost"])
        tried.append((cost, trial["index"], trial.get("relation")))
    chosen, relations = [], set()
    for cost, index, relation in sorted(tried, key=lambda t: t[0]):
        if cost <= base * (1 - MIN_GAIN) and relation not in relations and len(chosen) < MAX_CHOSEN:
            chosen.append(index)
            relations.add(relation)
    return json.dumps(chosen)


def _suggestion(chosen: list[str], before_ms: float, after_ms: float) -> str:
    if not chosen:
        return "No candidate index would make this statement faster by 10% or more; it is best left as it is."
    what = chosen[0] if len(chosen) == 1 else f"{len(chosen)} indexes ({'; '.join(chosen)})"
    return f"Adding {what} would take it from about {before_ms:.3g} ms to about {after_ms:.3g} ms (predicted)."


def _row(
    server_id: str, est: estimate.Estimate, description: dict[str, Any], assumed: dict[str, Any]
) -> dict[str, Any]:
    return {
        "prediction_id": None,
        "query_hash": None,
        "predicted_execution_time_ms": forecasts.readable(est.predicted_ms),
        "lower_bound_ms": forecasts.readable(est.lower_ms),
        "upper_bound_ms": forecasts.readable(est.upper_ms),
        "confidence": None if est.confidence is None else round(est.confidence, 3),
        "model_id": est.model_id,
        "model_version": None,
        "source": est.source,
        "server_id": server_id,
        "predicted_at": None,  # filled by the caller's step: now()
        "based_on": None,
        "logged": False,
        "forecaster": None,
        "total_cost": description["total_cost"],
        "plan_fingerprint": description["fingerprint"],
        "scenario": json.dumps(assumed),
    }


def answer_sql(
    plpy: Any, req: str, sql: str, server_id: str, current_plan: str, scenario_plan: str | None, chosen: str
) -> dict[str, Any]:
    """pgml_predict_sql's row: the caller's text, planned by the caller (with the scenario's indexes)."""
    info = json.loads(req)
    scenario = _scenario_of(info)
    indexes = json.loads(chosen or "[]")
    current, _ = _description(plpy, current_plan)
    planned = scenario_plan if scenario_plan is not None else current_plan
    described, unmatched = _description(plpy, planned, scenario)
    current["sql"] = described["sql"] = sql  # the text's structure is a feature of the plan model too
    load = scenario.load or 1.0
    est = estimate.absolute(plpy, server_id, described, load)
    assumed = _assumed(info["scenario"], indexes, unmatched, scenario.load)
    row = _row(server_id, est, described, assumed)
    row["query"] = sql if len(sql) <= 80 else sql[:77] + "..."
    row["recommended_indexes"] = indexes if scenario.optimized else []
    row["optimization_suggestion"] = None
    if scenario.optimized:
        before = estimate.absolute(plpy, server_id, current, load).predicted_ms if indexes else est.predicted_ms
        row["optimization_suggestion"] = _suggestion(indexes, before, est.predicted_ms)
    return row


def _assumed(base: dict[str, Any], indexes: list[str], unmatched: list[str], load: float | None) -> dict[str, Any]:
    out = dict(base)
    if indexes:
        out["indexes"] = indexes
    if unmatched:
        out["growth_not_read"] = unmatched
    if load is not None:
        out["load"] = load
    return out


def plan_known(plpy: Any, req: str, query_hash: int, server_id: str) -> str | None:
    """An index scenario's starting point: the known statement planned now as the role that ran it, before
    the caller's hypothetical indexes exist. None for other scenarios (they start from the captured plan)."""
    info = json.loads(req)
    if not info["hypopg"]:
        return None
    return json.dumps(_plan_as_its_role(plpy, _known(plpy, server_id, query_hash)))


def answer_known(
    plpy: Any, req: str, query_hash: int, server_id: str, created: list[str], current_plan: str | None
) -> dict[str, Any]:
    """pgml_predict(query_hash, server_id, scenario)'s row: the statement's forecast scaled by the scenario.

    Its text is planned only as the role that ran it; ``created`` are the caller's hypothetical indexes,
    already in this session; ``current_plan`` is its plan from before they were (``plan_known``)."""
    info = json.loads(req)
    scenario = _scenario_of(info)
    known = _known(plpy, server_id, query_hash)
    indexes: list[str] = list(created)
    if current_plan is not None:
        if scenario.optimized:
            scenario_plan, indexes = _optimized_known(plpy, known, current_plan)
        else:
            scenario_plan = _plan_as_its_role(plpy, known)
    elif known["plan"] is not None:
        current_plan = scenario_plan = known["plan"]
    else:
        raise not_found(
            f'statement {query_hash} of server "{server_id}" has no captured plan to apply the scenario to',
            hint="Plans are captured by the 'plans' job (hourly, and after each snapshot that finds new statements) "
            "or SELECT * FROM pgml_capture_plans(); a pushed row may carry its plan.",
        )
    current, _ = _description(plpy, current_plan)
    described, unmatched = _description(plpy, scenario_plan, scenario)
    current["sql"] = described["sql"] = known["query"]
    est = estimate.scaled(
        plpy,
        server_id,
        current,
        described,
        known["predicted_ms"],
        known["lower_ms"],
        known["upper_ms"],
        scenario.load or 1.0,
    )
    row = _row(server_id, est, described, _assumed(info["scenario"], indexes, unmatched, scenario.load))
    row.update(
        query_hash=query_hash,
        query=known["query"] if len(known["query"]) <= 80 else known["query"][:77] + "...",
        forecaster=known["forecaster"],
        based_on=known["based_on"],
        recommended_indexes=indexes if scenario.optimized else [],
        optimization_suggestion=_suggestion(indexes, known["predicted_ms"], est.predicted_ms)
        if scenario.optimized
        else None,
    )
    return row


def _scenario_of(info: dict[str, Any]) -> scenarios.Scenario:
    assumed = info["scenario"]
    if assumed["scenario"] == "optimized":
        return scenarios.Scenario(optimized=True)
    return scenarios.parse({k: v for k, v in assumed.items() if k != "scenario"})


def _optimized_known(plpy: Any, known: dict[str, Any], current_plan: str) -> tuple[Any, list[str]]:
    """The statement's own candidate indexes tried one at a time as its role, the best kept (``choose``),
    and its plan with them."""
    from pganalytics_ml.whatif import candidates, hypothetical

    path = plans._quote_path(plpy, known["planned_as"])
    trials = []
    for candidate in candidates.for_statement(plpy, known["query"], path, known["planned_as"]):
        made, _ = hypothetical.create(plpy, candidate.create_sql())
        try:
            plan = _plan_as_its_role(plpy, known)
        finally:
            hypothetical.drop(plpy, [made])
        trials.append({"index": candidate.create_sql(), "relation": candidate.relation, "plan": plan})
    chosen = json.loads(choose(plpy, current_plan, json.dumps(trials)))
    made = [hypothetical.create(plpy, sql)[0] for sql in chosen]
    try:
        return _plan_as_its_role(plpy, known), chosen
    finally:
        hypothetical.drop(plpy, made)


def _plan_as_its_role(plpy: Any, known: dict[str, Any]) -> Any:
    role = known["planned_as"]
    if role is None:
        raise not_found(
            f"statement {known['queryid']} has no plan captured as the role that ran it",
            hint="SELECT * FROM pgml_capture_plans() plans it; then ask again.",
        )
    result = plans.plan_as(plpy, known["query"], role)
    if isinstance(result, plans.Skipped):
        raise PgmlError(
            f"statement {known['queryid']} cannot be planned as {role}: {result.reason}"
            + (f" ({result.detail})" if result.detail else ""),
            sqlstate="55000",
            hint="pganalytics_ml.plan_capture shows why its plan capture fails.",
        )
    return result.plan


@sql_entry
def request_sql(
    plpy: Any, caller: str, sql: Any, query_hash: Any, scenario: Any, server_id: Any, search_path: Any
) -> str:
    return request(plpy, caller, sql, query_hash, scenario, server_id, search_path)


@sql_entry
def choose_sql(plpy: Any, current_plan: str, trials: str) -> str:
    return choose(plpy, current_plan, trials)


@sql_entry
def answer_sql_entry(
    plpy: Any, req: str, sql: str, server_id: str, current: str, scenario_plan: str | None, chosen: str
) -> list[dict[str, Any]]:
    return [answer_sql(plpy, req, sql, server_id, current, scenario_plan, chosen)]


@sql_entry
def plan_known_entry(plpy: Any, req: str, query_hash: int, server_id: str) -> str | None:
    return plan_known(plpy, req, query_hash, server_id)


@sql_entry
def answer_known_entry(
    plpy: Any, req: str, query_hash: int, server_id: str, created: list[str] | None, current_plan: str | None
) -> list[dict[str, Any]]:
    return [answer_known(plpy, req, query_hash, server_id, created or [], current_plan)]
