"""Measure how fast symphony enqueues messages, against plain psycopg and sqlite-utils.

One run measures every method on the same machine, the same PostgreSQL server and the same
outbox table (symphony's own DDL, recreated before every run), and prints the median of
--runs runs per method with its ratio to COPY, then checks the targets in docs/benchmarks.md.

    python benchmarks/throughput.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

The script creates a database named symphony_bench_<pid> on that server, works only there
and drops it at the end, so the connecting role needs CREATEDB. SQLite runs use a temporary
directory. The sqlite-utils comparison needs `python -m pip install sqlite-utils` in the
same environment; without it that comparison is skipped. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from symphony_cli import dispatch_batch, load_settings
from symphony_cli.results import Status
from symphony_cli.stores.base import TableNames
from symphony_cli.stores.postgres import schema_statements

TABLE = "bench_outbox"
COLUMNS = ("type", "transport", "priority", "payload", "idempotency_key")
URL_VARIABLE = "SYMPHONY_BENCH_DATABASE_URL"
STARTUP_LIMIT_S = 0.3


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
    """One method's measured rates in messages per second, one per run."""

    name: str
    messages: int
    rates: list[float] = dataclasses.field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- data


def make_messages(count: int) -> list[dict]:
    """Return `count` messages with a unique key each and a payload of about 200 bytes of JSON."""
    messages = []
    for index in range(count):
        payload = {
            "to": f"customer-{index:07d}@example.com",
            "subject": f"Your order {index:07d} has shipped",
            "order_id": index,
            "template": "order-shipped",
            "locale": "en-GB",
            "tracking_url": f"https://tracking.example.com/parcels/{index:012d}",
            "amount": round(index * 0.37 % 500, 2),
        }
        messages.append({"type": "EmailMessage", "transport": "email", "priority": 5,
                         "idempotency_key": f"order-shipped-{index:07d}", "payload": payload})
    return messages


def write_jsonl(messages: list[dict], path: Path) -> None:
    with path.open("w", encoding="utf-8") as stream:
        for message in messages:
            stream.write(json.dumps(message, ensure_ascii=False) + "\n")


def row_of(message: dict) -> tuple:
    return (message["type"], message["transport"], message["priority"],
            json.dumps(message["payload"], separators=(",", ":")), message["idempotency_key"])


# -- PostgreSQL


@contextlib.contextmanager
def bench_database(server_url: str) -> Iterator[str]:
    """Create a database of our own on the server, yield its connection string, drop it after."""
    name = f"symphony_bench_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(server_url, dbname=name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def recreate_tables(url: str) -> None:
    """Drop and create the outbox, keys and attempts tables with symphony's DDL."""
    tables = TableNames(None, TABLE)
    with psycopg.connect(url, autocommit=True) as connection:
        for name in (tables.messages, tables.keys, tables.attempts):
            connection.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
        for statement in schema_statements(tables):
            connection.execute(statement)


def count_rows(url: str) -> int:
    with psycopg.connect(url) as connection:
        return connection.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(TABLE))).fetchone()[0]


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


def dispatch_through_api(url: str, messages: list[dict], batch_size: int, expected: Status) -> None:
    settings = load_settings(env={}, flags={"database.url": (url, "--database-url"),
                                            "database.table": (TABLE, "--table"),
                                            "batch.max_size": (batch_size, "--batch-size")})
    results = dispatch_batch(messages, settings=settings)
    wrong = [result for result in results if result.status is not expected]
    if wrong:
        raise RuntimeError(f"{len(wrong)} messages ended {wrong[0].status.value}, not {expected.value}: {wrong[0]}")


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def measure(figure: Figure, run: Callable[[], object], prepare: Callable[[], object] = lambda: None) -> None:
    for number in range(1, OPTIONS.runs + 1):
        prepare()
        seconds = timed(run)
        figure.rates.append(figure.messages / seconds)
        progress(f"  {figure.name}: run {number}: {figure.messages / seconds:,.0f} messages/s ({seconds:.2f} s)")


# -- whole processes


def tool_path(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def clean_environment() -> dict[str, str]:
    """Return the environment without SYMPHONY_* variables, so only the flags configure a run."""
    return {name: value for name, value in os.environ.items() if not name.startswith("SYMPHONY_")}


def run_process(command: list[str], cwd: Path, ok_codes: tuple[int, ...] = (0,)) -> float:
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd, env=clean_environment(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    if completed.returncode not in ok_codes:
        raise RuntimeError(f"{' '.join(command)} exited {completed.returncode}: {completed.stderr[-2000:]}")
    return seconds


def measure_process(figure: Figure, command: list[str], cwd: Path,
                    prepare: Callable[[], object] = lambda: None) -> None:
    for number in range(1, OPTIONS.runs + 1):
        prepare()
        seconds = run_process(command, cwd)
        figure.rates.append(figure.messages / seconds)
        progress(f"  {figure.name}: run {number}: {figure.messages / seconds:,.0f} messages/s ({seconds:.2f} s)")


# -- the measurements


def measure_postgres(url: str, messages: list[dict], jsonl: Path, workdir: Path) -> dict[str, Figure]:
    count = len(messages)
    subset = messages[:OPTIONS.per_row_messages]
    figures = {name: Figure(label, size) for name, label, size in (
        ("per_row", f"INSERT per message, autocommit ({len(subset):,} messages)", len(subset)),
        ("executemany", "psycopg executemany, one transaction", count),
        ("api_100", "dispatch_batch, batch 100", count),
        ("dup_100", "dispatch_batch again, all duplicates, batch 100", count),
        ("api_1000", "dispatch_batch, batch 1000", count),
        ("dup_1000", "dispatch_batch again, all duplicates, batch 1000", count),
        ("cli_100", "symphony send JSONL, batch 100", count),
        ("cli_1000", "symphony send JSONL, batch 1000", count),
        ("copy", "COPY (cursor.copy)", count),
    )}
    prepare = lambda: recreate_tables(url)  # noqa: E731

    progress("PostgreSQL: one INSERT per message")
    measure(figures["per_row"], lambda: insert_per_row(url, subset), prepare)
    progress("PostgreSQL: executemany")
    measure(figures["executemany"], lambda: insert_executemany(url, messages), prepare)
    for size in (100, 1000):
        progress(f"PostgreSQL: dispatch_batch at batch size {size}, then again (all duplicates)")
        for number in range(1, OPTIONS.runs + 1):
            recreate_tables(url)
            for name, expected in ((f"api_{size}", Status.SENT), (f"dup_{size}", Status.DUPLICATE)):
                seconds = timed(lambda: dispatch_through_api(url, messages, size, expected))
                figures[name].rates.append(count / seconds)
                progress(f"  {figures[name].name}: run {number}: {count / seconds:,.0f} messages/s ({seconds:.2f} s)")
        if count_rows(url) != count:
            raise RuntimeError(f"expected {count} rows after dispatch_batch, found {count_rows(url)}")
    symphony = tool_path("symphony")
    for size in (100, 1000):
        progress(f"PostgreSQL: symphony send at batch size {size}")
        command = [symphony, "send", str(jsonl), "--database-url", url, "--table", TABLE,
                   "--batch-size", str(size)]
        measure_process(figures[f"cli_{size}"], command, workdir, prepare)
        if count_rows(url) != count:
            raise RuntimeError(f"expected {count} rows after symphony send, found {count_rows(url)}")
    progress("PostgreSQL: COPY")
    measure(figures["copy"], lambda: insert_copy(url, messages), prepare)
    return figures


def measure_sqlite(jsonl: Path, count: int, workdir: Path) -> dict[str, Figure]:
    figures = {"sqlite_send": Figure("symphony send JSONL, batch 100", count)}
    database = workdir / "bench.db"

    def remove_database() -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)

    progress("SQLite: symphony send")
    measure_process(figures["sqlite_send"], [tool_path("symphony"), "send", str(jsonl), "--database-url",
                                             str(database), "--table", TABLE], workdir, remove_database)
    sqlite_utils = tool_path("sqlite-utils")
    if sqlite_utils is None:
        progress("SQLite: sqlite-utils is not installed, so that comparison is skipped; "
                 "install it with: python -m pip install sqlite-utils")
        return figures
    figures["sqlite_utils"] = Figure("sqlite-utils insert --nl", count)
    progress("SQLite: sqlite-utils insert --nl")
    measure_process(figures["sqlite_utils"], [sqlite_utils, "insert", str(database), TABLE, str(jsonl), "--nl"],
                    workdir, remove_database)
    return figures


def measure_startup(workdir: Path) -> dict[str, float]:
    """Return the median wall time of `symphony --help` and `symphony config show`, in seconds."""
    symphony = tool_path("symphony")
    medians = {}
    for label, arguments in (("symphony --help", ["--help"]), ("symphony config show", ["config", "show"])):
        times = [run_process([symphony, *arguments], workdir) for _ in range(OPTIONS.startup_runs)]
        medians[label] = statistics.median(times)
        progress(f"start-up: {label}: median {medians[label]:.3f} s of {len(times)} runs")
    return medians


def psycopg_imported_for_sqlite(jsonl: Path, workdir: Path) -> bool:
    """Run `symphony send` on SQLite under -X importtime and report whether psycopg was imported."""
    sample = workdir / "sample.jsonl"
    with jsonl.open(encoding="utf-8") as source:
        sample.write_text("".join(source.readline() for _ in range(10)), encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "symphony_cli", "send", str(sample),
         "--database-url", str(workdir / "importtime.db")],
        cwd=workdir, env=clean_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"symphony send on SQLite exited {completed.returncode}: {completed.stderr[-2000:]}")
    imported = [line.rsplit("|", 1)[-1].strip() for line in completed.stderr.splitlines()
                if line.startswith("import time:")]
    return any(name == "psycopg" or name.startswith("psycopg.") for name in imported)


# -- report


def print_figures(figures: dict[str, Figure], copy_rate: float | None) -> None:
    print(f"{'method':<52} {'messages':>9} {'median msg/s':>13} {'vs COPY':>8}  runs (msg/s)")
    for figure in figures.values():
        ratio = f"{figure.median / copy_rate:.2f}" if copy_rate else "-"
        runs = ", ".join(f"{rate:,.0f}" for rate in figure.rates)
        print(f"{figure.name:<52} {figure.messages:>9,} {figure.median:>13,.0f} {ratio:>8}  {runs}")


def print_target(name: str, measured: float, needed: float, unit: str, higher_is_better: bool = True) -> None:
    passed = measured >= needed if higher_is_better else measured <= needed
    relation = ">=" if higher_is_better else "<="
    print(f"{'PASS' if passed else 'MISS'}  {name}: {measured:.2f}{unit} (target {relation} {needed:g}{unit})")


def print_targets(pg: dict[str, Figure], lite: dict[str, Figure], startup: dict[str, float],
                  psycopg_loaded: bool) -> None:
    rate = {name: figure.median for name, figure in {**pg, **lite}.items()}
    print("\nTargets (ratios of the medians above)")
    print_target("batch 1000 with deduplication / COPY", rate["api_1000"] / rate["copy"], 0.40, "x")
    print_target("batch 100 / INSERT per message", rate["api_100"] / rate["per_row"], 12, "x")
    print_target("all-duplicate rerun / first import, batch 100", rate["dup_100"] / rate["api_100"], 2, "x")
    print(f"      (at batch 1000: {rate['dup_1000'] / rate['api_1000']:.2f}x)")
    print_target("symphony send / dispatch_batch, batch 100", rate["cli_100"] / rate["api_100"], 0.70, "x")
    print(f"      (at batch 1000: {rate['cli_1000'] / rate['api_1000']:.2f}x)")
    if "sqlite_utils" in rate:
        print_target("SQLite: symphony send / sqlite-utils insert --nl",
                     rate["sqlite_send"] / rate["sqlite_utils"], 1.0, "x")
    elif "sqlite_send" in rate:
        print("SKIP  SQLite: sqlite-utils is not installed (python -m pip install sqlite-utils)")
    for label, seconds in startup.items():
        print_target(f"start-up: {label}, median", seconds, STARTUP_LIMIT_S, " s", higher_is_better=False)
    print(f"{'MISS' if psycopg_loaded else 'PASS'}  psycopg imported by symphony send on SQLite: "
          f"{'yes' if psycopg_loaded else 'no'}")


def parse_options() -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get(URL_VARIABLE),
                        help=f"PostgreSQL server to benchmark on (default: ${URL_VARIABLE})")
    parser.add_argument("--messages", type=int, default=100_000, help="messages per run (default: 100,000)")
    parser.add_argument("--per-row-messages", type=int, default=10_000,
                        help="messages per run for the slow INSERT-per-message method (default: 10,000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per method; the median is reported (default: 3)")
    parser.add_argument("--startup-runs", type=int, default=7, help="runs per start-up command (default: 7)")
    parser.add_argument("--skip-sqlite", action="store_true", help="measure PostgreSQL only")
    arguments = parser.parse_args()
    if not arguments.database_url:
        parser.error(f"give --database-url or set {URL_VARIABLE}, for example "
                     "postgresql://postgres@127.0.0.1:5432/postgres; the script creates and drops its own database")
    return Options(arguments.database_url, arguments.messages, min(arguments.per_row_messages, arguments.messages),
                   arguments.runs, arguments.startup_runs, arguments.skip_sqlite)


def main() -> None:
    messages = make_messages(OPTIONS.messages)
    payload_bytes = statistics.mean(len(row_of(message)[3]) for message in messages[:1000])
    with tempfile.TemporaryDirectory(prefix="symphony-bench-") as directory:
        workdir = Path(directory)
        jsonl = workdir / "messages.jsonl"
        write_jsonl(messages, jsonl)
        progress(f"{len(messages):,} messages, payload {payload_bytes:.0f} bytes of JSON on average, "
                 f"{jsonl.stat().st_size / 1e6:.1f} MB of JSONL")
        with bench_database(OPTIONS.database_url) as url:
            pg = measure_postgres(url, messages, jsonl, workdir)
        lite = {} if OPTIONS.skip_sqlite else measure_sqlite(jsonl, len(messages), workdir)
        startup = measure_startup(workdir)
        psycopg_loaded = psycopg_imported_for_sqlite(jsonl, workdir)

    print(f"symphony throughput: {len(messages):,} messages of about {payload_bytes:.0f} payload bytes, "
          f"median of {OPTIONS.runs} runs; Python {sys.version.split()[0]}, psycopg {psycopg.__version__}, "
          f"{os.cpu_count()} CPUs")
    print("\nPostgreSQL, one table with symphony's DDL, recreated before each run")
    print_figures(pg, pg["copy"].median)
    if lite:
        print("\nSQLite, whole processes on one JSONL file, a new database file each run")
        print_figures(lite, None)
    print_targets(pg, lite, startup, psycopg_loaded)


if __name__ == "__main__":
    OPTIONS = parse_options()
    main()
