"""Runs every bench/bench_*.py and writes their tables to bench/RESULTS.md with the date, machine and versions."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def machine() -> str:
    cpus = os.cpu_count()
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    server = subprocess.run(["/usr/lib/postgresql/15/bin/postgres", "--version"], capture_output=True, text=True)
    return f"{platform.node()}: {cpus} cores, {mem_gib:.0f} GiB, {platform.platform()}, {server.stdout.strip()}"


def main() -> int:
    sections = []
    failed = []
    for script in sorted(BENCH.glob("bench_*.py")):
        print(f"==> {script.name}", flush=True)
        result = subprocess.run([sys.executable, script], capture_output=True, text=True)
        print(result.stdout, end="")
        if result.returncode != 0:
            print(result.stderr, file=sys.stderr)
            failed.append(script.name)
        sections.append(
            f"## {script.stem}\n\n{(script.read_text().split(chr(34) * 3)[1]).strip()}\n\n"
            f"```\n{result.stdout.strip()}\n```\n"
        )
    header = (
        "# Benchmark results\n\n"
        f"Written by `make bench` on {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC.\n\n"
        f"Machine: {machine()}\n\n"
    )
    (BENCH / "RESULTS.md").write_text(header + "\n".join(sections))
    print(f"\nwrote {BENCH / 'RESULTS.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
