"""The plpy interface over a psycopg connection, so code outside the server runs the package unchanged.

Used by the HTTP service that stands for the architecture pganalytics_ml replaces: it computes
features and predictions with the very functions PL/Python calls, one request at a time.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.string import TextLoader


class PsycopgPlpy:
    class SPIError(Exception):
        pass

    Error = SPIError

    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn
        for json_type in ("json", "jsonb"):  # PL/Python hands JSON over as text
            conn.adapters.register_loader(json_type, TextLoader)

    def prepare(self, query: str, types: list[str] | None = None) -> str:
        return re.sub(r"\$(\d+)", r"%(p\1)s", query)

    def execute(self, query: str, args: list[Any] | None = None) -> list[dict[str, Any]]:
        params = {f"p{i + 1}": v for i, v in enumerate(args or [])}
        cur = self.conn.execute(query, params if args is not None else None)
        if cur.description is None:
            return []
        names = [c.name for c in cur.description]
        return [
            {n: v.isoformat() if isinstance(v, datetime) else v for n, v in zip(names, row, strict=True)}
            for row in cur.fetchall()
        ]

    def warning(self, message: str, **_: Any) -> None:
        print(f"warning: {message}")
