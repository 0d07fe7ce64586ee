"""Operations: a fresh install comes up (many processes migrating one new database at once,
a database that is not reachable yet)."""

import base64
import imaplib
import json
import os
import poplib
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import FIXTURES, MYSQL_URL, REQUIRE, ROOT, MysqlDatabase, Postbay, postbay_binary

ANSI = re.compile(r"\x1b\[[0-9;]*m")
MIGRATIONS = sorted(int(p.name.split("_")[0]) for p in (ROOT / "components/store/migrations/sqlite").glob("*.sql"))


def plain(text: str) -> str:
    return ANSI.sub("", text)


def role_env(pb: Postbay, node: str, database_url: str) -> dict:
    """Every listener on an ephemeral loopback port, so many replicas fit on one host."""
    env = dict(pb.env)
    env.update({
        "POSTBAY_DATABASE_URL": database_url,
        "POSTBAY_DATA_DIR": str(pb.data),
        "POSTBAY_NODE_ID": node,
        "POSTBAY_LOG": "info",
    })
    for key in ("SMTP__LISTEN", "SUBMISSION__LISTEN", "SUBMISSION__LISTEN_TLS", "LMTP__LISTEN",
                "IMAP__LISTEN", "IMAP__LISTEN_TLS", "POP3__LISTEN", "POP3__LISTEN_TLS"):
        env[f"POSTBAY_{key}"] = "127.0.0.1:0"
    env["POSTBAY_FILTER__LISTEN"] = "127.0.0.1:0"
    return env


def start_role(pb: Postbay, role: str, node: str, database_url: str, extra=()):
    log_path = pb.tmp / f"{role}-{node}.log"
    log = open(log_path, "ab")
    proc = subprocess.Popen([str(postbay_binary()), role, *extra], stdout=log, stderr=subprocess.STDOUT,
                            env=role_env(pb, node, database_url))
    pb.procs.append(proc)
    return proc, log_path


def wait_ready(proc, log_path, line: str, timeout: float = 60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if line in log_path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise AssertionError(f"{log_path.name} exited with {proc.returncode}:\n{log_path.read_text()}")
        time.sleep(0.05)
    raise AssertionError(f"{log_path.name} not ready after {timeout}s:\n{log_path.read_text()}")


def test_fresh_database_many_processes_migrate_once(make_postbay):
    pb = make_postbay()
    url = pb.database_url
    started = []
    # All at once: three of each role that opens the store, on one data folder and database.
    for i in range(3):
        started.append(("smtp",) + start_role(pb, "smtp", f"smtp-{i}", url) + ("postbay smtp ready",))
        started.append(("imap",) + start_role(pb, "imap", f"imap-{i}", url) + ("postbay imap ready",))
        started.append(("filter",) + start_role(pb, "filter", f"filter-{i}", url) + ("postbay filter ready",))
        started.append(("apply",) + start_role(pb, "apply", f"apply-{i}", url,
                                                ["--data", str(pb.data), "-f", str(FIXTURES / "example.yaml")])
                       + (None,))
    for role, proc, log_path, ready in started:
        if ready:
            wait_ready(proc, log_path, ready)
        else:
            assert proc.wait(timeout=120) == 0, f"{log_path.name}:\n{log_path.read_text()}"
    logs = "".join(plain(log_path.read_text(errors="replace")) for _, _, log_path, _ in started)
    applied = [int(v) for v in re.findall(r"applying schema migration version=(\d+)", logs)]
    assert sorted(applied) == MIGRATIONS, f"each migration applied by exactly one process:\n{logs}"
    rows = pb.query("SELECT version, success FROM _sqlx_migrations ORDER BY version")
    assert [(int(v), int(s)) for v, s in rows] == [(v, 1) for v in MIGRATIONS]
    # The schema works for everyone: the applied mailbox is visible.
    assert pb.query("SELECT address FROM mailboxes WHERE address = 'alice@example.test'")


class Proxy:
    """A TCP forwarder to MariaDB that can be opened late, standing in for a database that
    comes up after the roles do."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = None
        self.sockets = []

    def open(self):
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        """Stops listening and cuts every connection: the database is gone."""
        if self.server:
            try:
                self.server.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (Linux)
            except OSError:
                pass
            self.server.close()
            self.server = None
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self.sockets.clear()


def test_role_waits_for_a_database_that_is_not_up_yet(tmp_path):
    if not MYSQL_URL:
        message = "POSTBAY_TEST_MYSQL_URL is not set: the late-database test needs MariaDB"
        if REQUIRE:
            pytest.fail(message)
        pytest.skip(message)
    pb = Postbay(tmp_path / "late", "mariadb")
    try:
        rest = MYSQL_URL.split("://", 1)[1]
        creds, hostport = rest.rsplit("@", 1)
        host, _, port = hostport.partition(":")
        proxy = Proxy((host, int(port or 3306)))
        url = f"mysql://{creds}@127.0.0.1:{proxy.port}/{pb.mysql.name}"
        roles = [("smtp",) + start_role(pb, "smtp", "smtp-0", url) + ("postbay smtp ready",),
                 ("imap",) + start_role(pb, "imap", "imap-0", url) + ("postbay imap ready",)]
        # Both keep retrying (a log line per attempt) instead of exiting, and are not ready.
        deadline = time.time() + 30
        for _, proc, log_path, _ in roles:
            while "database not reachable yet, retrying" not in log_path.read_text(errors="replace"):
                assert proc.poll() is None, f"{log_path.name} exited:\n{log_path.read_text()}"
                assert time.time() < deadline, f"{log_path.name} logged no retry:\n{log_path.read_text()}"
                time.sleep(0.05)
        for _, proc, log_path, ready in roles:
            assert proc.poll() is None
            assert ready not in log_path.read_text(errors="replace")
        proxy.open()
        for _, proc, log_path, ready in roles:
            wait_ready(proc, log_path, ready)
        rows = pb.query("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = 1")
        assert int(rows[0][0]) == len(MIGRATIONS)
    finally:
        pb.cleanup()
        proxy.close()


def test_unusable_database_url_fails_at_once(tmp_path):
    """Waiting cures an absent database, not a wrong one: refused credentials end the process."""
    if not MYSQL_URL:
        message = "POSTBAY_TEST_MYSQL_URL is not set"
        if REQUIRE:
            pytest.fail(message)
        pytest.skip(message)
    db = MysqlDatabase()
    try:
        hostport = MYSQL_URL.split("://", 1)[1].rsplit("@", 1)[1]
        out = subprocess.run([str(postbay_binary()), "apply", "--data", str(tmp_path), "--database-url",
                              f"mysql://no_such_user_pb:wrong@{hostport}/{db.name}",
                              "-f", str(FIXTURES / "example.yaml")],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode != 0
        assert "retrying" not in out.stderr
    finally:
        db.drop()


# --- the admin listener: metrics, health, readiness ---------------------------------------

def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(port: int) -> dict[str, float]:
    status, text = http_get(port, "/metrics")
    assert status == 200
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def series(metrics: dict[str, float], prefix: str) -> float:
    """Sum of every series whose name and labels start with `prefix`."""
    return sum(v for k, v in metrics.items() if k.startswith(prefix))


def wait_ready_http(port: int, timeout: float = 20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if http_get(port, "/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"/readyz on {port} never turned ready")


def test_metrics_move_after_a_delivery_and_a_login(postbay):
    admin = postbay.port(8080)
    assert f"admin listening on 127.0.0.1:{admin}" in postbay.log()
    assert http_get(admin, "/healthz") == (200, "ok\n")
    wait_ready_http(admin)
    before = scrape(admin)

    with smtplib.SMTP("127.0.0.1", postbay.smtp, timeout=10) as s:
        s.sendmail("someone@remote.test", ["alice@example.test"],
                   b"From: someone@remote.test\r\nTo: alice@example.test\r\nSubject: metrics\r\n\r\nhi\r\n")
    postbay.wait_messages("alice@example.test", 1)
    with smtplib.SMTP("127.0.0.1", postbay.port(587), timeout=10) as s:
        s.starttls(context=ssl.create_default_context(cafile=str(postbay.cert)))
        s.ehlo("client.test")
        s.user, s.password = "alice@example.test", "not-her-password"
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.auth("PLAIN", s.auth_plain)  # one mechanism: login() would try LOGIN as well
    with smtplib.SMTP("127.0.0.1", postbay.smtp, timeout=10) as s:
        s.ehlo("client.test")
        s.mail("someone@remote.test")
        assert s.rcpt("nobody@example.test")[0] == 550
        assert s.rcpt("someone@elsewhere.test")[0] == 554
    imap = imaplib.IMAP4("127.0.0.1", postbay.port(143), timeout=10)
    imap.login("alice@example.test", "alice-secret")
    imap.select("INBOX")
    typ, _ = imap.fetch("1", "(RFC822)")
    assert typ == "OK"
    imap.logout()

    deadline = time.time() + 10
    while True:
        after = scrape(admin)
        if series(after, "postbay_lmtp_delivery_seconds_count") > series(before, "postbay_lmtp_delivery_seconds_count") \
                or time.time() > deadline:
            break
        time.sleep(0.1)
    def moved(prefix):
        return series(after, prefix) - series(before, prefix)
    assert moved('postbay_messages_accepted_total{role="mx"}') == 1
    # greeting, EHLO, MAIL, RCPT, end of data, QUIT on 25; LMTP server replies come on top
    assert moved('postbay_smtp_replies_total{class="2xx",reason="none"}') >= 6
    assert moved('postbay_smtp_replies_total{class="3xx",reason="none"}') >= 1  # 354 after DATA
    # Refusals carry their reason (bounded words, not the client's input).
    assert moved('postbay_smtp_replies_total{class="5xx",reason="unknown_user"}') == 1
    assert moved('postbay_smtp_replies_total{class="5xx",reason="relay_denied"}') == 1
    assert moved('postbay_smtp_replies_total{class="5xx",reason="auth_failed"}') == 1
    assert moved(f'postbay_connections_total{{listener="127.0.0.1:{postbay.smtp}"}}') == 2
    assert moved(f'postbay_connections_total{{listener="127.0.0.1:{postbay.port(143)}"}}') == 1
    assert moved('postbay_logins_total{result="success",protocol="imap",mechanism="password"}') == 1
    assert moved('postbay_logins_total{result="failed",protocol="smtp",mechanism="password"}') == 1
    # The queued message reached its (local) recipient once, through LMTP into the store.
    assert moved('postbay_delivery_attempts_total{result="delivered",destination="local"}') == 1
    assert moved('postbay_store_seconds_count{operation="deliver"}') == 1
    assert moved('postbay_store_seconds_count{operation="fetch"}') >= 1
    assert moved('postbay_imap_command_seconds_count{command="FETCH"}') == 1
    assert moved('postbay_imap_commands_total{command="FETCH",result="ok"}') == 1
    assert moved('postbay_imap_commands_total{command="LOGIN",result="ok"}') == 1
    assert moved("postbay_lmtp_delivery_seconds_count") >= 1
    assert moved('postbay_tls_handshakes_total{result="ok"}') == 1
    # The self-signed certificate postbay dev made is valid for a while yet.
    assert after["postbay_tls_certificate_expiry_timestamp_seconds"] > time.time() + 86400
    # Gauges exist with their fixed labels.
    assert 'postbay_db_pool_connections{state="idle"}' in after
    assert "postbay_queue_messages" in after


def test_readyz_turns_unready_while_draining(postbay):
    admin = postbay.port(8080)
    wait_ready_http(admin)
    proc = postbay.procs[-1]
    # An open session keeps the process draining (up to 25 s) after SIGTERM.
    held = smtplib.SMTP("127.0.0.1", postbay.smtp, timeout=10)
    held.ehlo("client.test")
    proc.send_signal(signal.SIGTERM)
    deadline = time.time() + 10
    status, body = http_get(admin, "/readyz")
    while status == 200 and time.time() < deadline:
        time.sleep(0.05)
        status, body = http_get(admin, "/readyz")
    assert (status, body) == (503, "draining\n")
    assert http_get(admin, "/healthz")[0] == 200, "still alive while draining"
    held.close()
    assert proc.wait(timeout=30) == 0


# --- logs ---------------------------------------------------------------------------------

def test_json_logs_carry_session_fields_and_never_a_password(make_postbay):
    pb = make_postbay(env={"POSTBAY_LOG": "debug", "POSTBAY_LOG_FORMAT": "json",
                           "POSTBAY_AUTH__FAILURE_DELAY": "10ms", "POSTBAY_AUTH__MAX_FAILURE_DELAY": "20ms"})
    pb.apply(FIXTURES / "example.yaml")
    pb.start_dev()
    user, password, wrong = "alice@example.test", "alice-secret", "wrong-Pass-4711"

    imap = imaplib.IMAP4("127.0.0.1", pb.port(143), timeout=10)
    with pytest.raises(imaplib.IMAP4.error):
        imap.login(user, wrong)
    imap.login(user, password)
    imap.logout()
    imap = imaplib.IMAP4("127.0.0.1", pb.port(143), timeout=10)
    imap.authenticate("PLAIN", lambda _: f"\0{user}\0{password}".encode())
    imap.logout()

    context = ssl.create_default_context(cafile=str(pb.cert))
    for mechanism in ("PLAIN", "LOGIN"):
        with smtplib.SMTP("127.0.0.1", pb.port(587), timeout=10) as s:
            s.starttls(context=context)
            s.ehlo("client.test")
            s.user, s.password = user, wrong
            method = s.auth_plain if mechanism == "PLAIN" else s.auth_login
            with pytest.raises(smtplib.SMTPAuthenticationError):
                s.auth(mechanism, method, initial_response_ok=False)
            s.password = password
            s.auth(mechanism, method, initial_response_ok=False)

    pop = poplib.POP3("127.0.0.1", pb.port(110), timeout=10)
    pop.user(user)
    pop.pass_(password)
    pop.quit()

    time.sleep(0.5)  # let the last session's lines reach the log
    log = pb.log()
    secrets = [password, wrong]
    for secret in list(secrets):
        secrets.append(base64.b64encode(secret.encode()).decode())
        secrets.append(base64.b64encode(f"\0{user}\0{secret}".encode()).decode())
    for secret in secrets:
        assert secret not in log, f"{secret!r} appears in the log"
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert len(lines) > 20, "debug logging is on"
    sessions = [line["span"] for line in lines if line.get("span", {}).get("name") == "session"]
    assert sessions, "session lines carry the session span"
    assert all({"session", "remote", "listener"} <= set(span) for span in sessions)
    assert any(span["listener"] == f"127.0.0.1:{pb.port(587)}" for span in sessions)


# --- orphan blobs ---------------------------------------------------------------------------

def store_check(pb: Postbay, *args) -> str:
    out = subprocess.run([str(postbay_binary()), "store", "check", "--data", str(pb.data),
                          "--database-url", pb.database_url, *args],
                         capture_output=True, text=True, env=pb.env, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_store_check_finds_and_repairs_old_orphan_blobs_only(postbay):
    pb = postbay
    with smtplib.SMTP("127.0.0.1", pb.smtp, timeout=10) as s:
        s.sendmail("someone@remote.test", ["alice@example.test"], b"Subject: kept\r\n\r\nkept\r\n")
    pb.wait_messages("alice@example.test", 1)
    (real,) = pb.query("SELECT blob_path FROM messages")
    real = pb.data / "mail" / real[0]
    # What a crash between a blob's fsync and its row's commit leaves: a blob nobody names.
    old_orphan = real.parent / "01HZZZZZZZZZZZZZZZZZZZZZZZ.eml"
    young_orphan = real.parent / "01J00000000000000000000000.eml"
    for orphan in (old_orphan, young_orphan):
        orphan.write_bytes(b"Subject: half\r\n\r\nhalf a deliv")
    two_hours_ago = time.time() - 7200
    os.utime(old_orphan, (two_hours_ago, two_hours_ago))
    os.utime(real, (two_hours_ago, two_hours_ago))  # old too, but it has its row

    report = store_check(pb)
    rel = str(old_orphan.relative_to(pb.data / "mail"))
    assert f"orphan {rel} (" in report
    assert "3 blobs, 1 orphans" in report, report
    assert "1 younger than 1h" in report
    assert old_orphan.exists(), "without --repair nothing is removed"

    report = store_check(pb, "--repair")
    assert "removed 1 orphans" in report
    assert not old_orphan.exists()
    assert young_orphan.exists(), "a blob younger than the grace period may still get its row"
    assert real.exists()
    assert pb.total_messages() == 1
    # Once the young one is older than a shorter grace it goes too; the real blob never does.
    report = store_check(pb, "--repair", "--grace", "0s")
    assert "removed 1 orphans" in report and not young_orphan.exists() and real.exists()
    assert "1 blobs, 0 orphans" in store_check(pb, "--grace", "0s")


def test_running_role_sweeps_old_orphans_and_keeps_young_ones(make_postbay):
    """The periodic sweep: an orphan older than the grace period goes, counted; a younger
    one and every blob with a row stay."""
    pb = make_postbay(env={"POSTBAY_STORE__ORPHAN_SWEEP_INTERVAL": "300ms",
                           "POSTBAY_STORE__ORPHAN_GRACE": "30m"})
    pb.apply(FIXTURES / "example.yaml")
    pb.start_dev()
    with smtplib.SMTP("127.0.0.1", pb.smtp, timeout=10) as s:
        s.sendmail("someone@remote.test", ["alice@example.test"], b"Subject: kept\r\n\r\nkept\r\n")
    pb.wait_messages("alice@example.test", 1)
    (real,) = pb.query("SELECT blob_path FROM messages")
    real = pb.data / "mail" / real[0]
    old_orphan = real.parent / "01HZZZZZZZZZZZZZZZZZZZZZZZ.eml"
    young_orphan = real.parent / "01J00000000000000000000000.eml"
    for orphan in (old_orphan, young_orphan):
        orphan.write_bytes(b"Subject: half\r\n\r\nhalf a deliv")
    an_hour_ago = time.time() - 3600
    os.utime(old_orphan, (an_hour_ago, an_hour_ago))
    os.utime(real, (an_hour_ago, an_hour_ago))

    admin = pb.port(8080)
    deadline = time.time() + 30
    while old_orphan.exists():
        assert time.time() < deadline, f"the sweep never removed the old orphan:\n{pb.log()}"
        time.sleep(0.1)
    # Let a few more rounds pass: nothing else may go.
    rounds = series(scrape(admin), 'postbay_orphan_sweeps_total{result="done"}')
    while series(scrape(admin), 'postbay_orphan_sweeps_total{result="done"}') < rounds + 3:
        assert time.time() < deadline, pb.log()
        time.sleep(0.1)
    assert young_orphan.exists(), "a blob younger than the grace period may still get its row"
    assert real.exists()
    assert series(scrape(admin), "postbay_orphan_blobs_removed_total") == 1
    assert "orphan sweep done" in pb.log()


def test_readyz_follows_the_database_going_away_and_back(tmp_path):
    if not MYSQL_URL:
        message = "POSTBAY_TEST_MYSQL_URL is not set: this test takes MariaDB away"
        if REQUIRE:
            pytest.fail(message)
        pytest.skip(message)
    pb = Postbay(tmp_path / "away", "mariadb")
    creds, hostport = MYSQL_URL.split("://", 1)[1].rsplit("@", 1)
    host, _, port = hostport.partition(":")
    proxy = Proxy((host, int(port or 3306)))
    try:
        proxy.open()
        pb.apply(FIXTURES / "example.yaml")
        pb.start("dev", "--data", str(pb.data), "--port-base", str(pb.base),
                 "--database-url", f"mysql://{creds}@127.0.0.1:{proxy.port}/{pb.mysql.name}",
                 wait_ports=[pb.smtp], log_name="dev")
        admin = pb.port(8080)
        wait_ready_http(admin)
        proxy.close()
        deadline = time.time() + 20
        status, body = http_get(admin, "/readyz")
        while status == 200 and time.time() < deadline:
            time.sleep(0.1)
            status, body = http_get(admin, "/readyz")
        assert (status, body) == (503, "database not reachable\n")
        assert http_get(admin, "/healthz")[0] == 200
        proxy.open()
        wait_ready_http(admin, timeout=40)
    finally:
        pb.cleanup()
        proxy.close()
