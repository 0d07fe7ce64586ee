"""TLS policies of outbound delivery: MTA-STS (RFC 8461) with its policy served by a local
HTTPS server (Python's http.server over ssl, a private CA that postbay trusts through
SSL_CERT_FILE), DANE (RFC 7672) with a zone signed by Knot and validated by Unbound, and
the TLS-RPT counts (RFC 8460) both leave, read back with `postbay tls-report`."""

import hashlib
import json
import re
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import FIXTURES, postbay_binary, wait_port
from peers_dnssec import SignedZone
from peers_outbound import Peer, Zone, free_port_on, self_signed
from test_outbound import inbox, metric, queue_files, submit, wait_for

run = lambda *args: subprocess.run(args, check=True, capture_output=True, timeout=60)


class Ca:
    """A private CA issuing server certificates (with the CA in the chain file)."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.key, self.cert = tmp / "ca.key", tmp / "ca.crt"
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=Postbay Test CA", "-keyout", str(self.key), "-out", str(self.cert))

    def issue(self, name: str) -> ssl.SSLContext:
        key, csr, crt, chain = (self.tmp / f"{name}.{x}" for x in ("key", "csr", "crt", "chain"))
        run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", str(key), "-out", str(csr))
        ext = self.tmp / f"{name}.ext"
        ext.write_text(f"subjectAltName=DNS:{name}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
        run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
            "-CAcreateserial", "-days", "2", "-out", str(crt), "-extfile", str(ext))
        chain.write_text(crt.read_text() + self.cert.read_text())
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(chain), str(key))
        return ctx

    def der(self) -> bytes:
        return ssl.PEM_cert_to_DER_cert(self.cert.read_text())


class PolicyServer:
    """https://mta-sts.<domain>:<port>/.well-known/mta-sts.txt on `host`."""

    def __init__(self, host: str, port: int, ctx: ssl.SSLContext, policy: str):
        self.policy = policy
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Host")))
                if self.path != "/.well-known/mta-sts.txt" or outer.policy is None:
                    self.send_error(404)
                    return
                body = outer.policy.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def tls_report(pb) -> list[dict]:
    out = subprocess.run([str(postbay_binary()), "tls-report", "--data", str(pb.data)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def summary(reports, domain):
    for r in reports:
        for p in r["policies"]:
            if p["policy"]["policy-domain"] == domain:
                return p
    raise AssertionError(f"no report for {domain}: {reports}")


def sts_world(make_postbay, tmp_path, mode):
    """sts.test: MX 5 rogue.sts.test (127.0.0.3, not in the policy, plain text) and MX 10
    mx.sts.test (127.0.0.2, a self-signed certificate for now); its policy on 127.0.0.5."""
    ca = Ca(tmp_path)
    zone = Zone()
    port = free_port_on(["127.0.0.2", "127.0.0.3", "127.0.0.5"])
    mx = Peer("127.0.0.2", port, tls_context=self_signed(tmp_path, "mx.sts.test"))
    rogue = Peer("127.0.0.3", port)
    policy = PolicyServer("127.0.0.5", port, ca.issue("mta-sts.sts.test"),
                          f"version: STSv1\r\nmode: {mode}\r\nmx: mx.sts.test\r\nmax_age: 86400\r\n")
    zone.add("sts.test", "MX", (5, "rogue.sts.test"))
    zone.add("sts.test", "MX", (10, "mx.sts.test"))
    zone.add("rogue.sts.test", "A", "127.0.0.3")
    zone.add("mx.sts.test", "A", "127.0.0.2")
    zone.add("_mta-sts.sts.test", "TXT", "v=STSv1; id=20261203;")
    zone.add("mta-sts.sts.test", "A", "127.0.0.5")
    pb = make_postbay(env={
        "POSTBAY_OUTBOUND__ENABLED": "true",
        "POSTBAY_OUTBOUND__NAMESERVERS": f"[{zone.address}]",
        "POSTBAY_OUTBOUND__MX_PORT": str(port),
        "POSTBAY_OUTBOUND__MTA_STS_PORT": str(port),
        "POSTBAY_OUTBOUND__MIN_BACKOFF": "1s",
        "POSTBAY_OUTBOUND__MAX_BACKOFF": "2s",
        # The private CA is a trust root of this process (policy host and MX certificates).
        "SSL_CERT_FILE": str(ca.cert),
    })
    pb.apply(FIXTURES / "example.yaml", FIXTURES / "submission.yaml")
    pb.start_dev()
    wait_port(pb.port(587))
    pb.ca, pb.zone, pb.mx, pb.rogue, pb.policy, pb.mx_port = ca, zone, mx, rogue, policy, port
    return pb


@pytest.fixture
def enforced(make_postbay, tmp_path):
    pb = sts_world(make_postbay, tmp_path, "enforce")
    yield pb
    pb.stop()
    for p in (pb.mx, pb.rogue, pb.policy, pb.zone):
        p.stop()


def test_mta_sts_enforce_defers_a_bad_certificate_skips_unlisted_mx_and_delivers_once_valid(enforced):
    pb = enforced
    submit(pb, ["friend@sts.test"], subject="under enforce")
    deferred = wait_for(lambda: [l for l in pb.log().splitlines() if "delivery deferred" in l],
                        "a deferral: the listed MX has a certificate nobody signed")
    assert "certificate" in deferred[0].lower() or "UnknownIssuer" in deferred[0], deferred[0]
    assert pb.policy.requests == [("/.well-known/mta-sts.txt", "mta-sts.sts.test")]
    assert pb.mx.messages == [], "nothing was sent over a connection the policy refuses"
    assert pb.rogue.messages == [] and pb.rogue.rcpt_log == [], "the MX outside the policy is never used"
    assert "not an MX host of the MTA-STS policy" in pb.log()
    cached = json.loads((pb.data / "spool" / "mta-sts" / "sts.test.json").read_text())
    assert cached["mode"] == "enforce" and cached["mx"] == ["mx.sts.test"] and cached["id"] == "20261203"
    # The MX gets a certificate from a trusted CA for its name: the next retry delivers.
    pb.mx.stop()
    pb.mx = Peer("127.0.0.2", pb.mx_port, tls_context=pb.ca.issue("mx.sts.test"))
    got = wait_for(lambda: pb.mx.messages, "delivery once the certificate is valid", timeout=60)
    assert len(got) == 1 and got[0].tls and got[0].rcpts == ["friend@sts.test"]
    wait_for(lambda: not queue_files(pb), "the queue to empty")
    assert len(pb.policy.requests) == 1, "the cached policy served the retries (same TXT id)"
    assert metric(pb, "postbay_outbound_tls_policy_sessions_total", policy="sts", result="success") >= 1
    assert metric(pb, "postbay_outbound_tls_policy_sessions_total", policy="sts", result="failure") >= 1
    assert inbox(pb) == [], "no bounce: a policy failure only defers"
    pb.stop()  # flushes the counts
    report = summary(tls_report(pb), "sts.test")
    assert report["policy"]["policy-type"] == "sts"
    assert report["policy"]["mx-host"] == ["mx.sts.test"]
    assert "mode: enforce" in report["policy"]["policy-string"]
    assert report["summary"]["total-successful-session-count"] == 1
    kinds = {f["result-type"] for f in report["failure-details"]}
    assert "certificate-not-trusted" in kinds, report
    assert "validation-failure" in kinds, "the unlisted MX counts as a failure"


def test_mta_sts_testing_delivers_over_any_tls_and_counts_what_would_fail(make_postbay, tmp_path):
    pb = sts_world(make_postbay, tmp_path, "testing")
    try:
        submit(pb, ["friend@sts.test"], subject="under testing")
        # Testing changes nothing for delivery: the preferred MX, plain text, takes it.
        got = wait_for(lambda: pb.rogue.messages, "delivery as without a policy")
        assert got[0].rcpts == ["friend@sts.test"]
        wait_for(lambda: not queue_files(pb), "the queue to empty")
        assert "MTA-STS testing: the session would have failed the policy" in pb.log()
        pb.stop()
        report = summary(tls_report(pb), "sts.test")
        assert report["summary"] == {"total-successful-session-count": 0,
                                     "total-failure-session-count": 1}, report
        assert report["failure-details"][0]["result-type"] == "starttls-not-supported"
        assert report["failure-details"][0]["receiving-mx-hostname"] == "rogue.sts.test"
    finally:
        pb.stop()
        for p in (pb.mx, pb.rogue, pb.policy, pb.zone):
            p.stop()


def test_a_policy_that_cannot_be_fetched_means_no_policy_and_is_reported(enforced):
    """RFC 8461 §5.1: no cached policy and a failed fetch: deliver as without a policy; the
    failure is counted (RFC 8460 sts-policy-fetch-error)."""
    pb = enforced
    pb.policy.policy = None  # the policy host answers 404
    submit(pb, ["friend@sts.test"], subject="no policy to be had")
    got = wait_for(lambda: pb.rogue.messages, "delivery to the preferred MX, as without a policy")
    assert got[0].rcpts == ["friend@sts.test"]
    assert pb.policy.requests, "the fetch was tried"
    assert not (pb.data / "spool" / "mta-sts" / "sts.test.json").exists(), "nothing cached"
    pb.stop()
    report = summary(tls_report(pb), "sts.test")
    assert report["failure-details"][0]["result-type"] == "sts-policy-fetch-error", report
    assert report["failure-details"][0]["receiving-mx-hostname"] == "mta-sts.sts.test"


def test_without_a_validating_resolver_dane_is_off_and_said_so(make_postbay, tmp_path):
    pb = sts_world(make_postbay, tmp_path, "none")
    try:
        submit(pb, ["friend@sts.test"], subject="policy none")
        wait_for(lambda: pb.rogue.messages, "delivery as without a policy")
        line = wait_for(lambda: [l for l in pb.log().splitlines() if "DANE is off" in l], "the DANE log line")
        assert "does not validate DNSSEC" in line[0]
        assert metric(pb, "postbay_outbound_dane_enabled") == 0
        log = re.sub(r"\x1b\[[0-9;]*m", "", pb.log())
        assert "MTA-STS policy fetched" in log and "mode=None" in log
    finally:
        pb.stop()
        for p in (pb.mx, pb.rogue, pb.policy, pb.zone):
            p.stop()


def spki_sha256(ctx_cert_pem) -> str:
    der = run("openssl", "x509", "-in", str(ctx_cert_pem), "-pubkey", "-noout").stdout
    spki = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=der,
                          capture_output=True, check=True, timeout=30).stdout
    return hashlib.sha256(spki).hexdigest()


@pytest.fixture
def dane(make_postbay, tmp_path):
    """dane.test signed by Knot, resolved by a validating Unbound. Three domains of it:
    ee.dane.test (DANE-EE 3 1 1 of its MX's self-signed key), ta.dane.test (DANE-TA 2 0 1 of
    the CA that signed its MX's certificate) and bad.dane.test (a TLSA record that matches
    nothing); both.dane.test has the DANE-EE host as MX and an MTA-STS policy (enforce) that
    does not list it: DANE wins (RFC 8461 §2)."""
    ca = Ca(tmp_path)
    port = free_port_on(["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"])
    ee = Peer("127.0.0.2", port, tls_context=self_signed(tmp_path, "some-other-name"))
    ta = Peer("127.0.0.4", port, tls_context=ca.issue("mx.ta.dane.test"))
    bad = Peer("127.0.0.3", port, tls_context=self_signed(tmp_path, "mx.bad.dane.test"))
    ca_sha = hashlib.sha256(ca.der()).hexdigest()
    zone = SignedZone(tmp_path, "dane.test", [
        "ee MX 10 mx.ee", "mx.ee A 127.0.0.2",
        f"_{port}._tcp.mx.ee TLSA 3 1 1 {spki_sha256(tmp_path / 'some-other-name.crt')}",
        "ta MX 10 mx.ta", "mx.ta A 127.0.0.4", f"_{port}._tcp.mx.ta TLSA 2 0 1 {ca_sha}",
        "bad MX 10 mx.bad", "mx.bad A 127.0.0.3", f"_{port}._tcp.mx.bad TLSA 3 1 1 {'ab' * 32}",
        "both MX 10 mx.ee", '_mta-sts.both TXT "v=STSv1; id=1;"', "mta-sts.both A 127.0.0.5",
    ])
    policy = PolicyServer("127.0.0.5", port, ca.issue("mta-sts.both.dane.test"),
                          "version: STSv1\nmode: enforce\nmx: elsewhere.example\nmax_age: 3600\n")
    flags = zone.dig(f"_{port}._tcp.mx.ee.dane.test", "TLSA").split("Flags:")[1].split(";")[0]
    assert " ad" in flags, f"unbound validates the zone: {flags}"
    pb = make_postbay(env={
        "POSTBAY_OUTBOUND__ENABLED": "true",
        "POSTBAY_OUTBOUND__NAMESERVERS": f"[{zone.address}]",
        "POSTBAY_OUTBOUND__MX_PORT": str(port),
        "POSTBAY_OUTBOUND__DNSSEC_PROBE": "dane.test",
        "POSTBAY_OUTBOUND__MTA_STS_PORT": str(port),
        "SSL_CERT_FILE": str(ca.cert),
        "POSTBAY_OUTBOUND__MIN_BACKOFF": "1s",
        "POSTBAY_OUTBOUND__MAX_BACKOFF": "2s",
    })
    pb.apply(FIXTURES / "example.yaml", FIXTURES / "submission.yaml")
    pb.start_dev()
    wait_port(pb.port(587))
    pb.ee, pb.ta, pb.bad, pb.zone, pb.policy = ee, ta, bad, zone, policy
    yield pb
    pb.stop()
    for p in (ee, ta, bad, zone, policy):
        p.stop()


def test_dane_ee_and_ta_records_are_enforced_and_a_mismatch_defers(dane):
    pb = dane
    wait_for(lambda: "the resolver validates DNSSEC: DANE is on" in pb.log(), "the DNSSEC check")
    assert metric(pb, "postbay_outbound_dane_enabled") == 1
    submit(pb, ["a@ee.dane.test", "b@ta.dane.test", "c@bad.dane.test"], subject="dane")
    # DANE-EE: the key matches, the name on the certificate does not matter (RFC 7672 §3.1.1).
    got = wait_for(lambda: pb.ee.messages, "delivery to the DANE-EE host")
    assert got[0].tls and got[0].rcpts == ["a@ee.dane.test"]
    # DANE-TA: the certificate chains to the pinned CA and names the host.
    got = wait_for(lambda: pb.ta.messages, "delivery to the DANE-TA host")
    assert got[0].tls and got[0].rcpts == ["b@ta.dane.test"]
    # No match: deferred, and nothing went over that connection.
    deferred = wait_for(lambda: [l for l in pb.log().splitlines()
                                 if "delivery deferred" in l and "bad.dane.test" in l], "the mismatch deferred")
    assert "ApplicationVerificationFailure" in deferred[0] or "certificate" in deferred[0].lower(), deferred[0]
    assert pb.bad.messages == [] and pb.bad.rcpt_log == []
    assert len(queue_files(pb)) == 1, "c@bad.dane.test waits in the queue"
    assert "certificate matches the DANE TLSA records" in pb.log()
    # DANE and MTA-STS for one domain: the policy is fetched, but DANE decides for its host.
    submit(pb, ["d@both.dane.test"], subject="both")
    wait_for(lambda: [m for m in pb.ee.messages if m.rcpts == ["d@both.dane.test"]],
             "delivery under DANE despite the MTA-STS policy that does not list the host")
    assert pb.policy.requests, "the MTA-STS policy was fetched"
    pb.stop()
    reports = tls_report(pb)
    ee = summary(reports, "ee.dane.test")
    assert ee["policy"]["policy-type"] == "tlsa"
    assert ee["policy"]["policy-string"][0].startswith("3 1 1 ")
    assert ee["summary"]["total-successful-session-count"] == 1
    bad = summary(reports, "bad.dane.test")
    assert bad["summary"]["total-successful-session-count"] == 0
    assert bad["summary"]["total-failure-session-count"] >= 1
    assert bad["failure-details"][0]["result-type"] == "validation-failure"
    assert bad["failure-details"][0]["receiving-ip"] == "127.0.0.3"
