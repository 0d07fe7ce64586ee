#!/usr/bin/env python3
"""Load generator for scripts/bench-submission: authenticated submissions over smtplib.

    bench_submission_load.py HOST PORT N CONC [PER_CONN] [USERS]

CONC threads share N messages in connections of PER_CONN messages (default 10). Connection k
logs in as user{k % USERS + 1}@example.test (password 'pass') after EHLO and STARTTLS with
AUTH PLAIN, and sends messages of about 4 KiB from that user to the next one. The clock runs
from the first connect to the last 250 after DATA. Prints one line:
    LOAD accepted=A errors=E seconds=S rate=R
and the first few errors on stderr; exits 1 if any message was not accepted.
"""

import base64
import smtplib
import ssl
import sys
import threading
import time

DOMAIN = "example.test"
PASSWORD = "pass"


def body_lines():
    # About 4 KiB of text in 76-column lines.
    line = "The quick brown fox jumps over the lazy dog, again and again and again. 0123"
    return "\r\n".join(line for _ in range(52))


BODY = body_lines()


def message(sender, rcpt, serial):
    return (
        f"From: <{sender}>\r\n"
        f"To: <{rcpt}>\r\n"
        f"Subject: bench-submission message {serial}\r\n"
        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
        f"Message-ID: <bench-{serial}-{time.time_ns()}@{DOMAIN}>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
        f"{BODY}\r\n"
    ).encode()


def main():
    host, port, n, conc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    per_conn = int(sys.argv[5]) if len(sys.argv) > 5 else 10
    users = int(sys.argv[6]) if len(sys.argv) > 6 else 100

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    lock = threading.Lock()
    state = {"next": 0, "conn": 0, "accepted": 0, "errors": 0, "last": None}
    error_samples = []

    def take():
        """The next batch of messages for one connection: (connection number, count)."""
        with lock:
            left = n - state["next"]
            if left <= 0:
                return None
            count = min(per_conn, left)
            first = state["next"]
            state["next"] += count
            k = state["conn"]
            state["conn"] += 1
            return k, first, count

    def fail(what):
        with lock:
            state["errors"] += 1
            if len(error_samples) < 5:
                error_samples.append(what)

    def worker():
        while True:
            batch = take()
            if batch is None:
                return
            k, first, count = batch
            sender = f"user{k % users + 1}@{DOMAIN}"
            rcpt = f"user{(k + 1) % users + 1}@{DOMAIN}"
            sent = 0
            try:
                s = smtplib.SMTP(host, port, timeout=60)
                try:
                    s.ehlo("bench.client")
                    s.starttls(context=ctx)
                    s.ehlo("bench.client")
                    token = base64.b64encode(f"\0{sender}\0{PASSWORD}".encode()).decode()
                    code, resp = s.docmd("AUTH", "PLAIN " + token)
                    if code != 235:
                        raise smtplib.SMTPAuthenticationError(code, resp)
                    for i in range(count):
                        s.sendmail(sender, [rcpt], message(sender, rcpt, first + i))
                        sent += 1
                        now = time.monotonic()
                        with lock:
                            state["accepted"] += 1
                            state["last"] = now
                    s.quit()
                finally:
                    s.close()
            except Exception as e:  # noqa: BLE001 - every failure is counted and shown
                fail(f"{sender}: {type(e).__name__}: {e}")
                for _ in range(count - sent - 1):
                    fail(f"{sender}: (rest of the connection's batch)")

    start = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end = state["last"] or time.monotonic()
    secs = max(end - start, 1e-9)
    for e in error_samples:
        print(f"bench-submission-load: {e}", file=sys.stderr)
    print(
        f"LOAD accepted={state['accepted']} errors={state['errors']} "
        f"seconds={secs:.2f} rate={state['accepted'] / secs:.1f}"
    )
    sys.exit(1 if state["errors"] else 0)


if __name__ == "__main__":
    main()
