"""What a plan says, from EXPLAIN (FORMAT JSON) output and the sizes of the relations it reads.

Plain functions over plain data: the plan as PostgreSQL prints it, relation sizes as dicts. Used for the
local server's own plans and for plans a remote collector pushes, so both give the same features.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from typing import Any

# Node types counted, by feature name. Aggregate splits by strategy (Hashed, Sorted, Plain, Mixed).
NODE_FEATURES = {
    "Seq Scan": "n_seq_scan",
    "Index Scan": "n_index_scan",
    "Index Only Scan": "n_index_only_scan",
    "Bitmap Heap Scan": "n_bitmap_heap_scan",
    "Nested Loop": "n_nested_loop",
    "Hash Join": "n_hash_join",
    "Merge Join": "n_merge_join",
    "Sort": "n_sort",
    "Incremental Sort": "n_sort",
    "Materialize": "n_materialize",
    "Memoize": "n_materialize",
    "Gather": "n_gather",
    "Gather Merge": "n_gather",
}
AGGREGATE_FEATURES = {"Hashed": "n_hash_aggregate", "Mixed": "n_hash_aggregate"}  # others: group aggregate
COUNT_NAMES = tuple(dict.fromkeys([*NODE_FEATURES.values(), "n_hash_aggregate", "n_group_aggregate"]))

# The PLAN feature group of the forecasting features, in order (see forecasting/features.py).
PLAN_FEATURES = (
    "has_plan",
    "log_plan_cost",
    "log_plan_rows",
    "plan_width",
    "plan_depth",
    *COUNT_NAMES,
    "log_seq_scan_rows",
    "log_rel_pages",
    "log_rel_tuples",
    "rel_indexes",
    "log_analyze_age_hours",
    "never_analyzed",
)

MAX_PLAN_BYTES = 256 * 1024  # a pushed plan, serialized
MAX_PLAN_NODES = 2000
MAX_PLAN_DEPTH = 100
MAX_RELATIONS = 200
MAX_SIZE = 1e15  # pages, tuples: far beyond any real relation
SUMMARY_LIMIT = 300


class PlanError(ValueError):
    """The plan JSON is not an EXPLAIN (FORMAT JSON) plan within the bounds."""


def root(plan: Any) -> dict[str, Any]:
    """The top plan node of EXPLAIN (FORMAT JSON) output: ``[{"Plan": {...}}]``, ``{"Plan": {...}}`` or the node."""
    if isinstance(plan, list):
        if len(plan) != 1:
            raise PlanError("a plan must be one EXPLAIN (FORMAT JSON) result: an array of one object")
        plan = plan[0]
    if isinstance(plan, dict) and isinstance(plan.get("Plan"), dict):
        plan = plan["Plan"]
    if not isinstance(plan, dict) or not isinstance(plan.get("Node Type"), str):
        raise PlanError('a plan must be EXPLAIN (FORMAT JSON) output, whose top node has a "Node Type"')
    return plan


def nodes(top: dict[str, Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(depth, node) of every node, parents before children; raises PlanError past the bounds."""
    stack = [(1, top)]
    seen = 0
    while stack:
        depth, node = stack.pop()
        seen += 1
        if seen > MAX_PLAN_NODES:
            raise PlanError(f"a plan may have at most {MAX_PLAN_NODES} nodes")
        if depth > MAX_PLAN_DEPTH:
            raise PlanError(f"a plan may be at most {MAX_PLAN_DEPTH} nodes deep")
        if not isinstance(node, dict) or not isinstance(node.get("Node Type"), str):
            raise PlanError('every plan node must be an object with a "Node Type"')
        yield depth, node
        children = node.get("Plans", [])
        if not isinstance(children, list):
            raise PlanError('"Plans" must be an array of plan nodes')
        stack.extend((depth + 1, child) for child in reversed(children))


def relation_name(node: dict[str, Any]) -> str | None:
    name = node.get("Relation Name")
    if not isinstance(name, str):
        return None
    schema = node.get("Schema")
    return f"{schema}.{name}" if isinstance(schema, str) else name


def _shape(node: dict[str, Any]) -> str:
    parts = [str(node["Node Type"])]
    for key in ("Strategy", "Join Type", "Parent Relationship"):
        if isinstance(node.get(key), str):
            parts.append(node[key])
    label = "/".join(parts)
    target = relation_name(node)
    if target:
        label += f" on {target}"
    if isinstance(node.get("Index Name"), str):
        label += f" using {node['Index Name']}"
    children = [_shape(c) for c in node.get("Plans", [])]
    return label + (f"({', '.join(children)})" if children else "")


def fingerprint(top: dict[str, Any]) -> str:
    """The plan's shape: node types, join strategies, relations and index names; never its costs."""
    return hashlib.sha256(_shape(top).encode()).hexdigest()[:16]


def summary(top: dict[str, Any]) -> str:
    """The shape in words, for a DBA reading plan_changes: e.g. 'Hash Join(Seq Scan on public.a, ...)'."""
    text = _shape(top)
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 3] + "..."


def _number(node: dict[str, Any], key: str) -> float:
    value = node.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PlanError(f'"{key}" must be a finite number')
    return float(value)


def describe(plan: Any, sizes: dict[str, dict[str, Any]], now_epoch: float) -> dict[str, Any]:
    """Fingerprint, summary, relations, indexes and features of a plan.

    ``sizes`` maps a relation's name (as the plan names it) to pages, tuples, indexes and analyzed_epoch
    (NULL when never analyzed); relations missing from it count as unknown.
    """
    top = root(plan)
    counts = dict.fromkeys(COUNT_NAMES, 0)
    depth, relations, indexes, seq_rows = 0, [], [], 0.0
    for level, node in nodes(top):
        depth = max(depth, level)
        kind = node["Node Type"]
        if kind == "Aggregate":
            counts[AGGREGATE_FEATURES.get(node.get("Strategy"), "n_group_aggregate")] += 1
        elif kind in NODE_FEATURES:
            counts[NODE_FEATURES[kind]] += 1
        name = relation_name(node)
        if name and name not in relations:
            relations.append(name)
        if isinstance(node.get("Index Name"), str) and node["Index Name"] not in indexes:
            indexes.append(node["Index Name"])
        if kind == "Seq Scan" and name:
            known = sizes.get(name, {}).get("tuples")
            seq_rows += max(float(known), 0.0) if known is not None else _number(node, "Plan Rows")
    known = [sizes[r] for r in relations if r in sizes]
    ages = [now_epoch - s["analyzed_epoch"] for s in known if s.get("analyzed_epoch") is not None]
    features = {
        "has_plan": 1.0,
        "log_plan_cost": math.log1p(max(_number(top, "Total Cost"), 0.0)),
        "log_plan_rows": math.log1p(max(_number(top, "Plan Rows"), 0.0)),
        "plan_width": _number(top, "Plan Width"),
        "plan_depth": float(depth),
        **{name: float(n) for name, n in counts.items()},
        "log_seq_scan_rows": math.log1p(seq_rows),
        "log_rel_pages": math.log1p(sum(max(float(s.get("pages") or 0), 0.0) for s in known)),
        "log_rel_tuples": math.log1p(sum(max(float(s.get("tuples") or 0), 0.0) for s in known)),
        "rel_indexes": float(sum(int(s.get("indexes") or 0) for s in known)),
        "log_analyze_age_hours": math.log1p(max(max(ages), 0.0) / 3600) if ages else 0.0,
        "never_analyzed": float(sum(1 for s in known if s.get("analyzed_epoch") is None)),
    }
    return {
        "fingerprint": fingerprint(top),
        "summary": summary(top),
        "relations": relations,
        "indexes": indexes,
        "total_cost": _number(top, "Total Cost"),
        "plan_rows": _number(top, "Plan Rows"),
        "plan_width": int(_number(top, "Plan Width")),
        "depth": depth,
        "features": features,
    }


def strip_outputs(plan: Any) -> Any:
    """The plan without VERBOSE's per-node output lists (long, and not part of the plan's shape)."""
    if isinstance(plan, list):
        return [strip_outputs(x) for x in plan]
    if isinstance(plan, dict):
        return {k: strip_outputs(v) for k, v in plan.items() if k != "Output"}
    return plan


def check_pushed_plan(plan: Any, where: str) -> Any:
    """A plan a collector sent: EXPLAIN (FORMAT JSON) output within the bounds; raises PlanError naming ``where``."""
    size = len(json.dumps(plan))
    if size > MAX_PLAN_BYTES:
        raise PlanError(f"{where} is {size} bytes; a plan may have at most {MAX_PLAN_BYTES}")
    try:
        for _ in nodes(root(plan)):
            pass
    except PlanError as exc:
        raise PlanError(f"{where}: {exc}") from None
    return plan


def check_pushed_sizes(relations: Any, where: str) -> dict[str, dict[str, Any]]:
    """Relation sizes a collector sent: [{"relation", "pages", "tuples", "indexes", "last_analyze"}, ...].

    Returns them keyed by relation name, last_analyze left as text for SQL to read (``analyzed_at``).
    """
    if not isinstance(relations, list):
        raise PlanError(f"{where} must be an array of relation sizes")
    if len(relations) > MAX_RELATIONS:
        raise PlanError(f"{where} may list at most {MAX_RELATIONS} relations, got {len(relations)}")
    out: dict[str, dict[str, Any]] = {}
    for i, item in enumerate(relations):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise PlanError(f"{at} must be an object")
        unknown = set(item) - {"relation", "pages", "tuples", "indexes", "last_analyze"}
        if unknown:
            raise PlanError(f"{at} has unknown keys: {', '.join(sorted(unknown))}")
        name = item.get("relation")
        if not isinstance(name, str) or not 1 <= len(name) <= 200 or "\x00" in name:
            raise PlanError(f"{at}.relation must be a relation name of 1 to 200 characters")
        entry: dict[str, Any] = {}
        for key, integer in (("pages", True), ("tuples", False), ("indexes", True)):
            value = item.get(key, 0)
            ok = not isinstance(value, bool) and isinstance(value, int if integer else int | float)
            if not ok or not math.isfinite(value) or not 0 <= value <= MAX_SIZE:
                kind = "an integer" if integer else "a number"
                raise PlanError(f"{at}.{key} must be {kind} from 0 to {MAX_SIZE:g}")
            entry[key] = value
        last = item.get("last_analyze")
        if last is not None and (not isinstance(last, str) or len(last) > 40):
            raise PlanError(f"{at}.last_analyze must be an ISO 8601 timestamp or null")
        entry["last_analyze"] = last
        out[name] = entry
    return out
