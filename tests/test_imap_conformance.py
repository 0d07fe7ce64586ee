"""IMAP behaviour checked against the RFC text, through the real binary over sockets (raw
transcripts and Python's imaplib), on SQLite and MariaDB. Each table row is a command and
the response the RFC requires."""

import imaplib
import re
import socket
import zlib

import pytest

USER, PASSWORD = b"alice@example.test", b"alice-secret"


class Raw:
    """A raw IMAP client: sends a line, returns every response up to the tagged one (literals
    inlined), so tests compare bytes as the server wrote them."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.f = self.sock.makefile("rwb")
        self.n = 0
        greeting = self.f.readline()
        assert greeting.startswith(b"* OK"), greeting

    def read_response_line(self):
        out = b""
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError(out)
            out += line
            m = re.search(rb"\{(\d+)\}\r\n$", line)
            if not m:
                return out
            out += self.f.read(int(m.group(1)))

    def cmd(self, text: bytes):
        self.n += 1
        tag = b"t%d" % self.n
        self.f.write(tag + b" " + text + b"\r\n")
        self.f.flush()
        lines = []
        while True:
            line = self.read_response_line()
            if line.startswith(tag + b" "):
                return line, lines
            lines.append(line)

    def ok(self, text: bytes):
        tagged, lines = self.cmd(text)
        assert tagged.split(b" ")[1] == b"OK", (text, tagged, lines)
        return lines

    def close(self):
        try:
            self.cmd(b"LOGOUT")
        finally:
            self.sock.close()


@pytest.fixture
def raw(postbay):
    c = Raw(postbay.port(143))
    c.ok(b'LOGIN "%s" "%s"' % (USER, PASSWORD))
    yield c
    c.close()


def append(port, folder, message: bytes, flags=None):
    with imaplib.IMAP4("127.0.0.1", port) as m:
        m.login(USER.decode(), PASSWORD.decode())
        typ, data = m.append(folder, flags, None, message)
        assert typ == "OK", data


# RFC 3501 §9: atom = 1*ATOM-CHAR, and `~` is an ATOM-CHAR (only `~{` opens a literal8,
# RFC 4466 §2.2); `]` is an ASTRING-CHAR. Each command must be parsed, not answered BAD.
ATOM_COMMANDS = [
    (b'CREATE ~archive', b"OK"),
    (b'LIST "" ~archive', b'* LIST (\\HasNoChildren) "/" ~archive'),
    (b'LIST "" ~arch*', b'* LIST (\\HasNoChildren) "/" ~archive'),
    (b'LIST ~ ~', None),
    (b'LSUB "" ~nothing', None),
    (b'STATUS ~archive (MESSAGES)', b'* STATUS ~archive (MESSAGES 0)'),
    (b'LIST (SUBSCRIBED) "" ~archive', None),
    (b'LIST "" (~archive INBOX) RETURN (CHILDREN)', b'* LIST (\\HasNoChildren) "/" ~archive'),
    (b'SELECT ~archive', b"* 0 EXISTS"),
    (b'CREATE "a]b"', b"OK"),
    (b'LIST "" a]b', b'* LIST (\\HasNoChildren) "/" a]b'),
]


def test_atoms_the_grammar_allows_are_parsed(raw):
    for command, expect in ATOM_COMMANDS:
        tagged, lines = raw.cmd(command)
        assert tagged.split(b" ")[1] == b"OK", (command, tagged, lines)
        if expect and expect != b"OK":
            assert any(line.rstrip(b"\r\n") == expect for line in lines), (command, lines)


def test_dollar_keyword_is_a_keyword_not_the_saved_result(postbay, raw):
    """RFC 5182 §3 puts `$` only where a sequence set or search key stands; `$` is also a
    valid flag-keyword (RFC 3501 §9), which STORE and SEARCH KEYWORD must treat as such."""
    for i in range(3):
        append(postbay.port(143), "INBOX", b"Subject: m%d\r\n\r\nbody\r\n" % i)
    raw.ok(b"SELECT INBOX")
    raw.ok(b"SEARCH RETURN (SAVE) 1")
    lines = raw.ok(b"STORE 2 +FLAGS ($)")
    assert any(line.startswith(b"* 2 FETCH (FLAGS ($ \\Recent)") for line in lines), lines
    lines = raw.ok(b"SEARCH KEYWORD $")
    assert b"* SEARCH 2\r\n" in lines, lines
    lines = raw.ok(b"SEARCH $")
    assert b"* SEARCH 1\r\n" in lines, lines
    lines = raw.ok(b"FETCH $ (FLAGS)")
    assert len(lines) == 1 and lines[0].startswith(b"* 1 FETCH"), lines


# RFC 3501 §7.4.2: (name adl mailbox host); group start (NIL NIL "group" NIL), group end
# (NIL NIL NIL NIL); adl is the source route; names as written, quotes removed.
ENVELOPE_FROM = [
    (b'"Joe Q. Public" <john.q.public@example.com>',
     b'(("Joe Q. Public" NIL "john.q.public" "example.com"))'),
    (b'<@route.example:user@example.test>',
     b'((NIL "@route.example" "user" "example.test"))'),
    (b'undisclosed-recipients:;',
     b'((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))'),
    (b'group:(nobody here);',
     b'((NIL NIL "group" NIL)(NIL NIL NIL NIL))'),
    (b'A Group:Ed Jones <c@a.test>,joe@where.test;',
     b'((NIL NIL "A Group" NIL)("Ed Jones" NIL "c" "a.test")(NIL NIL "joe" "where.test")(NIL NIL NIL NIL))'),
    (b'=?utf-8?q?Gr=C3=BC=C3=9Fe?= <g@example.test>',
     b'(("=?utf-8?q?Gr=C3=BC=C3=9Fe?=" NIL "g" "example.test"))'),
    (b'localonly', b'((NIL NIL "localonly" "MISSING_DOMAIN"))'),
    (b'jdoe@example.org (John Doe)', b'(("John Doe" NIL "jdoe" "example.org"))'),
]


def test_envelope_addresses_follow_rfc3501(postbay, raw):
    for header, _ in ENVELOPE_FROM:
        append(postbay.port(143), "INBOX", b"From: " + header + b"\r\nSubject: s\r\n\r\nbody\r\n")
    raw.ok(b"EXAMINE INBOX")
    lines = raw.ok(b"FETCH 1:* (ENVELOPE)")
    assert len(lines) == len(ENVELOPE_FROM), lines
    for (header, want), line in zip(ENVELOPE_FROM, lines):
        # ENVELOPE: date subject from sender reply-to ...; from is the third field.
        m = re.match(rb'\* \d+ FETCH \(ENVELOPE \(NIL "s" (.*)\)\)\r\n$', line)
        assert m, line
        assert m.group(1).startswith(want + b" " + want + b" " + want + b" NIL NIL NIL"), (header, line)


# RFC 5256 §3 / RFC 5957: five messages and the order each SORT must give (sequence numbers).
SORT_MESSAGES = [
    # (From, To, Cc, Date, Subject, body size padding)
    ("Zoe <zoe@z.test>", "bob@b.test", "", "Mon, 02 Mar 2026 10:00:00 +0000", "Re: banana", 10),
    ('"adam" <adam@a.test>', "Carol <carol@c.test>", "cc1@x.test", "Sun, 01 Mar 2026 10:00:00 +0000", "apple", 300),
    ("mike@m.test", "alice@a.test", "", "Tue, 03 Mar 2026 09:00:00 -0500", "[list] Fwd: cherry (fwd)", 50),
    ("=?UTF-8?B?w4lsaXNl?= <elise@e.test>", "dave@d.test", "aaa@x.test", "Mon, 02 Mar 2026 09:00:00 +0000", "Apple", 20),
    ("bob@b.test", "", "", None, "=?UTF-8?Q?Re=3A_Durian?=", 5),
]

SORTS = [
    ("(SUBJECT)", [2, 4, 1, 3, 5]),           # APPLE APPLE BANANA CHERRY DURIAN; ties by number
    ("(REVERSE SUBJECT)", [5, 3, 1, 2, 4]),   # REVERSE applies to the key, ties still ascending
    ("(FROM)", [2, 5, 4, 3, 1]),              # local parts: ADAM BOB ELISE MIKE ZOE
    ("(DATE)", [2, 4, 1, 3, 5]),              # 5 has no Date: its arrival time, the latest
    ("(SIZE)", [5, 1, 4, 3, 2]),
    ("(TO)", [5, 3, 1, 2, 4]),                # "" ALICE BOB CAROL DAVE
    ("(CC SUBJECT)", [1, 3, 5, 4, 2]),        # no Cc first (by subject), then AAA, CC1
    ("(DISPLAYFROM)", [2, 5, 4, 3, 1]),       # adam bob Élise mike@m.test Zoe
    ("(ARRIVAL)", [1, 2, 3, 4, 5]),
    ("(REVERSE ARRIVAL)", [5, 4, 3, 2, 1]),
]


def test_sort_orders_by_each_rfc5256_key(postbay):
    messages = []
    for frm, to, cc, date, subject, pad in SORT_MESSAGES:
        headers = f"From: {frm}\r\n" + (f"To: {to}\r\n" if to else "") + (f"Cc: {cc}\r\n" if cc else "")
        headers += (f"Date: {date}\r\n" if date else "") + f"Subject: {subject}\r\n"
        messages.append((headers + "\r\n" + "x" * pad + "\r\n").encode())
    with imaplib.IMAP4("127.0.0.1", postbay.port(143)) as m:
        m.login(USER.decode(), PASSWORD.decode())
        # Internal dates a minute apart, in append order (ARRIVAL), all after the Date headers.
        for i, message in enumerate(messages):
            when = imaplib.Time2Internaldate(1_796_000_000 + 60 * i)
            typ, data = m.append("INBOX", None, when, message)
            assert typ == "OK", data
        typ, caps = m.capability()
        assert b"SORT" in caps[0].split() and b"SORT=DISPLAY" in caps[0].split(), caps
        m.select("INBOX")
        for criteria, want in SORTS:
            typ, data = m.sort(criteria, "UTF-8", "ALL")
            assert typ == "OK", (criteria, data)
            assert [int(n) for n in data[0].split()] == want, (criteria, data)
        # With search criteria and by UID (UIDs are 1..5 here too, but only the matches).
        typ, data = m.uid("SORT", "(REVERSE SIZE)", "UTF-8", "SUBJECT", "apple")
        assert typ == "OK" and [int(n) for n in data[0].split()] == [2, 4], data
        typ, data = m.sort("(SUBJECT)", "UTF-8", "SUBJECT", "nothing-like-this")
        assert typ == "OK" and data == [b""] or data == [None], data
        typ, data = m.sort("(SUBJECT)", "KOI8-R", "ALL")
        assert typ == "NO", "an unknown charset is refused (RFC 5256 §3)"
        with pytest.raises(imaplib.IMAP4.error):
            m.sort("(NOSUCHKEY)", "UTF-8", "ALL")


def test_thread_references_and_orderedsubject(postbay):
    """RFC 5256 §2: replies under what they answer, a reply to a message not in the folder
    beside its sibling under a dummy, a same-subject message without references gathered."""
    mails = [
        ("<a@x>", "", "Lunch?"), ("<b@x>", "<a@x>", "Re: Lunch?"), ("<c@x>", "<a@x> <b@x>", "Re: Lunch?"),
        ("<d@x>", "", "Other"), ("<e@x>", "<gone@x>", "Re: gone"), ("<f@x>", "<gone@x>", "Re: gone"),
        ("<g@x>", "", "Re: Other"),
    ]
    with imaplib.IMAP4("127.0.0.1", postbay.port(143)) as m:
        m.login(USER.decode(), PASSWORD.decode())
        for i, (mid, refs, subject) in enumerate(mails):
            head = f"From: a@x.test\r\nMessage-ID: {mid}\r\nSubject: {subject}\r\n"
            head += f"Date: Mon, 02 Mar 2026 10:0{i}:00 +0000\r\n" + (f"References: {refs}\r\n" if refs else "")
            typ, data = m.append("INBOX", None, None, (head + "\r\nbody\r\n").encode())
            assert typ == "OK", data
        caps = m.capability()[1][0].split()
        assert b"THREAD=REFERENCES" in caps and b"THREAD=ORDEREDSUBJECT" in caps, caps
        m.select("INBOX")
        typ, data = m.thread("REFERENCES", "UTF-8", "ALL")
        assert typ == "OK" and data == [b"(1 2 3)(4 7)((5)(6))"], data
        typ, data = m.thread("ORDEREDSUBJECT", "UTF-8", "ALL")
        assert typ == "OK" and data == [b"(1 (2)(3))(4 7)(5 6)"], data
        typ, data = m.uid("THREAD", "REFERENCES", "UTF-8", "SUBJECT", "lunch")
        assert typ == "OK" and data == [b"(1 2 3)"], data
        with pytest.raises(imaplib.IMAP4.error):
            m.thread("NOSUCH", "UTF-8", "ALL")


class Deflated:
    """The client side of COMPRESS=DEFLATE (RFC 4978) with Python's zlib: raw DEFLATE both
    ways, a sync flush after each command."""

    def __init__(self, sock):
        self.sock = sock
        self.out = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inflate = zlib.decompressobj(-15)
        self.buf = b""
        self.wire_in = 0
        self.n = 100

    def cmd(self, text: bytes):
        self.n += 1
        tag = b"z%d" % self.n
        self.sock.sendall(self.out.compress(tag + b" " + text + b"\r\n") + self.out.flush(zlib.Z_SYNC_FLUSH))
        while not re.search(rb"(^|\r\n)" + tag + rb" [^\r\n]*\r\n$", self.buf):
            chunk = self.sock.recv(65536)
            assert chunk, ("closed", self.buf[-200:])
            self.wire_in += len(chunk)
            self.buf += self.inflate.decompress(chunk)
        answer, self.buf = self.buf, b""
        return answer


def test_compress_deflate_both_ways(postbay, raw):
    """RFC 4978: after the tagged OK of COMPRESS DEFLATE everything is deflated, both ways;
    a second COMPRESS is refused with COMPRESSIONACTIVE; not before login."""
    body = b"".join(b"line %d of a long and repetitive message body\r\n" % i for i in range(4000))
    append(postbay.port(143), "INBOX", b"Subject: big\r\n\r\n" + body)
    anon = Raw(postbay.port(143))
    tagged, _ = anon.cmd(b"COMPRESS DEFLATE")
    assert tagged.split(b" ")[1] == b"BAD", tagged
    anon.close()

    caps = b"".join(raw.ok(b"CAPABILITY"))
    assert b"COMPRESS=DEFLATE" in caps, caps
    tagged, _ = raw.cmd(b"COMPRESS DEFLATE")
    assert tagged.split(b" ", 2)[1] == b"OK", tagged
    z = Deflated(raw.sock)
    assert re.search(rb"z101 OK", z.cmd(b"NOOP"))
    assert b"* 1 EXISTS" in z.cmd(b"SELECT INBOX")
    answer = z.cmd(b"FETCH 1 BODY.PEEK[TEXT]")
    assert body in answer, answer[:200]
    assert z.wire_in < len(body) / 5, f"{z.wire_in} bytes on the wire for {len(body)}"
    assert re.search(rb"z104 NO \[COMPRESSIONACTIVE\]", z.cmd(b"COMPRESS DEFLATE"))
    assert b"* BYE" in z.cmd(b"LOGOUT")
    raw.sock.close()
    raw.close = lambda: None


def test_esort_answers_in_sort_order(postbay, raw):
    """RFC 5267 §3: SORT RETURN (...) answers ESEARCH; MIN and MAX are the first and last in
    sort order (not the smallest numbers), ALL keeps the sort order; RETURN () is ALL."""
    for subject in (b"d", b"b", b"c", b"a"):
        append(postbay.port(143), "INBOX", b"Subject: " + subject + b"\r\n\r\nbody\r\n")
    caps = b"".join(raw.ok(b"CAPABILITY"))
    assert b" ESORT" in caps, caps
    raw.ok(b"SELECT INBOX")
    assert raw.ok(b"SORT (SUBJECT) UTF-8 ALL") == [b"* SORT 4 2 3 1\r\n"]
    tagged, lines = raw.cmd(b"SORT RETURN (MIN MAX ALL COUNT) (SUBJECT) UTF-8 ALL")
    tag = tagged.split(b" ")[0]
    assert lines == [b'* ESEARCH (TAG "%s") MIN 4 MAX 1 ALL 4,2:3,1 COUNT 4\r\n' % tag], lines
    tagged, lines = raw.cmd(b"UID SORT RETURN () (REVERSE SUBJECT) UTF-8 ALL")
    tag = tagged.split(b" ")[0]
    assert lines == [b'* ESEARCH (TAG "%s") UID ALL 1,3,2,4\r\n' % tag], lines
    tagged, lines = raw.cmd(b"SORT RETURN (COUNT) (SUBJECT) UTF-8 SUBJECT nothing-like-this")
    tag = tagged.split(b" ")[0]
    assert lines == [b'* ESEARCH (TAG "%s") COUNT 0\r\n' % tag], lines
    tagged, _ = raw.cmd(b"SORT RETURN (SAVE) (SUBJECT) UTF-8 ALL")
    assert tagged.split(b" ")[1] == b"BAD", tagged


def esearch(m):
    """The ESEARCH lines imaplib collected since the last call, as bytes."""
    return [bytes(line) for line in m.untagged_responses.pop("ESEARCH", [])]


def test_context_search_and_sort_over_imaplib(postbay):
    """RFC 5267 §4 through imaplib, whose raw `_simple_command` carries the extension syntax:
    a live UID SEARCH hears of another session's flag change (REMOVEFROM) and new mail (ADDTO)
    at its next command, a live SORT places new mail where it sorts, PARTIAL lists a window,
    CANCELUPDATE stops the updates, and more than eight live results get NOUPDATE."""
    imaplib.Commands.setdefault("CANCELUPDATE", ("SELECTED",))  # RFC 5267 §4.3.5
    port = postbay.port(143)
    for subject in (b"b", b"c"):
        append(port, "INBOX", b"Subject: " + subject + b"\r\n\r\nbody\r\n")
    with imaplib.IMAP4("127.0.0.1", port) as m, imaplib.IMAP4("127.0.0.1", port) as other:
        m.login(USER.decode(), PASSWORD.decode())
        other.login(USER.decode(), PASSWORD.decode())
        caps = m.capability()[1][0].split()
        assert b"CONTEXT=SEARCH" in caps and b"CONTEXT=SORT" in caps, caps
        m.select("INBOX")
        other.select("INBOX")
        esearch(m)

        typ, _ = m._simple_command("UID", "SEARCH", "RETURN", "(UPDATE)", "UNSEEN")
        assert typ == "OK"
        [answer] = esearch(m)
        search_tag = re.match(rb'\(TAG "([^"]+)"\)', answer).group(1)
        assert answer == b'(TAG "%s") UID ALL 1:2' % search_tag, answer
        typ, _ = m._simple_command("UID", "SORT", "RETURN", "(UPDATE PARTIAL 1:1)", "(SUBJECT)", "UTF-8", "ALL")
        assert typ == "OK"
        [answer] = esearch(m)
        sort_tag = re.match(rb'\(TAG "([^"]+)"\)', answer).group(1)
        assert answer == b'(TAG "%s") UID PARTIAL (1:1 1)' % sort_tag, answer

        other.uid("STORE", "1", "+FLAGS", "(\\Seen)")
        m.noop()
        assert esearch(m) == [b'(TAG "%s") UID REMOVEFROM (0 1)' % search_tag]
        append(port, "INBOX", b"Subject: a\r\n\r\nbody\r\n")
        m.noop()
        assert esearch(m) == [
            b'(TAG "%s") UID ADDTO (0 3)' % search_tag,
            b'(TAG "%s") UID ADDTO (1 3)' % sort_tag,  # "a" sorts first
        ]

        typ, data = m._simple_command("CANCELUPDATE", '"%s"' % search_tag.decode())
        assert typ == "OK", data
        other.uid("STORE", "3", "+FLAGS", "(\\Seen)")
        m.noop()
        assert esearch(m) == [], "no updates once cancelled"
        with pytest.raises(imaplib.IMAP4.error):
            m._simple_command("CANCELUPDATE", "unquoted")

        for _ in range(7):
            m._simple_command("SEARCH", "RETURN", "(UPDATE COUNT)", "ALL")
        m.untagged_responses.pop("NOUPDATE", None)
        typ, _ = m._simple_command("SEARCH", "RETURN", "(UPDATE COUNT)", "ALL")
        assert typ == "OK"
        refused = m.untagged_responses.pop("NOUPDATE", [])
        assert len(refused) == 1 and refused[0].startswith(b'"'), refused
