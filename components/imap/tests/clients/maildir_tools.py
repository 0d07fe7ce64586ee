#!/usr/bin/env python3
"""Helpers for the mbsync test.

  maildir_tools.py from-mbox MBOX MAILDIR
      Fills MAILDIR (a Maildir++ root; messages go to MAILDIR/INBOX) from an mbox.
  maildir_tools.py compare MAILDIR_FOLDER HOST PORT USER PASSWORD CAFILE FOLDER
      Asserts the Maildir folder and the IMAP folder hold the same messages (same bytes
      after line-ending normalisation, ignoring mbsync's X-TUID header) and the same
      \\Seen/\\Flagged flags; prints "same N".
  maildir_tools.py touch MAILDIR_FOLDER SEEN DELETE
      Marks the first SEEN messages (by Message-ID order) as seen, deletes the next DELETE.
  maildir_tools.py imap-flag HOST PORT USER PASSWORD CAFILE FOLDER SET
      Sets \\Flagged on the messages in sequence set SET.
"""
import imaplib
import mailbox
import os
import re
import ssl
import sys


def normalise(raw):
    raw = raw.replace(b"\r\n", b"\n")
    head, sep, body = raw.partition(b"\n\n")
    head = b"\n".join(l for l in head.split(b"\n") if not l.lower().startswith(b"x-tuid:"))
    return head + sep + body


def message_id(raw):
    m = re.search(rb"^message-id:\s*(\S+)", raw, re.I | re.M)
    return m.group(1) if m else raw[:64]


def maildir_messages(folder):
    md = mailbox.Maildir(folder, factory=None, create=False)
    out = {}
    for key in md.keys():
        msg = md.get_message(key)
        raw = md.get_bytes(key)
        flags = set(msg.get_flags())
        out[message_id(raw)] = (normalise(raw), "S" in flags, "F" in flags, key)
    return md, out


def connect(host, port, user, password, cafile):
    m = imaplib.IMAP4(host, int(port))
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    m.starttls(ssl_context=ctx)
    m.login(user, password)
    return m


def imap_messages(host, port, user, password, cafile, folder):
    m = connect(host, port, user, password, cafile)
    typ, data = m.select(folder, readonly=True)
    assert typ == "OK", data
    out = {}
    if int(data[0]) > 0:
        typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[])")
        assert typ == "OK", data
        for item in data:
            if not isinstance(item, tuple):
                continue
            meta, raw = item
            out[message_id(raw)] = (normalise(raw), b"\\Seen" in meta, b"\\Flagged" in meta)
    m.logout()
    return out


def main():
    cmd = sys.argv[1]
    if cmd == "from-mbox":
        src, root = sys.argv[2], sys.argv[3]
        os.makedirs(root, exist_ok=True)
        md = mailbox.Maildir(os.path.join(root, "INBOX"), create=True)
        n = 0
        for msg in mailbox.mbox(src):
            md.add(mailbox.MaildirMessage(msg))
            n += 1
        print(f"wrote {n}")
    elif cmd == "compare":
        folder, host, port, user, password, cafile, imap_folder = sys.argv[2:9]
        _, local = maildir_messages(folder)
        remote = imap_messages(host, port, user, password, cafile, imap_folder)
        assert set(local) == set(remote), (
            f"only local: {sorted(set(local) - set(remote))[:5]}, "
            f"only remote: {sorted(set(remote) - set(local))[:5]}"
        )
        for mid, (raw, seen, flagged, _) in local.items():
            rraw, rseen, rflagged = remote[mid]
            assert raw == rraw, f"content differs for {mid!r}"
            assert (seen, flagged) == (rseen, rflagged), f"flags differ for {mid!r}: local {(seen, flagged)} remote {(rseen, rflagged)}"
        print(f"same {len(local)}")
    elif cmd == "touch":
        folder, seen, delete = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        md, local = maildir_messages(folder)
        ids = sorted(local)
        for mid in ids[:seen]:
            key = local[mid][3]
            msg = md.get_message(key)
            msg.add_flag("S")
            msg.set_subdir("cur")
            md[key] = msg
        for mid in ids[seen:seen + delete]:
            md.remove(local[mid][3])
        print(f"touched {seen} deleted {delete}")
    elif cmd == "imap-flag":
        host, port, user, password, cafile, folder, seqset = sys.argv[2:9]
        m = connect(host, port, user, password, cafile)
        m.select(folder)
        typ, data = m.store(seqset, "+FLAGS", "(\\Flagged)")
        assert typ == "OK", data
        m.logout()
        print("flagged")
    else:
        raise SystemExit(f"unknown command {cmd}")


main()
