"""Lint and consistency checks over the source tree, so `make test` reports them with everything else."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import pganalytics_ml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
RUFF = Path(sys.executable).parent / "ruff"


def test_ruff_check():
    result = subprocess.run([RUFF, "check", "--quiet", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format():
    result = subprocess.run([RUFF, "format", "--check", "--quiet", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, "run 'ruff format .':\n" + result.stdout + result.stderr


def test_package_version_is_the_extension_version():
    control = (ROOT / "pganalytics_ml.control").read_text()
    version = re.search(r"default_version = '([^']+)'", control).group(1)
    assert pganalytics_ml.__version__ == version
    pyproject = (ROOT / "python_pkg" / "pyproject.toml").read_text()
    assert f'version = "{version}"' in pyproject


def test_runtime_pins_match_the_package_dependencies():
    pins = {
        line.split("==")[0]: line.strip()
        for line in (ROOT / "requirements" / "runtime.txt").read_text().splitlines()
        if "==" in line
    }
    pyproject = (ROOT / "python_pkg" / "pyproject.toml").read_text()
    for dep in re.findall(r'^\s+"([^"]+==[^"]+)",$', pyproject, re.M):
        assert pins[dep.split("==")[0]] == dep


def test_pgspot_finds_nothing_in_the_install_script():
    # PL/Python bodies are opaque to pgspot; the search_path test covers what they run.
    script = ROOT / "extension" / f"pganalytics_ml--{pganalytics_ml.__version__}.sql"
    subprocess.run(["make", "-s", str(script.relative_to(ROOT))], cwd=ROOT, check=True, capture_output=True)
    pgspot = Path(sys.executable).parent / "pgspot"
    # The worker procedures commit, so they cannot pin search_path with SET: their PL/pgSQL writes every
    # operator schema-qualified, and test_search_path runs them under a hostile search_path.
    committing = [
        "pganalytics_ml.run_jobs(max_jobs integer,max_seconds integer,kinds text[])",
        "pganalytics_ml.run_snapshots(every_seconds integer,within_seconds integer)",
    ]
    # The what-if entry points run as the caller (SECURITY INVOKER) and hand the caller's own search_path on:
    # the caller's text must resolve as the caller would run it. Every object they name is schema-qualified.
    invoker = [
        "extschema.pgml_predict_sql(sql text,scenario jsonb,server_id text)",
        "extschema.pgml_predict(query_hash bigint,server_id text,scenario jsonb)",
        "extschema.pgml_predict_json(query_hash bigint,server_id text,scenario jsonb)",
    ]
    allowed = [arg for proc in committing + invoker for arg in ("--proc-without-search-path", proc)]
    result = subprocess.run(
        [pgspot, "--plpgsql", "--ignore-lang", "plpython3u", *allowed, script], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Errors: 0 Warnings: 0 Unknown: 0" in result.stdout
