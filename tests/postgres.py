"""A throwaway PostgreSQL server for the tests (initdb + pg_ctl in a temporary directory, ~1 s).

One server per test session (process), started lazily the first time a test asks for it, on
127.0.0.1 and a free port, owned by the ``postgres`` user when the tests run as root. Every test gets
its own database (``CREATE DATABASE`` from a template that already holds the schema), so tests are
isolated without starting a server each. With ``SIGNER_TEST_POSTGRES_DSN`` set, that server is used
instead (its databases are created with a per-session prefix and dropped at the end); ``stop()`` and
``start()`` then refuse, and the tests that need them skip (or fail under CI=true).

Fixtures (import them into a test module: ``from tests.postgres import postgres_server  # noqa: F401``):

- ``postgres_server`` (session): the :class:`PostgresServer`; ``postgres_server()`` or
  ``postgres_server.new_database()`` returns the DSN of a fresh, empty database; ``stop()`` (``pg_ctl
  stop -m immediate`` by default: a crash) and ``start()`` (same port, same data) for failure tests.
- ``postgres_dsn``: the DSN of a fresh database for one test.

When no PostgreSQL binaries are found, ``missing_component`` fails under CI=true and skips elsewhere.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from signer.protection.postgres import apply_migrations
from tests.support import missing_component

TEMPLATE_DB = "signer_template"
"""A database migrated to the current schema; fresh test databases are copied from it."""


def find_bin_dir() -> Path | None:
    """The directory holding initdb and pg_ctl: on PATH, else the newest /usr/lib/postgresql/*/bin."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return Path(os.path.realpath(initdb)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """A PostgreSQL server for tests: ours (throwaway) or the one SIGNER_TEST_POSTGRES_DSN names."""

    def __init__(
        self,
        admin_dsn: str,
        *,
        bin_dir: Path | None = None,
        root: Path | None = None,
        port: int | None = None,
        run_as: list[str] | None = None,
        fsync: bool = False,
    ) -> None:
        self.admin_dsn = admin_dsn
        """DSN of the maintenance database (``postgres``) with superuser rights."""
        self.bin_dir = bin_dir
        self.root = root
        self.port = port
        self._run_as = run_as or []
        self._fsync = fsync
        self._lock = threading.Lock()
        self._prefix = "t" + uuid.uuid4().hex[:8] + "_"
        self._created: list[str] = []
        self._template_ready = False
        self._shared_dsn: str | None = None
        self._schemas: set[str] = set()
        self.owned = root is not None
        """True for a throwaway server this process started (stop/start allowed)."""
        self.has_pg_stat_statements = bin_dir is not None and (
            (bin_dir.parent / "lib" / "pg_stat_statements.so").is_file()
        )
        """The throwaway server loads pg_stat_statements (tests count statements with it)."""

    # --- life cycle of a throwaway server ----------------------------------------------------------

    @classmethod
    def throwaway(cls, *, fsync: bool = False) -> PostgresServer:
        """initdb + pg_ctl start in a new temporary directory; raises RuntimeError if it cannot."""
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise FileNotFoundError("initdb/pg_ctl (apt: postgresql)")
        run_as: list[str] = []
        root = Path(tempfile.mkdtemp(prefix="signer-pg-"))
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise FileNotFoundError("the 'postgres' user (initdb refuses to run as root)") from exc
            os.chown(root, user.pw_uid, user.pw_gid)
            run_as = ["runuser", "-u", "postgres", "--"]
        port = _free_port()
        server = cls(
            f"host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=5",
            bin_dir=bin_dir,
            root=root,
            port=port,
            run_as=run_as,
            fsync=fsync,
        )
        server._initdb()
        server.start()
        return server

    def _run(self, *args: str, timeout: float = 60) -> None:
        assert self.bin_dir is not None
        command = [*self._run_as, str(self.bin_dir / args[0]), *args[1:]]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr or done.stdout}")

    def _initdb(self) -> None:
        assert self.root is not None
        self._run(
            "initdb",
            "-D",
            str(self.root / "data"),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )

    def start(self) -> None:
        """Start (or restart after ``stop``) the throwaway server on its port, waiting until it is up."""
        if not self.owned:
            missing_component("a throwaway PostgreSQL server (SIGNER_TEST_POSTGRES_DSN cannot be restarted)")
        assert self.root is not None
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c max_connections=300 "
            f"-c fsync={'on' if self._fsync else 'off'} -c full_page_writes={'on' if self._fsync else 'off'} "
            "-c shared_buffers=64MB"
        )
        if self.has_pg_stat_statements:
            options += " -c shared_preload_libraries=pg_stat_statements"
        self._run(
            "pg_ctl",
            "-D",
            str(self.root / "data"),
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            "30",
            "-o",
            options,
            "start",
        )

    def stop(self, mode: str = "immediate") -> None:
        """``pg_ctl stop -m immediate`` (a crash: open transactions are lost) or ``fast``/``smart``."""
        if not self.owned:
            missing_component("a throwaway PostgreSQL server (SIGNER_TEST_POSTGRES_DSN cannot be stopped)")
        assert self.root is not None
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        """Drop what we created on a foreign server; stop and delete a throwaway one."""
        if self.owned:
            assert self.root is not None
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.stop("immediate")
            shutil.rmtree(self.root, ignore_errors=True)
            return
        with contextlib.suppress(psycopg.Error), psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            for name in self._created:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    # --- databases -------------------------------------------------------------------------------

    def dsn(self, dbname: str) -> str:
        """The DSN of database ``dbname`` on this server."""
        params = psycopg.conninfo.conninfo_to_dict(self.admin_dsn)
        params["dbname"] = dbname
        return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})

    def _ensure_template(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        """Create (once) a database holding the current schema, to copy fresh databases from."""
        if self._template_ready:
            return
        name = self._prefix + TEMPLATE_DB
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self._created.append(name)
        with psycopg.connect(self.dsn(name), autocommit=True) as template:
            apply_migrations(template)
        self._template_ready = True

    def new_database(self, name: str | None = None, *, empty: bool = False, locked: bool = False) -> str:
        """Create a fresh database and return its DSN.

        By default it is a copy of a template already holding the current schema (fast); ``empty``
        gives a database without any table (to test migrations). ``name`` makes the call idempotent:
        the same name gives the same database (created the first time).
        """
        with (
            contextlib.nullcontext() if locked else self._lock,
            psycopg.connect(self.admin_dsn, autocommit=True) as conn,
        ):
            dbname = self._prefix + (name or uuid.uuid4().hex[:12])
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
            if exists is None:
                if empty:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
                else:
                    self._ensure_template(conn)
                    conn.execute(
                        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                            sql.Identifier(dbname), sql.Identifier(self._prefix + TEMPLATE_DB)
                        )
                    )
                self._created.append(dbname)
        return self.dsn(dbname)

    __call__ = new_database

    def database_for(self, where: Path | str) -> str:
        """The DSN of the store that belongs to a test directory (created on first use, the same one
        for the same directory, so a test can reopen it).

        It is a schema of its own (``search_path``) in one shared database, not a database: CREATE
        DATABASE costs 80-250 ms here, a schema ~10 ms, and the contract, conformance (38 x 2) and
        property tests open some 150 of them. Nothing in the store depends on the difference, except
        that advisory locks are per database, so two tests could only wait for each other.
        """
        digest = hashlib.blake2b(str(where).encode(), digest_size=10).hexdigest()
        schema = "s" + digest
        with self._lock:
            if self._shared_dsn is None:
                self._shared_dsn = self.new_database("shared", empty=True, locked=True)
            if schema not in self._schemas:
                with psycopg.connect(self._shared_dsn, autocommit=True) as conn:
                    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
                self._schemas.add(schema)
        params = psycopg.conninfo.conninfo_to_dict(self._shared_dsn)
        params["options"] = f"-c search_path={schema}"
        return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})


class _Session:
    server: PostgresServer | None = None
    failure: str | None = None
    guard = threading.Lock()


def shared_server() -> PostgresServer:
    """The session's server, started on first use (or SIGNER_TEST_POSTGRES_DSN); stopped at exit.

    Calls ``missing_component`` when PostgreSQL cannot be found or started.
    """
    with _Session.guard:
        if _Session.server is None and _Session.failure is None:
            external = os.environ.get("SIGNER_TEST_POSTGRES_DSN")
            try:
                if external:
                    with psycopg.connect(external, connect_timeout=5):
                        pass
                    server = PostgresServer(external)
                else:
                    server = PostgresServer.throwaway()
                atexit.register(server.destroy)
                _Session.server = server
            except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired, psycopg.Error) as exc:
                _Session.failure = f"PostgreSQL server for tests: {exc}"
    if _Session.server is None:
        missing_component(_Session.failure or "PostgreSQL")
    assert _Session.server is not None
    return _Session.server


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    """The session's PostgreSQL server (dsn factory: ``postgres_server()``; ``stop()``; ``start()``)."""
    return shared_server()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database (current schema, no data) for one test."""
    yield postgres_server.new_database()


# --- a variant that checks passwords (issue 6) ------------------------------------------------------

LOGIN_ROLE = "signer"
"""The login role of the password-checking server (it owns its database)."""


class PasswordPostgresServer(PostgresServer):
    """A throwaway server that trusts no TCP connection: ``scram-sha-256`` for every host line of
    pg_hba.conf (127.0.0.1 and ::1), ``trust`` only on its own Unix socket (the admin connection of
    the tests, in a 0700 directory). ``role_dsn`` connects over TCP as ``LOGIN_ROLE`` *without* the
    password; ``password`` is that role's password (stored as a SCRAM verifier).
    """

    password: str = ""
    """The password of ``LOGIN_ROLE``."""
    role_dsn: str = ""
    """``host=127.0.0.1 port=P user=signer dbname=signer``: no password (it comes from elsewhere)."""

    @classmethod
    def throwaway_with_password(cls, password: str) -> PasswordPostgresServer:
        """initdb (scram-sha-256 on TCP) + pg_ctl start + a role with ``password`` owning database
        ``signer``; raises FileNotFoundError/RuntimeError if it cannot (as ``throwaway``)."""
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise FileNotFoundError("initdb/pg_ctl (apt: postgresql)")
        run_as: list[str] = []
        owner: pwd.struct_passwd | None = None
        root = Path(tempfile.mkdtemp(prefix="signer-pgpw-"))
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise FileNotFoundError("the 'postgres' user (initdb refuses to run as root)") from exc
            os.chown(root, owner.pw_uid, owner.pw_gid)
            run_as = ["runuser", "-u", "postgres", "--"]
        port = _free_port()
        server = cls(
            f"host={root} port={port} user=postgres dbname=postgres connect_timeout=5",
            bin_dir=bin_dir, root=root, port=port, run_as=run_as,
        )  # fmt: skip
        server.password = password
        pwfile = root / "superuser.pw"  # initdb wants one for scram-sha-256; nobody logs in with it
        pwfile.write_text(uuid.uuid4().hex + "\n", encoding="utf-8")
        if owner is not None:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        pwfile.chmod(0o600)
        try:
            server._run("initdb", "-D", str(root / "data"), "-U", "postgres", "--pwfile", str(pwfile),
                        "--auth-local=trust", "--auth-host=scram-sha-256",
                        "-E", "UTF8", "--locale=C", "--no-sync")  # fmt: skip
        finally:
            pwfile.unlink()
        server.start()
        try:
            with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
                conn.execute("SET password_encryption = 'scram-sha-256'")
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(LOGIN_ROLE), sql.Literal(password)
                    )
                )
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(LOGIN_ROLE), sql.Identifier(LOGIN_ROLE)
                    )
                )
        except BaseException:
            server.destroy()
            raise
        server.role_dsn = f"host=127.0.0.1 port={port} user={LOGIN_ROLE} dbname={LOGIN_ROLE} connect_timeout=5"
        return server


@pytest.fixture(scope="module")
def postgres_password_server() -> Iterator[PasswordPostgresServer]:
    """A password-checking throwaway server of its own (~1-2 s), for one test module; see
    :class:`PasswordPostgresServer`. With SIGNER_TEST_POSTGRES_DSN set, a throwaway server is still
    started (the foreign server's authentication is not ours to set up)."""
    password = "pw-" + uuid.uuid4().hex
    try:
        server = PasswordPostgresServer.throwaway_with_password(password)
    except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired, psycopg.Error) as exc:
        missing_component(f"a password-checking PostgreSQL server for tests: {exc}")
        raise  # unreachable: missing_component fails or skips
    try:
        yield server
    finally:
        server.destroy()
