"""Postfix as a submission client: a private Postfix instance with `relayhost` pointing at
Postbay's 587 and SASL client credentials (Cyrus SASL PLAIN, TLS required) relays a message
it was handed, exactly as a classic-stack host or an application server would use Postbay
as its smarthost. Postfix must authenticate, be refused with a wrong password, and the
relayed message must arrive signed."""

import email
import os
import shutil
import smtplib
import tempfile
import time
from pathlib import Path

import pytest

from conftest import FIXTURES, REQUIRE, need_tool, port_free, wait_port
from peers_postfix import start_postfix, stop_postfix


def postfix_instance(root, listen_port, relay_port, password):
    """A loopback-only Postfix under `root` relaying through Postbay's 587 with SASL."""
    return start_postfix(root, listen_port, "relay-client.test", f"""\
relayhost = [127.0.0.1]:{relay_port}
smtp_sasl_auth_enable = yes
smtp_sasl_password_maps = static:alice@example.test:{password}
smtp_sasl_security_options = noanonymous
smtp_sasl_tls_security_options = noanonymous
smtp_tls_security_level = encrypt
smtp_tls_loglevel = 1
""")


def free_port(start):
    return next(p for p in range(start, start + 90) if port_free(p))


@pytest.fixture
def relaying(make_postbay, tmp_path):
    if os.geteuid() != 0:
        message = "a private Postfix instance needs root"
        if REQUIRE:
            pytest.fail(message)
        pytest.skip(message)
    need_tool("postfix")
    pb = make_postbay()
    pb.apply(FIXTURES / "example.yaml", FIXTURES / "submission.yaml")
    pb.start_dev()
    wait_port(pb.port(587))
    instances = []
    roots = []

    def start(password):
        # Postfix's own users must reach the instance's folders; pytest's tmp_path is 0700.
        root = Path(tempfile.mkdtemp(prefix="postbay-postfix-", dir="/tmp"))
        root.chmod(0o755)
        roots.append(root)
        port = free_port(pb.base + 30)
        etc = postfix_instance(root, port, pb.port(587), password)
        instances.append(etc)
        return port, root

    yield pb, start
    for etc in instances:
        stop_postfix(etc)
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)


def hand_to_postfix(port, subject):
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.sendmail("alice@example.test", ["bob@example.test"],
                   f"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: {subject}\r\n\r\nrelayed\r\n".encode())


def test_postfix_relays_through_postbay_with_sasl(relaying):
    pb, start = relaying
    port, root = start("alice-secret")
    hand_to_postfix(port, "via postfix")
    got = pb.wait_messages("bob@example.test", 1, timeout=60)
    msg = email.message_from_bytes(got[0])
    assert msg["Subject"] == "via postfix"
    received = msg.get_all("Received")
    assert "with ESMTPSA" in received[0], received
    assert len(msg.get_all("DKIM-Signature") or []) == 2


def test_postfix_with_a_wrong_password_is_refused(relaying):
    pb, start = relaying
    port, root = start("wrong-password")
    hand_to_postfix(port, "must not arrive")
    log = root / "postfix.log"
    deadline = time.time() + 60
    text = ""
    while time.time() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if "SASL authentication failed" in text or "535" in text:
            break
        time.sleep(0.5)
    assert "535" in text, text[-3000:]
    assert pb.messages("bob@example.test") == []
