"""Measure the peak memory of `symphony send` as the input file grows.

For each size (10,000, 100,000 and 1,000,000 messages by default) the script writes a JSON
Lines file into a temporary directory and runs `symphony send` on it as a child process in
each output mode. It prints each child's peak resident set size (ru_maxrss from wait4).

    python benchmarks/memory.py
    python benchmarks/memory.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

SQLite runs write a new database file per run. With --database-url (or
SYMPHONY_BENCH_DATABASE_URL) the same runs go to PostgreSQL too, into a database named
symphony_bench_<pid> that the script creates and drops. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from workload import bench_database, write_jsonl

URL_VARIABLE = "SYMPHONY_BENCH_DATABASE_URL"
TARGET_MB = 200
TABLE = "bench_memory"

# Output modes. The table keeps every result it will print: the first --table-limit (1,000)
# enqueued messages and every one that was not enqueued, so its memory is bounded only
# while few messages fail. JSON Lines and --report write each result as it completes.
MODES = {
    "jsonl": ["--format", "jsonl"],
    "jsonl+report": ["--format", "jsonl", "--report", "{report}"],
    "table": [],
    "table --quiet": ["--quiet"],
}


@dataclasses.dataclass
class Run:
    store: str
    mode: str
    messages: int
    peak_mb: float
    seconds: float


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def symphony_command() -> str:
    beside = Path(sys.executable).parent / "symphony"
    found = str(beside) if beside.exists() else shutil.which("symphony")
    if found is None:
        sys.exit("symphony is not installed in this environment; run: python -m pip install -e .")
    return found


def run_child(command: list[str], cwd: Path) -> tuple[float, float]:
    """Run one child with stdout to /dev/null and return its peak RSS in MB and its wall time in seconds."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("SYMPHONY_")}
    started = time.perf_counter()
    with open(os.devnull, "wb") as devnull:
        child = subprocess.Popen(command, cwd=cwd, env=environment, stdout=devnull, stderr=subprocess.PIPE)
        stderr = child.stderr.read()
        # wait4 reports this child's own usage, whereas RUSAGE_CHILDREN is the maximum over all children.
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {child.returncode}: {stderr.decode()[-2000:]}")
    return usage.ru_maxrss / 1024, seconds  # ru_maxrss is in kilobytes on Linux


@contextlib.contextmanager
def postgres_database(server_url: str | None) -> Iterator[str | None]:
    """Create a database of our own for the PostgreSQL runs, yield its URL and drop it after."""
    if not server_url:
        yield None
        return
    with bench_database(server_url) as url:
        yield url


def drop_postgres_tables(url: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as connection:
        for suffix in ("", "_keys", "_attempts"):
            connection.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(TABLE + suffix)))


def measure_size(count: int, workdir: Path, postgres_url: str | None) -> list[Run]:
    jsonl = workdir / f"messages-{count}.jsonl"
    progress(f"writing {count:,} messages to {jsonl.name}")
    write_jsonl(jsonl, count)
    runs = []
    stores = [("sqlite", None)] + ([("postgresql", postgres_url)] if postgres_url else [])
    for store, url in stores:
        for mode, arguments in MODES.items():
            database = workdir / "bench.db"
            if store == "sqlite":
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{database}{suffix}").unlink(missing_ok=True)
                url = str(database)
            else:
                drop_postgres_tables(url)
            report = workdir / "report.jsonl"
            command = [symphony_command(), "send", str(jsonl), "--database-url", url, "--table", TABLE,
                       *(argument.format(report=report) for argument in arguments)]
            peak_mb, seconds = run_child(command, workdir)
            report.unlink(missing_ok=True)
            runs.append(Run(store, mode, count, peak_mb, seconds))
            progress(f"  {store} {mode}: {count:,} messages, peak RSS {peak_mb:.1f} MB, {seconds:.1f} s")
    jsonl.unlink()
    return runs


def print_runs(runs: list[Run], sizes: list[int]) -> None:
    print(f"{'store':<11} {'output':<14}" + "".join(f" {f'{size:,} msgs':>14}" for size in sizes)
          + f" {'largest/smallest':>17}")
    for store, mode in dict.fromkeys((run.store, run.mode) for run in runs):
        peaks = {run.messages: run.peak_mb for run in runs if (run.store, run.mode) == (store, mode)}
        cells = "".join(f" {f'{peaks[size]:.1f} MB':>14}" for size in sizes)
        print(f"{store:<11} {mode:<14}{cells} {peaks[sizes[-1]] / peaks[sizes[0]]:>16.2f}x")
    largest = max(sizes)
    worst = max((run for run in runs if run.messages == largest), key=lambda run: run.peak_mb)
    verdict = "PASS" if worst.peak_mb < TARGET_MB else "MISS"
    print(f"\n{verdict}  peak RSS at {largest:,} messages: at most {worst.peak_mb:.1f} MB "
          f"({worst.store}, {worst.mode}; target < {TARGET_MB} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="comma-separated message counts (default: 10000,100000,1000000)")
    parser.add_argument("--database-url", default=os.environ.get(URL_VARIABLE),
                        help=f"also measure on this PostgreSQL server (default: ${URL_VARIABLE}, else SQLite only)")
    arguments = parser.parse_args()
    sizes = sorted(int(size.replace("_", "")) for size in arguments.sizes.split(","))

    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="symphony-memory-") as directory, \
            postgres_database(arguments.database_url) as postgres_url:
        for count in sizes:
            runs += measure_size(count, Path(directory), postgres_url)

    print(f"symphony send peak RSS (ru_maxrss of each child process); Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs")
    print_runs(runs, sizes)


if __name__ == "__main__":
    main()
