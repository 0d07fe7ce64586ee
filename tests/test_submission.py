"""Sending, part 1: submission on 587 (STARTTLS) and 465 (implicit TLS) with AUTH, the sender
rules, RFC 6409 fixes and DKIM signing, driven by clients nobody here wrote: swaks, Python's
smtplib, msmtp (GNU SASL, for SCRAM-SHA-256) and curl; every DKIM signature is checked with
dkimpy (../shared/peers/dkim-verify.py or its copy in tests/peers)."""

import base64
import email
import json
import smtplib
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT, need_tool
from smtp_raw import Raw

VERIFIER_CANDIDATES = [
    ROOT.parent / "shared" / "peers" / "dkim-verify.py",
    Path("/work/shared/peers/dkim-verify.py"),
]


@pytest.fixture
def sub(make_postbay):
    pb = make_postbay()
    pb.apply(FIXTURES / "example.yaml", FIXTURES / "submission.yaml")
    pb.start_dev()
    pb.submission = pb.port(587)
    pb.submissions = pb.port(465)
    from conftest import wait_port

    wait_port(pb.submission)
    wait_port(pb.submissions)
    return pb


def tls_context(pb) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pb.cert))
    ctx.check_hostname = False
    return ctx


def swaks(pb, *args) -> subprocess.CompletedProcess:
    need_tool("swaks")
    return subprocess.run(["swaks", "--server", "127.0.0.1", *args], capture_output=True, text=True, timeout=60)


def dkim_records(pb) -> list[str]:
    """The TXT records the operator/apply publish for example.test's keys, as NAME=RECORD."""
    rows = pb.query("SELECT selector, algorithm, public_key FROM dkim_keys WHERE domain = 'example.test'")
    out = []
    for selector, algorithm, public_key in rows:
        k = "ed25519" if "ed25519" in algorithm else "rsa"
        out.append(f"{selector}._domainkey.example.test=v=DKIM1; k={k}; p={public_key}")
    assert len(out) == 2, rows
    return out


def verify_dkim(pb, message: bytes) -> subprocess.CompletedProcess:
    verifier = next((p for p in VERIFIER_CANDIDATES if p.exists()), None)
    if verifier is None:
        need_tool("dkim-verify.py (../shared/peers)")
    args = [sys.executable, str(verifier), "--all"]
    for record in dkim_records(pb):
        args += ["--txt", record]
    return subprocess.run(args, input=message, capture_output=True, timeout=60)


def only_message(pb, address: str) -> bytes:
    got = pb.wait_messages(address, 1)
    assert len(got) == 1, f"{address} got {len(got)} messages"
    return got[0]


def test_swaks_plain_on_587_delivers_signed_fixed_up_mail(sub):
    out = swaks(sub, "--port", str(sub.submission), "--tls", "--auth", "PLAIN",
                "--auth-user", "alice@example.test", "--auth-password", "alice-secret",
                "--from", "alice@example.test", "--to", "bob@example.test",
                "--header", "Subject: signed", "--header", "Bcc: hidden@example.test",
                "--header", "Message-ID:", "--header", "Date:",
                "--body", "Hello Bob,\nsigned by Postbay.\n")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "235 2.7.0" in out.stdout
    raw = only_message(sub, "bob@example.test")
    msg = email.message_from_bytes(raw)
    assert msg["Bcc"] is None, "Bcc must not reach recipients"
    assert msg["Message-ID"] and msg["Message-ID"].strip() != ""
    assert msg["Date"]
    received = msg.get_all("Received")[0]
    assert "with ESMTPSA" in received, received
    # Not spam-scored, but its authentication is recorded (RFC 8601 method "auth"), on top
    # of our Received (delivery adds Return-Path and Delivered-To above both).
    keys = msg.keys()
    assert keys.index("Authentication-Results") == keys.index("Received") - 1, keys
    results = " ".join(msg["Authentication-Results"].split())
    assert results.endswith("auth=pass smtp.auth=alice@example.test smtp.mailfrom=alice@example.test"), results
    signatures = msg.get_all("DKIM-Signature")
    assert len(signatures) == 2, signatures
    assert any("a=rsa-sha256" in s for s in signatures) and any("a=ed25519-sha256" in s for s in signatures)
    checked = verify_dkim(sub, raw)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    assert checked.stdout.decode().count("signature ok") == 2
    # A tampered body or header no longer verifies.
    for tampered in (raw.replace(b"signed by Postbay", b"signed by Mallory"),
                     raw.replace(b"Subject: signed", b"Subject: s1gned")):
        assert tampered != raw
        bad = verify_dkim(sub, tampered)
        assert bad.returncode == 1, bad.stdout.decode()


def test_swaks_login_on_465_implicit_tls(sub):
    out = swaks(sub, "--port", str(sub.submissions), "--tlsc", "--auth", "LOGIN",
                "--auth-user", "alice@example.test", "--auth-password", "alice-secret",
                "--from", "alice@example.test", "--to", "bob@example.test", "--header", "Subject: 465")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "with ESMTPSA" in email.message_from_bytes(only_message(sub, "bob@example.test"))["Received"]


def test_smtplib_starttls_login_and_smtp_ssl(sub):
    with smtplib.SMTP("127.0.0.1", sub.submission, timeout=30) as s:
        s.ehlo("client.test")
        assert not s.has_extn("auth"), "AUTH must not be offered before TLS"
        s.starttls(context=tls_context(sub))
        s.ehlo("client.test")
        assert "PLAIN" in s.esmtp_features["auth"] and "SCRAM-SHA-256" in s.esmtp_features["auth"]
        s.login("alice@example.test", "alice-secret")
        refused = s.sendmail("alice@example.test", ["bob@example.test"],
                             b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: one\r\n\r\nx\r\n")
        assert refused == {}
    with smtplib.SMTP_SSL("127.0.0.1", sub.submissions, context=tls_context(sub), timeout=30) as s:
        s.login("alice@example.test", "alice-secret")
        s.sendmail("alice@example.test", ["bob@example.test"],
                   b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: two\r\n\r\nx\r\n")
    subjects = sorted(email.message_from_bytes(m)["Subject"] for m in sub.wait_messages("bob@example.test", 2))
    assert subjects == ["one", "two"]


def test_auth_and_mail_before_tls_are_refused_and_mx_offers_no_auth(sub):
    r = Raw(sub.submission)
    assert r.cmd("EHLO client.test").startswith("250")
    assert r.cmd("AUTH PLAIN " + base64.b64encode(b"\0alice@example.test\0alice-secret").decode()).startswith("530 5.7.0")
    assert r.cmd("MAIL FROM:<alice@example.test>").startswith("530 5.7.0")
    mx = Raw(sub.smtp)
    mx.cmd("EHLO client.test")
    assert mx.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zZWNyZXQ=").startswith("503 5.5.1")


def login_error(pb, user, password, port=None) -> smtplib.SMTPAuthenticationError | None:
    with smtplib.SMTP_SSL("127.0.0.1", port or pb.submissions, context=tls_context(pb), timeout=30) as s:
        try:
            s.login(user, password)
        except smtplib.SMTPAuthenticationError as e:
            return e
    return None


def test_wrong_password_and_disabled_mailbox_are_refused(sub):
    wrong = login_error(sub, "alice@example.test", "not-the-password")
    assert wrong is not None and wrong.smtp_code == 535 and b"5.7.8" in wrong.smtp_error
    disabled = login_error(sub, "erin@example.test", "erin-secret")
    assert disabled is not None and disabled.smtp_code == 535
    unknown = login_error(sub, "nobody@example.test", "x")
    assert unknown is not None and unknown.smtp_code == 535
    # Others are still served.
    assert login_error(sub, "bob@example.test", "bob-secret") is None


def test_mail_before_auth_after_tls(sub):
    with smtplib.SMTP("127.0.0.1", sub.submission, timeout=30) as s:
        s.starttls(context=tls_context(sub))
        s.ehlo("client.test")
        code, text = s.mail("alice@example.test")
        assert (code, text[:5]) == (530, b"5.7.0")


def submit(pb, user, password, mail_from, rcpts, from_header):
    """(code, text) of the first refusal, or (250, b'') when the message was accepted."""
    with smtplib.SMTP_SSL("127.0.0.1", pb.submissions, context=tls_context(pb), timeout=30) as s:
        s.login(user, password)
        code, text = s.mail(mail_from)
        if code != 250:
            return code, text
        for rcpt in rcpts:
            code, text = s.rcpt(rcpt)
            if code != 250:
                return code, text
        body = f"From: {from_header}\r\nTo: {rcpts[0]}\r\nSubject: rules\r\n\r\nbody\r\n".encode()
        code, text = s.data(body)
        return code, (b"" if code == 250 else text)


def test_sender_rules(sub):
    alice = ("alice@example.test", "alice-secret")
    assert submit(sub, *alice, "bob@example.test", ["bob@example.test"], "alice@example.test")[0] == 553
    code, text = submit(sub, *alice, "alice@example.test", ["bob@example.test"], "Bob <bob@example.test>")
    assert (code, text[:5]) == (550, b"5.7.1"), (code, text)
    # Aliases of the login (spec.aliases), a MailAlias naming it, and the null sender.
    assert submit(sub, *alice, "postmaster@example.test", ["bob@example.test"], "postmaster@example.test")[0] == 250
    assert submit(sub, *alice, "team@example.test", ["bob@example.test"], "Team <team@example.test>")[0] == 250
    assert submit(sub, *alice, "", ["bob@example.test"], "alice@example.test")[0] == 250
    # sendAs: one address and a whole domain.
    carol = ("carol@example.test", "carol-secret")
    assert submit(sub, *carol, "news@example.test", ["bob@example.test"], "news@example.test")[0] == 250
    assert submit(sub, *carol, "anyone@catch.test", ["bob@example.test"], "anyone@catch.test")[0] == 250
    assert submit(sub, *carol, "alice@example.test", ["bob@example.test"], "carol@example.test")[0] == 553
    sub.wait_messages("bob@example.test", 5)


def test_sending_limit_per_user(sub):
    dave = ("dave@example.test", "dave-secret")
    assert submit(sub, *dave, "dave@example.test", ["bob@example.test"], "dave@example.test")[0] == 250
    assert submit(sub, *dave, "dave@example.test", ["bob@example.test"], "dave@example.test")[0] == 250
    code, text = submit(sub, *dave, "dave@example.test", ["bob@example.test"], "dave@example.test")
    assert (code, text[:5]) == (450, b"4.7.1"), (code, text)
    # Limits are per user.
    assert submit(sub, "alice@example.test", "alice-secret", "alice@example.test", ["bob@example.test"], "alice@example.test")[0] == 250


def test_local_and_remote_recipients(sub):
    code, _ = submit(sub, "alice@example.test", "alice-secret", "alice@example.test",
                     ["bob@example.test", "friend@remote.test"], "alice@example.test")
    assert code == 250
    only_message(sub, "bob@example.test")
    # The remote recipient waits in the queue (outbound delivery is off in `postbay dev`).
    # bob's 250 comes before the runner rewrites the file without him, and a rewrite in
    # flight is a `.tmp-<id>.msg` (pathlib's glob matches dot files): wait for the rewrite,
    # never read a temporary file (this once failed when read too early).
    queue = sub.data / "spool" / "queue" / "node-0"
    deadline = time.time() + 10
    envelopes = []
    while time.time() < deadline:
        envelopes = [json.loads(p.read_bytes().split(b"\n", 1)[0]) for p in queue.glob("*.msg")
                     if not p.name.startswith(".")]
        if envelopes and all(len(e["recipients"]) == 1 for e in envelopes):
            break
        time.sleep(0.1)
    assert [r["address"] for e in envelopes for r in e["recipients"]] == ["friend@remote.test"], envelopes
    assert envelopes[0]["recipients"][0]["local"] is False
    # Without a login, the same remote recipient is still refused: no open relay.
    r = Raw(sub.smtp)
    r.cmd("EHLO client.test")
    r.cmd("MAIL FROM:<alice@example.test>")
    assert r.cmd("RCPT TO:<friend@remote.test>").startswith("554 5.7.1")


def test_msmtp_scram_sha_256(sub, tmp_path):
    msmtp = need_tool("msmtp")
    config = tmp_path / "msmtprc"
    config.write_text(
        "defaults\n"
        f"tls on\ntls_trust_file {sub.cert}\ntls_certcheck off\n"
        "account pb\nhost 127.0.0.1\n"
        f"port {sub.submission}\ntls_starttls on\n"
        "auth scram-sha-256\nuser alice@example.test\npassword alice-secret\n"
        "from alice@example.test\naccount default : pb\n"
    )
    config.chmod(0o600)
    message = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: scram\r\n\r\nvia msmtp\r\n"
    out = subprocess.run([msmtp, "-C", str(config), "-v", "bob@example.test"], input=message,
                         capture_output=True, timeout=60)
    log = out.stdout.decode() + out.stderr.decode()
    assert out.returncode == 0, log
    assert "AUTH SCRAM-SHA-256" in log, log
    assert email.message_from_bytes(only_message(sub, "bob@example.test"))["Subject"] == "scram"
    # A wrong password fails the SCRAM proof.
    config.write_text(config.read_text().replace("password alice-secret", "password wrong"))
    bad = subprocess.run([msmtp, "-C", str(config), "bob@example.test"], input=message,
                         capture_output=True, timeout=60)
    assert bad.returncode != 0
    assert b"535" in bad.stderr + bad.stdout


def test_curl_submission(sub, tmp_path):
    curl = need_tool("curl")
    mail = tmp_path / "mail.txt"
    mail.write_bytes(b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: curl\r\n\r\nvia curl\r\n")
    out = subprocess.run([curl, "-sS", f"smtp://127.0.0.1:{sub.submission}", "--ssl-reqd", "-k",
                          "--mail-from", "alice@example.test", "--mail-rcpt", "bob@example.test",
                          "--user", "alice@example.test:alice-secret", "-T", str(mail)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert email.message_from_bytes(only_message(sub, "bob@example.test"))["Subject"] == "curl"
