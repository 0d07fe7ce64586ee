"""Shared fixtures: start real `postbay` processes on loopback and talk to them with real
clients (swaks, curl, smtplib, imaplib, poplib, smtp-source, mbsync).

Backends: every server fixture runs once on SQLite and, when POSTBAY_TEST_MYSQL_URL is set
(e.g. mysql://root@127.0.0.1:3306), once more on MariaDB with a uniquely named database that
is dropped afterwards. With POSTBAY_REQUIRE_PEERS=1 (CI) a missing MariaDB or client is a
failure, never a silent skip.
"""

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
REQUIRE = os.environ.get("POSTBAY_REQUIRE_PEERS") == "1"
MYSQL_URL = os.environ.get("POSTBAY_TEST_MYSQL_URL", "").rstrip("/")


def postbay_binary() -> Path:
    explicit = os.environ.get("POSTBAY_BIN")
    if explicit:
        return Path(explicit)
    # The most recently built one, so a stale release build never shadows a fresh debug one.
    built = [p for p in (ROOT / "target" / profile / "postbay" for profile in ("release", "debug")) if p.exists()]
    if not built:
        raise RuntimeError("postbay binary not built: run `cargo build -p postbay` first")
    return max(built, key=lambda p: p.stat().st_mtime)


def need_tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if path:
        return path
    message = f"{name} is not installed (scripts/install-test-deps installs it)"
    if REQUIRE:
        pytest.fail(message)
    pytest.skip(message)


def ephemeral_port_start() -> int:
    """First port the kernel hands out to outgoing connections (Linux default 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_base() -> int:
    """A base N such that N+24..N+995 are free on 127.0.0.1 (checked for the ports we use),
    all below the ephemeral range: a port that is free when checked but in that range can be
    taken by any outgoing connection (a MariaDB client, say) before postbay binds it."""
    slots = max(1, (ephemeral_port_start() - 1000 - 20000) // 100)
    for _ in range(200):
        base = 20000 + (uuid.uuid4().int % slots) * 100
        if all(port_free(base + p) for p in (24, 25, 110, 143, 465, 587, 993, 995, 8080, 11332, 11333)):
            return base
    raise RuntimeError("no free port range")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_port(port: int, timeout: float = 20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


class MysqlDatabase:
    """A uniquely named MariaDB database, dropped on cleanup."""

    def __init__(self):
        self.name = "postbay_pytest_" + uuid.uuid4().hex[:12]
        self.sql(f"CREATE DATABASE `{self.name}`", db=None)
        self.url = f"{MYSQL_URL}/{self.name}"

    @staticmethod
    def _args():
        # mysql://user[:password]@host[:port]
        rest = MYSQL_URL.split("://", 1)[1]
        creds, hostport = rest.rsplit("@", 1)
        user, _, password = creds.partition(":")
        host, _, port = hostport.partition(":")
        args = ["mysql", "-u", user, "-h", host, "-P", port or "3306", "--batch", "--skip-column-names"]
        if password:
            args.append(f"-p{password}")
        return args

    def sql(self, query: str, db="self"):
        args = self._args()
        if db == "self":
            args += [self.name]
        out = subprocess.run(args + ["-e", query], capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise RuntimeError(f"mysql failed: {out.stderr}")
        return [line.split("\t") for line in out.stdout.splitlines()]

    def drop(self):
        self.sql(f"DROP DATABASE IF EXISTS `{self.name}`", db=None)


class Postbay:
    """One `postbay` deployment under test: a data folder, a database, and processes."""

    def __init__(self, tmp: Path, backend: str, env: dict | None = None):
        self.tmp = tmp
        self.data = tmp / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.backend = backend
        self.base = free_port_base()
        self.env = dict(os.environ)
        self.env.setdefault("POSTBAY_LOG", "info")
        self.env.update(env or {})
        self.procs: list[subprocess.Popen] = []
        self.mysql = MysqlDatabase() if backend == "mariadb" else None
        self.database_url = self.mysql.url if self.mysql else f"sqlite://{self.data / 'postbay.db'}?mode=rwc"

    # --- ports -----------------------------------------------------------------------
    def port(self, standard: int) -> int:
        return self.base + standard

    @property
    def smtp(self) -> int:
        return self.port(25)

    @property
    def lmtp(self) -> int:
        return self.port(24)

    def listener_env(self, offset: int = 0) -> dict:
        """Every listener a role opens, on loopback test ports (`offset` apart per replica).

        A role started without them binds the production defaults on 0.0.0.0 (25, 587,
        465, 143, ...), which collides with whatever else on the machine holds those ports."""
        at = lambda standard: f"127.0.0.1:{self.port(standard) + offset}"
        return {
            "POSTBAY_SMTP__LISTEN": at(25),
            "POSTBAY_SUBMISSION__LISTEN": at(587),
            "POSTBAY_SUBMISSION__LISTEN_TLS": at(465),
            "POSTBAY_LMTP__LISTEN": at(24),
            "POSTBAY_IMAP__LISTEN": at(143),
            "POSTBAY_IMAP__LISTEN_TLS": at(993),
            "POSTBAY_POP3__LISTEN": at(110),
            "POSTBAY_POP3__LISTEN_TLS": at(995),
        }

    @property
    def cert(self) -> Path:
        return self.data / "tls" / "cert.pem"

    # --- processes -------------------------------------------------------------------
    def start(self, *args, wait_ports=None, log_name="postbay"):
        cmd = [str(postbay_binary())] + list(args)
        log = open(self.tmp / f"{log_name}.log", "ab")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        self.procs.append(proc)
        for port in wait_ports or []:
            wait_port(port)
        return proc

    def start_dev(self):
        return self.start("dev", "--data", str(self.data), "--port-base", str(self.base),
                          "--database-url", self.database_url,
                          wait_ports=[self.smtp, self.lmtp], log_name="dev")

    def log(self, name="dev") -> str:
        p = self.tmp / f"{name}.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def kill(self, proc, sig=signal.SIGKILL):
        proc.send_signal(sig)
        proc.wait(timeout=10)

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    # A session still draining (the queue's idle LMTP connection keeps
                    # `postbay dev` draining for up to 25 s): kill, and wait until the
                    # process is gone, so its ports are free for a restart.
                    proc.kill()
                    proc.wait(timeout=10)
        self.procs.clear()

    # --- configuration ---------------------------------------------------------------
    def apply(self, *files, check=True):
        args = [str(postbay_binary()), "apply", "--data", str(self.data), "--database-url", self.database_url]
        for f in files:
            args += ["-f", str(f)]
        out = subprocess.run(args, capture_output=True, text=True, env=self.env, timeout=120)
        if check and out.returncode != 0:
            raise RuntimeError(f"postbay apply failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        return out

    # --- inspection ------------------------------------------------------------------
    def query(self, sql: str, params=()):
        if self.mysql:
            for p in params:
                sql = sql.replace("?", "'" + str(p).replace("'", "''") + "'", 1)
            return [tuple(row) for row in self.mysql.sql(sql)]
        with sqlite3.connect(self.data / "postbay.db", timeout=30) as db:
            return [tuple(str(c) for c in row) for row in db.execute(sql, params).fetchall()]

    def messages(self, address: str, folder: str = "INBOX") -> list[bytes]:
        rows = self.query(
            "SELECT m.blob_path FROM messages m JOIN folders f ON f.id = m.folder_id "
            "JOIN mailboxes b ON b.id = f.mailbox_id WHERE b.address = ? AND f.name = ? ORDER BY m.uid",
            (address, folder),
        )
        return [(self.data / "mail" / r[0]).read_bytes() for r in rows]

    def wait_messages(self, address: str, count: int, timeout: float = 20.0, folder="INBOX") -> list[bytes]:
        deadline = time.time() + timeout
        got = []
        while time.time() < deadline:
            got = self.messages(address, folder)
            if len(got) >= count:
                return got
            time.sleep(0.1)
        raise AssertionError(f"{address}: expected {count} messages, found {len(got)}")

    def total_messages(self) -> int:
        return int(self.query("SELECT COUNT(*) FROM messages")[0][0])

    def cleanup(self):
        self.stop()
        if self.mysql:
            self.mysql.drop()


def backends():
    out = ["sqlite"]
    if MYSQL_URL:
        out.append("mariadb")
    return out


@pytest.fixture(params=backends())
def backend(request):
    return request.param


@pytest.fixture(scope="session", autouse=True)
def report_backends():
    if not MYSQL_URL:
        msg = "POSTBAY_TEST_MYSQL_URL is not set: MariaDB variants do not run"
        if REQUIRE:
            pytest.fail(msg)
        print(f"\nSKIP mariadb: {msg}")
    yield


@pytest.fixture
def make_postbay(tmp_path, backend):
    made = []

    def make(env=None, name="pb"):
        pb = Postbay(tmp_path / f"{name}{len(made)}", backend, env)
        made.append(pb)
        return pb

    yield make
    for pb in made:
        pb.cleanup()


@pytest.fixture
def postbay(make_postbay):
    """A running `postbay dev` with tests/fixtures/example.yaml applied."""
    pb = make_postbay()
    pb.apply(FIXTURES / "example.yaml")
    pb.start_dev()
    return pb
