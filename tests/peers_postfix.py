"""A private Postfix instance on loopback (its own config, queue and log folders), for tests
that use Postfix as a peer: as a client relaying through Postbay, or as the classic stack's
MTA asking `postbay filter` over milter. Needs root (Postfix's own users own its queue)."""

import shutil
import subprocess
from pathlib import Path

from conftest import wait_port

MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def start_postfix(root: Path, listen_port: int, hostname: str, main_extra: str) -> Path:
    """Writes main.cf (loopback only, relays for 127.0.0.0/8 only, no local delivery, logs in
    `root`/postfix.log, plus `main_extra`) and master.cf under `root`, starts Postfix and
    waits for its smtpd on 127.0.0.1:`listen_port`. Returns the config folder."""
    etc, spool, data = root / "etc", root / "spool", root / "data"
    for d in (etc, spool, data):
        d.mkdir(parents=True, exist_ok=True)
    shutil.chown(data, "postfix")
    (etc / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {spool}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = {hostname}
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
local_recipient_maps =
alias_maps =
alias_database =
smtpd_relay_restrictions = permit_mynetworks, reject
maillog_file_prefixes = /var, /dev/stdout, {root}
maillog_file = {root}/postfix.log
""" + main_extra)
    (etc / "master.cf").write_text(MASTER_CF.format(listen=f"127.0.0.1:{listen_port}"))
    # `start` runs Postfix's own check and creates the queue directories.
    started = subprocess.run(["postfix", "-c", str(etc), "start"], capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, f"postfix start failed:\n{started.stdout}\n{started.stderr}"
    wait_port(listen_port)
    return etc


def stop_postfix(etc: Path):
    subprocess.run(["postfix", "-c", str(etc), "stop"], capture_output=True, timeout=60)
