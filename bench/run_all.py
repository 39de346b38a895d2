"""Runs every bench/bench_*.py and writes their tables to bench/RESULTS.md with the date, machine and versions.

Each benchmark prints Markdown (tables, then one 'meets:' or 'MISSES:' line per target) on stdout and
its progress on stderr; RESULTS.md gathers the verdicts first, then every benchmark's output and the
plots it wrote to bench/plots/.

    python bench/run_all.py                 every benchmark
    python bench/run_all.py jobs snapshot   only bench_jobs.py and bench_snapshot.py
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PLOTS = BENCH / "plots"
PG_BIN = Path(os.environ.get("PGML_PG_BIN", "/usr/lib/postgresql/15/bin"))
VERDICT = re.compile(r"^\s*(meets|MISSES): (.*)$")


def machine() -> str:
    cpus = os.cpu_count()
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{platform.node()}: {cpus} cores, {mem_gib:.0f} GiB, {platform.platform()}; load average at start {load}"


def versions() -> str:
    def control(path: Path) -> str:
        text = path.read_text() if path.exists() else ""
        found = re.search(r"default_version\s*=\s*'([^']+)'", text)
        return found.group(1) if found else "?"

    server = subprocess.run([PG_BIN / "postgres", "--version"], capture_output=True, text=True).stdout.strip()
    libdir = f"/usr/local/lib/pganalytics_ml/{control(ROOT / 'pganalytics_ml.control')}"
    libraries = subprocess.run(
        [
            "/usr/bin/python3",
            "-c",
            f"import sys; sys.path.insert(0, {libdir!r}); import numpy, sklearn; "
            "print(f'Python {sys.version.split()[0]} (PL/Python), scikit-learn {sklearn.__version__}, "
            "numpy {numpy.__version__}')",
        ],
        capture_output=True,
        text=True,
    ).stdout.strip()
    commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True)
    cron = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", f"postgresql-{_major(server)}-cron"], capture_output=True, text=True
    ).stdout.strip() or control(Path(f"/usr/share/postgresql/{_major(server)}/extension/pg_cron.control"))
    return (
        f"{server}, pg_cron {cron}, pganalytics_ml {control(ROOT / 'pganalytics_ml.control')} "
        f"(git {commit.stdout.strip() or '?'}); {libraries or 'scikit-learn: not found in ' + libdir}"
    )


def _major(server_version: str) -> str:
    found = re.search(r"(\d+)\.", server_version)
    return found.group(1) if found else "15"


def run(script: Path) -> tuple[str, int, float]:
    """The benchmark's stdout (also echoed) and exit status; its stderr goes straight to ours."""
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, script], stdout=subprocess.PIPE, text=True, cwd=BENCH)
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    return "".join(lines), process.wait(), time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("only", nargs="*", help="benchmark names without bench_ and .py (default: all)")
    args = parser.parse_args()
    scripts = sorted(BENCH.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.only]
    started = time.monotonic()
    header_machine, header_versions = machine(), versions()
    sections, verdicts, failed = [], [], []
    for script in scripts:
        print(f"\n==> {script.name}", flush=True)
        out, status, seconds = run(script)
        if status != 0:
            failed.append(script.name)
        for line in out.splitlines():
            found = VERDICT.match(line)
            if found:
                verdicts.append((script.stem, found.group(1), found.group(2)))
        doc = script.read_text().split('"""')[1].strip()
        plots = sorted(PLOTS.glob(f"{script.stem.removeprefix('bench_')}*.png"))
        pictures = "".join(f"\n![{p.stem}](plots/{p.name})\n" for p in plots if p.stat().st_mtime >= started)
        outcome = "" if status == 0 else f"\n**Failed with exit status {status}** (see its stderr in the log).\n"
        sections.append(
            f"## {script.stem}\n\n{doc}\n\n_{seconds / 60:.1f} minutes._\n{outcome}\n{out.strip()}\n{pictures}"
        )
    total = time.monotonic() - started
    summary = "\n".join(
        f"| {bench} | {'meets' if verdict == 'meets' else '**misses**'} | {what} |" for bench, verdict, what in verdicts
    )
    header = (
        "# Benchmark results\n\n"
        f"Written by `make bench` on {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC in "
        f"{total / 60:.0f} minutes.\n\n"
        f"Machine: {header_machine}\n\n"
        f"Versions: {header_versions}\n\n"
        "Every figure is measured beside its baseline in the same run. The numbers depend on the machine and on\n"
        "what else runs on it: compare rows of one table, not runs on different machines.\n\n"
        "## Targets\n\n| benchmark | verdict | target and measured figure |\n|---|---|---|\n"
        f"{summary or '| - | - | no verdicts printed |'}\n\n"
    )
    results = BENCH / "RESULTS.md" if not args.only else BENCH / "out" / "RESULTS.partial.md"
    results.parent.mkdir(exist_ok=True)
    results.write_text(header + "\n".join(sections))
    print(f"\nwrote {results} after {total / 60:.1f} minutes" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
