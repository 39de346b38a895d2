"""Scenarios: what a what-if prediction assumes, read from its JSON, and plans changed to match.

'current' (or {}) assumes nothing; 'optimized' applies the best hypothetical index set found for the
statement; a document combines {"indexes": [CREATE INDEX ...]} (hypothetical, via hypopg),
{"growth": 2.0} or {"growth": {"orders": 3.0}} (data scaled) and {"load": 1.5} (server load scaled).
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from typing import Any

from pganalytics_ml.capture import plan_features
from pganalytics_ml.capture.statements import parse_tree
from pganalytics_ml.errors import invalid, null_argument, shown

MAX_INDEXES = 10
MAX_FACTOR = 1000.0
ACCEPTED = (
    "Accepted: 'current', 'optimized', or an object with any of "
    '"indexes": ["CREATE INDEX ON t (a, b)", ...] (hypothetical, needs hypopg), '
    '"growth": 2.0 or {"orders": 3.0} (data scaled), "load": 1.5 (server load scaled).'
)


@dataclass
class Scenario:
    optimized: bool = False
    indexes: list[str] = field(default_factory=list)
    growth: float | dict[str, float] | None = None
    load: float | None = None

    @property
    def needs_hypopg(self) -> bool:
        return self.optimized or bool(self.indexes)

    @property
    def is_current(self) -> bool:
        return not self.needs_hypopg and self.growth is None and self.load is None

    def as_json(self) -> dict[str, Any]:
        if self.optimized:
            return {"scenario": "optimized"}
        out: dict[str, Any] = {"scenario": "current" if self.is_current else "custom"}
        if self.indexes:
            out["indexes"] = self.indexes
        if self.growth is not None:
            out["growth"] = self.growth
        if self.load is not None:
            out["load"] = self.load
        return out


def _factor(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise invalid(f"scenario {where} must be a number, got {shown(value)}", hint=ACCEPTED)
    if not 0 < value <= MAX_FACTOR:
        raise invalid(f"scenario {where} must be above 0 and at most {MAX_FACTOR:g}, got {shown(value)}", hint=ACCEPTED)
    return float(value)


def _index_statement(text: Any, where: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise invalid(f"scenario {where} must be a CREATE INDEX statement, got {shown(text)}", hint=ACCEPTED)
    try:
        tree = parse_tree(text)
    except ValueError as exc:
        raise invalid(f"scenario {where} does not parse: {str(exc)[:200]}", hint=ACCEPTED) from None
    stmts = [s.get("stmt", {}) for s in tree.get("stmts", [])]
    if len(stmts) != 1 or "IndexStmt" not in stmts[0]:
        raise invalid(f"scenario {where} must be one CREATE INDEX statement, got {shown(text, 60)}", hint=ACCEPTED)
    return text.strip().rstrip(";").strip()


def parse(value: Any) -> Scenario:
    """The scenario of a jsonb argument (as text, or already decoded); raises 22023 naming what is wrong."""
    if value is None:
        raise null_argument("scenario", hint=ACCEPTED)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise invalid(f"scenario must be JSON, got {shown(value)}", hint=ACCEPTED) from None
    if value in ("current", {}):
        return Scenario()
    if value == "optimized":
        return Scenario(optimized=True)
    if not isinstance(value, dict):
        raise invalid(f"unknown scenario {shown(value)}", hint=ACCEPTED)
    unknown = sorted(set(value) - {"indexes", "growth", "load"})
    if unknown:
        raise invalid(f"unknown scenario keys: {', '.join(shown(k) for k in unknown[:5])}", hint=ACCEPTED)
    scenario = Scenario()
    if "indexes" in value:
        indexes = value["indexes"]
        if not isinstance(indexes, list) or not 1 <= len(indexes) <= MAX_INDEXES:
            raise invalid(
                f"scenario indexes must be an array of 1 to {MAX_INDEXES} CREATE INDEX statements", hint=ACCEPTED
            )
        scenario.indexes = [_index_statement(text, f"indexes[{i}]") for i, text in enumerate(indexes)]
    if "growth" in value:
        growth = value["growth"]
        if isinstance(growth, dict):
            if not 1 <= len(growth) <= 100:
                raise invalid("scenario growth must name 1 to 100 relations", hint=ACCEPTED)
            scenario.growth = {}
            for name, factor in growth.items():
                if not name.strip() or len(name) > 200:
                    raise invalid(f"scenario growth names an invalid relation {shown(name)}", hint=ACCEPTED)
                scenario.growth[name.strip()] = _factor(factor, f"growth of {shown(name)}")
        else:
            scenario.growth = _factor(growth, "growth")
    if "load" in value:
        scenario.load = _factor(value["load"], "load")
    return scenario


def growth_of(scenario: Scenario, relations: list[str]) -> dict[str, float]:
    """The factor of each relation a plan reads (schema.name as plans name them): a number applies to all;
    a name without a schema matches that name in any schema."""
    if scenario.growth is None:
        return {}
    if not isinstance(scenario.growth, dict):
        return dict.fromkeys(relations, scenario.growth)
    found = {}
    for relation in relations:
        bare = relation.split(".", 1)[-1]
        for name, factor in scenario.growth.items():
            if name in (relation, bare):
                found[relation] = factor
    return found


def unmatched_growth(scenario: Scenario, relations: list[str]) -> list[str]:
    """Relations named in a growth document that the plan does not read."""
    if not isinstance(scenario.growth, dict):
        return []
    bare = {r.split(".", 1)[-1] for r in relations}
    return [name for name in scenario.growth if name not in relations and name not in bare]


# Nodes whose output rows do not grow with their input: a Limit's, and a plain Aggregate's single row.
def _rows_fixed(node: dict[str, Any]) -> bool:
    return node["Node Type"] == "Limit" or (node["Node Type"] == "Aggregate" and node.get("Strategy") == "Plain")


def grown(
    plan: Any, sizes: dict[str, dict[str, Any]], factors: dict[str, float]
) -> tuple[Any, dict[str, dict[str, Any]]]:
    """The plan and sizes with the named relations' data scaled, as if the planner saw them so.

    Scans of a grown relation return and cost that much more; every other node's own cost grows with its
    input rows (the largest growth among its children), its rows too except where they are fixed (Limit,
    plain Aggregate). The shape of the plan is kept: the planner might pick another one at that size.
    """
    plan = copy.deepcopy(plan)
    sizes = copy.deepcopy(sizes)
    for name, factor in factors.items():
        if name in sizes:
            for key in ("pages", "tuples"):
                if sizes[name].get(key) is not None:
                    sizes[name][key] = float(sizes[name][key]) * factor

    def visit(node: dict[str, Any]) -> float:
        children = node.get("Plans") or []
        before = sum(float(c.get("Total Cost", 0)) for c in children)
        scales = [visit(c) for c in children]
        after = sum(float(c.get("Total Cost", 0)) for c in children)
        relation = plan_features.relation_name(node)
        scale = factors.get(relation, 1.0) if relation else max(scales, default=1.0)
        own = max(float(node.get("Total Cost", 0)) - before, 0.0)
        node["Total Cost"] = after + own * scale
        if not _rows_fixed(node):
            node["Plan Rows"] = float(node.get("Plan Rows", 0)) * scale
        return 1.0 if _rows_fixed(node) else scale

    visit(plan_features.root(plan))
    return plan, sizes
