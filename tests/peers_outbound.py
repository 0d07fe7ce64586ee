"""Receiving side of the outbound tests, all on 127.0.0.0/8: a DNS server answering MX/A
from a dict (dnslib) and SMTP peers (aiosmtpd) that record what they receive and answer
per recipient as a test scripts them."""

import asyncio
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import REQUIRE


def need_module(name: str):
    try:
        return __import__(name)
    except ImportError:
        message = f"python module {name} is missing (scripts/install-test-deps installs it)"
        if REQUIRE:
            pytest.fail(message)
        pytest.skip(message)


class Zone:
    """name -> list of (type, value): ("MX", (pref, host)), ("A", "127.0.0.2"), ("TXT", "...")."""

    def __init__(self):
        need_module("dnslib")
        from dnslib.server import DNSServer

        self.records: dict[str, list] = {}
        self.queries: list[tuple[str, str]] = []
        port = free_udp_port("127.0.0.1")
        self.address = f"127.0.0.1:{port}"
        self.servers = [DNSServer(self, port=port, address="127.0.0.1"),
                        DNSServer(self, port=port, address="127.0.0.1", tcp=True)]
        for s in self.servers:
            s.start_thread()

    def add(self, name: str, rtype: str, value):
        self.records.setdefault(name.lower().rstrip("."), []).append((rtype, value))

    # dnslib's resolver interface
    def resolve(self, request, handler):
        from dnslib import AAAA, MX, QTYPE, RCODE, RR, TXT, A

        reply = request.reply()
        reply.header.ad = 0  # dnslib echoes the query's flags; this server validates nothing
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        self.queries.append((qname, qtype))
        records = self.records.get(qname)
        if records is None:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for rtype, value in records:
            if rtype != qtype:
                continue
            if rtype == "MX":
                pref, host = value
                reply.add_answer(RR(qname, QTYPE.MX, rdata=MX(host, pref), ttl=60))
            elif rtype == "A":
                reply.add_answer(RR(qname, QTYPE.A, rdata=A(value), ttl=60))
            elif rtype == "AAAA":
                reply.add_answer(RR(qname, QTYPE.AAAA, rdata=AAAA(value), ttl=60))
            elif rtype == "TXT":
                reply.add_answer(RR(qname, QTYPE.TXT, rdata=TXT(value), ttl=1))
        return reply

    def stop(self):
        for s in self.servers:
            s.stop()


def free_udp_port(host: str) -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
            u.bind((host, 0))
            port = u.getsockname()[1]
            try:
                t.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def free_port_on(hosts: list[str]) -> int:
    """A TCP port free on every one of `hosts` (the peers share outbound.mx_port)."""
    family = lambda h: socket.AF_INET6 if ":" in h else socket.AF_INET
    for _ in range(200):
        with socket.socket(family(hosts[0])) as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
        ok = True
        for h in hosts[1:]:
            with socket.socket(family(h)) as s:
                try:
                    s.bind((h, port))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError("no common free port")


def self_signed(tmp: Path, name: str) -> ssl.SSLContext:
    cert, key = tmp / f"{name}.crt", tmp / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


class Received:
    def __init__(self, mail_from, rcpts, content, tls, helo, mail_options):
        self.mail_from = mail_from
        self.rcpts = rcpts
        self.content = content
        self.tls = tls
        self.helo = helo
        self.mail_options = mail_options


class Peer:
    """An aiosmtpd server on host:port. `rcpt_answers[address]` is a list of replies given to
    successive RCPTs of that address (the last one repeats); anything else gets 250."""

    def __init__(self, host: str, port: int, tls_context=None, smtputf8=True, auth=None):
        need_module("aiosmtpd")
        from aiosmtpd.controller import Controller

        self.host, self.port = host, port
        self.messages: list[Received] = []
        self.rcpt_answers: dict[str, list[str]] = {}
        self.rcpt_log: list[str] = []
        self.drop_data = 0  # how many DATA phases to cut off before the reply
        self.dropped = 0
        self.lock = threading.Lock()
        kwargs = {"enable_SMTPUTF8": smtputf8}
        if tls_context is not None:
            kwargs.update(tls_context=tls_context, require_starttls=auth is not None)
        if auth is not None:
            user, password = auth
            self.logins = []

            def authenticator(server, session, envelope, mechanism, auth_data):
                from aiosmtpd.smtp import AuthResult

                ok = auth_data.login == user.encode() and auth_data.password == password.encode()
                self.logins.append((mechanism, ok))
                # handled=False: aiosmtpd sends the 535 itself (handled=True would send nothing).
                return AuthResult(success=ok, handled=False)

            kwargs.update(authenticator=authenticator, auth_required=True,
                          auth_require_tls=True)
        self.controller = Controller(self, hostname=host, port=port, **kwargs)
        self.controller.start()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            self.rcpt_log.append(address)
            answers = self.rcpt_answers.get(address)
            answer = (answers.pop(0) if len(answers) > 1 else answers[0]) if answers else None
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            if self.drop_data > 0:
                # The connection dies after the content and before the reply.
                self.drop_data -= 1
                self.dropped += 1
                server.transport.close()
                return "421 4.3.0 closing (not sent: the connection is gone)"
            self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                          envelope.original_content or envelope.content,
                                          session.ssl is not None, session.host_name,
                                          list(envelope.mail_options)))
        return "250 2.0.0 queued here"

    def stop(self):
        self.controller.stop()


class Sink:
    """Postfix's smtp-sink on host:port (`-c`: it prints running session and message counts).
    The receiving MX of the classic stack's own load tools: PIPELINING, 8BITMIME, DSN."""

    def __init__(self, host: str, port: int, tmp: Path, backlog: int = 256):
        import os
        import shutil

        exe = shutil.which("smtp-sink") or ("/usr/sbin/smtp-sink" if Path("/usr/sbin/smtp-sink").exists() else None)
        if exe is None:
            message = "Postfix's smtp-sink is missing (scripts/install-test-deps installs postfix)"
            if REQUIRE:
                pytest.fail(message)
            pytest.skip(message)
        self.out = tmp / f"smtp-sink-{host}-{port}.out"
        args = [exe, "-c"] + (["-u", "nobody"] if os.geteuid() == 0 else []) + [f"{host}:{port}", str(backlog)]
        self.proc = subprocess.Popen(args, stdout=open(self.out, "wb"), stderr=subprocess.STDOUT)
        import socket
        import time

        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection((host, port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"smtp-sink did not listen on {host}:{port}: {self.out.read_text()}")
        self.probe_sessions = 1  # the readiness probe above is a session too

    def counts(self) -> dict:
        """The last `sess=N quit=N mesg=N` line (sessions count when they end), the probe
        session (which never sent QUIT) taken off."""
        text = self.out.read_bytes().decode(errors="replace").replace("\r", "\n")
        last = [l for l in text.splitlines() if l.startswith("sess=")]
        if not last:
            return {"sess": 0, "quit": 0, "mesg": 0}
        got = dict(kv.split("=") for kv in last[-1].split())
        got = {k: int(v) for k, v in got.items()}
        got["sess"] -= self.probe_sessions
        return got

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
