"""Nothing that got 250 is lost, nothing is delivered twice: kill -9 at any point, restart,
and the queue finishes its work."""

import email
import json
import signal
import smtplib
import subprocess
import threading
import time

from conftest import FIXTURES, postbay_binary


def split_roles(pb):
    """Runs `postbay smtp` and `postbay imap` as separate processes, like two StatefulSets."""
    env = {
        "POSTBAY_DATA_DIR": str(pb.data),
        "POSTBAY_DATABASE_URL": pb.database_url,
        **pb.listener_env(),
        "POSTBAY_SMTP__LMTP_TARGET": f"127.0.0.1:{pb.lmtp}",
        "POSTBAY_NODE_ID": "smtp-0",
    }
    pb.env.update(env)


def queued(pb, node="smtp-0"):
    """Queue files of one replica. A `.tmp-<id>.msg` is a rewrite in flight (the runner records
    a deferred attempt by writing a new envelope and renaming it over the old one), not a message."""
    return [p for p in (pb.data / "spool" / "queue" / node).glob("*.msg") if not p.name.startswith(".")]


def subjects(msgs):
    return [email.message_from_bytes(m)["Subject"] for m in msgs]


def test_messages_wait_in_queue_while_mailbox_is_down(make_postbay):
    pb = make_postbay()
    pb.apply(FIXTURES / "example.yaml")
    split_roles(pb)
    pb.start("smtp", wait_ports=[pb.smtp], log_name="smtp")
    with smtplib.SMTP("127.0.0.1", pb.smtp, timeout=20) as s:
        for i in range(20):
            s.sendmail("q@remote.test", ["alice@example.test"], f"Subject: queued {i}\r\n\r\nbody\r\n")
    queue = queued(pb)
    assert len(queue) == 20, "every accepted message is a durable queue file"
    assert pb.total_messages() == 0
    pb.start("imap", wait_ports=[pb.lmtp], log_name="imap")
    msgs = pb.wait_messages("alice@example.test", 20, timeout=60)
    assert sorted(subjects(msgs)) == sorted(f"queued {i}" for i in range(20))
    deadline = time.time() + 10
    while time.time() < deadline and queued(pb):
        time.sleep(0.1)
    assert queued(pb) == []


def test_kill_9_during_load_loses_nothing_and_duplicates_nothing(make_postbay):
    pb = make_postbay()
    pb.apply(FIXTURES / "example.yaml")
    dev = pb.start_dev()
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(worker: int):
        n = 0
        while not stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", pb.smtp, timeout=10) as s:
                    while not stop.is_set():
                        subject = f"w{worker}-m{n}"
                        s.sendmail("load@remote.test", ["bob@example.test"], f"Subject: {subject}\r\n\r\nx\r\n")
                        with lock:
                            acked.append(subject)
                        n += 1
            except (OSError, smtplib.SMTPException):
                return

    threads = [threading.Thread(target=client, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    deadline = time.time() + 30
    while time.time() < deadline and len(acked) < 150:
        time.sleep(0.02)
    pb.kill(dev)  # SIGKILL, mid-stream
    stop.set()
    for t in threads:
        t.join(timeout=15)
    with lock:
        acknowledged = list(acked)
    assert len(acknowledged) >= 150, f"load did not get going: {len(acknowledged)} acks"

    pb.start_dev()
    deadline = time.time() + 60
    while time.time() < deadline:
        got = subjects(pb.messages("bob@example.test"))
        if set(acknowledged) <= set(got):
            break
        time.sleep(0.2)
    time.sleep(1)
    got = subjects(pb.messages("bob@example.test"))
    missing = set(acknowledged) - set(got)
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:5]}"
    dupes = {s for s in got if got.count(s) > 1}
    assert not dupes, f"delivered twice: {sorted(dupes)[:5]}"


def test_sigterm_stops_accepting_and_lets_open_sessions_finish(make_postbay):
    import signal
    import socket

    pb = make_postbay()
    pb.apply(FIXTURES / "example.yaml")
    dev = pb.start_dev()
    with smtplib.SMTP("127.0.0.1", pb.smtp, timeout=20) as s:
        s.ehlo("client.test")
        dev.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        try:
            socket.create_connection(("127.0.0.1", pb.smtp), timeout=2).close()
            refused = False
        except OSError:
            refused = True
        assert refused, "no new connections after SIGTERM"
        s.sendmail("t@remote.test", ["alice@example.test"], "Subject: in flight\r\n\r\nx\r\n")
    assert dev.wait(timeout=30) == 0
    # The message was acknowledged, so it is on disk: a restart delivers it if needed.
    pb.start_dev()
    [m] = pb.wait_messages("alice@example.test", 1)
    assert b"in flight" in m


def test_one_queue_is_never_run_by_two_processes(make_postbay):
    """A second process with the same node id waits until the first has exited."""
    import signal

    pb = make_postbay()
    pb.apply(FIXTURES / "example.yaml")
    split_roles(pb)
    first = pb.start("smtp", wait_ports=[pb.smtp], log_name="smtp-a")
    pb.env.update(pb.listener_env(offset=1000))
    second = pb.start("smtp", log_name="smtp-b")
    time.sleep(2)
    assert "postbay smtp ready" not in pb.log("smtp-b"), "the second process must wait for the lock"
    assert "locked by another process" in pb.log("smtp-b")
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=30)
    deadline = time.time() + 15
    while time.time() < deadline and "postbay smtp ready" not in pb.log("smtp-b"):
        time.sleep(0.1)
    assert "postbay smtp ready" in pb.log("smtp-b")
    assert second.poll() is None


def test_a_scaled_down_replicas_queue_is_adopted_and_delivered_once(make_postbay):
    """smtp-1 holds deferred mail (the mailbox role is down) and is scaled away; smtp-0
    takes its queue in, but only once smtp-1 no longer runs, and delivers each message once."""
    pb = make_postbay()
    pb.apply(FIXTURES / "example.yaml")
    split_roles(pb)
    pb.env["POSTBAY_SMTP__QUEUE_ADOPT_INTERVAL"] = "1s"
    pb.start("smtp", wait_ports=[pb.smtp], log_name="smtp-0")
    other = dict(pb.env)
    pb.env.update({**pb.listener_env(offset=1000), "POSTBAY_NODE_ID": "smtp-1"})
    replica = pb.start("smtp", wait_ports=[pb.smtp + 1000], log_name="smtp-1")
    pb.env.clear()
    pb.env.update(other)
    with smtplib.SMTP("127.0.0.1", pb.smtp + 1000, timeout=20) as s:
        for i in range(5):
            s.sendmail("q@remote.test", ["alice@example.test"], f"Subject: scaled {i}\r\n\r\nbody\r\n")
    assert len(queued(pb, "smtp-1")) == 5
    time.sleep(3)  # three adoption rounds of smtp-0 while smtp-1 is alive
    assert len(queued(pb, "smtp-1")) == 5, "a live replica's queue is never taken"
    assert queued(pb, "smtp-0") == []
    pb.kill(replica, signal.SIGTERM)  # the StatefulSet scaled down
    deadline = time.time() + 15
    while time.time() < deadline and queued(pb, "smtp-1"):
        time.sleep(0.1)
    assert queued(pb, "smtp-1") == [], "smtp-0 adopted the queue"
    assert "adopted the queue of a replica that is gone" in pb.log("smtp-0")
    pb.start("imap", wait_ports=[pb.lmtp], log_name="imap")
    msgs = pb.wait_messages("alice@example.test", 5, timeout=60)
    assert sorted(subjects(msgs)) == [f"scaled {i}" for i in range(5)]
    deadline = time.time() + 10
    while time.time() < deadline and queued(pb):
        time.sleep(0.1)
    assert queued(pb) == []
    time.sleep(1)
    assert pb.total_messages() == 5, "each message delivered once"


def test_postbay_queue_list_shows_every_replicas_queue(make_postbay):
    pb = make_postbay()
    pb.apply(FIXTURES / "example.yaml")
    split_roles(pb)
    pb.start("smtp", wait_ports=[pb.smtp], log_name="smtp")
    with smtplib.SMTP("127.0.0.1", pb.smtp, timeout=20) as s:
        for i in range(3):
            s.sendmail(f"q{i}@remote.test", ["alice@example.test", "bob@example.test"],
                       f"Subject: listed {i}\r\n\r\nbody\r\n")
    ids = sorted(p.name[:-4] for p in queued(pb))
    assert len(ids) == 3

    def queue_list(*args):
        out = subprocess.run([str(postbay_binary()), "queue", "list", "--data", str(pb.data), *args],
                             capture_output=True, text=True, timeout=60, env=pb.env)
        assert out.returncode == 0, out.stderr
        return out.stdout

    lines = queue_list().splitlines()
    assert lines[-1] == "3 messages (0 parked) in 1 queues", lines
    for i, (line, id_) in enumerate(zip(lines, ids)):
        assert line.startswith(f"{id_} smtp-0 "), line
        assert f"<q{i}@remote.test> -> alice@example.test, bob@example.test" in line, line
    listed = [json.loads(l) for l in queue_list("--json").splitlines()]
    assert [l["envelope"]["id"] for l in listed] == ids
    assert all(l["node"] == "smtp-0" and not l["parked"] and l["size"] > 0 for l in listed)
