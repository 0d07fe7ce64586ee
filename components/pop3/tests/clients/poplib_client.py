#!/usr/bin/env python3
"""Drives Postbay's POP3 server with Python's poplib, a real client, and prints what it saw
as one JSON object for the Rust test to check against the store.

usage: poplib_client.py HOST PORT MODE USER PASSWORD ACTION [ARGS...]
  MODE    plain | stls | ssl   (stls and ssl trust the PEM in $POP3_CAFILE)
  ACTION  inspect              STAT, LIST, UIDL, RETR and TOP of everything, then QUIT
          delete N...          DELE each N, then QUIT (the UPDATE state)
          delete-rset N        DELE N, RSET, QUIT: nothing may be removed
          auth-plain           AUTH PLAIN with an initial response instead of USER/PASS
          bad-password         PASS with a wrong password; prints the error
"""

import base64
import json
import os
import poplib
import ssl
import sys


def connect(host, port, mode):
    context = None
    if mode in ("stls", "ssl"):
        context = ssl.create_default_context(cafile=os.environ["POP3_CAFILE"])
    if mode == "ssl":
        return poplib.POP3_SSL(host, port, context=context, timeout=20)
    conn = poplib.POP3(host, port, timeout=20)
    if mode == "stls":
        before = conn.capa()
        assert "STLS" in before, before
        conn.stls(context)
    return conn


def text(b):
    return b.decode("utf-8", "replace")


def main():
    host, port, mode, user, password, action, *args = sys.argv[1:]
    conn = connect(host, int(port), mode)
    out = {"welcome": text(conn.getwelcome()), "capa": sorted(conn.capa().keys())}
    if action == "bad-password":
        conn.user(user)
        try:
            conn.pass_(password)
            out["error"] = None
        except poplib.error_proto as e:
            out["error"] = text(e.args[0])
        print(json.dumps(out))
        return
    if action == "auth-plain":
        token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
        out["login"] = text(conn._shortcmd("AUTH PLAIN " + token))
    else:
        conn.user(user)
        out["login"] = text(conn.pass_(password))
    out["stat"] = list(conn.stat())
    if action in ("inspect", "auth-plain"):
        _, listing, _ = conn.list()
        out["list"] = [[int(x) for x in line.split()] for line in listing]
        _, uidl, _ = conn.uidl()
        out["uidl"] = [[int(n), text(u)] for n, u in (line.split() for line in uidl)]
        out["uidl_one"] = text(conn.uidl(1)) if listing else None
        out["retr"] = []
        for number, _size in out["list"]:
            _, lines, octets = conn.retr(number)
            body = b"".join(line + b"\r\n" for line in lines)
            out["retr"].append(
                {"number": number, "octets": octets, "b64": base64.b64encode(body).decode()}
            )
        out["top"] = []
        for number, _size in out["list"]:
            _, lines, _ = conn.top(number, 1)
            out["top"].append(base64.b64encode(b"".join(l + b"\r\n" for l in lines)).decode())
    elif action == "delete":
        out["dele"] = [text(conn.dele(int(n))) for n in args]
        out["stat_after"] = list(conn.stat())
    elif action == "delete-rset":
        out["dele"] = [text(conn.dele(int(args[0])))]
        out["rset"] = text(conn.rset())
        out["stat_after"] = list(conn.stat())
    else:
        raise SystemExit(f"unknown action {action}")
    out["quit"] = text(conn.quit())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
