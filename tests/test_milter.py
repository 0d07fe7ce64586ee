"""Postfix with `smtpd_milters` pointing at `postbay filter`'s milter listener, as the classic
stack uses Rspamd's proxy worker: a private Postfix instance on loopback takes mail with
smtplib, asks the filter over the milter protocol, and relays what it accepts to an aiosmtpd
peer standing in for the next hop. Rejections must be Postfix's own SMTP replies, accepted
mail must carry the filter's header changes, and the message the filter scanned must be the
one Postfix received byte for byte (a dkimpy signature with simple canonicalization
verifies)."""

import base64
import email
import email.header
import os
import re
import shutil
import smtplib
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import REQUIRE, free_port_base, need_tool, port_free, wait_port
from peers_outbound import Peer
from peers_postfix import start_postfix, stop_postfix
from test_filter import GTUBE, LocalDns, start_filter

SIGNED = (
    "From: Carol <carol@sender.test>\r\nTo: bob@example.test\r\nSubject: signed through Postfix\r\n"
    "Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <m1@sender.test>\r\n\r\n"
    "hello there,\r\n  two spaces and a trailing one \r\n\r\nbye\r\n"
)


def postfix_with_milter(root: Path, listen_port: int, milter_port: int, next_hop: int) -> Path:
    return start_postfix(root, listen_port, "classic.test", f"""\
relayhost = [127.0.0.1]:{next_hop}
smtp_tls_security_level = none
smtpd_milters = inet:127.0.0.1:{milter_port}
milter_default_action = tempfail
milter_protocol = 6
""")


class Classic:
    def __init__(self, port, peer, filter_log, postfix_log):
        self.port, self.peer, self.filter_log, self.postfix_log = port, peer, filter_log, postfix_log

    def send(self, sender, rcpt, raw: bytes):
        with smtplib.SMTP("127.0.0.1", self.port, timeout=60) as s:
            s.ehlo("client.sender.test")
            s.sendmail(sender, [rcpt], raw)

    def relayed(self, count, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.peer.messages) >= count:
                return [email.message_from_bytes(m.content) for m in self.peer.messages]
            time.sleep(0.1)
        raise AssertionError(f"{len(self.peer.messages)} of {count} messages relayed; Postfix log:\n"
                             + self.postfix_log.read_text(errors="replace")[-3000:])


@pytest.fixture
def classic(tmp_path):
    if os.geteuid() != 0:
        message = "a private Postfix instance needs root"
        if REQUIRE:
            pytest.fail(message)
        pytest.skip(message)
    need_tool("postfix")
    dns = LocalDns()
    base = free_port_base()
    milter_port = base + 11332
    filter_run = start_filter(tmp_path, dns, {"POSTBAY_FILTER__MILTER_LISTEN": f"127.0.0.1:{milter_port}"})
    next(filter_run)
    wait_port(milter_port)
    hop = next(p for p in range(base + 40, base + 90) if port_free(p))
    peer = Peer("127.0.0.1", hop)
    # Postfix's own users must reach the instance's folders; pytest's tmp_path is 0700.
    root = Path(tempfile.mkdtemp(prefix="postbay-milter-", dir="/tmp"))
    root.chmod(0o755)
    listen = next(p for p in range(hop + 1, base + 99) if port_free(p))
    etc = postfix_with_milter(root, listen, milter_port, hop)
    try:
        yield Classic(listen, peer, tmp_path / "filter.log", root / "postfix.log"), dns
    finally:
        stop_postfix(etc)
        peer.stop()
        filter_run.close()
        dns.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_gtube_is_refused_by_postfix_at_data(classic):
    mx, _ = classic
    raw = f"From: x@sender.test\r\nTo: bob@example.test\r\nSubject: test\r\n\r\n{GTUBE}\r\n".encode()
    with pytest.raises(smtplib.SMTPDataError) as refused:
        mx.send("x@sender.test", "bob@example.test", raw)
    assert refused.value.smtp_code == 550, refused.value
    assert b"5.7.1 Gtube pattern" in refused.value.smtp_error, refused.value
    # A clean one afterwards on the same instance goes through, unchanged but for the trace.
    mx.send("x@sender.test", "bob@example.test",
            b"From: x@sender.test\r\nTo: bob@example.test\r\nSubject: fine\r\n"
            b"Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <ok@sender.test>\r\n\r\nall good\r\n")
    [msg] = mx.relayed(1)
    assert msg["Subject"] == "fine" and msg["X-Spam"] is None, mx.peer.messages[0].content
    assert len(mx.peer.messages) == 1
    log = re.sub(r"\x1b\[[0-9;]*m", "", mx.filter_log.read_text())
    assert re.search(r"milter: scanned.*queue_id=\"?[0-9A-F]{6,}", log), log[-2000:]
    assert "action=\"reject\"" in log or "action=reject" in log, log[-2000:]


def test_add_header_action_tags_the_relayed_message(classic):
    mx, _ = classic
    raw = ("From: x@sender.test\r\nTo: bob@example.test\r\nSubject: tag me\r\n"
           "Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <t@sender.test>\r\n\r\n"
           "Y" + GTUBE[1:] + "\r\n").encode()
    mx.send("x@sender.test", "bob@example.test", raw)
    [msg] = mx.relayed(1)
    assert msg["X-Spam"] == "Yes", msg
    assert msg["X-Spam-Score"] is not None
    assert msg["Subject"] == "tag me"


def test_rewrite_subject_action_changes_the_relayed_subject(classic):
    """Rspamd's ZJS GTUBE variant: the filter answers SMFIR_CHGHEADER for the first Subject
    with the new one, RFC 2047 encoded (the old subject was not ASCII), as Rspamd's proxy does."""
    mx, _ = classic
    raw = ("From: x@sender.test\r\nTo: bob@example.test\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
           "Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <z@sender.test>\r\n\r\n"
           "Z" + GTUBE[1:] + "\r\n").encode()
    mx.send("x@sender.test", "bob@example.test", raw)
    [msg] = mx.relayed(1)
    subjects = msg.get_all("Subject")
    assert len(subjects) == 1, subjects
    decoded = str(email.header.make_header(email.header.decode_header(subjects[0])))
    assert decoded == "*** SPAM *** Grüße", subjects
    assert subjects[0].isascii(), subjects
    assert msg["X-Spam"] == "Yes", msg


def test_dkim_spf_and_dmarc_through_the_milter(classic, tmp_path):
    """The scanned copy is exactly what Postfix got: a simple/simple DKIM signature passes,
    SPF sees the client address and MAIL FROM; a body changed after signing fails and DMARC's
    p=reject makes Postfix refuse it. A forged Authentication-Results claiming our id is
    deleted (SMFIR_CHGHEADER), ours inserted on top (SMFIR_INSHEADER)."""
    import dkim

    mx, dns = classic
    openssl = need_tool("openssl")
    key_file = tmp_path / "dkim.key"
    subprocess.run([openssl, "genrsa", "-traditional", "-out", str(key_file), "2048"], check=True,
                   capture_output=True)
    public = subprocess.run([openssl, "rsa", "-in", str(key_file), "-pubout", "-outform", "DER"],
                            check=True, capture_output=True).stdout
    dns.records["sel._domainkey.sender.test"] = "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode()
    dns.records["sender.test"] = "v=spf1 ip4:127.0.0.1 -all"
    dns.records["_dmarc.sender.test"] = "v=DMARC1; p=reject"
    raw = SIGNED.encode()
    signature = dkim.sign(raw, b"sel", b"sender.test", key_file.read_bytes(),
                          canonicalize=(b"simple", b"simple"),
                          include_headers=[b"From", b"To", b"Subject", b"Date", b"Message-ID"])
    forged = b"Authentication-Results: mx.example.test; dkim=pass header.d=forged.test\r\n"
    mx.send("bounce@sender.test", "bob@example.test", forged + signature + raw + b"")
    [msg] = mx.relayed(1)
    results = msg.get_all("Authentication-Results")
    assert len(results) == 1, results
    assert "forged" not in results[0], results
    assert results[0].startswith("mx.example.test;"), results
    assert "dkim=pass" in results[0] and "header.s=sel" in results[0], results
    assert "spf=pass" in results[0] and "smtp.mailfrom=bounce@sender.test" in results[0], results
    assert "dmarc=pass" in results[0], results
    # Our field is the first one: above Postfix's Received.
    assert msg.keys()[0] == "Authentication-Results", msg.keys()

    tampered = (signature + raw).replace(b"hello there", b"hello thera")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        # From another envelope domain, so SPF cannot align and DMARC rests on DKIM.
        mx.send("bounce@other.test", "bob@example.test", tampered)
    assert refused.value.smtp_code == 550, refused.value
    assert b"5.7.1" in refused.value.smtp_error
    time.sleep(1)
    assert len(mx.peer.messages) == 1


def test_milter_listener_limits(tmp_path):
    """An MTA that goes quiet is dropped after filter.milter_idle_timeout; a packet longer
    than any milter packet ends the connection with a logged protocol error."""
    import socket

    dns = LocalDns()
    milter_port = free_port_base() + 11332
    run = start_filter(tmp_path, dns, {"POSTBAY_FILTER__MILTER_LISTEN": f"127.0.0.1:{milter_port}",
                                       "POSTBAY_FILTER__MILTER_IDLE_TIMEOUT": "1s"})
    next(run)
    try:
        wait_port(milter_port)
        quiet = socket.create_connection(("127.0.0.1", milter_port), timeout=15)
        started = time.time()
        assert quiet.recv(1) == b""  # closed by the filter, not by our 15 s timeout
        assert time.time() - started < 15
        huge = socket.create_connection(("127.0.0.1", milter_port), timeout=15)
        huge.sendall((1 << 30).to_bytes(4, "big") + b"O")
        assert huge.recv(1) == b""
        deadline = time.time() + 10
        while "milter connection ended" not in (tmp_path / "filter.log").read_text() and time.time() < deadline:
            time.sleep(0.1)
        log = re.sub(r"\x1b\[[0-9;]*m", "", (tmp_path / "filter.log").read_text())
        assert "milter connection idle too long; closed" in log, log[-2000:]
        assert "milter connection ended" in log, log[-2000:]
    finally:
        run.close()
        dns.stop()
