"""Plans costed as the data is served: an index's speed-up from its pages' observed cache hits.

The optimizer prices a random page read (random_page_cost, 4 by default) at four sequential ones
(seq_page_cost, 1): right for pages read from disk, not for pages found in shared buffers, where a random
page costs what a sequential one does. An index mostly trades sequential pages for random ones, so on
cached data the default costs understate its gain (bench/bench_whatif_indexes.py: measured speed-ups 2 to
15 times the predicted ones, with every block a hit).

A statement's hit ratio ``h`` (shared_blks_hit / (hit + read) over the day before its latest capture,
pganalytics_ml.query_stats) sets the random page cost its plans are costed with for the speed-up:
``seq_page_cost + (random_page_cost - seq_page_cost) * (1 - h)``: the server's own setting when nothing
was a hit, seq_page_cost when everything was. The planner still chooses its plans with the server's
settings: a plan is used for its served cost only when it reads the same relations through the same
indexes as the one chosen with them (it may scan an index plainly where that one took a bitmap of it),
else the speed-up stays the default costs' ratio.

The setting is changed with SET LOCAL inside a subtransaction that is always rolled back, around the
planning (capture.plans.plan_many_as's ``settings``, as the statement's own role): nothing outlives it.
"""

from __future__ import annotations

from typing import Any

MIN_COST = 1e-3

_HITS_SQL = """
    WITH latest AS (SELECT max(s.captured_at) AS at FROM pganalytics_ml.snapshots s WHERE s.server_id = $1)
    SELECT q.queryid, sum(q.shared_blks_hit)::float8 AS hit, sum(q.shared_blks_read)::float8 AS read
      FROM pganalytics_ml.query_stats q, latest
     WHERE q.server_id = $1 AND q.queryid = ANY ($2::bigint[])
       AND q.interval_end > latest.at - interval '1 day' AND q.interval_end <= latest.at
     GROUP BY q.queryid
"""
_COSTS_SQL = (
    "SELECT pg_catalog.current_setting('seq_page_cost')::float8 AS seq,"
    " pg_catalog.current_setting('random_page_cost')::float8 AS random"
)


def hit_ratios(plpy: Any, server_id: str, queryids: list[int]) -> dict[int, float]:
    """queryid: its shared-buffer hit ratio over the day before the server's latest capture (statements that
    read no block are left out)."""
    if not queryids:
        return {}
    rows = plpy.execute(plpy.prepare(_HITS_SQL, ["text", "bigint[]"]), [server_id, queryids])
    out = {}
    for r in rows:
        hit, read = float(r["hit"] or 0), float(r["read"] or 0)
        if hit + read > 0:
            out[int(r["queryid"])] = hit / (hit + read)
    return out


def page_costs(plpy: Any) -> tuple[float, float]:
    """(seq_page_cost, random_page_cost) of this session."""
    row = plpy.execute(_COSTS_SQL)[0]
    return float(row["seq"]), float(row["random"])


def random_page_cost(hit_ratio: float, seq: float, random: float) -> float:
    """The random page cost of pages served with ``hit_ratio`` (see the module's docstring), rounded so that
    statements of similar ratios are planned together."""
    if random <= seq:  # already priced as cached (or below): left as the server has it
        return random
    h = min(max(float(hit_ratio), 0.0), 1.0)
    return round(seq + (random - seq) * (1.0 - h), 2)


def ratio(
    current: dict[str, Any],
    scenario: dict[str, Any],
    current_served: dict[str, Any] | None,
    scenario_served: dict[str, Any] | None,
) -> float:
    """(served cost ratio) / (default cost ratio) of the scenario against the current plan: what the served
    costs change in the speed-up; 1 when either served plan is missing or reads other relations or indexes
    than the plan chosen with the server's settings (a bitmap scan of an index costed as a plain scan of the
    same index is taken as the same access)."""
    if current_served is None or scenario_served is None:
        return 1.0
    for chosen, costed in ((current, current_served), (scenario, scenario_served)):
        if (set(costed["relations"]), set(costed["indexes"])) != (set(chosen["relations"]), set(chosen["indexes"])):
            return 1.0

    def cost(d: dict[str, Any]) -> float:
        return max(float(d["total_cost"]), MIN_COST)

    return (cost(scenario_served) / cost(current_served)) / (cost(scenario) / cost(current))
