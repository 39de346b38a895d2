"""docs/sql-reference.md against the catalog of an installed extension: everything public is documented,
with its arguments, defaults, returned columns and privilege, and nothing documented is missing.

The reference documents a function under a heading holding its signature, and a readable table or
view under a heading holding its name:

    ### `pgml_predict(query_hash bigint, server_id text DEFAULT 'local') → SETOF pganalytics_ml.prediction`
    ### `pganalytics_ml.run_jobs(max_jobs integer DEFAULT 100, ...)`          (a procedure: no result)
    ### `pganalytics_ml.regressions` (view)

The result is a type, ``SETOF <type>``, or ``TABLE``; what comes back as rows is listed in the first
``| column | type |`` table of the section, or in the section a line ``Columns: as `<other>`.`` names.
Each section names the least role that may use the object:
``Privilege: `pgml_reader` `` (or ``pgml_trainer``, ``pgml_admin``, ``superuser``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from psycopg import sql

from conftest import Database

pytestmark = pytest.mark.integration

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "sql-reference.md"
ROLES = ("pgml_reader", "pgml_trainer", "pgml_admin")
FUNCTION_HEADING = re.compile(r"^### `(?P<name>[\w.]+)\((?P<args>.*)\)(?: → (?P<returns>[^`]+))?`\s*$")
RELATION_HEADING = re.compile(r"^### `(?P<name>pganalytics_ml\.\w+)` \((?P<kind>table|view)\)\s*$")
PRIVILEGE = re.compile(r"Privilege: (?:`(pgml_\w+)`|(superuser))")
COLUMNS_AS = re.compile(r"^Columns: as `([\w.]+)`\.?$")

# What the extension makes public: every function in its schema, the routines of pganalytics_ml whose
# names do not start with "_", and every relation a pgml role may read.
CATALOG_ROUTINES = """
    SELECT p.oid, CASE WHEN p.pronamespace = e.extnamespace THEN p.proname::text
                       ELSE n.nspname || '.' || p.proname END AS name, p.prokind
      FROM pg_proc p
      JOIN pg_namespace n ON n.oid = p.pronamespace
      JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
      JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pganalytics_ml'
     WHERE p.pronamespace = e.extnamespace OR (n.nspname = 'pganalytics_ml' AND p.proname !~ '^_')
"""
CATALOG_RELATIONS = """
    SELECT c.oid, 'pganalytics_ml.' || c.relname, CASE c.relkind WHEN 'v' THEN 'view' ELSE 'table' END
      FROM pg_class c
     WHERE c.relnamespace = 'pganalytics_ml'::regnamespace AND c.relkind IN ('r', 'v', 'p')
       AND pg_catalog.has_table_privilege('pgml_admin', c.oid, 'SELECT')
"""


@dataclass
class Section:
    heading: str
    name: str
    args: str | None = None
    returns: str | None = None
    kind: str | None = None
    body: list[str] = field(default_factory=list)

    def columns(self, sections: dict[str, Section]) -> list[tuple[str, str]] | None:
        """The rows of the section's first ``| column | type |`` table, or of the section it refers to."""
        lines = iter(self.body)
        for line in lines:
            same = COLUMNS_AS.match(line)
            if same:
                return sections[same[1]].columns(sections)
            if re.match(r"^\| column \| type \|", line):
                next(lines)  # the |---| line
                rows = []
                for row in lines:
                    if not row.startswith("|"):
                        break
                    cells = [c.strip().strip("`") for c in row.strip().strip("|").split("|")]
                    rows.append((cells[0], cells[1]))
                return rows
        return None

    def privilege(self) -> str | None:
        found = PRIVILEGE.search("\n".join(self.body))
        return (found.group(1) or found.group(2)) if found else None


def reference_sections() -> list[Section]:
    sections: list[Section] = []
    for line in REFERENCE.read_text().splitlines():
        if line.startswith("#"):
            function, relation = FUNCTION_HEADING.match(line), RELATION_HEADING.match(line)
            if function:
                sections.append(Section(line, function["name"], function["args"], function["returns"]))
            elif relation:
                sections.append(Section(line, relation["name"], kind=relation["kind"]))
            elif line.startswith("### `"):
                pytest.fail(f"a heading that names neither a function nor a relation: {line}")
            else:
                sections.append(Section(line, ""))  # prose: ends the previous section
        elif sections:
            sections[-1].body.append(line)
    return [s for s in sections if s.name]


def split_arguments(text: str) -> list[str]:
    """Comma-separated arguments, ignoring commas inside quotes or brackets."""
    parts, depth, quoted, current = [], 0, False, ""
    for char in text:
        if char == "'":
            quoted = not quoted
        elif not quoted and char in "([":
            depth += 1
        elif not quoted and char in ")]":
            depth -= 1
        if char == "," and depth == 0 and not quoted:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [*parts, current.strip()] if current.strip() else parts


def canonical_type(db: Database, name: str) -> str:
    return db.one("SELECT %s::regtype::text", (name,))


def documented_arguments(db: Database, section: Section) -> list[tuple[str, str, str | None]]:
    """(name, canonical type, default expression or None) of each documented argument."""
    arguments = []
    for arg in split_arguments(section.args or ""):
        declared, _, default = arg.partition(" DEFAULT ")
        name, _, type_name = declared.strip().partition(" ")
        arguments.append((name.strip('"'), canonical_type(db, type_name.strip()), default.strip() or None))
    return arguments


def catalog_arguments(db: Database, oid: int) -> list[tuple[str, str, bool]]:
    """(name, type, has a default) of each input argument, in order."""
    rows = db.all(
        """
        SELECT a.name, format_type(a.type, NULL), a.position > p.pronargs - p.pronargdefaults
          FROM pg_proc p,
               unnest(p.proargtypes::oid[], p.proargnames[1:p.pronargs]) WITH ORDINALITY AS a(type, name, position)
         WHERE p.oid = %s
         ORDER BY a.position
        """,
        (oid,),
    )
    return [tuple(r) for r in rows]


def catalog_defaults(db: Database, oid: int) -> tuple:
    """The values of the catalog's argument defaults, evaluated."""
    expressions = db.one("SELECT pg_get_expr(proargdefaults, 0) FROM pg_proc WHERE oid = %s", (oid,))
    return tuple(db.all(f"SELECT {expressions}")[0]) if expressions else ()


def catalog_result_columns(db: Database, oid: int) -> list[tuple[str, str]] | None:
    """What a function returns as rows: its TABLE/OUT columns or its composite type's attributes."""
    out = db.all(
        """
        SELECT a.name, format_type(a.type, NULL)
          FROM pg_proc p, unnest(p.proallargtypes, p.proargmodes::text[], p.proargnames)
                          WITH ORDINALITY AS a(type, mode, name, position)
         WHERE p.oid = %s AND a.mode IN ('t', 'o', 'b')
         ORDER BY a.position
        """,
        (oid,),
    )
    if out:
        return [tuple(r) for r in out]
    relid = db.one("SELECT t.typrelid FROM pg_proc p JOIN pg_type t ON t.oid = p.prorettype WHERE p.oid = %s", (oid,))
    return relation_columns(db, relid) if relid else None


def relation_columns(db: Database, relid: int) -> list[tuple[str, str]]:
    rows = db.all(
        "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute"
        " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (relid,),
    )
    return [tuple(r) for r in rows]


def least_role(db: Database, oid: int, relation: bool) -> str:
    check = (
        "has_table_privilege(%s, %s::oid, 'SELECT')" if relation else "has_function_privilege(%s, %s::oid, 'EXECUTE')"
    )
    for role in ROLES:
        if db.one(f"SELECT {check}", (role, oid)):
            return role
    return "superuser"


@pytest.fixture
def catalog(db: Database) -> dict[str, tuple[int, str]]:
    """Every public object by its documented name: (oid, kind)."""
    routines = db.all(CATALOG_ROUTINES)
    objects = {name: (oid, kind) for oid, name, kind in routines}
    assert len(objects) == len(routines), "an overload: the reference would need to tell them apart by arguments"
    objects |= {name: (oid, kind) for oid, name, kind in db.all(CATALOG_RELATIONS)}
    return objects


def test_every_public_object_is_documented_once_and_nothing_documented_is_missing(db: Database, catalog):
    documented = [s.name for s in reference_sections()]
    assert sorted(set(documented)) == sorted(documented), "documented twice"
    assert sorted(set(catalog) - set(documented)) == [], "public in the catalog, missing from sql-reference.md"
    assert sorted(set(documented) - set(catalog)) == [], "documented, but not in the catalog"


def test_documented_arguments_and_defaults_are_the_catalog_ones(db: Database, catalog):
    for section in reference_sections():
        if section.kind:
            continue
        oid, _ = catalog[section.name]
        documented = documented_arguments(db, section)
        assert [(n, t, d is not None) for n, t, d in documented] == catalog_arguments(db, oid), section.heading
        defaults = [(name, type_name, d) for name, type_name, d in documented if d is not None]
        values = tuple(db.one(sql.SQL("SELECT CAST({} AS {})").format(sql.SQL(d), sql.SQL(t))) for _, t, d in defaults)
        assert values == catalog_defaults(db, oid), f"{section.heading}: defaults differ from the catalog"


def test_documented_results_are_the_catalog_ones(db: Database, catalog):
    sections = {s.name: s for s in reference_sections()}
    for section in sections.values():
        oid, kind = catalog[section.name]
        columns = section.columns(sections)
        documented_columns = [(name, canonical_type(db, t)) for name, t in columns] if columns is not None else None
        if section.kind:
            assert section.kind == kind, section.heading
            assert documented_columns == relation_columns(db, oid), f"{section.heading}: columns differ"
            continue
        result = db.one("SELECT pg_get_function_result(%s)", (oid,))
        if kind == "p":
            assert section.returns is None, f"{section.heading}: a procedure returns nothing"
            continue
        returns = (section.returns or "").strip()
        if returns == "TABLE":
            assert result.startswith("TABLE("), section.heading
        else:
            setof = returns.startswith("SETOF ")
            expected = ("SETOF " if setof else "") + canonical_type(db, returns.removeprefix("SETOF "))
            assert result == expected, f"{section.heading}: returns {result}"
        rows = catalog_result_columns(db, oid)
        if rows is not None:
            assert documented_columns == rows, f"{section.heading}: returned columns differ"


def test_documented_privileges_are_the_granted_ones(db: Database, catalog):
    for section in reference_sections():
        oid, kind = catalog[section.name]
        least = least_role(db, oid, relation=kind in ("table", "view"))
        assert section.privilege() == least, f"{section.heading}: the least role that may use it is {least}"


def test_every_documented_sqlstate_is_a_valid_code():
    text = REFERENCE.read_text()
    codes = set(re.findall(r"^\| ([0-9A-Z]{5}) \|", text, re.M))
    assert codes, "the reference lists errors by SQLSTATE"
    known = {"22004", "22023", "22P02", "P0002", "42501", "55000", "25006", "58P01", "XX001", "2D000", "57014"}
    # out of range, program limit exceeded, out of memory; syntax error, feature not supported (what-if)
    assert codes <= known | {"22003", "54000", "53200", "42601", "0A000"}
