"""Sending, part 2: delivery to other domains. `postbay dev` with outbound delivery on
resolves MX records through a local DNS server (dnslib) and delivers to SMTP peers (aiosmtpd)
on other 127.0.0.x addresses; bounces are read back from alice's INBOX over IMAP."""

import email
import imaplib
import json
import re
import smtplib
import subprocess
import ssl
import time

import pytest

from conftest import FIXTURES, postbay_binary, wait_port
from peers_outbound import Peer, Zone, free_port_on, self_signed
from test_submission import verify_dkim

ALICE = ("alice@example.test", "alice-secret")


def make_world(make_postbay, tmp_path, extra_env=None):
    """DNS, two peers (mx.remote.test with STARTTLS, plain.test without) and a sender."""
    zone = Zone()
    port = free_port_on(["127.0.0.2", "127.0.0.3", "127.0.0.9"])
    tls_peer = Peer("127.0.0.2", port, tls_context=self_signed(tmp_path, "mx.remote.test"))
    plain_peer = Peer("127.0.0.3", port, smtputf8=False)
    # remote.test: a preferred MX that is down (nothing on 127.0.0.9), then the real one.
    zone.add("remote.test", "MX", (5, "down.remote.test"))
    zone.add("remote.test", "MX", (10, "mx.remote.test"))
    zone.add("down.remote.test", "A", "127.0.0.9")
    zone.add("mx.remote.test", "A", "127.0.0.2")
    # plain.test: no MX record at all, so its A record is the implicit MX.
    zone.add("plain.test", "A", "127.0.0.3")
    # nullmx.test: RFC 7505 null MX.
    zone.add("nullmx.test", "MX", (0, "."))
    pb = make_postbay(env={
        "POSTBAY_OUTBOUND__ENABLED": "true",
        "POSTBAY_OUTBOUND__NAMESERVERS": f"[{zone.address}]",
        "POSTBAY_OUTBOUND__MX_PORT": str(port),
        "POSTBAY_OUTBOUND__HOSTNAME": "out.example.test",
        "POSTBAY_OUTBOUND__MIN_BACKOFF": "1s",
        "POSTBAY_OUTBOUND__MAX_BACKOFF": "2s",
        # Long enough that a test's second message always finds the first one's session.
        "POSTBAY_OUTBOUND__CONNECTION_CACHE_TIME": "30s",
        **(extra_env or {}),
    })
    pb.apply(FIXTURES / "example.yaml", FIXTURES / "submission.yaml")
    pb.start_dev()
    wait_port(pb.port(587))
    pb.zone, pb.tls_peer, pb.plain_peer = zone, tls_peer, plain_peer
    return pb


def end_world(pb):
    pb.stop()
    pb.tls_peer.stop()  # a test may have replaced it
    pb.plain_peer.stop()
    pb.zone.stop()


@pytest.fixture
def world(make_postbay, tmp_path):
    pb = make_world(make_postbay, tmp_path)
    yield pb
    end_world(pb)


def submit(pb, rcpts, subject="hello", extra=b"", mail_options=(), rcpt_options=()):
    ctx = ssl.create_default_context(cafile=str(pb.cert))
    ctx.check_hostname = False
    body = (f"From: Alice <alice@example.test>\r\nTo: {', '.join(rcpts)}\r\n"
            f"Subject: {subject}\r\n").encode() + extra + b"\r\nHello over there.\r\n"
    with smtplib.SMTP("127.0.0.1", pb.port(587), timeout=30) as s:
        s.starttls(context=ctx)
        s.login(*ALICE)
        refused = s.sendmail("alice@example.test", rcpts, body, mail_options=list(mail_options),
                             rcpt_options=list(rcpt_options))
        assert refused == {}, refused


def wait_for(predicate, what, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def queue_files(pb):
    return [p for p in (pb.data / "spool" / "queue" / "node-0").glob("*.msg") if not p.name.startswith(".")]


def inbox(pb, user=ALICE) -> list[bytes]:
    with imaplib.IMAP4("127.0.0.1", pb.port(143)) as imap:
        imap.login(*user)
        imap.select("INBOX")
        _, data = imap.search(None, "ALL")
        out = []
        for num in data[0].split():
            _, parts = imap.fetch(num, "(RFC822)")
            out.append(parts[0][1])
        return out


def bounces(pb, count=1):
    got = wait_for(lambda: (lambda m: m if len(m) >= count else None)(inbox(pb)), "a bounce in alice's INBOX")
    assert len(got) == count, f"{len(got)} messages in alice's INBOX"
    reports = []
    for raw in got:
        msg = email.message_from_bytes(raw)
        assert msg.get_content_type() == "multipart/report", msg.get_content_type()
        assert msg.get_param("report-type") == "delivery-status"
        status = next(p for p in msg.walk() if p.get_content_type() == "message/delivery-status")
        reports.append((msg, status.as_string()))
    return reports


def test_submitted_mail_reaches_the_mx_over_starttls_with_valid_dkim(world):
    submit(world, ["friend@remote.test", "other@remote.test"], subject="to the internet")
    got = wait_for(lambda: world.tls_peer.messages, "delivery to mx.remote.test")
    assert len(got) == 1, "one transaction for both recipients of the domain"
    m = got[0]
    assert m.mail_from == "alice@example.test"
    assert sorted(m.rcpts) == ["friend@remote.test", "other@remote.test"]
    assert m.tls, "STARTTLS must be used when the peer offers it"
    assert m.helo == "out.example.test"
    # The preferred MX (down) was looked up and skipped, the next one took the mail.
    assert ("down.remote.test", "A") in world.zone.queries
    checked = verify_dkim(world, m.content)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    assert checked.stdout.decode().count("signature ok") == 2
    wait_for(lambda: not queue_files(world), "the queue to empty")


def test_implicit_mx_without_tls(world):
    submit(world, ["someone@plain.test"])
    got = wait_for(lambda: world.plain_peer.messages, "delivery to plain.test's A record")
    assert got[0].rcpts == ["someone@plain.test"] and not got[0].tls
    assert "BODY=8BITMIME" not in got[0].mail_options


def test_550_recipient_bounces_to_alice_and_the_other_is_delivered(world):
    world.tls_peer.rcpt_answers["nobody@remote.test"] = ["550 5.1.1 <nobody@remote.test> no such user"]
    submit(world, ["friend@remote.test", "nobody@remote.test"], subject="partly")
    got = wait_for(lambda: world.tls_peer.messages, "delivery of the good recipient")
    assert got[0].rcpts == ["friend@remote.test"]
    [(msg, status)] = bounces(world)
    assert msg["To"] == "<alice@example.test>"
    assert "Final-Recipient: rfc822; nobody@remote.test" in status
    assert "Status: 5.1.1" in status
    assert "Remote-MTA: dns; mx.remote.test" in status
    assert "Diagnostic-Code: smtp; 550 5.1.1 <nobody@remote.test> no such user" in status
    assert "friend@remote.test" not in status
    wait_for(lambda: not queue_files(world), "the queue to empty")
    assert len(world.tls_peer.messages) == 1


def test_a_4xx_is_retried_and_delivered_once(world):
    world.tls_peer.rcpt_answers["later@remote.test"] = ["451 4.3.0 try again later", None]
    submit(world, ["later@remote.test"], subject="retry")
    got = wait_for(lambda: world.tls_peer.messages, "delivery on retry")
    assert got[0].rcpts == ["later@remote.test"]
    wait_for(lambda: not queue_files(world), "the queue to empty")
    time.sleep(1.5)  # room for a wrong extra attempt to show up
    assert world.tls_peer.rcpt_log.count("later@remote.test") == 2, world.tls_peer.rcpt_log
    assert len(world.tls_peer.messages) == 1
    assert inbox(world) == [], "no bounce for a message that was delivered"


def test_null_mx_bounces_with_5_1_10(world):
    submit(world, ["anyone@nullmx.test"])
    [(_, status)] = bounces(world)
    assert "Final-Recipient: rfc822; anyone@nullmx.test" in status
    assert "Status: 5.1.10" in status
    assert "Remote-MTA" not in status, "no server answered: the failure is ours"


def test_smtputf8_message_to_a_server_without_it_bounces_with_5_6_9(world):
    submit(world, ["someone@plain.test"], subject="caf\u00e9",
           mail_options=["SMTPUTF8"])
    [(_, status)] = bounces(world)
    assert "Status: 5.6.9" in status, status
    assert world.plain_peer.messages == []


def test_queued_mail_survives_sigkill_and_is_delivered_once(world):
    world.tls_peer.rcpt_answers["later@remote.test"] = ["451 4.3.0 not yet"]
    submit(world, ["later@remote.test"], subject="crash")
    wait_for(lambda: "later@remote.test" in world.tls_peer.rcpt_log, "a first attempt")
    envelope = wait_for(lambda: [json.loads(p.read_bytes().split(b"\n", 1)[0]) for p in queue_files(world)
                                 if b'"attempts":1' in p.read_bytes().split(b"\n", 1)[0]],
                        "the deferral recorded in the queue file")
    assert envelope[0]["recipients"][0]["address"] == "later@remote.test"
    world.kill(world.procs[0])
    world.procs.clear()
    world.tls_peer.rcpt_answers.pop("later@remote.test")
    world.start_dev()
    got = wait_for(lambda: world.tls_peer.messages, "delivery after the restart")
    assert got[0].rcpts == ["later@remote.test"]
    wait_for(lambda: not queue_files(world), "the queue to empty")
    time.sleep(1.5)
    assert len(world.tls_peer.messages) == 1


# --- relayhost: every remote message through one smarthost, with STARTTLS and a login ----

def ca_signed(tmp, name):
    """A CA and a certificate for `name` signed by it (rustls refuses a self-signed CA
    certificate as a server's), as a private relay would have. Returns (ssl context, CA path)."""
    run = lambda *args: subprocess.run(args, check=True, capture_output=True, timeout=60)
    ca_key, ca, key, csr, crt = (tmp / f"{name}.{x}" for x in ("ca.key", "ca.crt", "key", "csr", "crt"))
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Relay Test CA",
        "-keyout", str(ca_key), "-out", str(ca))
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr))
    ext = tmp / f"{name}.ext"
    ext.write_text(f"subjectAltName=DNS:{name}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "2", "-out", str(crt), "-extfile", str(ext))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(crt), str(key))
    return ctx, ca


@pytest.fixture
def relayed(make_postbay, tmp_path):
    """`postbay dev` sending through relay.test (aiosmtpd: STARTTLS required, AUTH required
    after TLS), whose certificate comes from a private CA given as relayhost_ca_file. The
    domains' own MX (mx.remote.test) is up too: nothing may go there."""
    zone = Zone()
    port = free_port_on(["127.0.0.2", "127.0.0.4"])
    mx = Peer("127.0.0.2", port)
    ctx, ca = ca_signed(tmp_path, "relay.test")
    relay = Peer("127.0.0.4", port, tls_context=ctx, auth=("postbay-out", "relay-pass"))
    zone.add("remote.test", "MX", (10, "mx.remote.test"))
    zone.add("mx.remote.test", "A", "127.0.0.2")
    zone.add("relay.test", "A", "127.0.0.4")
    password = tmp_path / "relay-password"
    password.write_text("relay-pass\n")
    pb = make_postbay(env={
        "POSTBAY_OUTBOUND__ENABLED": "true",
        "POSTBAY_OUTBOUND__NAMESERVERS": f"[{zone.address}]",
        "POSTBAY_OUTBOUND__HOSTNAME": "out.example.test",
        "POSTBAY_OUTBOUND__MIN_BACKOFF": "1s",
        "POSTBAY_OUTBOUND__MAX_BACKOFF": "2s",
        "POSTBAY_OUTBOUND__RELAYHOST": f"[relay.test]:{port}",
        "POSTBAY_OUTBOUND__RELAYHOST_USER": "postbay-out",
        "POSTBAY_OUTBOUND__RELAYHOST_PASSWORD_FILE": str(password),
        "POSTBAY_OUTBOUND__RELAYHOST_CA_FILE": str(ca),
    })
    pb.apply(FIXTURES / "example.yaml", FIXTURES / "submission.yaml")
    pb.start_dev()
    wait_port(pb.port(587))
    pb.zone, pb.mx, pb.relay, pb.password = zone, mx, relay, password
    yield pb
    pb.stop()
    mx.stop()
    relay.stop()
    zone.stop()


def test_relayhost_takes_every_remote_message_over_starttls_with_a_login(relayed):
    submit(relayed, ["friend@remote.test", "someone@elsewhere.test"], subject="via the relay")
    got = wait_for(lambda: relayed.relay.messages, "delivery to the relayhost")
    assert len(got) == 1, "one transaction: the relay takes every domain at once"
    m = got[0]
    assert sorted(m.rcpts) == ["friend@remote.test", "someone@elsewhere.test"]
    assert m.tls, "the login and the message went over TLS"
    assert m.helo == "out.example.test"
    assert relayed.relay.logins == [("PLAIN", True)]
    assert relayed.mx.messages == [], "nothing goes to the domains' own MX"
    assert ("remote.test", "MX") not in relayed.zone.queries
    checked = verify_dkim(relayed, m.content)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    wait_for(lambda: not queue_files(relayed), "the queue to empty")


def test_a_refused_relay_login_defers_and_a_fixed_password_file_delivers_without_restart(relayed):
    relayed.password.write_text("wrong\n")
    submit(relayed, ["friend@remote.test"], subject="after the fix")
    wait_for(lambda: relayed.relay.logins, "a login attempt")
    assert relayed.relay.logins[0] == ("PLAIN", False)
    deferred = wait_for(lambda: [l for l in relayed.log().splitlines() if "delivery deferred" in l],
                        "the deferral in the log")
    assert "535" in deferred[0], deferred[0]
    assert relayed.relay.messages == [] and len(queue_files(relayed)) == 1, "deferred, not bounced"
    relayed.password.write_text("relay-pass\n")
    got = wait_for(lambda: relayed.relay.messages, "delivery once the Secret holds the right password")
    assert got[0].rcpts == ["friend@remote.test"]
    assert ("PLAIN", True) in relayed.relay.logins
    wait_for(lambda: not queue_files(relayed), "the queue to empty")
    assert inbox(relayed) == [], "no bounce went back to alice"


def test_a_relay_login_over_plain_text_is_refused_at_start(make_postbay, tmp_path):
    password = tmp_path / "p"
    password.write_text("x")
    pb = make_postbay(env={
        "POSTBAY_OUTBOUND__ENABLED": "true",
        "POSTBAY_OUTBOUND__RELAYHOST": "[relay.test]:25",
        "POSTBAY_OUTBOUND__RELAYHOST_TLS": "opportunistic",
        "POSTBAY_OUTBOUND__RELAYHOST_USER": "u",
        "POSTBAY_OUTBOUND__RELAYHOST_PASSWORD_FILE": str(password),
    })
    pb.apply(FIXTURES / "example.yaml")
    proc = pb.start("dev", "--data", str(pb.data), "--port-base", str(pb.base),
                    "--database-url", pb.database_url, log_name="dev")
    assert proc.wait(timeout=30) != 0
    assert "relayhost with a login needs TLS" in pb.log()


# --- fixed transports, connection reuse, CHUNKING ---------------------------------------------

def metric(pb, name, **labels) -> float:
    """One sample of the dev process's /metrics (0 when absent)."""
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{pb.port(8080)}/metrics", timeout=10).read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}}") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("cache_time", ["30s", "0s"])
def test_a_transport_sends_a_domain_to_postfix_smtp_sink_reusing_one_connection(make_postbay, tmp_path, cache_time):
    """outbound.transports routes sink.test to Postfix's smtp-sink (no DNS: the zone knows
    nothing, so an MX lookup would bounce the mail). Five messages submitted one after the
    other share one cached session; with the cache off each opens its own."""
    from peers_outbound import Sink

    zone = Zone()
    port = free_port_on(["127.0.0.4"])
    sink = Sink("127.0.0.4", port, tmp_path)
    pb = make_postbay(env={
        "POSTBAY_OUTBOUND__ENABLED": "true",
        "POSTBAY_OUTBOUND__NAMESERVERS": f"[{zone.address}]",
        "POSTBAY_OUTBOUND__TRANSPORTS": f'{{sink.test: "smtp:[127.0.0.4]:{port}"}}',
        "POSTBAY_OUTBOUND__CONNECTION_CACHE_TIME": cache_time,
    })
    try:
        pb.apply(FIXTURES / "example.yaml", FIXTURES / "submission.yaml")
        pb.start_dev()
        wait_port(pb.port(587))
        for i in range(5):
            submit(pb, ["someone@sink.test"], subject=f"to the sink {i}")
            wait_for(lambda: sink.counts()["mesg"] == i + 1, f"message {i + 1} at smtp-sink")
        wait_for(lambda: not queue_files(pb), "the queue to empty")
        new = metric(pb, "postbay_outbound_connections_total", kind="new")
        reused = metric(pb, "postbay_outbound_connections_total", kind="reused")
        assert new + reused == 5, (new, reused)
        if cache_time == "0s":
            assert (new, reused) == (5, 0)
        else:
            assert (new, reused) == (1, 4), "one connection carried all five"
        pb.stop()
        counts = wait_for(lambda: (lambda c: c if c["sess"] == new else None)(sink.counts()),
                          "smtp-sink to count the sessions")
        assert counts["mesg"] == 5
        assert ("sink.test", "MX") not in zone.queries, "a transport needs no MX lookup"
    finally:
        pb.stop()
        sink.stop()
        zone.stop()


def test_a_cached_connection_the_server_closed_is_replaced_without_deferring(world):
    submit(world, ["friend@remote.test"], subject="first")
    wait_for(lambda: world.tls_peer.messages, "the first delivery")
    wait_for(lambda: metric(world, "postbay_outbound_connections_total", kind="new") == 1, "the first session")
    # The MX restarts: the cached session is dead, which the next delivery learns at MAIL.
    host, port = world.tls_peer.host, world.tls_peer.port
    world.tls_peer.stop()
    world.tls_peer = Peer(host, port, tls_context=self_signed(world.tmp, "mx.remote.test"))
    submit(world, ["friend@remote.test"], subject="second")
    got = wait_for(lambda: world.tls_peer.messages, "the second delivery, on a new connection")
    assert b"Subject: second" in got[0].content
    assert metric(world, "postbay_outbound_connections_total", kind="new") == 2
    assert metric(world, "postbay_delivery_attempts_total", result="deferred", destination="remote") == 0
    assert "delivery deferred" not in world.log()


FAR = """apiVersion: postbay.dev/v1alpha1
kind: MailDomain
metadata: {name: far}
spec: {domain: far.test}
---
apiVersion: v1
kind: Secret
metadata: {name: far-passwords}
stringData: {carol: carol-secret}
---
apiVersion: postbay.dev/v1alpha1
kind: Mailbox
metadata: {name: carol}
spec:
  address: carol@far.test
  passwordSecretRef: {name: far-passwords, key: carol}
"""


def two_postbays(make_postbay, tmp_path):
    """A receiving Postbay for far.test (carol) and a sending one whose transport for
    far.test is the receiver's MX."""
    rx = make_postbay(name="rx")
    (tmp_path / "far.yaml").write_text(FAR)
    rx.apply(tmp_path / "far.yaml")
    rx.start_dev()
    tx = make_postbay(env={
        "POSTBAY_OUTBOUND__ENABLED": "true",
        "POSTBAY_OUTBOUND__TRANSPORTS": f'{{far.test: "[127.0.0.1]:{rx.smtp}"}}',
    })
    tx.apply(FIXTURES / "example.yaml", FIXTURES / "submission.yaml")
    tx.start_dev()
    wait_port(tx.port(587))
    return rx, tx


def test_postbay_to_postbay_uses_chunking_and_the_message_arrives_byte_for_byte(make_postbay, tmp_path):
    """The receiving Postbay offers CHUNKING (RFC 3030), so the sender sends BDAT: a 1.5 MiB
    message is two chunks, and lines starting with a dot arrive as they were (no dot-stuffing
    in BDAT, none left over)."""
    rx, tx = two_postbays(make_postbay, tmp_path)
    line = b"." + b"x" * 76 + b"\r\n"
    body = b".leading dot\r\n..two dots\r\n" + line * (1536 * 1024 // len(line)) + b".\r\nend\r\n"
    submit(tx, ["carol@far.test"], subject="chunked", extra=b"X-Test: bdat\r\n" + b"\r\n" + body)
    got = wait_for(lambda: inbox(rx, ("carol@far.test", "carol-secret")), "carol's copy", timeout=60)
    assert len(got) == 1
    assert body in got[0].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"), "the body arrived unchanged"
    queued = [l for l in rx.log().splitlines() if "message queued" in l]
    assert len(queued) == 1 and "BDAT" in queued[0], queued
    wait_for(lambda: not queue_files(tx), "the sender's queue to empty")


# --- postbay queue show|retry|delete|bounce ------------------------------------------------

def remote_mx(host="127.0.0.2", domain="remote.test", rtype="A"):
    """A DNS zone where `domain`'s one MX, mx.<domain>, is an aiosmtpd peer on `host`;
    returns (zone, peer, env for a sender using them)."""
    zone = Zone()
    port = free_port_on([host])
    peer = Peer(host, port)
    zone.add(domain, "MX", (10, f"mx.{domain}"))
    zone.add(f"mx.{domain}", rtype, host)
    env = {
        "POSTBAY_OUTBOUND__ENABLED": "true",
        "POSTBAY_OUTBOUND__NAMESERVERS": f"[{zone.address}]",
        "POSTBAY_OUTBOUND__MX_PORT": str(port),
    }
    return zone, peer, env


@pytest.fixture
def slow(make_postbay, tmp_path):
    """Like `world`, but a deferred message waits an hour: only an admin's retry is soon."""
    zone, peer, env = remote_mx()
    pb = make_postbay(env={
        **env,
        "POSTBAY_OUTBOUND__MIN_BACKOFF": "1h",
        "POSTBAY_OUTBOUND__MAX_BACKOFF": "2h",
        "POSTBAY_SMTP__QUEUE_SCAN_INTERVAL": "500ms",
    })
    pb.apply(FIXTURES / "example.yaml", FIXTURES / "submission.yaml")
    pb.start_dev()
    wait_port(pb.port(587))
    pb.peer = peer
    yield pb
    pb.stop()
    peer.stop()
    zone.stop()


def queue_cmd(pb, *args):
    out = subprocess.run([str(postbay_binary()), "queue", *args, "--data", str(pb.data)],
                         capture_output=True, text=True, env=pb.env, timeout=60)
    return out


def deferred_once(pb, rcpt, subject):
    """Submits a message whose first attempt gets 451; returns its queue id."""
    pb.peer.rcpt_answers[rcpt] = ["451 4.3.0 try later"]
    submit(pb, [rcpt], subject=subject)
    wait_for(lambda: [p for p in queue_files(pb) if b'"attempts":1' in p.read_bytes().split(b"\n", 1)[0]],
             "the deferral recorded")
    listed = [json.loads(l) for l in queue_cmd(pb, "list", "--json").stdout.splitlines()]
    ids = [l["envelope"]["id"] for l in listed if l["envelope"]["recipients"][0]["address"] == rcpt]
    assert len(ids) == 1, listed
    return ids[0]


def test_queue_show_then_retry_delivers_a_message_deferred_for_an_hour(slow):
    qid = deferred_once(slow, "later@remote.test", "wait for it")
    shown = queue_cmd(slow, "show", qid)
    assert shown.returncode == 0, shown.stderr
    assert "recipient: <later@remote.test> (remote)" in shown.stdout
    assert re.search(r"state: +retry in (1h|59m( \d+s)?), 1 attempts", shown.stdout), shown.stdout
    assert "Subject: wait for it" in shown.stdout
    slow.peer.rcpt_answers.pop("later@remote.test")
    out = queue_cmd(slow, "retry", qid)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{qid}: retried and delivered", out.stdout
    assert [m.rcpts for m in slow.peer.messages] == [["later@remote.test"]]


def test_queue_bounce_sends_the_sender_a_dsn_and_delete_sends_nothing(slow):
    bounced = deferred_once(slow, "gone@remote.test", "give up")
    dropped = deferred_once(slow, "spam@remote.test", "never mind")
    out = queue_cmd(slow, "bounce", bounced)
    assert out.stdout.strip() == f"{bounced}: bounced; a DSN goes to <alice@example.test>", out.stdout + out.stderr
    ((msg, status),) = bounces(slow)
    assert "Status: 5.0.0" in status and "gone@remote.test" in status, status
    assert "returned by the administrator" in status
    out = queue_cmd(slow, "delete", dropped)
    assert out.stdout.strip() == f"{dropped}: deleted", out.stdout + out.stderr
    assert not queue_files(slow)
    time.sleep(1)
    assert len(inbox(slow)) == 1, "no bounce for a deleted message"
    assert slow.peer.messages == []
    assert queue_cmd(slow, "delete", dropped).returncode != 0, "a second delete names no message"


def test_a_request_waits_for_the_owner_and_retry_all_takes_every_message(slow):
    first = deferred_once(slow, "one@remote.test", "one")
    deferred_once(slow, "two@remote.test", "two")
    slow.stop()
    out = queue_cmd(slow, "delete", first, "--wait", "1s")
    assert "no process runs queue node-0 now" in out.stdout, out.stdout + out.stderr
    slow.peer.rcpt_answers.clear()
    slow.start_dev()
    wait_for(lambda: len(queue_files(slow)) == 1, "the delete carried out after the restart")
    out = queue_cmd(slow, "retry", "--all")
    assert out.stdout.strip() == "node-0: 1 messages retried", out.stdout + out.stderr
    wait_for(lambda: slow.peer.messages, "the retried message")
    assert [m.rcpts for m in slow.peer.messages] == [["two@remote.test"]]


# --- DSN (RFC 3461): NOTIFY, RET, ENVID, ORCPT, delay warnings --------------------------------

def reports(pb, count):
    """The first `count` DSNs in alice's INBOX: (message, delivery-status text, returned part)."""
    out = []
    for msg, status in bounces(pb, count):
        returned = [p for p in msg.walk() if p.get_content_type() in ("message/rfc822", "text/rfc822-headers")]
        out.append((msg, status, returned[0] if returned else None))
    return out


def test_notify_success_reports_local_delivery_with_envid_and_orcpt(world):
    with smtplib.SMTP("127.0.0.1", world.port(587), timeout=30) as s:
        s.ehlo()
        assert s.has_extn("dsn"), "DSN is advertised"
    submit(world, ["bob@example.test"], subject="tell me", mail_options=["RET=HDRS", "ENVID=ticket+2B42"],
           rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;bob+2Bteam@example.test"])
    ((msg, status, returned),) = reports(world, 1)
    assert msg["Subject"] == "Successful Mail Delivery Report"
    assert "Original-Envelope-Id: ticket+2B42" in status, status
    assert "Original-Recipient: rfc822; bob+team@example.test" in status
    assert "Action: delivered" in status and "Status: 2." in status
    assert returned.get_content_type() == "text/rfc822-headers"


def test_notify_never_sends_no_bounce_and_ret_full_returns_the_message(world):
    world.tls_peer.rcpt_answers["quiet@remote.test"] = ["550 5.1.1 no such user"]
    world.tls_peer.rcpt_answers["loud@remote.test"] = ["550 5.1.1 no such user"]
    submit(world, ["quiet@remote.test"], subject="never tell", rcpt_options=["NOTIFY=NEVER"])
    wait_for(lambda: "quiet@remote.test" in world.tls_peer.rcpt_log, "the refused attempt")
    wait_for(lambda: not queue_files(world), "the queue to empty")
    submit(world, ["loud@remote.test"], subject="full return", mail_options=["RET=FULL"])
    ((msg, status, returned),) = reports(world, 1)
    assert "loud@remote.test" in status and "quiet@remote.test" not in status
    assert returned.get_content_type() == "message/rfc822"
    assert b"Hello over there." in returned.as_bytes()
    time.sleep(1)
    assert len(inbox(world)) == 1, "NOTIFY=NEVER: no report for quiet@"


def test_a_server_without_dsn_gets_no_parameters_and_the_sender_hears_relayed(world):
    submit(world, ["friend@remote.test"], subject="relay me", mail_options=["ENVID=e1"],
           rcpt_options=["NOTIFY=SUCCESS"])
    got = wait_for(lambda: world.tls_peer.messages, "delivery")
    assert not any(o.upper().startswith(("RET=", "ENVID=")) for o in got[0].mail_options), got[0].mail_options
    ((msg, status, _),) = reports(world, 1)
    assert "Action: relayed" in status and "Remote-MTA: dns; mx.remote.test" in status, status
    assert "Original-Envelope-Id: e1" in status


def test_dsn_parameters_travel_to_a_postbay_that_reports_delivery_itself(make_postbay, tmp_path):
    rx, tx = two_postbays(make_postbay, tmp_path)
    submit(tx, ["carol@far.test"], subject="report from afar", mail_options=["ENVID=far-1"],
           rcpt_options=["NOTIFY=SUCCESS"])
    wait_for(lambda: inbox(rx, ("carol@far.test", "carol-secret")), "carol's copy")
    # rx reports to alice@example.test, a remote domain for it (outbound off in dev: it waits).
    queued = wait_for(lambda: [p.read_bytes() for p in queue_files(rx)], "rx's report in its queue")
    assert len(queued) == 1
    envelope, report = queued[0].split(b"\n", 1)
    envelope = json.loads(envelope)
    assert envelope["mail_from"] == "" and envelope["recipients"][0]["address"] == "alice@example.test"
    assert b"Action: delivered" in report and b"Original-Envelope-Id: far-1" in report
    time.sleep(1)
    assert inbox(tx) == [], "the next hop reports: no 'relayed' notice from the sender's side"


@pytest.fixture
def warned_world(make_postbay, tmp_path):
    pb = make_world(make_postbay, tmp_path, {"POSTBAY_SMTP__DELAY_WARNING_TIME": "2s"})
    yield pb
    end_world(pb)


def test_delay_warning_is_sent_once_then_the_message_is_delivered(warned_world):
    w = warned_world
    w.tls_peer.rcpt_answers["slow@remote.test"] = ["451 4.3.0 busy"]
    submit(w, ["slow@remote.test"], subject="patience")
    ((msg, status, _),) = reports(w, 1)
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    assert "Action: delayed" in status and "451 4.3.0 busy" in status, status
    w.tls_peer.rcpt_answers.pop("slow@remote.test")
    wait_for(lambda: w.tls_peer.messages, "delivery after the warning")
    wait_for(lambda: not queue_files(w), "the queue to empty")
    time.sleep(1)
    assert len(inbox(w)) == 1, "one warning, and no other report"


def test_an_mx_with_only_an_ipv6_address_gets_the_mail(make_postbay, tmp_path):
    """six.test's MX host has an AAAA record (::1) and no A record."""
    zone, peer, env = remote_mx("::1", "six.test", "AAAA")
    pb = make_postbay(env=env)
    try:
        pb.apply(FIXTURES / "example.yaml", FIXTURES / "submission.yaml")
        pb.start_dev()
        wait_port(pb.port(587))
        submit(pb, ["someone@six.test"], subject="over IPv6")
        got = wait_for(lambda: peer.messages, "delivery to [::1]")
        assert got[0].rcpts == ["someone@six.test"]
        wait_for(lambda: not queue_files(pb), "the queue to empty")
        assert "mx.six.test[::1]" in pb.log(), "the log names the IPv6 MX"
    finally:
        pb.stop()
        peer.stop()
        zone.stop()


def test_remote_mail_queued_while_outbound_is_off_goes_at_once_when_it_is_turned_on(make_postbay, tmp_path):
    """`postbay dev` keeps remote mail queued (outbound off by default) without counting an
    attempt or setting a retry time, so the restart with outbound on sends it at once."""
    zone, peer, env = remote_mx()
    env.pop("POSTBAY_OUTBOUND__ENABLED")  # off, as `postbay dev` has it
    pb = make_postbay(env={**env, "POSTBAY_OUTBOUND__MIN_BACKOFF": "1h"})
    try:
        pb.apply(FIXTURES / "example.yaml", FIXTURES / "submission.yaml")
        pb.start_dev()
        wait_port(pb.port(587))
        submit(pb, ["friend@remote.test", "bob@example.test"], subject="held")
        wait_for(lambda: inbox(pb, ("bob@example.test", "bob-secret")), "bob's copy")
        files = wait_for(lambda: [p for p in queue_files(pb)
                                  if b"bob@" not in p.read_bytes().split(b"\n", 1)[0]], "the remote part rewritten")
        envelope = json.loads(files[0].read_bytes().split(b"\n", 1)[0])
        assert [r["address"] for r in envelope["recipients"]] == ["friend@remote.test"]
        assert envelope.get("attempts", 0) == 0 and envelope.get("next_attempt", 0) == 0, envelope
        assert peer.messages == []
        pb.stop()
        pb.env["POSTBAY_OUTBOUND__ENABLED"] = "true"
        pb.start_dev()
        got = wait_for(lambda: peer.messages, "delivery right after the restart", timeout=15)
        assert got[0].rcpts == ["friend@remote.test"]
    finally:
        pb.stop()
        peer.stop()
        zone.stop()


# --- SRS: forwarded mail leaves with our reverse path, and its bounces come back ------------

FORWARD = """apiVersion: postbay.dev/v1alpha1
kind: MailAlias
metadata: {name: fwd}
spec:
  address: fwd@example.test
  destinations: [friend@remote.test]
"""


@pytest.fixture
def srs_world(make_postbay, tmp_path):
    secret = tmp_path / "srs-secret"
    secret.write_text("0123456789abcdef-srs-test\n")
    pb = make_world(make_postbay, tmp_path, {
        "POSTBAY_OUTBOUND__SRS_SECRET_FILE": str(secret),
        "POSTBAY_OUTBOUND__SRS_DOMAIN": "example.test",
    })
    (tmp_path / "forward.yaml").write_text(FORWARD)
    pb.apply(FIXTURES / "example.yaml", FIXTURES / "submission.yaml", tmp_path / "forward.yaml")
    # outside.test: where the original sender's mail server is (the plain peer).
    pb.zone.add("outside.test", "MX", (10, "mx.outside.test"))
    pb.zone.add("mx.outside.test", "A", "127.0.0.3")
    yield pb
    end_world(pb)


def test_srs_rewrites_forwarded_mail_and_routes_its_bounce_back(srs_world):
    w = srs_world
    with smtplib.SMTP("127.0.0.1", w.smtp, timeout=30) as s:
        s.sendmail("someone@outside.test", ["fwd@example.test"],
                   b"From: someone@outside.test\r\nSubject: forward me\r\n\r\nhi\r\n")
    got = wait_for(lambda: w.tls_peer.messages, "the forwarded copy")
    srs = got[0].mail_from
    assert re.fullmatch(r"SRS0=[A-Za-z0-9+/]{4}=[A-Z2-7]{2}=outside\.test=someone@example\.test", srs), srs
    assert got[0].rcpts == ["friend@remote.test"]
    # The far end bounces to the SRS address: our MX takes it and sends it to the sender.
    with smtplib.SMTP("127.0.0.1", w.smtp, timeout=30) as s:
        s.sendmail("", [srs], b"From: MAILER-DAEMON@remote.test\r\nSubject: bounce\r\n\r\nno\r\n")
        forged = srs.replace("=someone@", "=victim@")
        code, text = s.rcpt(forged) if s.mail("")[0] == 250 else (0, b"")
        assert code == 550 and b"Invalid SRS address" in text, (code, text)
    back = wait_for(lambda: w.plain_peer.messages, "the bounce at the original sender's MX")
    assert back[0].rcpts == ["someone@outside.test"] and back[0].mail_from in ("", "<>")
    # Our own user's forwarded mail keeps its sender: SPF of example.test is ours already.
    submit(w, ["fwd@example.test"], subject="from alice")
    wait_for(lambda: len(w.tls_peer.messages) == 2, "alice's forwarded copy")
    assert w.tls_peer.messages[1].mail_from == "alice@example.test"


def test_a_connection_dropped_after_the_content_is_retried_and_delivered(world):
    """The MX closes the connection after reading the message and before its reply: no
    answer is no delivery (RFC 5321 §6.1), so the message is deferred and sent again."""
    world.tls_peer.drop_data = 1
    submit(world, ["friend@remote.test"], subject="cut off")
    got = wait_for(lambda: world.tls_peer.messages, "the second attempt's delivery")
    assert world.tls_peer.dropped == 1
    assert len(got) == 1 and b"Subject: cut off" in got[0].content
    wait_for(lambda: not queue_files(world), "the queue to empty")
    assert "delivery deferred" in world.log()
    assert inbox(world) == [], "no bounce"
