"""A private PostgreSQL cluster on a free port, for fault tests that stop, restart and cut it mid-flow.

Debian's `initdb` refuses to run as root, and CI runs as root: there the binaries run as a system user created
for the purpose (`almafault`) through `runuser`. Without root they run as the current user. The machine's own
PostgreSQL (port 5432) is never touched.
"""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2

from tests.needs import need
from tests.payments.stripe_fake import free_port

OS_USER = "almafault"
TIMEOUT = 60  # seconds, for every pg_ctl/initdb call


def server_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin that has initdb and pg_ctl (Debian's layout)."""
    candidates = sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for path in candidates:
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    return None


def _ensure_os_user() -> None:
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OS_USER],
            check=True,
            capture_output=True,
            timeout=TIMEOUT,
        )


class PrivateCluster:
    def __init__(self, *, bin_dir: Path, root: Path, port: int, as_user: str | None) -> None:
        self.bin_dir, self.root, self.port, self.as_user = bin_dir, root, port, as_user
        self.data, self.sockets, self.log = root / "data", root / "sock", root / "postgres.log"

    # --- running the server binaries (as the cluster's OS user when we are root)
    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / tool), *args]
        if self.as_user:
            cmd = ["runuser", "-u", self.as_user, "--", *cmd]
        result = subprocess.run(cmd, cwd=self.root, capture_output=True, text=True, timeout=TIMEOUT)
        if check and result.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result

    def _options(self) -> str:
        return f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=40"

    def initdb(self) -> None:
        flags = ["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]
        self._run("initdb", "-D", str(self.data), *flags)

    def _pg_ctl(self, action: str, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", str(TIMEOUT), *args, action)

    def start(self) -> None:
        self._pg_ctl("start", "-l", str(self.log), "-o", self._options())

    def stop(self, mode: str = "fast") -> None:
        """mode "fast": clients are disconnected, clean shutdown; "immediate": like a crash (recovery on start)."""
        self._pg_ctl("stop", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        self._pg_ctl("restart", "-m", mode, "-l", str(self.log), "-o", self._options())

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def ensure_running(self) -> None:
        if not self.running():
            self.start()

    # --- talking to it
    def url(self, dbname: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres") -> "psycopg2.extensions.connection":
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=dbname, connect_timeout=5)
        conn.autocommit = True
        return conn

    def sql(self, statement: str, params: tuple[object, ...] = (), *, dbname: str = "postgres") -> list[tuple]:
        conn = self.connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def create_database(self, name: str, *, template: str | None = None) -> None:
        self.sql(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))

    def drop_database(self, name: str) -> None:
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def terminate_backends(self, dbname: str) -> int:
        """Drop every other connection to `dbname` (what a failover, a proxy or an idle timeout does)."""
        rows = self.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        )
        return sum(1 for (done,) in rows if done)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextmanager
def private_postgres() -> Iterator[PrivateCluster]:
    """A fresh cluster, started; stopped and deleted afterwards, even when the test failed."""
    bin_dir = server_bin_dir()
    need("PostgreSQL server binaries", bin_dir is not None, "no /usr/lib/postgresql/*/bin/initdb (apt-get postgresql)")
    assert bin_dir is not None
    as_user = None
    if os.geteuid() == 0:
        _ensure_os_user()
        as_user = OS_USER
    root = Path(tempfile.mkdtemp(prefix="alma-faults-pg-"))
    if as_user:
        entry = pwd.getpwnam(as_user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    cluster = PrivateCluster(bin_dir=bin_dir, root=root, port=free_port(), as_user=as_user)
    try:
        (cluster.sockets).mkdir()
        if as_user:
            os.chown(cluster.sockets, entry.pw_uid, entry.pw_gid)
        cluster.initdb()
        cluster.start()
        deadline = time.monotonic() + TIMEOUT
        while True:  # pg_ctl -w waited already; this only guards against a slow first TCP accept
            try:
                cluster.sql("SELECT 1")
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield cluster
    finally:
        try:
            if cluster.data.exists() and cluster.running():
                cluster.stop("immediate")
        finally:
            shutil.rmtree(root, ignore_errors=True)
