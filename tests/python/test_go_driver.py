"""docs/go-integration.md through the Go backend's own driver: Debian's Go and lib/pq, offline.

tests/go/ is built in GOPATH mode against the lib/pq Debian packages (golang-github-lib-pq-dev, in
/usr/share/gocode); nothing is fetched. It reads the statements from the doc, runs every one as a login
role holding only the grants the doc asks for, on real history, decodes each answer into the structs of
the backend's ML client and branches on the SQLSTATE of each documented error through *pq.Error.
The doc's Go example is compiled and run against the same database.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Database
from history_builder import History, statements
from pgcluster import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "go-integration.md"
GO_TEST = ROOT / "tests" / "go"
DEBIAN_GOPATH = "/usr/share/gocode"  # golang-github-lib-pq-dev installs github.com/lib/pq here
SERVER = "db-1"
BIG_QUERYID = -4800823524040242111  # beyond 2**53, negative: a float64 would round it
QUERIES = statements(6) | {BIG_QUERYID: 12.5}
GO_BLOCK = re.compile(r"```go\n(.*?)```", re.S)
CONTRACT_BLOCK = re.compile(r"```sql\n-- contract: ([\w-]+)\n(.*?)```", re.S)


def go_env(work: Path) -> dict[str, str]:
    """GOPATH mode with Debian's sources only: no module proxy, no network, no cgo."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO")}
    return env | {
        "GO111MODULE": "off",
        "GOPATH": f"{work / 'gopath'}:{DEBIAN_GOPATH}",
        "GOCACHE": os.environ.get("GOCACHE") or str(Path(tempfile.gettempdir()) / "pganalytics_ml-go-cache"),
        "GOPROXY": "off",
        "GOFLAGS": "",
        "CGO_ENABLED": "0",
    }


def go(work: Path, *args: str | Path, cwd: Path) -> None:
    go_bin = shutil.which("go")
    assert go_bin, "Go is missing: make deps installs golang-go and golang-github-lib-pq-dev"
    result = subprocess.run([go_bin, *map(str, args)], cwd=cwd, env=go_env(work), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="session")
def go_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("go")


@pytest.fixture(scope="session")
def contract_test(go_work: Path) -> Path:
    """tests/go/ compiled into a test binary."""
    binary = go_work / "contract.test"
    go(go_work, "vet", ".", cwd=GO_TEST)
    go(go_work, "test", "-c", "-o", binary, ".", cwd=GO_TEST)
    return binary


@pytest.fixture
def roles(db: Database) -> Iterator[dict[str, str]]:
    """The backend (pgml_trainer, as the doc says), an administrator, and one without grants."""
    names = {"backend": f"{db.name}_backend", "admin": f"{db.name}_admin", "stranger": f"{db.name}_stranger"}
    db.conn.execute(f"CREATE ROLE {names['backend']} LOGIN IN ROLE pgml_trainer")
    db.conn.execute(f"CREATE ROLE {names['admin']} LOGIN IN ROLE pgml_admin")
    db.conn.execute(f"CREATE ROLE {names['stranger']} LOGIN")
    yield names
    for name in names.values():
        db.conn.execute(f"DROP OWNED BY {name}")
        db.conn.execute(f"DROP ROLE {name}")


LOCAL_QUERY = "SELECT count(*) FROM public.go_orders WHERE customer_id = $1"


@pytest.fixture
def history(db: Database) -> Database:
    History(db.conn, SERVER).steady(QUERIES, intervals=30)
    # A statement of the database itself that an index would help: for the 'optimized' scenario.
    db.conn.execute("CREATE EXTENSION IF NOT EXISTS hypopg")
    db.conn.execute("CREATE TABLE public.go_orders (id int PRIMARY KEY, customer_id int, total int)")
    db.conn.execute("INSERT INTO public.go_orders SELECT g, g % 1000, g % 97 FROM generate_series(1, 50000) g")
    db.conn.execute("ANALYZE public.go_orders")
    db.conn.execute("SET pganalytics_ml.plan_new_statements = off")  # planned below, by hand: no job queued
    db.conn.execute("SELECT * FROM pgml_snapshot()")
    for round_ in range(3):
        for value in range(10):
            db.conn.execute("SELECT count(*) FROM public.go_orders WHERE customer_id = %s", (value + round_,))
        db.conn.execute("SELECT * FROM pgml_snapshot()")
    db.conn.execute("SELECT * FROM pgml_capture_plans()")
    db.conn.execute("RESET pganalytics_ml.plan_new_statements")
    return db


def local_query_hash(db: Database) -> int:
    return db.one("SELECT queryid FROM pganalytics_ml.statements WHERE query = %s", (LOCAL_QUERY,))


def dsn(db: Database) -> str:
    return f"host={db.cluster.socket_dir} port={db.cluster.port} dbname={db.name} sslmode=disable"


def run_contract(binary: Path, db: Database, roles: dict[str, str], doc: Path = DOC) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PGML_DOC": str(doc),
        "PGML_DSN": dsn(db),
        "PGML_SERVER": SERVER,
        "PGML_BACKEND_ROLE": roles["backend"],
        "PGML_ADMIN_ROLE": roles["admin"],
        "PGML_STRANGER_ROLE": roles["stranger"],
        "PGML_WORKER_ROLE": "postgres",
        "PGML_QUERY_HASHES": ",".join(map(str, QUERIES)),
        "PGML_BIG_QUERY_HASH": str(BIG_QUERYID),
        "PGML_LOCAL_QUERY_HASH": str(local_query_hash(db) or 0),
    }
    return subprocess.run([binary, "-test.v", "-test.count=1"], env=env, capture_output=True, text=True, timeout=600)


def test_every_documented_statement_runs_through_lib_pq(history: Database, roles: dict[str, str], contract_test):
    result = run_contract(contract_test, history, roles)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--- PASS: TestContract" in result.stdout
    documented = [name for name, _ in CONTRACT_BLOCK.findall(DOC.read_text())]
    assert f"ran {len(documented)} documented statements through lib/pq" in result.stdout


def test_a_statement_added_to_the_doc_fails_until_go_runs_it(db: Database, roles, contract_test, tmp_path: Path):
    doc = tmp_path / "go-integration.md"
    doc.write_text(DOC.read_text() + "\n```sql\n-- contract: what_if\nSELECT 1 AS one\n```\n")
    result = run_contract(contract_test, db, roles, doc)
    assert result.returncode != 0
    assert "documented but unknown to the Go test: [what_if]" in result.stdout


def example_source() -> str:
    (example,) = [block for block in GO_BLOCK.findall(DOC.read_text()) if block.startswith("package main")]
    return example


def normalized(sql: str) -> str:
    return " ".join(sql.split())


def test_the_example_uses_the_documented_statements():
    documented = {normalized(sql) for _, sql in CONTRACT_BLOCK.findall(DOC.read_text())}
    used = [normalized(s) for s in re.findall(r"`([^`]*)`", example_source()) if s.lstrip().startswith("SELECT")]
    assert used and [sql for sql in used if sql not in documented] == []


def test_the_example_compiles_and_runs(history: Database, roles: dict[str, str], go_work: Path, tmp_path: Path):
    db = history
    source = tmp_path / "example" / "main.go"
    source.parent.mkdir()
    source.write_text(example_source())
    binary = tmp_path / "example.bin"
    go(go_work, "vet", ".", cwd=source.parent)
    go(go_work, "build", "-o", binary, ".", cwd=source.parent)

    env = {**os.environ, "DATABASE_URL": f"{dsn(db)} user={roles['backend']}"}
    example = subprocess.Popen(
        [binary, "-server", SERVER, "--", str(BIG_QUERYID), "12345"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: example.poll() is not None or db.one("SELECT count(*) FROM pganalytics_ml.jobs"),
            60,
            what="the example to queue training",
        )
        assert example.returncode is None, example.communicate()
        db.conn.execute("CALL pganalytics_ml.run_jobs()")  # the worker pg_cron runs every minute
        out, err = example.communicate(timeout=120)
    finally:
        example.kill()
    assert example.returncode == 0, out + err
    model_id = db.one("SELECT model_id FROM pganalytics_ml.models WHERE is_active")
    before, after = db.all(
        "SELECT predicted_ms, source FROM pganalytics_ml.predictions WHERE queryid = %s ORDER BY prediction_id",
        (BIG_QUERYID,),
    )
    assert (before[1], after[1]) == ("baseline", "model")  # no model before training, the new one after
    lines = out.splitlines()
    assert len(lines) == 5, out
    assert lines[0].startswith(f"query {BIG_QUERYID}: {before[0]:.2f} ms") and lines[0].endswith("source baseline")
    assert lines[1].startswith("query 12345: 404 ") and lines[4].startswith("query 12345: 404 ")
    assert re.fullmatch(rf"training job [0-9a-f-]{{36}}: completed, model {model_id} \(r² [0-9.-]+\)", lines[2])
    assert lines[3].startswith(f"query {BIG_QUERYID}: {after[0]:.2f} ms") and lines[3].endswith("source model")
