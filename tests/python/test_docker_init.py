"""The Docker image's first start, without Docker: its init script and entrypoint, run as the image runs them.

The official postgres entrypoint runs /docker-entrypoint-initdb.d/* once, on a fresh cluster, with
POSTGRES_USER and POSTGRES_DB exported and psql on PATH. Here the same script runs against a fresh
throwaway cluster configured with the settings the image appends to postgresql.conf.sample.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgcluster import PG_BIN, Cluster

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
INIT_SCRIPT = DOCKER / "initdb.sh"
ENTRYPOINT = DOCKER / "entrypoint.sh"
USER, DATABASE = "pganalytics", "pganalytics"
JOBS = {
    "pganalytics_ml:snapshot",
    "pganalytics_ml:drain",
    "pganalytics_ml:watchdog",
    "pganalytics_ml:retrain",
    "pganalytics_ml:cleanup",
    "pganalytics_ml:patterns",
    "pganalytics_ml:plans",
}


def image_settings() -> dict[str, str]:
    """The settings docker/postgresql.conf adds to every cluster the image initializes."""
    settings = {}
    for line in (DOCKER / "postgresql.conf").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, value = (part.strip() for part in line.split("=", 1))
            settings[name] = value.strip("'")
    return settings


def container_env(cluster: Cluster, database: str) -> dict[str, str]:
    """What the entrypoint gives the init scripts; PGHOST and PGPORT stand for the temporary server's socket."""
    return {
        "PATH": f"{PG_BIN}:/usr/bin:/bin",
        "POSTGRES_USER": USER,
        "POSTGRES_DB": database,
        "POSTGRES_PASSWORD": "secret",
        "PGPASSWORD": "secret",
        "PGDATA": str(cluster.data_dir),
        "PGHOST": str(cluster.socket_dir),
        "PGPORT": str(cluster.port),
        "LANG": "C.UTF-8",
    }


def run_init(cluster: Cluster, database: str = DATABASE) -> subprocess.CompletedProcess[str]:
    return subprocess.run([INIT_SCRIPT], env=container_env(cluster, database), capture_output=True, text=True)


@pytest.fixture(scope="module")
def fresh() -> Iterator[Cluster]:
    """A new cluster as the entrypoint leaves it before the init scripts: POSTGRES_USER and POSTGRES_DB exist."""
    cluster = Cluster(name="pganalytics_ml-docker", settings={**image_settings(), "cron.database_name": DATABASE})
    cluster.init().start()
    try:
        cluster.execute(f"CREATE ROLE {USER} SUPERUSER LOGIN")
        cluster.execute(f"CREATE DATABASE {DATABASE} OWNER {USER}")
        yield cluster
    finally:
        cluster.destroy()


def test_the_image_preloads_what_the_extension_needs():
    settings = image_settings()
    assert settings["shared_preload_libraries"].split(",") == ["pg_stat_statements", "pg_cron"]
    assert "cron.database_name" not in settings  # set at start, to POSTGRES_DB


def test_first_start_creates_the_extensions_and_schedules(fresh: Cluster):
    result = run_init(fresh)
    assert result.returncode == 0, result.stderr
    extensions = {row[0] for row in fresh.execute("SELECT extname FROM pg_extension", dbname=DATABASE)}
    assert {"pg_stat_statements", "pg_cron", "pganalytics_ml", "plpython3u"} <= extensions
    jobs = fresh.execute(
        "SELECT jobname, database, username, active FROM cron.job WHERE jobname LIKE 'pganalytics\\_ml:%'",
        dbname=DATABASE,
    )
    assert {name for name, *_ in jobs} == JOBS
    assert all((database, username, active) == (DATABASE, USER, True) for _, database, username, active in jobs)
    for name in JOBS:
        assert name in result.stdout  # pgml_schedule() reported what it registered

    status = fresh.execute("SELECT pgml_status()", dbname=DATABASE)[0][0]
    assert status["scheduler"]["pg_cron_installed"] and status["pg_stat_statements"]["installed"]
    assert status["status"] == "healthy"

    again = run_init(fresh)  # harmless if run again: the same jobs, updated in place
    assert again.returncode == 0, again.stderr
    assert fresh.execute("SELECT count(*) FROM cron.job", dbname=DATABASE) == [(len(JOBS),)]


def test_a_default_database_that_is_not_the_cron_database_is_refused(fresh: Cluster):
    fresh.execute(f"CREATE DATABASE elsewhere OWNER {USER}")
    result = run_init(fresh, database="elsewhere")
    assert result.returncode != 0
    assert "cron.database_name is pganalytics, but pganalytics_ml is being set up in database elsewhere" in (
        result.stderr
    )
    assert fresh.execute("SELECT count(*) FROM pg_extension", dbname="elsewhere") == [(1,)]  # plpgsql only


@pytest.fixture
def official_entrypoint(tmp_path: Path) -> Path:
    """A stand-in docker-entrypoint.sh that prints the arguments the image's entrypoint passes on."""
    fake = tmp_path / "docker-entrypoint.sh"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    return tmp_path


@pytest.mark.parametrize(
    ("env", "args", "passed_on"),
    [
        ({"POSTGRES_DB": "pganalytics", "POSTGRES_USER": "admin"}, ["postgres"], "pganalytics"),
        ({"POSTGRES_USER": "admin"}, ["postgres"], "admin"),
        ({}, ["postgres"], "postgres"),
        ({"POSTGRES_DB": "app"}, ["-c", "work_mem=64MB"], "app"),
    ],
)
def test_the_entrypoint_sets_cron_database_name_to_the_default_database(
    official_entrypoint: Path, env: dict[str, str], args: list[str], passed_on: str
):
    out = subprocess.run(
        [ENTRYPOINT, *args],
        env={"PATH": f"{official_entrypoint}:{os.environ['PATH']}", **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    extra = [a for a in args if a != "postgres"]
    assert out == ["postgres", "-c", f"cron.database_name={passed_on}", *extra]


def test_the_entrypoint_reads_the_database_from_a_file_and_leaves_other_commands_alone(
    official_entrypoint: Path, tmp_path: Path
):
    secret = tmp_path / "db"
    secret.write_text("from_file")
    env = {"PATH": f"{official_entrypoint}:{os.environ['PATH']}", "POSTGRES_DB_FILE": str(secret)}
    run = [ENTRYPOINT, "postgres"]
    assert subprocess.run(run, env=env, capture_output=True, text=True, check=True).stdout.splitlines()[2] == (
        "cron.database_name=from_file"
    )
    other = subprocess.run([ENTRYPOINT, "bash", "-c", "true"], env=env, capture_output=True, text=True, check=True)
    assert other.stdout.splitlines() == ["bash", "-c", "true"]


def test_the_dockerfile_builds_with_the_make_targets_and_installs_these_files():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM postgres:15-bookworm$", dockerfile, re.M)
    assert "make deps DEV_TOOLS=0 && make install" in dockerfile
    assert "cat docker/postgresql.conf >> /usr/share/postgresql/postgresql.conf.sample" in dockerfile
    assert "docker/initdb.sh /docker-entrypoint-initdb.d/" in dockerfile
    assert re.search(r'^ENTRYPOINT \["pganalytics_ml-entrypoint.sh"\]$', dockerfile, re.M)
    assert "docker/entrypoint.sh /usr/local/bin/pganalytics_ml-entrypoint.sh" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {".venv", "demo/", "tests/node/node_modules/", ".git"} <= set(ignored)
    needed = ("sql", "plpython", "python_pkg", "tools", "docker", "requirements", "Makefile", "pganalytics_ml.control")
    assert not [line for line in ignored if line.rstrip("/") in needed]
