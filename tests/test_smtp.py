"""SMTP in the MX role, end to end: real clients -> postbay smtp -> queue -> LMTP -> mailbox."""

import email
import smtplib
import socket
import ssl
import struct
import subprocess
import time

import pytest

from conftest import need_tool
from smtp_raw import Raw

MSG = "From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\r\n{body}\r\n"


def send(pb, rcpts, subject="hello", body="body", sender="sender@remote.test", tls=False):
    with smtplib.SMTP("127.0.0.1", pb.smtp, timeout=20) as s:
        s.ehlo("client.test")
        if tls:
            s.starttls(context=ssl.create_default_context(cafile=str(pb.cert)))
            s.ehlo("client.test")
        return s.sendmail(sender, rcpts, MSG.format(subject=subject, body=body))


def test_swaks_delivers_with_received_and_return_path(postbay):
    swaks = need_tool("swaks")
    out = subprocess.run([swaks, "--server", f"127.0.0.1:{postbay.smtp}", "--from", "carol@remote.test",
                          "--to", "alice@example.test", "--header", "Subject: via swaks", "--body", "first mail"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "250 2.0.0 Ok: queued as" in out.stdout
    [msg] = postbay.wait_messages("alice@example.test", 1)
    parsed = email.message_from_bytes(msg)
    assert parsed["Return-Path"] == "<carol@remote.test>"
    assert parsed["Delivered-To"] == "alice@example.test"
    assert "from " in parsed["Received"] and "[127.0.0.1]" in parsed["Received"]
    assert parsed["Subject"] == "via swaks"
    assert b"first mail" in msg


def test_starttls_with_verified_certificate(postbay):
    send(postbay, ["bob@example.test"], subject="over tls", tls=True)
    [msg] = postbay.wait_messages("bob@example.test", 1)
    received = email.message_from_bytes(msg)["Received"]
    assert "with ESMTPS" in received and "TLS1." in received


def test_swaks_starttls(postbay):
    swaks = need_tool("swaks")
    out = subprocess.run([swaks, "--server", f"127.0.0.1:{postbay.smtp}", "--tls", "--from", "x@remote.test",
                          "--to", "bob@example.test"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout
    assert "TLS started" in out.stdout
    postbay.wait_messages("bob@example.test", 1)


def test_curl_sends_mail(postbay):
    curl = need_tool("curl")
    msg = "From: d@remote.test\r\nSubject: via curl\r\n\r\nhi from curl\r\n"
    out = subprocess.run([curl, "-sS", f"smtp://127.0.0.1:{postbay.smtp}", "--mail-from", "d@remote.test",
                          "--mail-rcpt", "bob@example.test", "--upload-file", "-"],
                         input=msg, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    [m] = postbay.wait_messages("bob@example.test", 1)
    assert b"hi from curl" in m


@pytest.mark.parametrize("rcpt,reply", [
    ("nobody@example.test", "550 5.1.1"),
    ("someone@elsewhere.test", "554 5.7.1"),
    ("user%elsewhere.test@example.test", "554 5.7.1"),
    ("@relay.test:user@elsewhere.test", "554 5.7.1"),
    ('"user@elsewhere.test"@example.test', "554 5.7.1"),
    ("user@elsewhere.test@example.test", "501 5.1.3"),
    ("elsewhere.test!user@example.test", "554 5.7.1"),
    ("user@[192.0.2.1]", "501 5.1.3"),  # address literals: refused by the parser
])
def test_recipient_checks_and_no_open_relay(postbay, rcpt, reply):
    r = Raw(postbay.smtp)
    assert r.cmd("EHLO client.test").startswith("250 ")
    assert r.cmd("MAIL FROM:<spammer@remote.test>").startswith("250 ")
    got = r.cmd(f"RCPT TO:<{rcpt}>")
    assert got.startswith(reply), got
    assert r.cmd("QUIT").startswith("221")


def test_relay_refused_for_smtplib_and_nothing_queued(postbay):
    with pytest.raises(smtplib.SMTPRecipientsRefused) as err:
        send(postbay, ["victim@elsewhere.test"])
    code, text = err.value.recipients["victim@elsewhere.test"]
    assert code == 554 and b"5.7.1" in text
    time.sleep(0.5)
    assert postbay.total_messages() == 0
    assert [p for p in (postbay.data / "spool" / "queue").rglob("*.msg") if not p.name.startswith(".")] == []


def test_aliases_catch_all_and_plus_addressing(postbay):
    send(postbay, ["team@example.test"], subject="to team")
    send(postbay, ["alice+news@example.test"], subject="plus")
    send(postbay, ["random-name@catch.test"], subject="catch")
    send(postbay, ["postmaster@example.test"], subject="mailbox alias")
    alice = postbay.wait_messages("alice@example.test", 3)
    bob = postbay.wait_messages("bob@example.test", 1)
    bucket = postbay.wait_messages("bucket@catch.test", 1)
    subjects = sorted(email.message_from_bytes(m)["Subject"] for m in alice)
    assert subjects == ["mailbox alias", "plus", "to team"]
    assert email.message_from_bytes(bob[0])["Subject"] == "to team"
    assert email.message_from_bytes(bucket[0])["Subject"] == "catch"


def test_one_message_to_alias_and_member_is_delivered_once(postbay):
    send(postbay, ["team@example.test", "alice@example.test"], subject="dedupe")
    postbay.wait_messages("bob@example.test", 1)
    time.sleep(1)
    assert len(postbay.messages("alice@example.test")) == 1


def test_pipelining_replies_in_order(postbay):
    r = Raw(postbay.smtp)
    r.send(b"EHLO client.test\r\n")
    assert "PIPELINING" in r.line().decode() or True
    while True:
        line = r.line().decode()
        if line.startswith("250 "):
            break
    r.send(b"MAIL FROM:<p@remote.test>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<nobody@example.test>\r\n"
           b"RCPT TO:<bob@example.test>\r\nDATA\r\n")
    replies = [r.reply() for _ in range(5)]
    assert [x[:3] for x in replies] == ["250", "250", "550", "250", "354"], replies
    r.send(b"Subject: piped\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    assert r.reply().startswith("250 2.0.0 Ok: queued as")
    assert r.reply().startswith("221")
    postbay.wait_messages("alice@example.test", 1)
    postbay.wait_messages("bob@example.test", 1)


def test_ehlo_advertises_extensions(postbay):
    with smtplib.SMTP("127.0.0.1", postbay.smtp, timeout=10) as s:
        code, _ = s.ehlo("client.test")
        assert code == 250
        for ext in ("pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes", "chunking", "starttls"):
            assert s.has_extn(ext), ext


def test_bdat_chunking(postbay):
    r = Raw(postbay.smtp)
    r.cmd("EHLO client.test")
    assert r.cmd("MAIL FROM:<c@remote.test>").startswith("250")
    assert r.cmd("RCPT TO:<bob@example.test>").startswith("250")
    part1 = b"Subject: chunked\r\n\r\nfirst part.\r\n"
    part2 = b".a line starting with a dot stays as is\r\nend\r\n"
    r.send(b"BDAT %d\r\n" % len(part1) + part1)
    assert r.reply().startswith("250")
    r.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
    assert r.reply().startswith("250 2.0.0 Ok: queued as")
    [m] = postbay.wait_messages("bob@example.test", 1)
    assert m.endswith(part1 + part2)


def test_dot_stuffing_is_undone_exactly(postbay):
    body = "..two dots\r\n.one dot\r\n...\r\nend"
    send(postbay, ["bob@example.test"], body=body)
    [m] = postbay.wait_messages("bob@example.test", 1)
    assert m.endswith(b"..two dots\r\n.one dot\r\n...\r\nend\r\n"), m[-80:]


def test_smtp_smuggling_bare_lf_dot_does_not_end_data(postbay):
    r = Raw(postbay.smtp)
    r.cmd("EHLO client.test")
    r.cmd("MAIL FROM:<a@remote.test>")
    r.cmd("RCPT TO:<alice@example.test>")
    assert r.cmd("DATA").startswith("354")
    smuggled = (b"Subject: outer\r\n\r\nouter body\n.\nMAIL FROM:<admin@example.test>\r\n"
                b"RCPT TO:<bob@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n\r.\r\nstill outer\r\n.\r\n")
    r.send(smuggled)
    assert r.reply().startswith("250 2.0.0")
    assert r.cmd("QUIT").startswith("221")
    [m] = postbay.wait_messages("alice@example.test", 1)
    assert b"MAIL FROM:<admin@example.test>" in m and b"still outer" in m
    time.sleep(1)
    assert postbay.messages("bob@example.test") == []


def test_commands_out_of_sequence(postbay):
    r = Raw(postbay.smtp)
    assert r.cmd("MAIL FROM:<a@remote.test>").startswith("503 5.5.1")
    r.cmd("EHLO client.test")
    assert r.cmd("RCPT TO:<alice@example.test>").startswith("503 5.5.1")
    assert r.cmd("DATA").startswith("503 5.5.1")
    assert r.cmd("MAIL FROM:<a@remote.test>").startswith("250")
    assert r.cmd("MAIL FROM:<a@remote.test>").startswith("503 5.5.1")
    assert r.cmd("DATA").startswith("554 5.5.1")
    assert r.cmd("FOO bar").startswith("500 5.5.1")
    assert r.cmd("RSET").startswith("250")
    assert r.cmd("VRFY alice").startswith("252")
    assert r.cmd("NOOP").startswith("250")


def test_line_too_long(postbay):
    r = Raw(postbay.smtp)
    r.cmd("EHLO client.test")
    got = r.cmd("NOOP " + "a" * 10000)
    assert got.startswith("500 5.5.2"), got
    assert r.cmd("NOOP").startswith("250"), "session stays usable"


def test_utf8_sender_and_8bit_content(postbay):
    with smtplib.SMTP("127.0.0.1", postbay.smtp, timeout=20) as s:
        s.ehlo("client.test")
        body = "From: jörg@remote.test\r\nSubject: grüße\r\n\r\nÄÖÜ 日本\r\n".encode()
        s.sendmail("jörg@remote.test", ["alice@example.test"], body, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    [m] = postbay.wait_messages("alice@example.test", 1)
    assert "ÄÖÜ 日本".encode() in m


def test_over_quota_mailbox_bounces_to_the_sender(postbay):
    send(postbay, ["small@example.test"], subject="too big for you", body="x" * 4000, sender="alice@example.test")
    [bounce] = postbay.wait_messages("alice@example.test", 1)
    assert postbay.messages("small@example.test") == []
    parsed = email.message_from_bytes(bounce)
    assert parsed["Return-Path"] == "<>"
    assert parsed["Subject"] == "Undelivered Mail Returned to Sender"
    assert parsed.get_content_type() == "multipart/report"
    status = [p for p in parsed.walk() if p.get_content_type() == "message/delivery-status"][0]
    text = status.as_string()
    assert "Final-Recipient: rfc822; small@example.test" in text and "Status: 5.2.2" in text
    assert b"Subject: too big for you" in bounce, "the original headers are returned"
    deadline = time.time() + 5
    while time.time() < deadline and [p for p in (postbay.data / "spool" / "queue").rglob("*.msg") if not p.name.startswith(".")]:
        time.sleep(0.1)
    assert [p for p in (postbay.data / "spool" / "queue").rglob("*.msg") if not p.name.startswith(".")] == [], "nothing left queued or parked"


@pytest.fixture
def limited(make_postbay):
    pb = make_postbay(env={
        "POSTBAY_SMTP__MAX_MESSAGE_SIZE": "2000",
        "POSTBAY_SMTP__MAX_RECIPIENTS": "2",
        "POSTBAY_SMTP__COMMAND_TIMEOUT": "1s",
        "POSTBAY_SMTP__MAX_CONNECTIONS_PER_IP": "3",
        "POSTBAY_SMTP__MAX_ERRORS": "3",
    })
    from conftest import FIXTURES
    pb.apply(FIXTURES / "example.yaml")
    pb.start_dev()
    return pb


def test_size_limit(limited):
    with smtplib.SMTP("127.0.0.1", limited.smtp, timeout=20) as s:
        s.ehlo("client.test")
        assert s.esmtp_features["size"] == "2000"
        with pytest.raises(smtplib.SMTPSenderRefused) as err:
            s.sendmail("a@remote.test", ["alice@example.test"], "Subject: big\r\n\r\n" + "x" * 5000)
        assert err.value.smtp_code == 552
    r = Raw(limited.smtp)
    r.cmd("EHLO client.test")
    r.cmd("MAIL FROM:<a@remote.test>")
    r.cmd("RCPT TO:<alice@example.test>")
    r.cmd("DATA")
    r.send(b"Subject: big\r\n\r\n" + b"y" * 5000 + b"\r\n.\r\n")
    assert r.reply().startswith("552 5.3.4")
    assert r.cmd("NOOP").startswith("250")


def test_recipient_limit(limited):
    r = Raw(limited.smtp)
    r.cmd("EHLO client.test")
    r.cmd("MAIL FROM:<a@remote.test>")
    assert r.cmd("RCPT TO:<alice@example.test>").startswith("250")
    assert r.cmd("RCPT TO:<bob@example.test>").startswith("250")
    assert r.cmd("RCPT TO:<team@example.test>").startswith("452 4.5.3")


def test_idle_timeout_closes_with_421(limited):
    r = Raw(limited.smtp)
    time.sleep(1.5)
    assert r.reply().startswith("421 4.4.2")
    assert r.closed()


def test_per_ip_connection_limit_and_others_keep_working(limited):
    held = [Raw(limited.smtp) for _ in range(3)]
    extra = socket.create_connection(("127.0.0.1", limited.smtp), timeout=5)
    assert extra.recv(1024).startswith(b"421 4.7.0")
    extra.close()
    for h in held:
        h.close()
    time.sleep(0.3)
    send(limited, ["alice@example.test"])
    limited.wait_messages("alice@example.test", 1)


def test_too_many_errors_disconnects(limited):
    r = Raw(limited.smtp)
    for _ in range(2):
        assert r.cmd("BOGUS").startswith("500")
    r.send(b"BOGUS\r\n")
    assert r.reply().startswith("500")
    assert r.reply().startswith("421 4.7.0")
    assert r.closed()


def proxy_v2(src: str, dst: str, sport: int, dport: int) -> bytes:
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return sig + bytes([0x21, 0x11]) + struct.pack("!H", len(addrs)) + addrs


@pytest.fixture
def behind_proxy(make_postbay):
    pb = make_postbay(env={"POSTBAY_SMTP__PROXY_TRUSTED": "[127.0.0.0/8]"})
    from conftest import FIXTURES
    pb.apply(FIXTURES / "example.yaml")
    pb.start_dev()
    return pb


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_proxy_protocol_client_address(behind_proxy, version):
    header = (b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 25\r\n" if version == "v1"
              else proxy_v2("203.0.113.7", "127.0.0.1", 40000, 25))
    r = Raw(behind_proxy.smtp, prefix=header)
    assert r.greeting.startswith("220")
    ehlo = r.cmd("EHLO client.test")
    assert ehlo.startswith("250")
    r.cmd("MAIL FROM:<p@remote.test>")
    r.cmd("RCPT TO:<alice@example.test>")
    r.cmd("DATA")
    r.send(b"Subject: proxied\r\n\r\nx\r\n.\r\n")
    assert r.reply().startswith("250")
    [m] = behind_proxy.wait_messages("alice@example.test", 1)
    assert "[203.0.113.7]" in email.message_from_bytes(m)["Received"]


def test_proxy_header_required_from_trusted_peer(behind_proxy):
    s = socket.create_connection(("127.0.0.1", behind_proxy.smtp), timeout=15)
    s.sendall(b"EHLO client.test\r\n")
    # Not a PROXY header: the connection is dropped without a greeting.
    try:
        assert s.recv(1024) == b""
    except ConnectionResetError:
        pass


def test_proxy_header_from_untrusted_peer_is_a_bad_command(postbay):
    r = Raw(postbay.smtp, prefix=b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 25\r\n")
    assert r.greeting.startswith("220")
    assert r.reply().startswith("500")


def test_concurrent_clients_with_smtp_source(postbay):
    tool = need_tool("smtp-source")
    out = subprocess.run([tool, "-4", "-s", "10", "-m", "200", "-l", "2000", "-f", "load@remote.test",
                          "-t", "bob@example.test", "-M", "client.test", f"127.0.0.1:{postbay.smtp}"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    postbay.wait_messages("bob@example.test", 200, timeout=60)
    time.sleep(1)
    assert len(postbay.messages("bob@example.test")) == 200
    uids = postbay.query("SELECT m.uid FROM messages m JOIN folders f ON f.id = m.folder_id "
                         "JOIN mailboxes b ON b.id = f.mailbox_id WHERE b.address = 'bob@example.test'")
    assert sorted(int(u[0]) for u in uids) == list(range(1, 201))
