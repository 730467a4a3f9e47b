"""Measure how fast symphony enqueues messages, against plain psycopg, COPY and sqlite-utils.

One run measures every method on the same machine, the same PostgreSQL server and the same
outbox table, which symphony's own DDL creates again before every run. The script prints the
median of --runs runs per method with its ratio to COPY, and checks the targets listed in
docs/benchmarks.md.

    python benchmarks/throughput.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

The script creates a database named symphony_bench_<pid> on that server, works only there
and drops it at the end, so the role needs CREATEDB. SQLite runs use a temporary directory.
The sqlite-utils comparison needs `python -m pip install sqlite-utils` in the same
environment, and is skipped without it. Progress goes to stderr, the results to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

from symphony_cli import dispatch_batch, load_settings
from symphony_cli.results import Status
from symphony_cli.stores.base import TableNames
from symphony_cli.stores.postgres import schema_statements

from workload import bench_database, make_messages, write_jsonl

TABLE = "bench_outbox"
COLUMNS = ("type", "transport", "priority", "payload", "idempotency_key")
URL_VARIABLE = "SYMPHONY_BENCH_DATABASE_URL"
STARTUP_LIMIT_S = 0.3
BATCH_SIZES = (100, 1000)  # the default batch.max_size, and a larger one


@dataclasses.dataclass(frozen=True)
class Options:
    database_url: str
    messages: int
    per_row_messages: int
    runs: int
    startup_runs: int
    skip_sqlite: bool


@dataclasses.dataclass
class Figure:
    """One method's rates in messages per second, one per run."""

    label: str
    messages: int
    rates: list[float] = dataclasses.field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    def add(self, seconds: float, run: int) -> None:
        self.rates.append(self.messages / seconds)
        progress(f"  {self.label}: run {run}: {self.messages / seconds:,.0f} messages/s ({seconds:.2f} s)")


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def row_of(message: dict) -> tuple:
    return (message["type"], message["transport"], message["priority"],
            json.dumps(message["payload"], separators=(",", ":")), message["idempotency_key"])


# -- PostgreSQL without symphony


def recreate_tables(url: str) -> None:
    """Drop the outbox, keys and attempts tables and create them with symphony's DDL."""
    tables = TableNames(None, TABLE)
    with psycopg.connect(url, autocommit=True) as connection:
        for name in (tables.messages, tables.keys, tables.attempts):
            connection.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
        for statement in schema_statements(tables):
            connection.execute(statement)


def check_row_count(url: str, expected: int, method: str) -> None:
    with psycopg.connect(url) as connection:
        found = connection.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(TABLE))).fetchone()[0]
    if found != expected:
        raise RuntimeError(f"{method}: expected {expected:,} rows in {TABLE}, found {found:,}")


def insert_query() -> sql.Composed:
    return sql.SQL("INSERT INTO {} ({}) VALUES (%s, %s, %s, %s::jsonb, %s)").format(
        sql.Identifier(TABLE), sql.SQL(", ").join(map(sql.Identifier, COLUMNS)))


def insert_per_row(url: str, messages: list[dict]) -> None:
    """Insert one message per statement with autocommit, as a naive producer does."""
    query = insert_query()
    with psycopg.connect(url, autocommit=True) as connection:
        for message in messages:
            connection.execute(query, row_of(message))


def insert_executemany(url: str, messages: list[dict]) -> None:
    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        cursor.executemany(insert_query(), [row_of(message) for message in messages])


def insert_copy(url: str, messages: list[dict]) -> None:
    query = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(TABLE), sql.SQL(", ").join(map(sql.Identifier, COLUMNS)))
    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        with cursor.copy(query) as copy:
            for message in messages:
                copy.write_row(row_of(message))


# -- symphony


def dispatch_through_api(url: str, messages: list[dict], batch_size: int, expected: Status) -> None:
    settings = load_settings(env={}, flags={"database.url": (url, "--database-url"),
                                            "database.table": (TABLE, "--table"),
                                            "batch.max_size": (batch_size, "--batch-size")})
    results = dispatch_batch(messages, settings=settings)
    wrong = [result for result in results if result.status is not expected]
    if wrong:
        raise RuntimeError(f"{len(wrong):,} messages ended {wrong[0].status.value}, not {expected.value}: {wrong[0]}")


def tool_path(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def clean_environment() -> dict[str, str]:
    """Return the environment without SYMPHONY_* variables, so that only flags configure a run."""
    return {name: value for name, value in os.environ.items() if not name.startswith("SYMPHONY_")}


def run_process(command: list[str], cwd: Path) -> float:
    """Run a command with stdout to /dev/null and return its wall time in seconds."""
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd, env=clean_environment(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {completed.returncode}: {completed.stderr[-2000:]}")
    return seconds


# -- the measurements


def measure_postgres(options: Options, url: str, messages: list[dict], jsonl: Path,
                     workdir: Path) -> dict[str, Figure]:
    """Measure every PostgreSQL method once per round, so that other load on the machine
    spreads over all methods instead of falling on one."""
    count = len(messages)
    subset = messages[:options.per_row_messages]
    figures = {"per_row": Figure(f"INSERT per message, autocommit ({len(subset):,} msgs)", len(subset)),
               "executemany": Figure("psycopg executemany, one transaction", count)}
    for size in BATCH_SIZES:
        figures[f"api_{size}"] = Figure(f"dispatch_batch, batch {size}", count)
        figures[f"dup_{size}"] = Figure(f"dispatch_batch again (all duplicates), batch {size}", count)
    for size in BATCH_SIZES:
        figures[f"cli_{size}"] = Figure(f"symphony send, table output, batch {size}", count)
        figures[f"cli_jsonl_{size}"] = Figure(f"symphony send --format jsonl, batch {size}", count)
    figures["copy"] = Figure("COPY (cursor.copy), one transaction", count)

    def send_command(size: int, output: list[str]) -> list[str]:
        return [tool_path("symphony"), "send", str(jsonl), "--database-url", url, "--table", TABLE,
                "--batch-size", str(size), *output]

    # Each step starts on new tables and names the figure it measures, and the row count it leaves.
    steps: list[tuple[str, Callable[[], object], int]] = [
        ("per_row", lambda: insert_per_row(url, subset), len(subset)),
        ("executemany", lambda: insert_executemany(url, messages), count),
    ]
    for size in BATCH_SIZES:
        steps.append((f"api_{size}", lambda size=size: dispatch_through_api(url, messages, size, Status.SENT), count))
        steps.append((f"cli_{size}", lambda size=size: run_process(send_command(size, []), workdir), count))
        steps.append((f"cli_jsonl_{size}",
                      lambda size=size: run_process(send_command(size, ["--format", "jsonl"]), workdir), count))
    steps.append(("copy", lambda: insert_copy(url, messages), count))

    for run in range(1, options.runs + 1):
        progress(f"PostgreSQL: round {run} of {options.runs}")
        for name, action, rows in steps:
            recreate_tables(url)
            figures[name].add(timed(action), run)
            check_row_count(url, rows, figures[name].label)
            if name.startswith("api_"):  # the same messages again: every one is a duplicate now
                size = int(name.removeprefix("api_"))
                seconds = timed(lambda: dispatch_through_api(url, messages, size, Status.DUPLICATE))
                figures[f"dup_{size}"].add(seconds, run)
    return figures


def measure_sqlite(options: Options, jsonl: Path, count: int, workdir: Path) -> dict[str, Figure]:
    database = workdir / "bench.db"
    send = [tool_path("symphony"), "send", str(jsonl), "--database-url", str(database), "--table", TABLE]
    figures = {"sqlite_send": Figure("symphony send, table output, batch 100", count),
               "sqlite_send_jsonl": Figure("symphony send --format jsonl, batch 100", count)}
    commands = {"sqlite_send": send, "sqlite_send_jsonl": [*send, "--format", "jsonl"]}
    sqlite_utils = tool_path("sqlite-utils")
    if sqlite_utils is None:
        progress("SQLite: sqlite-utils is not installed, so that comparison is skipped; "
                 "install it with: python -m pip install sqlite-utils")
    else:
        figures["sqlite_utils"] = Figure("sqlite-utils insert --nl", count)
        commands["sqlite_utils"] = [sqlite_utils, "insert", str(database), TABLE, str(jsonl), "--nl"]

    for run in range(1, options.runs + 1):
        progress(f"SQLite: round {run} of {options.runs}")
        for name, command in commands.items():
            for suffix in ("", "-wal", "-shm"):
                Path(f"{database}{suffix}").unlink(missing_ok=True)
            figures[name].add(run_process(command, workdir), run)
    return figures


def measure_startup(options: Options, workdir: Path) -> dict[str, float]:
    """Return the median wall time of `symphony --help` and `symphony config show`, in seconds."""
    symphony = tool_path("symphony")
    medians = {}
    for label, arguments in (("symphony --help", ["--help"]), ("symphony config show", ["config", "show"])):
        times = [run_process([symphony, *arguments], workdir) for _ in range(options.startup_runs)]
        medians[label] = statistics.median(times)
        progress(f"start-up: {label}: median {medians[label]:.3f} s of {len(times)} runs")
    return medians


def psycopg_loaded_for_sqlite(jsonl: Path, workdir: Path) -> bool:
    """Run `symphony send` on SQLite under -X importtime and return whether psycopg was imported."""
    sample = workdir / "sample.jsonl"
    with jsonl.open(encoding="utf-8") as source:
        sample.write_text("".join(source.readline() for _ in range(10)), encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "symphony_cli", "send", str(sample),
         "--database-url", str(workdir / "importtime.db")],
        cwd=workdir, env=clean_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"symphony send on SQLite exited {completed.returncode}: {completed.stderr[-2000:]}")
    modules = [line.rsplit("|", 1)[-1].strip() for line in completed.stderr.splitlines()
               if line.startswith("import time:")]
    return any(name == "psycopg" or name.startswith("psycopg.") for name in modules)


# -- report


def describe_machine(url: str) -> str:
    with psycopg.connect(url) as connection:
        server = connection.execute("SHOW server_version").fetchone()[0]
    cpu = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), cpu)
    return (f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, PostgreSQL {server}, "
            f"psycopg {psycopg.__version__}, SQLite {sqlite3.sqlite_version}")


def print_figures(figures: dict[str, Figure], reference: Figure | None, reference_name: str) -> None:
    print(f"{'method':<52} {'messages':>9} {'median msg/s':>13} {'vs ' + reference_name:>15}  runs (msg/s)")
    for figure in figures.values():
        ratio = f"{figure.median / reference.median:.2f}" if reference else "-"
        runs = ", ".join(f"{rate:,.0f}" for rate in figure.rates)
        print(f"{figure.label:<52} {figure.messages:>9,} {figure.median:>13,.0f} {ratio:>15}  {runs}")


def print_target(name: str, measured: float, needed: float, unit: str = "x", at_most: bool = False) -> None:
    passed = measured <= needed if at_most else measured >= needed
    relation = "<=" if at_most else ">="
    print(f"{'PASS' if passed else 'MISS'}  {name}: {measured:.2f}{unit} (target {relation} {needed:g}{unit})")


def print_targets(rates: dict[str, float], startup: dict[str, float], psycopg_loaded: bool) -> None:
    print("\nTargets, from the medians above")
    print_target("dispatch_batch at batch 1000 / COPY", rates["api_1000"] / rates["copy"], 0.40)
    print_target("dispatch_batch at batch 100 / INSERT per message", rates["api_100"] / rates["per_row"], 12)
    for size in BATCH_SIZES:
        print_target(f"all-duplicate rerun / first import, batch {size}",
                     rates[f"dup_{size}"] / rates[f"api_{size}"], 2)
    for size in BATCH_SIZES:
        print_target(f"symphony send (table output) / dispatch_batch, batch {size}",
                     rates[f"cli_{size}"] / rates[f"api_{size}"], 0.70)
        print(f"      with --format jsonl: {rates[f'cli_jsonl_{size}'] / rates[f'api_{size}']:.2f}x")
    if "sqlite_utils" in rates:
        print_target("SQLite: symphony send (table output) / sqlite-utils insert --nl",
                     rates["sqlite_send"] / rates["sqlite_utils"], 1)
        print(f"      with --format jsonl: {rates['sqlite_send_jsonl'] / rates['sqlite_utils']:.2f}x")
    else:
        print("SKIP  SQLite: sqlite-utils is not installed (python -m pip install sqlite-utils)")
    for label, seconds in startup.items():
        print_target(f"start-up: {label}, median", seconds, STARTUP_LIMIT_S, unit=" s", at_most=True)
    print(f"{'MISS' if psycopg_loaded else 'PASS'}  psycopg imported by symphony send on SQLite: "
          f"{'yes' if psycopg_loaded else 'no'}")


def parse_options() -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get(URL_VARIABLE),
                        help=f"PostgreSQL server to measure on (default: ${URL_VARIABLE})")
    parser.add_argument("--messages", type=int, default=100_000, help="messages per run (default: 100,000)")
    parser.add_argument("--per-row-messages", type=int, default=10_000,
                        help="messages per run of the slow INSERT-per-message method (default: 10,000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per method; the median is reported (default: 3)")
    parser.add_argument("--startup-runs", type=int, default=7, help="runs per start-up command (default: 7)")
    parser.add_argument("--skip-sqlite", action="store_true", help="measure PostgreSQL and start-up only")
    arguments = parser.parse_args()
    if not arguments.database_url:
        parser.error(f"give --database-url or set {URL_VARIABLE}, for example "
                     "postgresql://postgres@127.0.0.1:5432/postgres; the script creates and drops its own database")
    if arguments.runs < 1 or arguments.messages < 1:
        parser.error("--runs and --messages must be at least 1")
    return Options(arguments.database_url, arguments.messages, min(arguments.per_row_messages, arguments.messages),
                   arguments.runs, arguments.startup_runs, arguments.skip_sqlite)


def main() -> None:
    options = parse_options()
    messages = make_messages(options.messages)
    payload_bytes = statistics.mean(len(row_of(message)[3]) for message in messages[:1000])
    with tempfile.TemporaryDirectory(prefix="symphony-bench-") as directory:
        workdir = Path(directory)
        jsonl = workdir / "messages.jsonl"
        write_jsonl(jsonl, len(messages))
        progress(f"{len(messages):,} messages, {payload_bytes:.0f} payload bytes of JSON on average, "
                 f"{jsonl.stat().st_size / 1e6:.1f} MB of JSON Lines")
        with bench_database(options.database_url) as url:
            machine = describe_machine(url)
            postgres = measure_postgres(options, url, messages, jsonl, workdir)
        sqlite = {} if options.skip_sqlite else measure_sqlite(options, jsonl, len(messages), workdir)
        startup = measure_startup(options, workdir)
        psycopg_loaded = psycopg_loaded_for_sqlite(jsonl, workdir)

    print(f"symphony throughput: {len(messages):,} messages with {payload_bytes:.0f}-byte payloads, "
          f"median of {options.runs} runs each")
    print(f"machine: {machine}")
    print("\nPostgreSQL: one table with symphony's DDL, created again before each run")
    print_figures(postgres, postgres["copy"], "COPY")
    if sqlite:
        print("\nSQLite: whole processes on one JSON Lines file, a new database file each run")
        print_figures(sqlite, sqlite.get("sqlite_utils"), "sqlite-utils")
    rates = {name: figure.median for name, figure in {**postgres, **sqlite}.items()}
    print_targets(rates, startup, psycopg_loaded)


if __name__ == "__main__":
    main()
