"""Mail sent over SMTP and read over IMAP, through the real binary: in one `postbay dev`,
and across replicas (two `postbay imap` processes on one volume and database)."""

import imaplib
import smtplib
import socket
import ssl
import subprocess
import threading
import time

from conftest import FIXTURES, ROOT, need_tool, postbay_binary, wait_port


def test_readme_first_mail(make_postbay):
    """The README's commands: `postbay dev -f examples/example.test`, swaks, then read it."""
    pb = make_postbay()
    pb.start("dev", "--data", str(pb.data), "--port-base", str(pb.base), "--database-url", pb.database_url,
             "-f", str(ROOT / "examples" / "example.test"), wait_ports=[pb.smtp, pb.port(143)], log_name="dev")
    swaks = need_tool("swaks")
    out = subprocess.run([swaks, "--server", f"127.0.0.1:{pb.smtp}", "--from", "you@remote.test",
                          "--to", "alice@example.test", "--tls"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout
    pb.wait_messages("alice@example.test", 1)
    curl = need_tool("curl")
    got = subprocess.run([curl, "-sS", f"imap://127.0.0.1:{pb.port(143)}/INBOX;UID=1",
                          "-u", "alice@example.test:change-me-alice"], capture_output=True, text=True, timeout=30)
    assert got.returncode == 0, got.stderr
    assert "From: you@remote.test" in got.stdout or "you@remote.test" in got.stdout


def test_smtp_in_imap_out_with_imaplib_over_tls(postbay):
    with smtplib.SMTP("127.0.0.1", postbay.smtp, timeout=20) as s:
        s.sendmail("x@remote.test", ["team@example.test"], "Subject: for the team\r\n\r\nhello team\r\n")
    postbay.wait_messages("bob@example.test", 1)
    ctx = ssl.create_default_context(cafile=str(postbay.cert))
    with imaplib.IMAP4_SSL("127.0.0.1", postbay.port(993), ssl_context=ctx) as m:
        m.login("bob@example.test", "bob-secret")
        typ, data = m.select("INBOX")
        assert typ == "OK" and data == [b"1"]
        typ, data = m.uid("FETCH", "1", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT RETURN-PATH)])")
        assert typ == "OK"
        header = data[0][1]
        assert b"Subject: for the team" in header and b"Return-Path: <x@remote.test>" in header
        typ, _ = m.uid("STORE", "1", "+FLAGS", r"(\Seen)")
        assert typ == "OK"
        typ, data = m.uid("MOVE", "1", "Archive") if "MOVE" in m.capabilities else m.uid("COPY", "1", "Archive")
        assert typ == "OK"
    with imaplib.IMAP4("127.0.0.1", postbay.port(143)) as m:
        m.starttls(ssl_context=ctx)
        m.login("bob@example.test", "bob-secret")
        typ, data = m.status("Archive", "(MESSAGES)")
        assert b"MESSAGES 1" in data[0]


def idle_until_exists(port, user, password, ready, result, timeout=20):
    """Selects INBOX, enters IDLE and records the first untagged EXISTS and when it came."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    f = s.makefile("rwb")

    def cmd(line):
        f.write(line + b"\r\n")
        f.flush()

    def until(prefix):
        while True:
            line = f.readline()
            if not line:
                raise EOFError
            if line.startswith(prefix):
                return line

    until(b"* OK")
    cmd(b'a LOGIN "%s" "%s"' % (user.encode(), password.encode()))
    until(b"a OK")
    cmd(b"b SELECT INBOX")
    until(b"b OK")
    cmd(b"c IDLE")
    until(b"+")
    ready.set()
    while True:
        line = f.readline()
        if not line:
            break
        if line.startswith(b"* ") and line.rstrip().endswith(b"EXISTS"):
            result["exists_at"] = time.time()
            result["line"] = line
            break
    cmd(b"DONE")
    s.close()


def test_idle_on_one_replica_hears_delivery_through_another(make_postbay):
    pb = make_postbay()
    pb.apply(FIXTURES / "example.yaml")
    base_env = {"POSTBAY_DATA_DIR": str(pb.data), "POSTBAY_DATABASE_URL": pb.database_url,
                "POSTBAY_IMAP__ALLOW_PLAINTEXT_AUTH": "true"}
    replicas = []
    for n, offset in enumerate((0, 1000)):
        pb.env.update(base_env)
        pb.env.update({"POSTBAY_NODE_ID": f"imap-{n}", **pb.listener_env(offset)})
        pb.start("imap", wait_ports=[pb.lmtp + offset, pb.port(143) + offset], log_name=f"imap-{n}")
        replicas.append(offset)
    # SMTP delivers through replica 1's LMTP; the IDLE client sits on replica 0.
    pb.env.update({**pb.listener_env(),
                   "POSTBAY_SMTP__LMTP_TARGET": f"127.0.0.1:{pb.lmtp + 1000}", "POSTBAY_NODE_ID": "smtp-0"})
    pb.start("smtp", wait_ports=[pb.smtp], log_name="smtp")
    ready, result = threading.Event(), {}
    t = threading.Thread(target=idle_until_exists,
                         args=(pb.port(143), "alice@example.test", "alice-secret", ready, result))
    t.start()
    assert ready.wait(15)
    time.sleep(0.5)
    with smtplib.SMTP("127.0.0.1", pb.smtp, timeout=20) as s:
        s.sendmail("x@remote.test", ["alice@example.test"], "Subject: cross replica\r\n\r\nx\r\n")
    delivered_at = None
    deadline = time.time() + 20
    while time.time() < deadline and delivered_at is None:
        if pb.messages("alice@example.test"):
            delivered_at = time.time()
        time.sleep(0.05)
    t.join(timeout=20)
    assert delivered_at is not None, "delivered"
    assert "exists_at" in result, "IDLE on replica 0 never heard of the delivery"
    assert result["line"].strip() == b"* 1 EXISTS"
    assert result["exists_at"] - delivered_at < 2.0, f"EXISTS {result['exists_at'] - delivered_at:.2f}s after delivery"
