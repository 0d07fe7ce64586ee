#!/usr/bin/env python3
"""Drives Postbay's IMAP server with Python's imaplib through every command a client uses.

usage: imaplib_suite.py HOST PORT USER PASSWORD MODE CAFILE
MODE: plain | starttls | ssl. Exits non-zero (with the failing assertion) on any mismatch;
prints "imaplib suite ok" at the end.
"""
import imaplib
import re
import socket
import ssl
import sys
import time

host, port, user, password, mode, cafile = sys.argv[1:7]
port = int(port)

for name in ("ID", "MOVE", "UNSELECT", "ENABLE", "NAMESPACE", "GETQUOTAROOT", "GETQUOTA"):
    imaplib.Commands.setdefault(name, ("NONAUTH", "AUTH", "SELECTED"))


def ok(result, what):
    typ, data = result
    assert typ == "OK", f"{what}: {typ} {data}"
    return data


def context():
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    return ctx


if mode == "ssl":
    M = imaplib.IMAP4_SSL(host, port, ssl_context=context())
else:
    M = imaplib.IMAP4(host, port)
    if mode == "starttls":
        assert "STARTTLS" in M.capabilities, M.capabilities
        ok(M.starttls(ssl_context=context()), "STARTTLS")
        assert "STARTTLS" not in M.capabilities, "STARTTLS must vanish after TLS"

assert "IMAP4REV2" in M.capabilities and "IMAP4REV1" in M.capabilities, M.capabilities
ok(M.noop(), "NOOP")
typ, data = M._simple_command("ID", '("name" "imaplib" "version" "3")')
assert typ == "OK", data
typ, data = M._untagged_response(typ, data, "ID")
assert b"Postbay" in data[0], data

# Wrong password first: NO, and the session goes on.
try:
    M.login(user, password + "x")
    raise AssertionError("wrong password accepted")
except imaplib.IMAP4.error as e:
    assert "AUTHENTICATIONFAILED" in str(e), e

ok(M.authenticate("PLAIN", lambda _: f"\0{user}\0{password}".encode()), "AUTHENTICATE PLAIN")
caps = ok(M.capability(), "CAPABILITY")[0].decode()
for cap in ("UIDPLUS", "MOVE", "IDLE", "NAMESPACE", "SPECIAL-USE", "QUOTA", "CONDSTORE", "ESEARCH"):
    assert cap in caps, (cap, caps)

ns = ok(M.namespace(), "NAMESPACE")[0]
assert ns == b'(("" "/")) NIL NIL', ns

# Folders: defaults with special-use, hierarchy, subscribe.
listing = b"\n".join(ok(M.list(), "LIST"))
for folder, use in ((b"Drafts", b"\\Drafts"), (b"Sent", b"\\Sent"), (b"Trash", b"\\Trash"),
                    (b"Junk", b"\\Junk"), (b"Archive", b"\\Archive")):
    assert re.search(rb"\(.*" + re.escape(use) + rb".*\) \"/\" " + folder, listing), listing
ok(M.create("Work/Reports"), "CREATE")
ok(M.create("Entw&APw-rfe"), "CREATE mUTF-7")
listing = b"\n".join(ok(M.list('""', "*"), "LIST *"))
assert b"Work/Reports" in listing and b"Entw&APw-rfe" in listing, listing
assert re.search(rb"\\HasChildren\) \"/\" Work", listing), listing
listing = ok(M.list('""', "%"), "LIST %")
assert not any(b"Work/Reports" in l for l in listing), listing
ok(M.rename("Work/Reports", "Work/Old"), "RENAME")
ok(M.subscribe("Work/Old"), "SUBSCRIBE")
ok(M.unsubscribe("Work/Old"), "UNSUBSCRIBE")
lsub = ok(M.lsub('""', "Work/*"), "LSUB")
assert lsub == [None] or not any(b"Work/Old" in (l or b"") for l in lsub), lsub
ok(M.delete("Work/Old"), "DELETE")
typ, _ = M.select("Work/Old")
assert typ == "NO"

# APPEND with flags and date; APPENDUID.
msgs = []
for i in range(5):
    body = f"line one {i}\r\nline two\r\n"
    msg = (f"From: Carol <carol@example.test>\r\nTo: {user}\r\nSubject: test {i}\r\n"
           f"Message-ID: <t{i}@example.test>\r\nDate: Tue, 1 Mar 2022 10:00:0{i} +0000\r\n\r\n{body}").encode()
    msgs.append(msg)
    flags = "(\\Seen)" if i % 2 == 0 else None
    typ, data = M.append("INBOX", flags, imaplib.Time2Internaldate(time.time() - 86400 * i), msg)
    assert typ == "OK" and b"APPENDUID" in data[0], data

status = ok(M.status("INBOX", "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY)"), "STATUS")[0]
assert b"MESSAGES 5" in status and b"UNSEEN 2" in status and b"UIDNEXT 6" in status, status

# EXAMINE is read-only.
typ, data = M.select("INBOX", readonly=True)
assert typ == "OK" and data == [b"5"], data
typ, data = M.store("1", "+FLAGS", "\\Flagged")
assert typ == "NO", (typ, data)
ok(M.unselect(), "UNSELECT")

typ, data = M.select("INBOX")
assert typ == "OK" and data == [b"5"], data

# FETCH forms.
data = ok(M.fetch("1:5", "(UID FLAGS RFC822.SIZE INTERNALDATE)"), "FETCH")
assert len(data) == 5 and b"RFC822.SIZE %d" % len(msgs[0]) in data[0], data
data = ok(M.fetch("2", "(BODY.PEEK[])"), "FETCH BODY[]")
assert data[0][1] == msgs[1], data
data = ok(M.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT MESSAGE-ID)])"), "HEADER.FIELDS")
assert data[0][1] == b"Subject: test 1\r\nMessage-ID: <t1@example.test>\r\n\r\n", data
data = ok(M.fetch("2", "(BODY.PEEK[TEXT]<5.10>)"), "partial")
assert data[0][1] == msgs[1].split(b"\r\n\r\n", 1)[1][5:15], data
data = ok(M.fetch("3", "(ENVELOPE BODYSTRUCTURE)"), "ENVELOPE")
text = data[0] if isinstance(data[0], bytes) else data[0][0]
assert b'"test 2"' in text and b'"carol" "example.test"' in text, text
assert b'("text" "plain" ("charset" "us-ascii") nil nil "7bit"' in text.lower(), text
data = ok(M.fetch("4", "(BINARY.PEEK[1] BINARY.SIZE[1])"), "BINARY")
assert b"BINARY.SIZE[1]" in b"".join(x if isinstance(x, bytes) else x[0] for x in data), data
flags = ok(M.fetch("2", "(FLAGS)"), "FLAGS")[0]
assert b"\\Seen" not in flags, flags
ok(M.fetch("2", "(BODY[TEXT])"), "FETCH sets seen")
flags = ok(M.fetch("2", "(FLAGS)"), "FLAGS")[0]
assert b"\\Seen" in flags, flags

# SEARCH keys.
def search(*criteria, uid=False):
    if uid:
        return ok(M.uid("SEARCH", *criteria), "UID SEARCH")[0].split()
    return ok(M.search(None, *criteria), "SEARCH")[0].split()

assert search("ALL") == [b"1", b"2", b"3", b"4", b"5"]
assert search("SUBJECT", '"test 3"') == [b"4"], search("SUBJECT", '"test 3"')
assert search("FROM", "carol") == [b"1", b"2", b"3", b"4", b"5"]
assert search("UNSEEN") == [b"4"], search("UNSEEN")
assert search("BODY", '"line one 4"') == [b"5"]
assert search("TEXT", "t2@example") == [b"3"]
assert search("HEADER", "Message-ID", "t0") == [b"1"]
assert search("OR", "SUBJECT", '"test 0"', "SUBJECT", '"test 1"') == [b"1", b"2"]
assert search("NOT", "SEEN") == [b"4"]
assert search("LARGER", "10", "SMALLER", "100000") == [b"1", b"2", b"3", b"4", b"5"]
assert search("SENTON", "1-Mar-2022") == [b"1", b"2", b"3", b"4", b"5"]
assert search("SENTBEFORE", "1-Mar-2022") == []
assert search("SINCE", "1-Jan-2000", "BEFORE", "1-Jan-2100") == [b"1", b"2", b"3", b"4", b"5"]
assert search("2:3") == [b"2", b"3"]
assert search("UID", "4:*", uid=True) == [b"4", b"5"]
typ, data = M.search("UTF-8", "SUBJECT", '"test"')
assert typ == "OK" and len(data[0].split()) == 5, data

# STORE forms.
data = ok(M.store("1:2", "+FLAGS", "(\\Flagged $Important)"), "STORE +FLAGS")
assert all(b"\\Flagged" in d and b"$Important" in d for d in data), data
ok(M.store("1", "-FLAGS", "($Important)"), "STORE -FLAGS")
data = ok(M.store("1", "FLAGS", "(\\Answered)"), "STORE FLAGS")
# FLAGS replaces the set; \Recent (RFC 3501 §2.3.2: this session selected first) stays.
assert b"FLAGS (\\Answered \\Recent)" in data[0], data
typ, data = M.store("1", "+FLAGS.SILENT", "(\\Draft)")
assert typ == "OK" and data == [None], data
assert search("DRAFT") == [b"1"]
assert search("KEYWORD", "$Important") == [b"2"]
ok(M.uid("STORE", "3", "+FLAGS", "(\\Deleted)"), "UID STORE")

# COPY, MOVE (UIDPLUS).
typ, data = M.copy("1:2", "Archive")
assert typ == "OK" and b"COPYUID" in data[0], data
typ, data = M.uid("COPY", "5", "Archive")
assert typ == "OK", data
code = M.response("COPYUID")
assert code[1] and code[1][-1].endswith(b" 3"), code
typ, data = M.uid("MOVE", "4", "Trash")
assert typ == "OK", data
assert M.untagged_responses.get("EXPUNGE") == [b"4"], M.untagged_responses
M.untagged_responses.pop("EXPUNGE", None)
ok(M.check(), "CHECK")

# EXPUNGE and UID EXPUNGE.
ok(M.store("1", "+FLAGS", "(\\Deleted)"), "flag deleted")
typ, data = M.uid("EXPUNGE", "1")
assert typ == "OK", data
assert M.untagged_responses.pop("EXPUNGE") == [b"1"]
typ, data = M.expunge()
assert typ == "OK" and data == [b"2"], data  # UID 3 was seq 2 after UID 1 went
assert search("ALL") == [b"1", b"2"], search("ALL")

# IDLE (imaplib has no helper before 3.14): a delivery by another connection shows up.
other = imaplib.IMAP4_SSL(host, port, ssl_context=context()) if mode == "ssl" else imaplib.IMAP4(host, port)
if mode == "starttls":
    other.starttls(ssl_context=context())
other.login(user, password)
tag = M._new_tag().decode()
M.send(f"{tag} IDLE\r\n".encode())
line = M.readline()
assert line.startswith(b"+"), line
other.append("INBOX", None, None, msgs[0])
line = M.readline()
assert line == b"* 3 EXISTS\r\n", line
# IMAP4rev1 (RFC 3501 §7.3.2): the count of \Recent follows; all three are new to this session.
line = M.readline()
assert line == b"* 3 RECENT\r\n", line
M.send(b"DONE\r\n")
line = M.readline()
assert line.startswith(tag.encode() + b" OK"), line
other.logout()

# QUOTA and ENABLE.
typ, data = M._simple_command("GETQUOTAROOT", "INBOX")
assert typ == "OK", data
ok(M.close(), "CLOSE")
typ, data = M._simple_command("ENABLE", "CONDSTORE")
assert typ == "OK", data
typ, data = M.logout()
assert typ == "BYE", (typ, data)
print("imaplib suite ok")
