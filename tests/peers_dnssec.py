"""A DNSSEC-signed zone on loopback for the DANE tests: Knot DNS serves and signs it
(automatic ECDSA P-256 keys), Unbound resolves it as a validating resolver with the zone's
KSK as its trust anchor, so answers for the zone come back with the AD bit (RFC 4035
§3.2.3) and a broken signature comes back as SERVFAIL, as from any validating resolver.
Both are Debian packages (scripts/install-test-deps installs them)."""

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REQUIRE
from peers_outbound import free_udp_port


def need(binary: str):
    path = shutil.which(binary) or shutil.which(f"/usr/sbin/{binary}")
    if path is None:
        message = f"{binary} is missing (scripts/install-test-deps installs knot and unbound)"
        if REQUIRE:
            pytest.fail(message)
        pytest.skip(message)
    return path


def wait_udp(port: int, name: str, timeout=20.0):
    """Until a DNS server on 127.0.0.1:port answers a query for `name` (SOA)."""
    deadline = time.time() + timeout
    query = build_query(name, 6)
    while time.time() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)
            try:
                s.sendto(query, ("127.0.0.1", port))
                s.recvfrom(4096)
                return
            except OSError:
                time.sleep(0.2)
    raise RuntimeError(f"no DNS server on 127.0.0.1:{port}")


def build_query(name: str, qtype: int) -> bytes:
    header = b"\x12\x34\x01\x20\x00\x01\x00\x00\x00\x00\x00\x00"  # RD and AD set
    labels = b"".join(bytes([len(l)]) + l.encode() for l in name.strip(".").split(".") if l)
    return header + labels + b"\x00" + qtype.to_bytes(2, "big") + b"\x00\x01"


class SignedZone:
    """`origin` signed by knotd, resolved (and validated) by unbound. `records` are zone-file
    lines relative to the origin, e.g. "mx A 127.0.0.2"."""

    def __init__(self, tmp: Path, origin: str, records: list[str]):
        knotd, unbound = need("knotd"), need("unbound")
        self.kdig = need("kdig")
        self.dir = tmp / "dnssec"
        self.dir.mkdir()
        self.origin = origin.rstrip(".")
        self.knot_port = free_udp_port("127.0.0.1")
        self.write_zone(records)
        (self.dir / "knot.conf").write_text(f"""
server:
    listen: 127.0.0.1@{self.knot_port}
    rundir: {self.dir}
log:
  - target: {self.dir}/knot.log
    any: info
database:
    storage: {self.dir}
template:
  - id: default
    storage: {self.dir}
    file: {self.dir}/%s.zone
    dnssec-signing: on
    zonefile-load: difference-no-serial
    journal-content: all
zone:
  - domain: {self.origin}
""")
        self.knot = subprocess.Popen([knotd, "-c", str(self.dir / "knot.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.unbound = None
        try:
            wait_udp(self.knot_port, self.origin)
            ksk = self.ksk()
            self.port = free_udp_port("127.0.0.1")
            (self.dir / "unbound.conf").write_text(f"""
server:
    interface: 127.0.0.1
    port: {self.port}
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "{self.dir}"
    pidfile: ""
    use-syslog: no
    logfile: "{self.dir}/unbound.log"
    verbosity: 1
    val-log-level: 2
    do-not-query-localhost: no
    access-control: 127.0.0.0/8 allow
    module-config: "validator iterator"
    trust-anchor: "{ksk}"
    qname-minimisation: no
    # Unbound answers RFC 6761 names such as test. itself unless told not to.
    local-zone: "{self.origin.rsplit('.', 1)[-1]}." nodefault
    cache-max-ttl: 1
    cache-max-negative-ttl: 1
stub-zone:
    name: "{self.origin}"
    stub-addr: 127.0.0.1@{self.knot_port}
""")
            self.unbound = subprocess.Popen([unbound, "-d", "-c", str(self.dir / "unbound.conf")],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_udp(self.port, self.origin)
        except Exception:
            self.stop()
            raise
        self.address = f"127.0.0.1:{self.port}"

    def write_zone(self, records: list[str], serial: int = 1):
        lines = [f"$ORIGIN {self.origin}.", "$TTL 1",
                 f"@ SOA ns hostmaster {serial} 3600 600 86400 1", "@ NS ns", "ns A 127.0.0.1",
                 *records]
        (self.dir / f"{self.origin}.zone").write_text("\n".join(lines) + "\n")

    def ksk(self) -> str:
        """The zone's key-signing DNSKEY as a trust anchor line."""
        for _ in range(50):
            out = subprocess.run([self.kdig, "@127.0.0.1", "-p", str(self.knot_port), "+short",
                                  self.origin, "DNSKEY"], capture_output=True, text=True,
                                 timeout=10).stdout
            for line in out.splitlines():
                if line.startswith("257 "):
                    return f"{self.origin}. DNSKEY {line}"
            time.sleep(0.2)
        raise RuntimeError(f"knotd did not sign {self.origin}: {(self.dir / 'knot.log').read_text()}")

    def dig(self, name: str, rtype: str) -> str:
        """What the validating resolver says (flags and answers), for assertions."""
        return subprocess.run([self.kdig, "@127.0.0.1", "-p", str(self.port), "+adflag",
                               name, rtype], capture_output=True, text=True, timeout=10).stdout

    def stop(self):
        for p in (self.unbound, self.knot):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
