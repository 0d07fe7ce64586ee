"""Debian's real Rspamd as Postbay's filter (tests/peers_rspamd.py), against `postbay filter`:
rspamc works against the peer, and Postbay's MX (`postbay dev` with smtp.filter pointed at the
real Rspamd's normal worker) gives the same verdict classes as with its own filter for the
same messages: GTUBE refused at DATA with 550 5.7.1 and not delivered, a clean message in the
INBOX, an "add header" verdict (Rspamd's YJS GTUBE variant) in Junk with `X-Spam: Yes`, a
"rewrite subject" verdict (ZJS) in Junk with its Subject rewritten, a soft reject 451 4.7.1
and not delivered."""

import email.policy
import email.utils
import smtplib
import subprocess

import pytest

from conftest import need_tool
from peers_rspamd import SOFT_REJECT_MARK, SOFT_REJECT_MESSAGE, start_rspamd
from test_filter import GTUBE, dev_with_filter, dns, imap_fetch_all, message_file, wait_until  # noqa: F401

GTUBE_ADD_HEADER = "Y" + GTUBE[1:]
GTUBE_REWRITE_SUBJECT = "Z" + GTUBE[1:]


def message(mid: str, body: str, subject: str = "lunch") -> str:
    """A well-formed message dated now (Rspamd scores dates far in the past or future)."""
    return (f"From: Alice <alice@example.org>\r\nTo: alice@example.test\r\nSubject: {subject}\r\n"
            f"Date: {email.utils.formatdate()}\r\nMessage-ID: <{mid}@example.org>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n")


@pytest.fixture
def rspamd(dns):
    yield from start_rspamd(dns.port)


def rspamc(port: int, *args) -> str:
    out = subprocess.run([need_tool("rspamc"), "-h", f"127.0.0.1:{port}", *args], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_rspamc_against_the_real_rspamd(rspamd, tmp_path):
    clean = rspamc(rspamd.port, "-i", "127.0.0.1", "symbols", message_file(tmp_path, "c.eml", message("c1", "hello")))
    assert "Action: no action" in clean, clean
    gtube = rspamc(rspamd.port, "symbols", message_file(tmp_path, "g.eml", message("g1", GTUBE)))
    assert "Action: reject" in gtube and "Symbol: GTUBE" in gtube, gtube
    assert "smtp_message: Gtube pattern" in gtube, gtube
    tagged = rspamc(rspamd.port, "symbols", message_file(tmp_path, "y.eml", message("y1", GTUBE_ADD_HEADER)))
    assert "Action: add header" in tagged, tagged
    soft = rspamc(rspamd.port, "-i", "127.0.0.1", "symbols",
                  message_file(tmp_path, "s.eml", message("s1", "later", subject=SOFT_REJECT_MARK)))
    assert "Action: soft reject" in soft and "POSTBAY_SOFT_TEST" in soft, soft
    # The controller answers rspamc's stat (no Redis, so no Bayes statfiles are loaded).
    stat = rspamc(rspamd.controller, "stat")
    assert "Messages scanned: 4" in stat, stat
    assert "BAYES" not in stat, stat


# --- Postbay's MX with either filter ------------------------------------------------------

FILTERS = ["rspamd", "postbay"]


def mx(make_postbay, dns, request, kind: str, **extra):
    """`postbay dev` whose MX asks the real Rspamd (a peer started here) or its own filter."""
    if kind == "rspamd":
        gen = start_rspamd(dns.port)
        peer = next(gen)
        request.addfinalizer(gen.close)
        extra["POSTBAY_SMTP__FILTER"] = peer.url
    else:
        peer = None
    return dev_with_filter(make_postbay, dns, **extra), peer


def send(pb, body: str):
    """(code, text) of DATA for one message from x@remote.test to alice@example.test."""
    with smtplib.SMTP("127.0.0.1", pb.smtp, timeout=60) as s:
        s.ehlo("client.remote.test")
        s.mail("x@remote.test")
        code, text = s.rcpt("alice@example.test")
        assert code == 250, text
        return s.data(body)


@pytest.mark.parametrize("kind", FILTERS)
def test_mx_verdicts_are_the_same_with_rspamd_and_postbay_filter(make_postbay, dns, request, kind):
    pb, peer = mx(make_postbay, dns, request, kind)
    code, text = send(pb, message("g1", GTUBE))
    assert (code, text[:5]) == (550, b"5.7.1"), text
    assert b"Gtube pattern" in text
    code, text = send(pb, message("c1", "a clean message"))
    assert code == 250, text
    code, text = send(pb, message("y1", "tagged " + GTUBE_ADD_HEADER))
    assert code == 250, text
    pb.wait_messages("alice@example.test", 1)
    pb.wait_messages("alice@example.test", 1, folder="Junk")
    inbox = imap_fetch_all(pb, "alice@example.test", "alice-secret")
    junk = imap_fetch_all(pb, "alice@example.test", "alice-secret", folder="Junk")
    assert len(inbox) == 1 and b"a clean message" in inbox[0], inbox
    assert b"X-Spam: Yes" not in inbox[0]
    assert len(junk) == 1 and b"tagged" in junk[0], junk
    assert b"\r\nX-Spam: Yes\r\n" in b"\r\n" + junk[0], junk[0][:600]
    assert not any(GTUBE.encode() in m for m in inbox + junk), "the rejected message was delivered"
    assert pb.total_messages() == 2
    if peer:
        # Rspamd saw the envelope Postbay sent: client address, sender, recipient, queue id.
        wait_until(lambda: "rcpts: <alice@example.test>" in peer.log(), "rspamd's scan log lines")
        scans = [line for line in peer.log().splitlines() if "rspamd_task_write_log" in line
                 or "rcpts: <alice@example.test>" in line]
        assert any("ip: 127.0.0.1" in s and "from: <x@remote.test>" in s and "qid: <" in s for s in scans), scans


@pytest.mark.parametrize("kind", FILTERS)
def test_mx_soft_reject_with_rspamd_and_postbay_filter(make_postbay, dns, request, kind):
    """Rspamd: its force_actions rule answers "soft reject"; `postbay filter`: greylisting's
    first attempt answers "greylist". Both are 451 4.7.1 at DATA, nothing is delivered."""
    extra = {} if kind == "rspamd" else {"POSTBAY_FILTER__GREYLISTING": "true"}
    pb, _ = mx(make_postbay, dns, request, kind, **extra)
    code, text = send(pb, message("s1", "later please", subject=SOFT_REJECT_MARK))
    assert (code, text[:5]) == (451, b"4.7.1"), text
    expected = SOFT_REJECT_MESSAGE if kind == "rspamd" else "Greylisted"
    assert expected.encode() in text, text
    assert pb.total_messages() == 0


@pytest.mark.parametrize("kind", FILTERS)
def test_mx_rewrites_the_subject_with_rspamd_and_postbay_filter(make_postbay, dns, request, kind):
    """Rspamd's ZJS GTUBE variant asks for "rewrite subject": the reply's `subject` (Rspamd's
    default `*** SPAM *** %s`, RFC 2047 encoded since the old one was not ASCII) replaces the
    Subject, and the message goes to Junk."""
    pb, _ = mx(make_postbay, dns, request, kind)
    subject = "=?utf-8?q?Gr=C3=BC=C3=9Fe?="
    code, text = send(pb, message("z1", "rewrite me " + GTUBE_REWRITE_SUBJECT, subject=subject))
    assert code == 250, text
    pb.wait_messages("alice@example.test", 1, folder="Junk")
    junk = imap_fetch_all(pb, "alice@example.test", "alice-secret", folder="Junk")
    assert len(junk) == 1, junk
    parsed = email.message_from_bytes(junk[0], policy=email.policy.default)
    assert parsed["Subject"] == "*** SPAM *** Grüße", junk[0][:800]
    assert len(parsed.get_all("Subject")) == 1, junk[0][:800]
    assert parsed["X-Spam"] == "Yes", junk[0][:800]
    header = junk[0].split(b"\r\n\r\n", 1)[0]
    assert header.isascii(), header
