"""`postbay filter` against Debian's real rspamc (Rspamd's own client), and its HTTP limits."""

import http.client
import json
import signal
import subprocess
import time

import pytest

from conftest import free_port_base, need_tool, postbay_binary, wait_port

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

GOOD = (
    "From: Alice <alice@example.org>\r\nTo: bob@example.test\r\nSubject: lunch\r\n"
    "Date: Wed, 2 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{id}@example.org>\r\n\r\n{body}\r\n"
)


class LocalDns:
    """A real DNS server (dnslib) on 127.0.0.1, answering TXT records from a dict."""

    def __init__(self):
        try:
            from dnslib import RR, QTYPE, TXT, A
            from dnslib.server import BaseResolver, DNSLogger, DNSServer
        except ImportError:
            pytest.fail("dnslib is not installed (scripts/install-test-deps installs it)")
        records = self.records = {}
        addresses = self.addresses = {}  # name -> [IPv4], for DNSBL answers

        class Resolver(BaseResolver):
            def resolve(self, request, handler):
                reply = request.reply()
                name = str(request.q.qname).rstrip(".").lower()
                if request.q.qtype == QTYPE.A and name in addresses:
                    for ip in addresses[name]:
                        reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(ip), ttl=60))
                    return reply
                if name in addresses:
                    return reply  # NODATA
                if request.q.qtype == QTYPE.TXT and name in records:
                    value = records[name]
                    chunks = [value[i:i + 255] for i in range(0, len(value), 255)]
                    reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(chunks), ttl=60))
                elif name not in records:
                    reply.header.rcode = 3  # NXDOMAIN
                return reply

        self.server = DNSServer(Resolver(), port=0, address="127.0.0.1",
                                logger=DNSLogger("-request,-reply", False))
        self.server.start_thread()
        self.port = self.server.server.server_address[1]

    def stop(self):
        self.server.stop()


@pytest.fixture
def dns():
    server = LocalDns()
    yield server
    server.stop()


def admin_of(filter_port: int) -> int:
    """The admin listener (/metrics, /readyz) of the filter the fixture started."""
    return filter_port - 11333 + 8080


@pytest.fixture
def filter_port(tmp_path, dns):
    yield from start_filter(tmp_path, dns)


def start_filter(tmp_path, dns, extra_env=None):
    port = free_port_base() + 11333
    env = {
        "POSTBAY_DATA_DIR": str(tmp_path / "data"),
        "POSTBAY_ADMIN__LISTEN": f"127.0.0.1:{admin_of(port)}",
        "POSTBAY_FILTER__NAMESERVERS": f"[127.0.0.1:{dns.port}]",
        "POSTBAY_FILTER__AUTHSERV_ID": "mx.example.test",
        "POSTBAY_FILTER__LOCAL_NETWORKS": "[]",
        "POSTBAY_FILTER__LISTEN": f"127.0.0.1:{port}",
        "POSTBAY_FILTER__BAYES_MIN_LEARNS": "2",
        "POSTBAY_FILTER__MAX_MESSAGE_SIZE": "100000",
        "POSTBAY_FILTER__MAX_HEADERS": "50",
        "POSTBAY_LOG": "info",
        **(extra_env or {}),
    }
    import os

    log = open(tmp_path / "filter.log", "ab")
    proc = subprocess.Popen([str(postbay_binary()), "filter"], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **env})
    try:
        wait_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def rspamc(port, *args, stdin=None, tmp=None):
    exe = need_tool("rspamc")
    out = subprocess.run([exe, "-h", f"127.0.0.1:{port}", *args], capture_output=True, text=True,
                         timeout=30, input=stdin)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def message_file(tmp_path, name, text):
    path = tmp_path / name
    path.write_bytes(text.encode())
    return str(path)


def test_rspamc_symbols_clean_and_sloppy(filter_port, tmp_path):
    clean = rspamc(filter_port, "symbols", message_file(tmp_path, "good.eml", GOOD.format(id=1, body="hi")))
    assert "Action: no action" in clean
    assert "Symbol:" not in clean, clean
    sloppy = rspamc(filter_port, "symbols", message_file(tmp_path, "bad.eml", "To: x@example.test\r\n\r\nhi\r\n"))
    for symbol in ("MISSING_DATE (1.00)", "MISSING_MID (2.50)", "MISSING_FROM (2.00)", "MISSING_SUBJECT (2.00)"):
        assert f"Symbol: {symbol}" in sloppy, sloppy
    assert "Score: 7.50 / 15.00" in sloppy
    assert "Action: add header" in sloppy


def test_rspamc_phishing_links_and_zipped_executables(filter_port, tmp_path):
    """The link check (a link's text shows another site than its target) and the zip check
    (an executable named in an attachment's central directory), seen through rspamc."""
    import base64
    import io
    import zipfile

    phish = ("From: Bank <service@bank.test>\r\nTo: bob@example.test\r\nSubject: verify\r\n"
             "Reply-To: desk@collector.example\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n"
             "Message-ID: <p1@bank.test>\r\nContent-Type: text/html\r\n\r\n"
             "<p>Log in at <a href=\"http://198.51.100.7/bank\">https://www.bank.test/login</a></p>\r\n")
    out = rspamc(filter_port, "symbols", message_file(tmp_path, "phish.eml", phish))
    assert "Symbol: PHISHING (4.00)[www.bank.test->198.51.100.7]" in out, out
    assert "Symbol: HTTP_TO_IP (1.00)" in out, out
    assert "Symbol: REPLYTO_DOM_NEQ_FROM_DOM (0.50)" in out, out
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("docs/statement.pdf.scr", b"MZ" + b"\0" * 4000)
        z.writestr("readme.txt", b"open the statement")
    attachment = base64.encodebytes(archive.getvalue()).decode().replace("\n", "\r\n")
    zipped = ("From: a@sender.test\r\nTo: bob@example.test\r\nSubject: statement\r\n"
              "Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <z1@sender.test>\r\n"
              "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
              "--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
              "--b\r\nContent-Type: application/zip; name=statement.zip\r\n"
              "Content-Transfer-Encoding: base64\r\n\r\n" + attachment + "--b--\r\n")
    out = rspamc(filter_port, "symbols", message_file(tmp_path, "zip.eml", zipped))
    assert "Symbol: MIME_BAD_EXTENSION (4.00)[statement.zip:statement.pdf.scr (scr)]" in out, out


def test_rspamc_gtube_is_rejected(filter_port, tmp_path):
    out = rspamc(filter_port, "symbols", message_file(tmp_path, "g.eml", GOOD.format(id=2, body=GTUBE)))
    assert "Action: reject" in out, out
    assert "Symbol: GTUBE" in out
    assert "smtp_message: Gtube pattern" in out


def test_filter_metrics_count_verdicts_scan_time_and_learning(filter_port, tmp_path):
    from test_ops import scrape, series, wait_ready_http

    wait_ready_http(admin_of(filter_port))
    before = scrape(admin_of(filter_port))
    rspamc(filter_port, "symbols", message_file(tmp_path, "g.eml", GOOD.format(id="m1", body=GTUBE)))
    rspamc(filter_port, "symbols", message_file(tmp_path, "c.eml", GOOD.format(id="m2", body="hi")))
    rspamc(filter_port, "learn_spam", message_file(tmp_path, "s.eml", GOOD.format(id="m3", body="cheap")))
    after = scrape(admin_of(filter_port))
    moved = lambda prefix: series(after, prefix) - series(before, prefix)
    assert moved('postbay_filter_scans_total{action="reject"}') == 1
    assert moved("postbay_filter_scans_total") == 2
    assert moved("postbay_filter_scan_seconds_count") == 2
    assert series(after, "postbay_filter_scan_seconds_sum") > 0
    assert moved('postbay_filter_learns_total{class="spam",result="learned"}') == 1


def test_rspamc_learn_then_bayes(filter_port, tmp_path):
    spam = ["cheap pills casino winner money", "casino jackpot winner cheap offer"]
    ham = ["agenda for the project review", "project meeting notes and agenda"]
    for i, body in enumerate(spam):
        out = rspamc(filter_port, "learn_spam", message_file(tmp_path, f"s{i}.eml", GOOD.format(id=f"s{i}", body=body)))
        assert "success = true" in out, out
    again = rspamc(filter_port, "learn_spam", message_file(tmp_path, "s0.eml", GOOD.format(id="s0", body=spam[0])))
    assert "already learned" in again, again
    for i, body in enumerate(ham):
        out = rspamc(filter_port, "learn_ham", message_file(tmp_path, f"h{i}.eml", GOOD.format(id=f"h{i}", body=body)))
        assert "success = true" in out, out
    verdict = rspamc(filter_port, "symbols", message_file(tmp_path, "t.eml", GOOD.format(id="t1", body="winner casino cheap money")))
    assert "Symbol: BAYES_SPAM" in verdict, verdict
    verdict = rspamc(filter_port, "symbols", message_file(tmp_path, "u.eml", GOOD.format(id="t2", body="review the project agenda")))
    assert "Symbol: BAYES_HAM" in verdict, verdict


def test_per_domain_classifiers_learn_and_judge_apart(tmp_path, dns):
    """filter.bayes_per_domain: what a.test's users teach (rspamc --deliver, as Dovecot's
    IMAPSieve scripts call it) classifies a.test's mail, never b.test's; learning without a
    recipient is refused with a clear error."""
    run = start_filter(tmp_path, dns, {"POSTBAY_FILTER__BAYES_PER_DOMAIN": "true"})
    port = next(run)
    try:
        spam = ["cheap pills casino winner money", "casino jackpot winner cheap offer"]
        ham = ["agenda for the project review", "project meeting notes and agenda"]
        for i, body in enumerate(spam):
            out = rspamc(port, "--deliver=alice@a.test", "learn_spam",
                         message_file(tmp_path, f"s{i}.eml", GOOD.format(id=f"s{i}", body=body)))
            assert "success = true" in out, out
        for i, body in enumerate(ham):
            out = rspamc(port, "--deliver=alice@a.test", "learn_ham",
                         message_file(tmp_path, f"h{i}.eml", GOOD.format(id=f"h{i}", body=body)))
            assert "success = true" in out, out
        probe = message_file(tmp_path, "t.eml", GOOD.format(id="t1", body="winner casino cheap money"))
        to_a = rspamc(port, "--rcpt=bob@a.test", "symbols", probe)
        assert "Symbol: BAYES_SPAM" in to_a, to_a
        to_b = rspamc(port, "--rcpt=carol@b.test", "symbols", probe)
        assert "BAYES" not in to_b, to_b
        # The same message learnt for b.test is new there (its own learnt-messages record).
        out = rspamc(port, "--deliver=carol@b.test", "learn_spam",
                     message_file(tmp_path, "s0.eml", GOOD.format(id="s0", body=spam[0])))
        assert "success = true" in out, out
        status, body = request(port, "POST", "/learnspam", GOOD.format(id="n1", body="x y z").encode())
        assert status == 400 and b"Deliver-To or Rcpt" in body, (status, body)
    finally:
        run.close()


def test_two_filter_replicas_share_what_either_learnt(make_postbay, dns, tmp_path):
    """Bayes tokens are in the database: replica A learns, replica B (and A after a restart)
    classifies with it; relearning a message as the other class moves it over."""
    pb = make_postbay()
    a, b = pb.port(11333), pb.port(11334)
    pb.env.update({"POSTBAY_DATA_DIR": str(pb.data), "POSTBAY_DATABASE_URL": pb.database_url,
                   "POSTBAY_FILTER__NAMESERVERS": f"[127.0.0.1:{dns.port}]",
                   "POSTBAY_FILTER__LOCAL_NETWORKS": "[]", "POSTBAY_FILTER__BAYES_MIN_LEARNS": "2"})

    def start(port, name):
        pb.env["POSTBAY_FILTER__LISTEN"] = f"127.0.0.1:{port}"
        return pb.start("filter", wait_ports=[port], log_name=name)

    replica_a = start(a, "filter-a")
    start(b, "filter-b")
    spam = ["cheap pills casino winner money", "casino jackpot winner cheap offer"]
    ham = ["agenda for the project review", "project meeting notes and agenda"]
    for i, body in enumerate(spam):
        assert "success = true" in rspamc(a, "learn_spam", message_file(tmp_path, f"s{i}.eml", GOOD.format(id=f"s{i}", body=body)))
    for i, body in enumerate(ham):
        assert "success = true" in rspamc(a, "learn_ham", message_file(tmp_path, f"h{i}.eml", GOOD.format(id=f"h{i}", body=body)))
    # B never saw a learn request.
    again = rspamc(b, "learn_spam", message_file(tmp_path, "s0.eml", GOOD.format(id="s0", body=spam[0])))
    assert "already learned" in again, again
    spammy = message_file(tmp_path, "t.eml", GOOD.format(id="t1", body="winner casino cheap money"))
    hammy = message_file(tmp_path, "u.eml", GOOD.format(id="t2", body="review the project agenda"))
    assert "Symbol: BAYES_SPAM" in rspamc(b, "symbols", spammy)
    assert "Symbol: BAYES_HAM" in rspamc(b, "symbols", hammy)
    pb.kill(replica_a, signal.SIGTERM)
    start(a, "filter-a2")
    assert "Symbol: BAYES_SPAM" in rspamc(a, "symbols", spammy), "tokens survive a restart"
    # Relearned as ham on B: the spam count drops below the minimum, so Bayes falls silent.
    assert "success = true" in rspamc(b, "learn_ham", message_file(tmp_path, "s1.eml", GOOD.format(id="s1", body=spam[1])))
    assert "BAYES" not in rspamc(a, "symbols", spammy)
    totals = pb.query("SELECT spam, ham FROM bayes_totals")
    assert [tuple(int(v) for v in row) for row in totals] == [(1, 3)]


def request(port, method, path, body=b"", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def test_checkv2_json_and_envelope(filter_port):
    status, data = request(filter_port, "POST", "/checkv2", GOOD.format(id=3, body="hi").encode(),
                           {"IP": "192.0.2.1", "From": "<alice@example.org>", "Rcpt": "<bob@example.test>",
                            "Queue-Id": "Q1"})
    assert status == 200
    reply = json.loads(data)
    assert reply["action"] == "no action"
    assert reply["required_score"] == 15.0
    assert reply["message-id"] == "3@example.org"
    status, _ = request(filter_port, "POST", "/checkv2", b"From: a@b.test\r\n\r\nx\r\n", {"IP": "nonsense"})
    assert status == 400


def test_limits_and_errors(filter_port):
    status, _ = request(filter_port, "POST", "/checkv2", b"x" * 100_001)
    assert status == 413
    status, _ = request(filter_port, "POST", "/checkv2", b"a: b\r\n\r\nx",
                        {f"X-H{i}": "v" for i in range(60)})
    assert status == 431
    status, _ = request(filter_port, "GET", "/checkv2")
    assert status == 405
    status, _ = request(filter_port, "POST", "/nothing", b"x")
    assert status == 404
    assert request(filter_port, "GET", "/ping") == (200, b"pong\r\n")


def test_dev_runs_the_filter(make_postbay):
    pb = make_postbay()
    pb.start_dev()
    wait_port(pb.port(11333))
    assert request(pb.port(11333), "GET", "/ping") == (200, b"pong\r\n")


def check(port, raw: bytes, **envelope):
    status, data = request(port, "POST", "/checkv2", raw, envelope)
    assert status == 200, data
    return json.loads(data)


SIGNED_BASE = (
    "From: Carol <carol@sender.test>\r\nTo: bob@example.test\r\nSubject: signed\r\n"
    "Date: Wed, 2 Dec 2026 10:00:00 +0000\r\nMessage-ID: <s1@sender.test>\r\n\r\nhello there\r\n"
)


def test_spf_pass_and_fail(filter_port, dns):
    dns.records["sender.test"] = "v=spf1 ip4:127.0.0.7 -all"
    dns.records["_dmarc.sender.test"] = "v=DMARC1; p=reject"
    raw = SIGNED_BASE.encode()
    good = check(filter_port, raw, IP="127.0.0.7", Helo="mail.sender.test", From="<carol@sender.test>")
    assert "R_SPF_ALLOW" in good["symbols"], good
    assert "DMARC_POLICY_ALLOW" in good["symbols"], good
    ar = good["milter"]["add_headers"]["Authentication-Results"]["value"]
    assert ar.startswith("mx.example.test;")
    assert "spf=pass" in ar and "smtp.mailfrom=carol@sender.test" in ar and "dmarc=pass" in ar, ar
    bad = check(filter_port, raw, IP="127.0.0.9", Helo="mail.sender.test", From="<carol@sender.test>")
    assert "R_SPF_FAIL" in bad["symbols"], bad
    assert "DMARC_POLICY_REJECT" in bad["symbols"], bad
    assert bad["action"] == "reject"
    assert "DMARC policy of sender.test" in bad["messages"]["smtp_message"]
    assert "spf=fail" in bad["milter"]["add_headers"]["Authentication-Results"]["value"]


def test_dkim_signed_by_dkimpy_verifies(filter_port, dns, tmp_path):
    import base64
    import dkim

    openssl = need_tool("openssl")
    key_file = tmp_path / "dkim.key"
    subprocess.run([openssl, "genrsa", "-traditional", "-out", str(key_file), "2048"], check=True,
                   capture_output=True)
    pem = key_file.read_bytes()
    public = subprocess.run([openssl, "rsa", "-in", str(key_file), "-pubout", "-outform", "DER"],
                            check=True, capture_output=True).stdout
    dns.records["sel._domainkey.sender.test"] = "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode()
    dns.records["_dmarc.sender.test"] = "v=DMARC1; p=quarantine"
    raw = SIGNED_BASE.encode()
    signature = dkim.sign(raw, b"sel", b"sender.test", pem, include_headers=[b"From", b"To", b"Subject", b"Date"])
    signed = signature + raw
    # No SPF record: DMARC passes through the aligned DKIM signature alone.
    out = check(filter_port, signed, IP="127.0.0.9", Helo="relay.other.test", From="<bounce@other.test>")
    assert "R_DKIM_ALLOW" in out["symbols"], out
    assert "DMARC_POLICY_ALLOW" in out["symbols"], out
    ar = out["milter"]["add_headers"]["Authentication-Results"]["value"]
    assert "dkim=pass" in ar and "header.i=@sender.test" in ar and "header.s=sel" in ar, ar
    # The body changed after signing: the signature fails, DMARC quarantines.
    tampered = signed.replace(b"hello there", b"hello thera")
    out = check(filter_port, tampered, IP="127.0.0.9", Helo="relay.other.test", From="<bounce@other.test>")
    assert "R_DKIM_REJECT" in out["symbols"], out
    assert "DMARC_POLICY_QUARANTINE" in out["symbols"], out
    assert out["action"] == "add header"
    assert out["milter"]["add_headers"]["X-Spam"]["value"] == "Yes"


def test_forged_authentication_results_removed(filter_port, dns):
    raw = ("Authentication-Results: mx.example.test; spf=pass smtp.mailfrom=carol@sender.test\r\n"
           + SIGNED_BASE).encode()
    out = check(filter_port, raw, IP="127.0.0.9", Helo="h.test", From="<carol@sender.test>")
    assert out["milter"]["remove_headers"] == {"Authentication-Results": 0}
    clean = check(filter_port, SIGNED_BASE.encode(), IP="127.0.0.9", Helo="h.test", From="<carol@sender.test>")
    assert "remove_headers" not in clean["milter"]


# --- Postbay's SMTP calls the filter before its 250 ----------------------------------------

import imaplib  # noqa: E402
import smtplib  # noqa: E402

from conftest import FIXTURES  # noqa: E402


def dev_with_filter(make_postbay, dns, **extra):
    env = {
        "POSTBAY_FILTER__NAMESERVERS": f"[127.0.0.1:{dns.port}]",
        "POSTBAY_FILTER__AUTHSERV_ID": "mx.example.test",
        "POSTBAY_FILTER__LOCAL_NETWORKS": "[]",
        **extra,
    }
    pb = make_postbay(env=env)
    pb.apply(FIXTURES / "example.yaml")
    pb.start_dev()
    return pb


def imap_fetch_all(pb, user, password, folder="INBOX"):
    imap = imaplib.IMAP4("127.0.0.1", pb.port(143))
    imap.login(user, password)
    imap.select(folder)
    _, data = imap.search(None, "ALL")
    out = []
    for num in data[0].split():
        _, parts = imap.fetch(num, "(RFC822)")
        out.append(parts[0][1])
    imap.logout()
    return out


def test_gtube_on_port_25_is_refused_and_not_delivered(make_postbay, dns):
    pb = dev_with_filter(make_postbay, dns)
    with smtplib.SMTP("127.0.0.1", pb.smtp, timeout=30) as s:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            s.sendmail("x@remote.test", ["alice@example.test"], GOOD.format(id="g1", body=GTUBE))
        assert refused.value.smtp_code == 550
        assert b"5.7.1 Gtube pattern" in refused.value.smtp_error
        # The session goes on: a clean message still gets its 250.
        s.sendmail("x@remote.test", ["alice@example.test"], GOOD.format(id="g2", body="fine"))
    got = pb.wait_messages("alice@example.test", 1)
    assert len(got) == 1 and GTUBE.encode() not in got[0]


def test_spf_results_in_the_delivered_copy(make_postbay, dns):
    dns.records["pass.test"] = "v=spf1 ip4:127.0.0.1 -all"
    dns.records["fail.test"] = "v=spf1 ip4:192.0.2.1 -all"
    pb = dev_with_filter(make_postbay, dns)
    forged = "Authentication-Results: mx.example.test; spf=pass smtp.mailfrom=x@fail.test\r\n"
    with smtplib.SMTP("127.0.0.1", pb.smtp, timeout=30) as s:
        s.sendmail("carol@pass.test", ["alice@example.test"], GOOD.format(id="p1", body="from pass"))
        s.sendmail("dave@fail.test", ["alice@example.test"], forged + GOOD.format(id="f1", body="from fail"))
    pb.wait_messages("alice@example.test", 2)
    messages = imap_fetch_all(pb, "alice@example.test", "alice-secret")
    assert len(messages) == 2
    by_body = {b"from pass" in m: m for m in messages}
    passed, failed = by_body[True], by_body[False]
    assert b"Authentication-Results: mx.example.test;" in passed
    assert b"spf=pass" in passed and b"smtp.mailfrom=carol@pass.test" in passed
    assert b"spf=fail" in failed and b"smtp.mailfrom=dave@fail.test" in failed
    # The forged result claiming our id is gone; only ours is left.
    assert failed.count(b"Authentication-Results:") == 1
    assert b"spf=pass smtp.mailfrom=x@fail.test" not in failed


def test_add_header_action_tags_the_message_and_files_it_in_junk(make_postbay, dns):
    pb = dev_with_filter(make_postbay, dns)
    with smtplib.SMTP("127.0.0.1", pb.smtp, timeout=30) as s:
        # No Date, Message-ID, Subject or From: 7.5 points, over add_header (6).
        s.sendmail("x@remote.test", ["alice@example.test"], "To: alice@example.test\r\n\r\nsloppy\r\n")
        s.sendmail("x@remote.test", ["alice@example.test"], GOOD.format(id="ok1", body="clean"))
    pb.wait_messages("alice@example.test", 1, folder="Junk")
    pb.wait_messages("alice@example.test", 1)
    junk = imap_fetch_all(pb, "alice@example.test", "alice-secret", folder="Junk")
    assert len(junk) == 1
    assert b"X-Spam: Yes\r\n" in junk[0] and b"sloppy" in junk[0]
    assert b"X-Spam-Score: 7.50\r\n" in junk[0]
    inbox = pb.messages("alice@example.test")
    assert len(inbox) == 1 and b"X-Spam" not in inbox[0]


@pytest.mark.parametrize("mode,code", [("open", 250), ("closed", 451)])
def test_filter_down(make_postbay, dns, mode, code):
    closed_port = free_port_base() + 11334
    pb = dev_with_filter(make_postbay, dns, POSTBAY_SMTP__FILTER=f"http://127.0.0.1:{closed_port}",
                         POSTBAY_SMTP__FILTER_FAILURE=mode, POSTBAY_SMTP__FILTER_TIMEOUT="2s")
    with smtplib.SMTP("127.0.0.1", pb.smtp, timeout=30) as s:
        s.ehlo()
        s.mail("x@remote.test")
        s.rcpt("alice@example.test")
        reply, text = s.data(GOOD.format(id="d1", body="while the filter is down"))
    assert reply == code, text
    if mode == "open":
        assert len(pb.wait_messages("alice@example.test", 1)) == 1
        assert "filter failed; accepting unfiltered" in pb.log()
    else:
        assert b"4.7.1" in text
        assert pb.messages("alice@example.test") == []


@pytest.fixture
def dnsbl_filter(tmp_path, dns):
    """A filter with two IP lists (one with a pattern and a weight, one with any answer) and
    a domain list, answered by the local DNS server."""
    dns.addresses["2.2.0.192.bl.test"] = ["127.0.0.2"]
    dns.addresses["2.2.0.192.any.test"] = ["127.0.0.255"]
    dns.addresses["3.2.0.192.bl.test"] = ["127.0.0.12"]  # outside the pattern: not listed
    dns.addresses["spam.example.net.dbl.test"] = ["127.0.1.2"]
    yield from start_filter(tmp_path, dns, {
        "POSTBAY_FILTER__DNSBL_SITES": '["bl.test=127.0.0.[2..11]*5", "any.test*2"]',
        "POSTBAY_FILTER__DOMAIN_DNSBL_SITES": '["dbl.test*4"]',
    })


def test_dnsbl_lists_the_client_and_the_linked_domains_with_their_weights(dnsbl_filter, tmp_path):
    body = "Buy now at https://spam.example.net/offer and see http://fine.example.org/"
    msg = message_file(tmp_path, "l.eml", GOOD.format(id="bl1", body=body))
    listed = rspamc(dnsbl_filter, "-i", "192.0.2.2", "symbols", msg)
    assert "Symbol: RBL_BL_TEST (5.00)" in listed, listed
    assert "Symbol: RBL_ANY_TEST (2.00)" in listed, listed
    assert "Symbol: URIBL_DBL_TEST (4.00)" in listed, listed
    assert "spam.example.net" in listed and "fine.example.org" not in listed.split("URIBL_DBL_TEST")[1].split("\n")[0]
    # An answer outside the pattern does not count, an unlisted address and domain get nothing.
    clean = rspamc(dnsbl_filter, "-i", "192.0.2.3", "symbols",
                   message_file(tmp_path, "c.eml", GOOD.format(id="bl2", body="hello")))
    assert "RBL_" not in clean and "URIBL_" not in clean, clean
    # A logged-in sender is not looked up.
    sub = rspamc(dnsbl_filter, "-i", "192.0.2.2", "-u", "alice@example.org", "symbols", msg)
    assert "RBL_" not in sub, sub


def test_a_malformed_dnsbl_site_stops_the_filter_with_a_clear_message(tmp_path):
    import os

    out = subprocess.run([str(postbay_binary()), "filter"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "POSTBAY_DATA_DIR": str(tmp_path / "d"),
                              "POSTBAY_FILTER__LISTEN": "127.0.0.1:1",
                              "POSTBAY_FILTER__DNSBL_SITES": '["bl.test=127.0.0.[2..]*3"]'})
    assert out.returncode != 0
    assert 'DNSBL site "bl.test=127.0.0.[2..]*3": the pattern is not like 127.0.0.[2..11]' in out.stderr, out.stderr


@pytest.mark.parametrize("per_domain", [False, True], ids=["global", "per-domain"])
def test_junk_moves_over_imap_teach_the_filter(make_postbay, dns, tmp_path, per_domain):
    """A user moving a message into Junk (imaplib MOVE) teaches `postbay filter` spam; moving
    it back to the INBOX teaches ham (the filter relearns the same Message-ID); deleting from
    Junk into Trash teaches nothing. With per-domain classifiers the IMAP role names the
    mailbox (Deliver-To), so every learn lands in example.test's."""
    import imaplib

    from conftest import FIXTURES

    gen = start_filter(tmp_path, dns, {"POSTBAY_FILTER__BAYES_PER_DOMAIN": str(per_domain).lower()})
    port = next(gen)
    try:
        metric = lambda name: metrics_value(admin_of(port), name)
        pb = make_postbay(env={"POSTBAY_IMAP__LEARN_URL": f"http://127.0.0.1:{port}"})
        pb.apply(FIXTURES / "example.yaml")
        pb.start_dev()
        wait_port(pb.port(143))
        spam = 'postbay_filter_learns_total{class="spam",result="learned"}'
        ham = 'postbay_filter_learns_total{class="ham",result="learned"}'
        with imaplib.IMAP4("127.0.0.1", pb.port(143)) as m:
            m.login("alice@example.test", "alice-secret")
            for i in (1, 2):
                body = GOOD.format(id=f"junk{i}", body="cheap pills winner casino")
                assert m.append("INBOX", None, None, body.encode())[0] == "OK"
            m.select("INBOX")
            assert m.uid("MOVE", "1", "Junk")[0] == "OK"
            wait_until(lambda: metric(spam) == 1, "the spam learn")
            m.select("Junk")
            assert m.uid("MOVE", "1", "INBOX")[0] == "OK"
            wait_until(lambda: metric(ham) == 1, "the ham learn (out of Junk)")
            # Copy into Junk also teaches; Junk -> Trash does not.
            m.select("INBOX")
            assert m.uid("COPY", "2", "Junk")[0] == "OK"
            wait_until(lambda: metric(spam) == 2, "the learn of the copy")
            m.select("Junk")
            assert m.uid("MOVE", "1:*", "Trash")[0] == "OK"
        time.sleep(1)
        assert metric(ham) == 1 and metric(spam) == 2, "nothing learnt from Junk to Trash"
        assert "message learnt from a Junk move" in pb.log()
    finally:
        gen.close()


def metrics_value(admin_port, name):
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_until(predicate, what, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_greylisting_defers_a_new_triplet_and_passes_its_retry(tmp_path, dns):
    """Greylisting on (2 s delay): rspamc's first attempt gets `greylist`, a retry too soon
    too, one after the delay passes; another address of the same /24 passes, another sender
    is new again; a logged-in sender is never greylisted."""
    gen = start_filter(tmp_path, dns, {"POSTBAY_FILTER__GREYLISTING": "true",
                                       "POSTBAY_FILTER__GREYLIST_DELAY": "2s"})
    port = next(gen)
    try:
        msg = message_file(tmp_path, "g.eml", GOOD.format(id="grey1", body="hello"))
        ask = lambda ip, sender, *extra: rspamc(port, "-i", ip, "-F", sender, "-r", "bob@example.test",
                                                *extra, "symbols", msg)
        first = ask("192.0.2.10", "alice@example.org")
        assert "Action: greylist" in first and "GREYLIST" in first, first
        assert "Action: greylist" in ask("192.0.2.10", "alice@example.org")
        time.sleep(2.5)
        retry = ask("192.0.2.10", "alice@example.org")
        assert "Action: no action" in retry and "GREYLIST_PASS" in retry, retry
        assert "Action: no action" in ask("192.0.2.77", "alice@example.org"), "same /24"
        assert "Action: greylist" in ask("192.0.2.10", "other@example.org"), "a new triplet"
        assert "GREYLIST" not in ask("198.51.100.1", "x@example.org", "-u", "x@example.org")
    finally:
        gen.close()


def test_a_maildomain_spam_filter_overrides_thresholds_and_scores(make_postbay, dns, tmp_path):
    """MailDomain spec.spamFilter (applied as YAML, stored by the reconcile core) changes the
    verdict for mail to that domain only; a message to two domains gets the stricter."""
    fixture = (FIXTURES / "example.yaml").read_text()
    assert fixture.count("  catchAll: bucket\n") == 1
    strict = tmp_path / "strict.yaml"
    strict.write_text(fixture.replace(
        "  catchAll: bucket\n",
        "  catchAll: bucket\n  spamFilter: {addHeader: 3, scores: {MISSING_SUBJECT: 20}}\n"))
    pb = make_postbay(env={"POSTBAY_FILTER__NAMESERVERS": f"[127.0.0.1:{dns.port}]",
                           "POSTBAY_FILTER__LOCAL_NETWORKS": "[]"})
    pb.apply(strict)
    pb.start_dev()
    # MISSING_DATE + MISSING_MID: 3.5, under the default add_header (6), over catch.test's 3.
    undated = "From: x@remote.test\r\nTo: a@catch.test\r\nSubject: {subject}\r\n\r\nbody\r\n"
    with smtplib.SMTP("127.0.0.1", pb.smtp, timeout=30) as s:
        s.sendmail("x@remote.test", ["alice@example.test"], undated.format(subject="to example"))
        s.sendmail("x@remote.test", ["a@catch.test"], undated.format(subject="to catch"))
        s.sendmail("x@remote.test", ["bob@example.test", "b@catch.test"], undated.format(subject="to both"))
        # MISSING_SUBJECT is 2 by default, 20 for catch.test: over the reject threshold there.
        untitled = "From: x@remote.test\r\nTo: {to}\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{id}@remote.test>\r\n\r\nno subject\r\n"
        with pytest.raises(smtplib.SMTPDataError) as refused:
            s.sendmail("x@remote.test", ["c@catch.test"], untitled.format(to="c@catch.test", id="u1"))
        assert refused.value.smtp_code == 550, refused.value
        s.sendmail("x@remote.test", ["alice@example.test"], untitled.format(to="alice@example.test", id="u2"))
    inbox = pb.wait_messages("alice@example.test", 2)
    assert all(b"X-Spam" not in m for m in inbox), inbox
    assert sorted(b"to example" in m or b"no subject" in m for m in inbox) == [True, True]
    junk = pb.wait_messages("bucket@catch.test", 2, folder="Junk")
    assert all(b"X-Spam: Yes\r\n" in m for m in junk), junk
    assert sorted(m.split(b"Subject: ")[1].split(b"\r\n")[0] for m in junk) == [b"to both", b"to catch"]
    bob_junk = pb.wait_messages("bob@example.test", 1, folder="Junk")
    assert b"to both" in bob_junk[0]
    assert pb.messages("bucket@catch.test") == []


def test_a_local_from_from_outside_without_authentication_is_a_forged_local_sender(make_postbay, dns):
    """From in a domain hosted here (example.test, from the store), sent from outside without a
    login: FORGED_LOCAL_SENDER, unless SPF, DKIM or DMARC passes; a login or a local relay is
    never flagged."""
    dns.records["example.test"] = "v=spf1 ip4:127.0.0.7 -all"
    pb = dev_with_filter(make_postbay, dns)
    port = pb.port(11333)
    wait_port(port)
    raw = GOOD.replace("Alice <alice@example.org>", "Alice <alice@example.test>").format(id="fl1", body="hi").encode()
    out = check(port, raw, IP="127.0.0.9", Helo="h.remote.test", From="<alice@example.test>")
    assert out["symbols"]["FORGED_LOCAL_SENDER"]["options"] == ["example.test"], out
    assert out["symbols"]["FORGED_LOCAL_SENDER"]["score"] == 4.0
    # SPF passes for the envelope domain: vouched for.
    out = check(port, raw, IP="127.0.0.7", Helo="h.remote.test", From="<alice@example.test>")
    assert "R_SPF_ALLOW" in out["symbols"] and "FORGED_LOCAL_SENDER" not in out["symbols"], out
    out = check(port, raw, IP="127.0.0.9", Helo="h", From="<alice@example.test>", User="alice@example.test")
    assert "FORGED_LOCAL_SENDER" not in out["symbols"], out
    foreign = GOOD.format(id="fl2", body="hi").encode()
    out = check(port, foreign, IP="127.0.0.9", Helo="h.remote.test", From="<alice@example.org>")
    assert "FORGED_LOCAL_SENDER" not in out["symbols"] and "FROM_LOCAL_DOMAIN" not in out["symbols"], out


def test_ratelimits_soft_reject_the_third_message_from_a_sender_on_any_replica(make_postbay, dns, tmp_path):
    """`ratelimits = ["from:2/1h"]` on two filter replicas sharing the database: two messages
    from one sender pass (one through each replica), the third gets `soft reject` with
    RATELIMIT on either replica and is not counted; another sender still passes, a logged-in
    sender is not limited by a `from` rule. A malformed rule stops the role with a clear
    message."""
    import os

    bad = subprocess.run([str(postbay_binary()), "filter"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "POSTBAY_DATA_DIR": str(tmp_path / "bad"),
                              "POSTBAY_FILTER__LISTEN": "127.0.0.1:1",
                              "POSTBAY_FILTER__RATELIMITS": '["from:2/1w"]'})
    assert bad.returncode != 0
    assert 'filter.ratelimits: rate limit "from:2/1w": the period\'s unit is not s, m, h or d' in bad.stderr, bad.stderr

    pb = make_postbay()
    a, b = pb.port(11333), pb.port(11334)
    pb.env.update({"POSTBAY_DATA_DIR": str(pb.data), "POSTBAY_DATABASE_URL": pb.database_url,
                   "POSTBAY_FILTER__NAMESERVERS": f"[127.0.0.1:{dns.port}]",
                   "POSTBAY_FILTER__LOCAL_NETWORKS": "[]",
                   "POSTBAY_FILTER__RATELIMITS": '["from:2/1h"]'})
    for port, name in ((a, "filter-a"), (b, "filter-b")):
        pb.env["POSTBAY_FILTER__LISTEN"] = f"127.0.0.1:{port}"
        pb.start("filter", wait_ports=[port], log_name=name)
    msg = message_file(tmp_path, "r.eml", GOOD.format(id="rl1", body="hello"))
    ask = lambda port, sender, *extra: rspamc(port, "-i", "192.0.2.10", "-F", sender, "-r", "bob@example.test",
                                              *extra, "symbols", msg)
    first = ask(a, "alice@example.org")
    assert "Action: no action" in first and "RATELIMIT_CHECK" in first, first
    assert "Action: no action" in ask(b, "Alice@example.org"), "the second, on the other replica"
    for port in (a, b):
        third = ask(port, "alice@example.org")
        assert "Action: soft reject" in third, third
        assert "Symbol: RATELIMIT " in third or "Symbol: RATELIMIT(" in third, third
        assert "from:2/1h alice@example.org" in third, third
    assert "Action: no action" in ask(b, "other@example.org"), "another sender"
    assert "RATELIMIT" not in ask(a, "alice@example.org", "-u", "alice@example.org"), "a login"
    counts = pb.query("SELECT SUM(count) FROM ratelimit")
    assert [int(row[0]) for row in counts] == [3], counts
