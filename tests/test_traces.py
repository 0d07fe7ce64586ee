"""OpenTelemetry traces: one message, one trace, across the SMTP, filter and mailbox roles.

The collector is a stand-in that speaks OTLP/HTTP with JSON bodies (the OpenTelemetry
protocol's `http/json` encoding, selected with the standard OTEL_EXPORTER_OTLP_PROTOCOL),
records every span it is sent, and answers 200 like a collector does."""

import http.server
import json
import re
import smtplib
import threading
import time

import pytest

from conftest import FIXTURES, wait_port
from test_filter import LocalDns


class Collector:
    """An OTLP/HTTP receiver (POST /v1/traces, JSON) that keeps the spans it gets."""

    def __init__(self):
        self.spans = []
        self.lock = threading.Lock()
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            # Keep-alive, as a collector does: the exporter reuses its connections.
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/v1/traces" or "json" not in self.headers.get("Content-Type", ""):
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                export = json.loads(body)
                with collector.lock:
                    for rs in export.get("resourceSpans", []):
                        attrs = {a["key"]: a["value"] for a in rs.get("resource", {}).get("attributes", [])}
                        service = attrs.get("service.name", {}).get("stringValue")
                        for ss in rs.get("scopeSpans", []):
                            for span in ss.get("spans", []):
                                span["service"] = service
                                collector.spans.append(span)
                reply = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, predicate, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                spans = list(self.spans)
            if predicate(spans):
                return spans
            time.sleep(0.1)
        with self.lock:
            return list(self.spans)

    def stop(self):
        self.server.shutdown()


@pytest.fixture
def collector():
    c = Collector()
    yield c
    c.stop()


def otel_env(collector):
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }


def attribute(span, key):
    for a in span.get("attributes", []):
        if a["key"] == key:
            v = a["value"]
            if "intValue" in v:  # OTLP JSON writes 64-bit integers as strings
                return int(v["intValue"])
            return v.get("stringValue", v.get("boolValue"))
    return None


WANTED = ["smtp.message", "filter.scan", "filter.check", "queue.attempt", "lmtp.send",
          "lmtp.deliver", "store.deliver"]


def test_one_message_is_one_trace_across_smtp_filter_queue_lmtp_and_store(make_postbay, collector):
    pb = make_postbay()
    pb.apply(FIXTURES / "example.yaml")
    dns = LocalDns()
    filter_port = pb.port(11333)
    pb.env.update({
        "POSTBAY_DATA_DIR": str(pb.data),
        "POSTBAY_DATABASE_URL": pb.database_url,
        **pb.listener_env(),
        **otel_env(collector),
    })
    try:
        pb.env.update({"POSTBAY_FILTER__LISTEN": f"127.0.0.1:{filter_port}",
                       "POSTBAY_FILTER__NAMESERVERS": f"[127.0.0.1:{dns.port}]"})
        pb.start("filter", wait_ports=[filter_port], log_name="filter")
        pb.start("imap", wait_ports=[pb.lmtp], log_name="imap")
        pb.env.update({"POSTBAY_SMTP__LMTP_TARGET": f"127.0.0.1:{pb.lmtp}",
                       "POSTBAY_SMTP__FILTER": f"http://127.0.0.1:{filter_port}",
                       "POSTBAY_NODE_ID": "smtp-0"})
        pb.start("smtp", wait_ports=[pb.smtp], log_name="smtp")
        with smtplib.SMTP("127.0.0.1", pb.smtp, timeout=20) as s:
            s.sendmail("someone@remote.test", ["alice@example.test"],
                       b"From: someone@remote.test\r\nTo: alice@example.test\r\nSubject: traced\r\n"
                       b"Message-ID: <traced@remote.test>\r\n\r\nhello\r\n")
        pb.wait_messages("alice@example.test", 1)

        def complete(spans):
            return all(any(s["name"] == n for s in spans) for n in WANTED)
        spans = collector.wait_for(complete)
    finally:
        dns.stop()
    names = sorted({s["name"] for s in spans})
    assert complete(spans), f"spans received: {names}\n{pb.log('smtp')[-2000:]}"
    by_name = {n: [s for s in spans if s["name"] == n] for n in WANTED}
    assert len(by_name["smtp.message"]) == 1
    root = by_name["smtp.message"][0]
    trace = root["traceId"]
    assert len(trace) == 32 and trace != "0" * 32
    # Every hop of this message belongs to the one trace, each from the process that did it.
    for name, service in [("smtp.message", "postbay-smtp"), ("filter.scan", "postbay-smtp"),
                          ("filter.check", "postbay-filter"), ("queue.attempt", "postbay-smtp"),
                          ("lmtp.send", "postbay-smtp"), ("lmtp.deliver", "postbay-imap"),
                          ("store.deliver", "postbay-imap")]:
        mine = [s for s in by_name[name] if s["traceId"] == trace]
        assert mine, f"{name} is not in trace {trace}: {by_name[name]}"
        assert all(s["service"] == service for s in mine), (name, [s["service"] for s in mine])
    ids = {s["spanId"]: s for s in spans if s["traceId"] == trace}
    parent = lambda name: ids[[s for s in by_name[name] if s["traceId"] == trace][0]["parentSpanId"]]["name"]
    # The hops nest as the message travelled: accept > filter; attempt > LMTP > store.
    assert parent("filter.scan") == "smtp.message"
    assert parent("filter.check") == "filter.scan"
    assert parent("queue.attempt") == "smtp.message"
    assert parent("lmtp.send") == "queue.attempt"
    assert parent("lmtp.deliver") == "lmtp.send"
    assert parent("store.deliver") == "lmtp.deliver"
    qid = attribute(root, "queue_id")
    assert qid and attribute(by_name["queue.attempt"][0], "queue_id") == qid
    assert attribute(by_name["queue.attempt"][0], "outcome") == "delivered"
    assert attribute(root, "reply") == 250
    assert attribute(by_name["store.deliver"][0], "mailbox") == "alice@example.test"
    # The connection's session span is log context, never exported as a trace of its own.
    assert not [s for s in spans if s["name"] == "session"]


def envelopes(pb):
    queue = pb.data / "spool" / "queue" / "smtp-0"
    return {p.name: json.loads(p.read_bytes().split(b"\n", 1)[0])
            for p in queue.glob("*.msg") if not p.name.startswith(".")}


def test_queue_entry_carries_the_trace_context_only_when_traces_are_on(make_postbay, collector):
    """The mailbox role is down, so the messages stay queued and their entries can be read."""
    pb = make_postbay()
    pb.apply(FIXTURES / "example.yaml")
    pb.env.update({"POSTBAY_DATA_DIR": str(pb.data), "POSTBAY_DATABASE_URL": pb.database_url,
                   **pb.listener_env(), "POSTBAY_SMTP__LMTP_TARGET": f"127.0.0.1:{pb.lmtp}",
                   "POSTBAY_NODE_ID": "smtp-0"})
    pb.start("smtp", wait_ports=[pb.smtp], log_name="smtp-off")
    with smtplib.SMTP("127.0.0.1", pb.smtp, timeout=20) as s:
        s.sendmail("someone@remote.test", ["alice@example.test"], b"Subject: untraced\r\n\r\nhi\r\n")
    untraced = envelopes(pb)
    assert len(untraced) == 1
    assert all("trace" not in e for e in untraced.values()), untraced
    assert "traces are exported" not in pb.log("smtp-off")
    pb.stop()

    pb.env.update(otel_env(collector))
    pb.start("smtp", wait_ports=[pb.smtp], log_name="smtp-on")
    with smtplib.SMTP("127.0.0.1", pb.smtp, timeout=20) as s:
        s.sendmail("someone@remote.test", ["alice@example.test"], b"Subject: traced\r\n\r\nhi\r\n")
    traced = {k: e for k, e in envelopes(pb).items() if k not in untraced}
    assert len(traced) == 1
    (entry,) = traced.values()
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", entry["trace"]), entry
    _, trace_id, span_id, _ = entry["trace"].split("-")
    spans = collector.wait_for(lambda spans: any(s["name"] == "smtp.message" for s in spans))
    accepted = [s for s in spans if s["name"] == "smtp.message"]
    assert [(s["traceId"], s["spanId"]) for s in accepted] == [(trace_id, span_id)]
    assert "traces are exported over OTLP/HTTP" in pb.log("smtp-on")
