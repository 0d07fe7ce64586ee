"""`postbay filter` against Debian's real rspamc (Rspamd's own client), and its HTTP limits."""

import http.client
import json
import subprocess

import pytest

from conftest import free_port_base, need_tool, postbay_binary, wait_port

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

GOOD = (
    "From: Alice <alice@example.org>\r\nTo: bob@example.test\r\nSubject: lunch\r\n"
    "Date: Wed, 2 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{id}@example.org>\r\n\r\n{body}\r\n"
)


@pytest.fixture
def filter_port(tmp_path):
    port = free_port_base() + 11333
    env = {
        "POSTBAY_FILTER__LISTEN": f"127.0.0.1:{port}",
        "POSTBAY_FILTER__BAYES_MIN_LEARNS": "2",
        "POSTBAY_FILTER__MAX_MESSAGE_SIZE": "100000",
        "POSTBAY_FILTER__MAX_HEADERS": "50",
        "POSTBAY_LOG": "info",
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


def test_rspamc_gtube_is_rejected(filter_port, tmp_path):
    out = rspamc(filter_port, "symbols", message_file(tmp_path, "g.eml", GOOD.format(id=2, body=GTUBE)))
    assert "Action: reject" in out, out
    assert "Symbol: GTUBE" in out
    assert "smtp_message: Gtube pattern" in out


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
