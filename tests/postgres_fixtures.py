"""Provide PostgreSQL and PgBouncer servers to the test session as pytest fixtures.

Load it from ``tests/conftest.py`` with ``pytest_plugins = ("postgres_fixtures",)``.

The server is the one named by ``SYMPHONY_TEST_DATABASE_URL`` or, without it, a throwaway
cluster started from ``initdb`` and ``pg_ctl``. When neither is possible the fixtures skip,
except under ``CI=true``, where they fail so that a CI run never passes without PostgreSQL.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

DATABASE_URL_VARIABLE = "SYMPHONY_TEST_DATABASE_URL"

# initdb, postgres and pgbouncer exit with an error when run as root, so under root they run
# as this user.
SERVICE_USER = "postgres"

CONNECT_TIMEOUT_SECONDS = 10
STARTUP_TIMEOUT_SECONDS = 60
# A port picked as free can be taken before the server binds it, so start-up is retried.
STARTUP_ATTEMPTS = 3

# Maximum identifier length in PostgreSQL: NAMEDATALEN - 1 bytes, with the default NAMEDATALEN 64.
MAX_IDENTIFIER_LENGTH = 63

HOW_TO_PROVIDE_POSTGRES = (
    f"set {DATABASE_URL_VARIABLE} to a superuser URL such as "
    "postgresql://postgres@127.0.0.1:5432/postgres, or put the PostgreSQL server binaries "
    "(initdb, pg_ctl) on PATH, e.g. `apt-get install postgresql` and "
    "PATH=/usr/lib/postgresql/15/bin:$PATH"
)


@dataclass(frozen=True)
class PostgresServer:
    """A PostgreSQL server for the tests, with ``url`` naming its maintenance database.

    With ``SYMPHONY_TEST_DATABASE_URL`` set, ``url`` is that value unchanged.
    """

    url: str
    host: str
    port: int
    user: str


def fresh_schema_name(prefix: str = "t") -> str:
    """Return a new lowercase identifier ``<prefix>_<12 hex digits>``, unique per call."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", prefix):
        raise ValueError(
            f"schema name prefix {prefix!r} is invalid; use lowercase letters, digits and "
            "underscores, starting with a letter or underscore"
        )

    name = f"{prefix}_{secrets.token_hex(6)}"
    if len(name) > MAX_IDENTIFIER_LENGTH:
        raise ValueError(
            f"schema name prefix {prefix!r} is too long; PostgreSQL keeps "
            f"{MAX_IDENTIFIER_LENGTH} characters and the suffix takes 13"
        )
    return name


def is_ci() -> bool:
    """Tell whether the environment variable CI marks this run as a CI run."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def report_unavailable(message: str) -> None:
    """Fail the requesting test under CI and skip it elsewhere, with ``message`` as reason."""
    if is_ci():
        ci_value = os.environ["CI"]
        pytest.fail(f"{message} (CI={ci_value} makes this a failure, not a skip)", pytrace=False)
    pytest.skip(message)


def mask_password(conninfo: str) -> str:
    """Return ``conninfo`` (URL or key=value string) with any password replaced by ``***``."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "<unparsable connection string>"

    if "password" not in params:
        return conninfo
    params["password"] = "***"
    return make_conninfo("", **params)


def replace_database(conninfo: str, dbname: str) -> str:
    """Return ``conninfo`` pointing at database ``dbname``, keeping it a URL if it was one."""
    parts = urlsplit(conninfo)
    if parts.scheme in ("postgresql", "postgres"):
        return urlunsplit(parts._replace(path=f"/{dbname}"))
    return make_conninfo(conninfo, dbname=dbname)


def find_free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def find_program(name: str) -> str | None:
    """Return the path of ``name`` from PATH or Debian's locations outside PATH, or None."""
    found = shutil.which(name)
    if found:
        return found

    # Debian installs the server binaries under /usr/lib/postgresql/<major>/bin and pgbouncer
    # in /usr/sbin, which a non-root PATH often lacks. The newest major version wins.
    candidates = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    candidates.append(Path("/usr/sbin") / name)
    for candidate in reversed(candidates):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


@dataclass(frozen=True)
class ServiceAccount:
    """The account that runs servers: the current one, or ``SERVICE_USER`` under root."""

    uid: int | None = None
    gid: int | None = None

    @classmethod
    def for_current_process(cls) -> ServiceAccount:
        """Pick ``SERVICE_USER`` when running as root, else the current account."""
        if os.geteuid() != 0:
            return cls()

        try:
            entry = pwd.getpwnam(SERVICE_USER)
        except KeyError:
            report_unavailable(
                f"running as root, but the system user {SERVICE_USER!r} that runs the test "
                "PostgreSQL cluster and PgBouncer is missing; create it with `useradd "
                f"--system {SERVICE_USER}` or install Debian's postgresql-common"
            )
        return cls(uid=entry.pw_uid, gid=entry.pw_gid)

    def make_directory(self, prefix: str) -> Path:
        """Create a private temporary directory owned by this account."""
        # NOTE: under root, every parent of the temporary directory (TMPDIR, default /tmp)
        # must be searchable by SERVICE_USER, or the servers cannot reach their files.
        directory = Path(tempfile.mkdtemp(prefix=prefix))
        if self.uid is not None:
            os.chown(directory, self.uid, self.gid)
        return directory

    def process_options(self, directory: Path) -> dict[str, object]:
        """Return subprocess keyword arguments that run a command as this account."""
        options: dict[str, object] = {"cwd": directory}
        if self.uid is not None:
            options.update(user=self.uid, group=self.gid, extra_groups=[])
        return options


def read_log_tail(path: Path, lines: int = 20) -> str:
    """Return the last ``lines`` lines of the log at ``path``, or a note that it is missing."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


class LocalCluster:
    """A throwaway PostgreSQL cluster in a temporary directory, listening on 127.0.0.1."""

    def __init__(self, initdb: str, pg_ctl: str, account: ServiceAccount) -> None:
        self.initdb = initdb
        self.pg_ctl = pg_ctl
        self.account = account
        self.directory = account.make_directory("symphony-postgres-")
        self.data_directory = self.directory / "data"
        self.log_path = self.directory / "server.log"
        self.port = 0
        self.started = False

    def run(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        """Run one command as the service account and capture its output."""
        return subprocess.run(
            arguments,
            capture_output=True,
            text=True,
            timeout=STARTUP_TIMEOUT_SECONDS + 30,
            **self.account.process_options(self.directory),
        )

    def initialize(self) -> None:
        """Create the data directory with trust auth and settings tuned for throwaway data."""
        result = self.run(
            self.initdb,
            "--pgdata", str(self.data_directory),
            "--auth", "trust",
            "--username", "postgres",
            "--encoding", "UTF8",
            "--no-locale",
            "--no-sync",
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"initdb ({self.initdb}) failed with exit code {result.returncode} for "
                f"{self.data_directory}:\n{result.stderr.strip()}"
            )

        # Test data needs no durability, so turning it off makes each commit cheaper.
        settings = (
            "\n# Added by tests/postgres_fixtures.py\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{self.directory}'\n"
            "fsync = off\n"
            "synchronous_commit = off\n"
            "full_page_writes = off\n"
            "max_connections = 200\n"
        )
        with open(self.data_directory / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(settings)

    def start(self) -> None:
        """Start the server on a free port and wait until it accepts connections."""
        for attempt in range(1, STARTUP_ATTEMPTS + 1):
            self.port = find_free_port()
            result = self.run(
                self.pg_ctl,
                "start",
                "--pgdata", str(self.data_directory),
                "--log", str(self.log_path),
                "--wait",
                "--timeout", str(STARTUP_TIMEOUT_SECONDS),
                "-o", f"-p {self.port}",
            )
            if result.returncode == 0:
                self.started = True
                return
            if attempt == STARTUP_ATTEMPTS:
                raise RuntimeError(
                    f"pg_ctl start failed {STARTUP_ATTEMPTS} times for {self.data_directory}, "
                    f"last on port {self.port}:\n{result.stderr.strip()}\n"
                    f"last lines of the server log:\n{read_log_tail(self.log_path)}"
                )

    def stop(self) -> None:
        """Stop the server in fast mode (only this cluster) and delete its directory."""
        if self.started:
            result = self.run(
                self.pg_ctl, "stop", "--pgdata", str(self.data_directory), "--mode", "fast", "--wait"
            )
            if result.returncode != 0:
                # Keeping the directory keeps a still running server's files in place.
                raise RuntimeError(
                    f"pg_ctl stop failed with exit code {result.returncode} for "
                    f"{self.data_directory}:\n{result.stderr.strip()}\nstop it with "
                    f"`pg_ctl stop -D {self.data_directory}` and delete {self.directory}"
                )
            self.started = False
        shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def url(self) -> str:
        """The URL of the ``postgres`` database as the ``postgres`` superuser."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


def describe_server(url: str) -> PostgresServer:
    """Connect to ``url`` and return the server with the host, port and user it resolved to."""
    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
            info = conn.info
            return PostgresServer(url=url, host=info.host, port=info.port, user=info.user)
    except psycopg.OperationalError as error:
        failure = str(error).strip()

    # Failing outside the except block keeps the chained traceback out of the report.
    pytest.fail(
        f"cannot connect to {DATABASE_URL_VARIABLE}={mask_password(url)}: {failure}\n"
        f"fix the URL or unset {DATABASE_URL_VARIABLE} to start a throwaway cluster",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Provide a PostgreSQL server: the one named by the environment, or a throwaway cluster."""
    url = os.environ.get(DATABASE_URL_VARIABLE)
    if url:
        yield describe_server(url)
        return

    initdb = find_program("initdb")
    pg_ctl = find_program("pg_ctl")
    if initdb is None or pg_ctl is None:
        report_unavailable(
            f"no PostgreSQL server for the tests: {DATABASE_URL_VARIABLE} is unset and "
            f"initdb or pg_ctl is not on PATH; {HOW_TO_PROVIDE_POSTGRES}"
        )

    cluster = LocalCluster(initdb, pg_ctl, ServiceAccount.for_current_process())
    try:
        cluster.initialize()
        cluster.start()
        yield PostgresServer(url=cluster.url, host="127.0.0.1", port=cluster.port, user="postgres")
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_database_url(postgres_server: PostgresServer) -> Iterator[str]:
    """Create an empty database for this test session, return its URL and drop it afterwards."""
    name = f"symphony_test_{os.getpid()}_{secrets.token_hex(4)}"
    identifier = sql.Identifier(name)

    failure = None
    with psycopg.connect(
        postgres_server.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
    ) as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(identifier))
        except psycopg.errors.InsufficientPrivilege as error:
            failure = str(error).strip()
    if failure is not None:
        pytest.fail(
            f"role {postgres_server.user!r} cannot create database {name!r} on "
            f"{mask_password(postgres_server.url)}: {failure}; grant it CREATEDB or put "
            f"a superuser in {DATABASE_URL_VARIABLE}",
            pytrace=False,
        )

    try:
        yield replace_database(postgres_server.url, name)
    finally:
        with psycopg.connect(
            postgres_server.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
        ) as conn:
            # FORCE ends sessions a test left open, which would otherwise block the drop.
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(identifier))


class PgBouncer:
    """A pgbouncer process in transaction pooling mode in front of one database."""

    def __init__(
        self, program: str, server: PostgresServer, dbname: str, account: ServiceAccount
    ) -> None:
        self.program = program
        self.server = server
        self.dbname = dbname
        self.account = account
        self.directory = account.make_directory("symphony-pgbouncer-")
        self.config_path = self.directory / "pgbouncer.ini"
        self.log_path = self.directory / "pgbouncer.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def write_config(self) -> None:
        """Write pgbouncer.ini for the current port, readable by the service account only."""
        # The server login is fixed here, so `auth_type = any` lets clients in without a
        # password and every client shares one pool.
        # NOTE: only host, port, user and a password written in the server URL reach pgbouncer.
        # PGPASSWORD, ~/.pgpass and TLS options such as sslmode do not.
        login = {
            "host": self.server.host,
            "port": self.server.port,
            "user": self.server.user,
            "password": conninfo_to_dict(self.server.url).get("password"),
            "dbname": self.dbname,
        }
        server_login = make_conninfo("", **login)
        config = (
            "[databases]\n"
            f"{self.dbname} = {server_login}\n"
            "\n[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            f"unix_socket_dir = {self.directory}\n"
            "auth_type = any\n"
            "pool_mode = transaction\n"
            "max_client_conn = 100\n"
            # Two server connections per pool make clients share them between transactions.
            "default_pool_size = 2\n"
            # A test that leaves a transaction open starves the pool, so waiting clients fail
            # after 30 s instead of the default 120 s.
            "query_wait_timeout = 30\n"
        )
        self.config_path.write_text(config, encoding="utf-8")
        self.config_path.chmod(0o600)
        if self.account.uid is not None:
            os.chown(self.config_path, self.account.uid, self.account.gid)

    def start(self) -> None:
        """Start pgbouncer on a free port and wait until it accepts connections."""
        for attempt in range(1, STARTUP_ATTEMPTS + 1):
            self.port = find_free_port()
            self.write_config()
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [self.program, str(self.config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    **self.account.process_options(self.directory),
                )
            if self.wait_until_ready():
                return

            # An exit at start-up is most likely a lost port; a timeout is not, so it ends here.
            exited = self.process.poll() is not None
            self.stop_process()
            if attempt == STARTUP_ATTEMPTS or not exited:
                raise RuntimeError(
                    f"pgbouncer ({self.program}) did not accept connections on "
                    f"127.0.0.1:{self.port} (attempt {attempt} of {STARTUP_ATTEMPTS}); "
                    f"last lines of its log:\n{read_log_tail(self.log_path)}"
                )

    def wait_until_ready(self) -> bool:
        """Connect until pgbouncer accepts a connection; return False if it exits or times out."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                with psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
                    conn.execute("SELECT 1")
                return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        return False

    def stop_process(self) -> None:
        """Stop the pgbouncer process started here, by its PID, killing it after 10 s."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def stop(self) -> None:
        """Stop pgbouncer and delete its directory."""
        self.stop_process()
        shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def url(self) -> str:
        """The URL of the database through pgbouncer."""
        return f"postgresql://{self.server.user}@127.0.0.1:{self.port}/{self.dbname}"


@pytest.fixture(scope="session")
def pgbouncer_url(postgres_server: PostgresServer, postgres_database_url: str) -> Iterator[str]:
    """Start pgbouncer in transaction mode before the session's database and return its URL."""
    program = find_program("pgbouncer")
    if program is None:
        report_unavailable(
            "pgbouncer is not on PATH or in /usr/sbin; install it with "
            "`apt-get install pgbouncer` (Debian) or your system's package"
        )

    dbname = str(conninfo_to_dict(postgres_database_url)["dbname"])
    bouncer = PgBouncer(program, postgres_server, dbname, ServiceAccount.for_current_process())
    try:
        bouncer.start()
        yield bouncer.url
    finally:
        bouncer.stop()
