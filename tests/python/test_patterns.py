"""Workload patterns on planted histories: every planted pattern is found, pure noise gives none."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import pytest

from conftest import Database
from history_builder import History, planted_history

pytestmark = pytest.mark.integration

DETECT = "SELECT type, query_hash, metric, description, confidence, metadata FROM pgml_detect_patterns(%s, %s)"


def found_by_statement(db: Database, days: int, server: str) -> dict[int | None, list[tuple[Any, ...]]]:
    found: dict[int | None, list[tuple[Any, ...]]] = defaultdict(list)
    for row in db.all(DETECT, (days, server)):
        found[row[1]].append(row)
    return found


def test_explore(db: Database):
    planted = planted_history(db.conn, "db-1", days=21, seed=1)
    found = found_by_statement(db, 21, "db-1")
    for st in planted:
        print(st.pattern, st.queryid, [(r[0], r[2], r[4]) for r in found.get(st.queryid, [])])
    print("server", [(r[0], r[2], r[4], r[3]) for r in found.get(None, [])])
    for rows in found.values():
        for r in rows[:1]:
            print(r[3])
