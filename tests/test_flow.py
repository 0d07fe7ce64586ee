"""The whole way of a message through `postbay dev`: sent over SMTP by one real client,
read back by another (POP3 now; IMAP in test_imap_flow.py)."""

import poplib
import smtplib
import ssl
import subprocess

from conftest import need_tool


def test_smtp_in_pop3_out_with_poplib(postbay):
    with smtplib.SMTP("127.0.0.1", postbay.smtp, timeout=20) as s:
        s.sendmail("x@remote.test", ["bob@example.test"], "Subject: pop me\r\n\r\n.dotted line\r\nbody\r\n")
    postbay.wait_messages("bob@example.test", 1)
    ctx = ssl.create_default_context(cafile=str(postbay.cert))
    p = poplib.POP3_SSL("127.0.0.1", postbay.port(995), context=ctx, timeout=20)
    p.user("bob@example.test")
    p.pass_("bob-secret")
    count, _ = p.stat()
    assert count == 1
    _, lines, _ = p.retr(1)
    assert b"Subject: pop me" in lines and b".dotted line" in lines
    _, uidl, _ = p.uidl()
    p.dele(1)
    p.quit()
    p = poplib.POP3("127.0.0.1", postbay.port(110), timeout=20)
    p.stls(context=ctx)
    p.user("bob@example.test")
    p.pass_("bob-secret")
    assert p.stat()[0] == 0, "DELE + QUIT removed the message"
    p.quit()
    assert postbay.messages("bob@example.test") == []


def test_smtp_in_pop3_out_with_curl(postbay):
    curl = need_tool("curl")
    with smtplib.SMTP("127.0.0.1", postbay.smtp, timeout=20) as s:
        s.sendmail("x@remote.test", ["alice@example.test"], "Subject: curl reads\r\n\r\nhello curl\r\n")
    postbay.wait_messages("alice@example.test", 1)
    out = subprocess.run([curl, "-sS", "--cacert", str(postbay.cert), f"pop3s://localhost:{postbay.port(995)}/1",
                          "--connect-to", f"localhost:{postbay.port(995)}:127.0.0.1:{postbay.port(995)}",
                          "-u", "alice@example.test:alice-secret"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "hello curl" in out.stdout and "Return-Path: <x@remote.test>" in out.stdout
    bad = subprocess.run([curl, "-sS", f"pop3://127.0.0.1:{postbay.port(110)}/", "-u", "alice@example.test:wrong"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0, "a wrong password is refused"
