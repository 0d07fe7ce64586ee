"""TLS in production shape: a mounted kubernetes.io/tls Secret (tls.crt, tls.key), swapped
the way the kubelet does it (a new ..data symlink), picked up without a restart."""

import os
import smtplib
import ssl
import subprocess
import time

from conftest import FIXTURES, need_tool


def make_cert(directory, cn):
    openssl = need_tool("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(directory / "tls.key"), "-out", str(directory / "tls.crt"), "-days", "2",
                    "-subj", f"/CN={cn}", "-addext", f"subjectAltName=DNS:{cn},IP:127.0.0.1"],
                   check=True, capture_output=True)


def kubelet_swap(secret_dir, version_dir):
    """Points ..data at a new version dir atomically, as the kubelet's atomic writer does."""
    tmp = secret_dir / "..data_tmp"
    if tmp.exists() or tmp.is_symlink():
        tmp.unlink()
    os.symlink(version_dir.name, tmp)
    os.replace(tmp, secret_dir / "..data")


def peer_cn(pb, cafile):
    with smtplib.SMTP("127.0.0.1", pb.smtp, timeout=10) as s:
        s.ehlo("client.test")
        s.starttls(context=ssl.create_default_context(cafile=str(cafile)))
        cert = s.sock.getpeercert()
        return dict(x[0] for x in cert["subject"])["commonName"]


def test_mounted_secret_is_used_and_reloaded(make_postbay, tmp_path):
    secret = tmp_path / "secret"
    v1, v2 = secret / "..2026_v1", secret / "..2026_v2"
    make_cert(v1, "mx1.example.test")
    make_cert(v2, "mx2.example.test")
    kubelet_swap(secret, v1)
    for name in ("tls.crt", "tls.key"):
        os.symlink(f"..data/{name}", secret / name)
    pb = make_postbay(env={"POSTBAY_TLS__CERT": str(secret)})
    pb.apply(FIXTURES / "example.yaml")
    pb.start_dev()
    assert peer_cn(pb, v1 / "tls.crt") == "mx1.example.test"
    kubelet_swap(secret, v2)
    deadline = time.time() + 15
    cn = None
    while time.time() < deadline:
        try:
            cn = peer_cn(pb, v2 / "tls.crt")
            break
        except ssl.SSLError:
            time.sleep(0.5)
    assert cn == "mx2.example.test", "the rotated certificate is served without a restart"


def test_self_signed_certificate_is_kept_across_restarts(postbay):
    first = postbay.cert.read_bytes()
    assert peer_cn(postbay, postbay.cert) == "localhost"
    postbay.stop()
    postbay.start_dev()
    assert postbay.cert.read_bytes() == first
    assert peer_cn(postbay, postbay.cert) == "localhost"
