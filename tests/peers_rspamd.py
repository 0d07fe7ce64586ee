"""Debian's real Rspamd as a test peer on loopback, for comparing `postbay filter` with it.

The stock configuration (/etc/rspamd/rspamd.conf, every module as packaged) runs with its
`$LOCAL_CONFDIR` and data folders redirected to a temporary folder of ours, whose local.d/ and
override.d/ change only this:

- the normal worker (one process, as the benchmark needs) and the controller listen on free
  127.0.0.1 ports; the milter proxy worker (port 11332) is off;
- every DNS lookup goes to the test's local DNS server (`dns.nameserver`), so SPF, DKIM,
  DMARC, ARC and the fetches of Rspamd's HTTP maps (maps.rspamd.com: unresolvable there, the
  packaged fallback files are used) never leave 127.0.0.0/8;
- modules that need Redis or services on the internet are off: fuzzy_check (rspamd.com's
  fuzzy servers), rbl (internet DNS blocklists; Rspamd 3.4 turns the surbl and emails rules
  into rbl rules, so they go with it), asn (asn.rspamd.com), mx_check (connects to the sender's
  MX), dcc (a DCC daemon), and neural, ratelimit, greylist, reputation, replies,
  history_redis, url_redirector, bayes_expiry (Redis). The Bayes classifier's only backend
  is Redis and no Redis is configured, so Rspamd loads no statfiles: no Bayes, as on the
  `postbay filter` side of a comparison;
- actions as `postbay filter`'s defaults: add header 6, reject 15, no greylist threshold
  (Rspamd's own default is 4);
- `enable_test_patterns`: Rspamd's `YJS*...` GTUBE variant gives "add header" (Rspamd 3.4
  knows the X (reject), Y (add header), Z (rewrite subject) and A (no action) variants);
- a deterministic soft reject: a Subject containing SOFT_REJECT_MARK raises the symbol
  POSTBAY_SOFT_TEST (regexp module), which force_actions turns into "soft reject".

Rspamd refuses to run its workers as root: as root it is started with `-u/-g` of the user the
package created (`_rspamd`), and the folder is handed to that user. The hyperscan cache is
kept between runs (`hs_cache_dir`, HS_CACHE), since compiling it takes
Rspamd tens of seconds on a small machine.
"""

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from conftest import free_port_base, need_tool, port_free

SOFT_REJECT_MARK = "postbay-soft-reject-test"
# Compiled hyperscan databases, shared by every peer started on this machine (Rspamd checks
# them against the rules before use).
HS_CACHE = Path(tempfile.gettempdir()) / "postbay-rspamd-hs-cache"
SOFT_REJECT_MESSAGE = "Try again later (test rule)"

DISABLED_MODULES = [
    "fuzzy_check", "rbl", "surbl", "emails", "asn", "mx_check", "dcc",
    "neural", "ratelimit", "greylist", "reputation", "replies", "history_redis",
    "url_redirector", "bayes_expiry",
]


def rspamd_user() -> tuple[str, str] | None:
    """The unprivileged user (and its group) to run Rspamd's workers as, when we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("_rspamd", "rspamd"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        import grp

        return name, grp.getgrgid(entry.pw_gid).gr_name
    raise RuntimeError("running as root but the rspamd package created no _rspamd user")


def free_port_pair() -> tuple[int, int]:
    """Two adjacent free ports below the ephemeral range (see conftest.free_port_base)."""
    for _ in range(50):
        port = free_port_base() + 11333
        if port_free(port) and port_free(port + 1):
            return port, port + 1
    raise RuntimeError("no free ports for rspamd")


def config_files(root: Path, dns_port: int, port: int, controller: int, workers: int,
                 level: str) -> dict[str, str]:
    """local.d/ and override.d/ files (path relative to `root`) -> contents."""
    files = {
        "local.d/options.inc": f"""
dns {{
  nameserver = ["127.0.0.1:{dns_port}"];
  timeout = 1s;
  retransmits = 2;
}}
enable_test_patterns = true;
disable_monitoring = true;
hs_cache_dir = "{HS_CACHE}/";
""",
        "override.d/worker-normal.inc": f'bind_socket = "127.0.0.1:{port}";\ncount = {workers};\n',
        "override.d/worker-controller.inc": f'bind_socket = "127.0.0.1:{controller}";\n',
        "override.d/worker-proxy.inc": "enabled = false;\n",
        "override.d/logging.inc": f'type = "file";\nfilename = "{root / "rspamd.log"}";\nlevel = "{level}";\n',
        "local.d/actions.conf": "reject = 15;\nadd_header = 6;\ngreylist = null;\n",
        "local.d/regexp.conf": f"""
POSTBAY_SOFT_TEST {{
  re = "Subject=/{SOFT_REJECT_MARK}/H";
  score = 0.0;
  description = "Test rule: soft reject on demand";
}}
""",
        "local.d/force_actions.conf": f"""
rules {{
  POSTBAY_SOFT_TEST {{
    action = "soft reject";
    expression = "POSTBAY_SOFT_TEST";
    message = "{SOFT_REJECT_MESSAGE}";
  }}
}}
""",
    }
    for module in DISABLED_MODULES:
        files[f"local.d/{module}.conf"] = "enabled = false;\n"
    return files


class Rspamd:
    """One Rspamd (main process, `workers` normal workers, a controller) on loopback."""

    def __init__(self, dns_port: int, workers: int = 1, level: str = "info", cpu: str | None = None,
                 root: Path | None = None):
        self.exe = need_tool("rspamd")
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="postbay-rspamd-"))
        self.owned_root = root is None
        self.port, self.controller = free_port_pair()
        for sub in ("local.d", "override.d", "db", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        HS_CACHE.mkdir(exist_ok=True)
        for name, text in config_files(self.root, dns_port, self.port, self.controller, workers, level).items():
            (self.root / name).write_text(text)
        cmd = [self.exe, "-f", "-c", "/etc/rspamd/rspamd.conf",
               "--var", f"LOCAL_CONFDIR={self.root}", "--var", f"DBDIR={self.root / 'db'}",
               "--var", f"RUNDIR={self.root / 'run'}", "--var", f"LOGDIR={self.root}"]
        user = rspamd_user()
        if user:
            os.chmod(self.root, 0o755)
            for path in [self.root, *self.root.rglob("*"), HS_CACHE]:
                shutil.chown(path, *user)
            cmd += ["-u", user[0], "-g", user[1]]
        if cpu is not None:
            cmd = ["taskset", "-c", cpu] + cmd
        self.stdout = open(self.root / "stdout.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.stdout, stderr=subprocess.STDOUT)
        try:
            self._wait_ready(timeout=180.0)
        except Exception:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_ready(self, timeout: float):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rspamd exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as r:
                    if r.read().strip() == b"pong":
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"rspamd did not answer /ping on {self.port} within {timeout:.0f}s:\n"
                           f"{self.log_tail()}")

    def log(self) -> str:
        p = self.root / "rspamd.log"
        text = p.read_text(errors="replace") if p.exists() else ""
        out = self.root / "stdout.log"
        if out.exists():
            text += out.read_text(errors="replace")
        return text

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.stdout.close()

    def cleanup(self):
        self.stop()
        if self.owned_root:
            shutil.rmtree(self.root, ignore_errors=True)


def start_rspamd(dns_port: int, **kwargs):
    """Generator for fixtures: yields a running Rspamd, prints its log when the test failed
    (pytest shows a teardown's output only for failing tests), then removes it."""
    peer = Rspamd(dns_port, **kwargs)
    try:
        yield peer
    finally:
        print(f"--- rspamd log ({peer.root / 'rspamd.log'}), last lines:\n{peer.log_tail(200)}")
        peer.cleanup()
