//! What FETCH and SEARCH need from a stored message: ENVELOPE, BODYSTRUCTURE, section bytes
//! (RFC 9051 §6.4.5), BINARY content (RFC 3516) and searchable text. mail-parser finds the
//! MIME structure and part offsets; the bytes returned are always slices of the stored
//! message, so sizes and sections agree exactly with what BODY[] returns.

use std::borrow::Cow;
use std::num::NonZeroU32;

use imap_codec::imap_types::body::{
    BasicFields, Body, BodyStructure, Disposition, Language, Location, MultiPartExtensionData,
    SinglePartExtensionData, SpecificFields,
};
use imap_codec::imap_types::core::{IString, NString, Vec1};
use imap_codec::imap_types::envelope::{Address as ImapAddress, Envelope};
use imap_codec::imap_types::fetch::Section;
use mail_parser::{Address, HeaderValue, Message, MessageParser, MessagePart, PartType};

/// A stored message with its MIME structure.
pub struct Parsed<'a> {
    raw: &'a [u8],
    msg: Option<Message<'a>>,
}

/// A MIME part: the message it belongs to (whose raw bytes its offsets index) and its index.
#[derive(Clone, Copy)]
struct PartRef<'m, 'a> {
    msg: &'m Message<'a>,
    idx: usize,
}

impl<'m, 'a> PartRef<'m, 'a> {
    fn part(&self) -> &'m MessagePart<'a> {
        &self.msg.parts[self.idx]
    }
    fn raw(&self) -> &'m [u8] {
        self.msg.raw_message.as_ref()
    }
    fn slice(&self, from: u32, to: u32) -> &'m [u8] {
        let raw = self.raw();
        let to = (to as usize).min(raw.len());
        let from = (from as usize).min(to);
        &raw[from..to]
    }
    fn header_bytes(&self) -> &'m [u8] {
        let p = self.part();
        self.slice(p.offset_header, p.offset_body)
    }
    fn body_bytes(&self) -> &'m [u8] {
        let p = self.part();
        self.slice(p.offset_body, p.offset_end)
    }
    fn children(&self) -> Option<Vec<PartRef<'m, 'a>>> {
        match &self.part().body {
            PartType::Multipart(ids) => Some(
                ids.iter()
                    .filter(|&&i| (i as usize) < self.msg.parts.len())
                    .map(|&i| PartRef {
                        msg: self.msg,
                        idx: i as usize,
                    })
                    .collect(),
            ),
            _ => None,
        }
    }
    /// The root of an encapsulated message/rfc822 part.
    fn nested(&self) -> Option<PartRef<'m, 'a>> {
        match &self.part().body {
            PartType::Message(m) if !m.parts.is_empty() => Some(PartRef { msg: m, idx: 0 }),
            _ => None,
        }
    }
    /// Raw value of the first header field `name`, unfolded and trimmed.
    fn header(&self, name: &str) -> Option<Vec<u8>> {
        let raw = self.raw();
        self.part()
            .headers
            .iter()
            .find(|h| h.name().eq_ignore_ascii_case(name))
            .map(|h| {
                let end = (h.offset_end as usize).min(raw.len());
                let start = (h.offset_start as usize).min(end);
                unfold(&raw[start..end])
            })
    }
    fn header_value(&self, name: &str) -> Option<&'m HeaderValue<'a>> {
        self.part()
            .headers
            .iter()
            .find(|h| h.name().eq_ignore_ascii_case(name))
            .map(|h| &h.value)
    }
    /// (type, subtype, parameters) with RFC 2045 defaults.
    fn content_type(&self, in_digest: bool) -> (String, String, Vec<(String, String)>) {
        match self.header_value("Content-Type") {
            Some(HeaderValue::ContentType(ct)) => {
                let params = ct
                    .attributes
                    .as_ref()
                    .map(|a| {
                        a.iter()
                            .map(|a| (a.name.to_string(), a.value.to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                let subtype = ct
                    .c_subtype
                    .as_deref()
                    .unwrap_or(if ct.c_type.eq_ignore_ascii_case("text") {
                        "plain"
                    } else {
                        ""
                    })
                    .to_string();
                (ct.c_type.to_string(), subtype, params)
            }
            _ if in_digest => ("message".into(), "rfc822".into(), Vec::new()),
            _ => (
                "text".into(),
                "plain".into(),
                vec![("charset".into(), "us-ascii".into())],
            ),
        }
    }
}

impl<'a> Parsed<'a> {
    pub fn new(raw: &'a [u8]) -> Parsed<'a> {
        Parsed {
            raw,
            msg: MessageParser::default().parse(raw),
        }
    }

    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    fn root(&self) -> Option<PartRef<'_, 'a>> {
        self.msg
            .as_ref()
            .filter(|m| !m.parts.is_empty())
            .map(|msg| PartRef { msg, idx: 0 })
    }

    /// The header block including the blank line that ends it.
    pub fn header(&self) -> &[u8] {
        match self.root() {
            Some(r) => r.header_bytes(),
            None => header_block(self.raw),
        }
    }

    /// Everything after the header block.
    pub fn text(&self) -> &[u8] {
        match self.root() {
            Some(r) => r.body_bytes(),
            None => &self.raw[header_block(self.raw).len()..],
        }
    }

    pub fn envelope(&self) -> Envelope<'static> {
        match self.root() {
            Some(r) => envelope(r),
            None => empty_envelope(),
        }
    }

    pub fn body_structure(&self, extended: bool) -> BodyStructure<'static> {
        match self.root() {
            Some(r) => structure(r, extended, false),
            None => basic_text_structure(self.text()),
        }
    }

    /// BODY[section]: `None` when the section does not exist (answered as NIL or empty).
    pub fn section(&self, section: Option<&Section<'_>>) -> Option<Cow<'_, [u8]>> {
        let Some(section) = section else {
            return Some(Cow::Borrowed(self.raw));
        };
        let (path, spec) = split_section(section);
        let Some(root) = self.root() else {
            // Unparseable: only the top level exists.
            return match (path.is_empty(), spec) {
                (true, Spec::Header) => Some(Cow::Borrowed(self.header())),
                (true, Spec::Text) => Some(Cow::Borrowed(self.text())),
                (true, Spec::Fields(f, not)) => {
                    Some(Cow::Owned(filter_fields(self.header(), f, not)))
                }
                (false, Spec::Body) if path == [1u32] => Some(Cow::Borrowed(self.text())),
                _ => None,
            };
        };
        if path.is_empty() {
            return message_spec(root, spec);
        }
        let part = locate(root, &path)?;
        match spec {
            Spec::Body => Some(Cow::Borrowed(part.body_bytes())),
            Spec::Mime => Some(Cow::Borrowed(part.header_bytes())),
            // HEADER/TEXT of a part only exist for message/rfc822 parts.
            other => message_spec(part.nested()?, other),
        }
    }

    /// BINARY[path]: the part's content with its transfer encoding removed.
    pub fn binary(&self, path: &[NonZeroU32]) -> Result<Option<Vec<u8>>, BinaryError> {
        if path.is_empty() {
            return Ok(Some(self.raw.to_vec()));
        }
        let Some(root) = self.root() else {
            return Ok(if path.len() == 1 && path[0].get() == 1 {
                Some(self.text().to_vec())
            } else {
                None
            });
        };
        let path: Vec<u32> = path.iter().map(|n| n.get()).collect();
        let Some(part) = locate(root, &path) else {
            return Ok(None);
        };
        if part.children().is_some() {
            return Err(BinaryError::Multipart);
        }
        let cte = part
            .header("Content-Transfer-Encoding")
            .map(|v| String::from_utf8_lossy(&v).trim().to_ascii_lowercase())
            .unwrap_or_default();
        let body = part.body_bytes();
        match cte.as_str() {
            "" | "7bit" | "8bit" | "binary" => Ok(Some(body.to_vec())),
            "base64" => Ok(Some(
                mail_parser::decoders::base64::base64_decode(body).unwrap_or_default(),
            )),
            "quoted-printable" => Ok(Some(
                mail_parser::decoders::quoted_printable::quoted_printable_decode(body)
                    .unwrap_or_default(),
            )),
            _ => Err(BinaryError::UnknownCte),
        }
    }

    /// Decoded values of header fields called `name`, for SEARCH. Unparsed values are
    /// included too, so a search for an encoded word's raw text also matches.
    pub fn header_search_values(&self, name: &str) -> Vec<String> {
        let Some(root) = self.root() else {
            return Vec::new();
        };
        let raw = root.raw();
        let mut out = Vec::new();
        for h in root
            .part()
            .headers
            .iter()
            .filter(|h| h.name().eq_ignore_ascii_case(name))
        {
            let end = (h.offset_end as usize).min(raw.len());
            let start = (h.offset_start as usize).min(end);
            out.push(String::from_utf8_lossy(&unfold(&raw[start..end])).into_owned());
            match &h.value {
                HeaderValue::Text(t) => out.push(t.to_string()),
                HeaderValue::TextList(l) => out.push(l.join(" ")),
                HeaderValue::Address(a) => out.push(address_text(a)),
                _ => {}
            }
        }
        out
    }

    /// Decoded text of all text parts, for SEARCH BODY/TEXT.
    pub fn body_search_text(&self) -> String {
        let Some(msg) = &self.msg else {
            return String::from_utf8_lossy(self.text()).into_owned();
        };
        let mut out = String::new();
        collect_text(msg, &mut out);
        out
    }

    /// The Date header's calendar date, for SENTBEFORE/SENTON/SENTSINCE.
    pub fn sent_date(&self) -> Option<chrono::NaiveDate> {
        let d = self.msg.as_ref()?.date()?;
        chrono::NaiveDate::from_ymd_opt(d.year as i32, d.month as u32, d.day as u32)
    }
}

fn collect_text(msg: &Message<'_>, out: &mut String) {
    for part in &msg.parts {
        match &part.body {
            PartType::Text(t) | PartType::Html(t) => {
                out.push_str(t);
                out.push('\n');
            }
            PartType::Message(m) => {
                for h in m.parts.first().map(|p| &p.headers[..]).unwrap_or(&[]) {
                    if let Some(t) = h.value.as_text() {
                        out.push_str(t);
                        out.push('\n');
                    }
                }
                collect_text(m, out);
            }
            _ => {}
        }
    }
}

fn address_text(a: &Address<'_>) -> String {
    let mut out = Vec::new();
    let mut push = |addr: &mail_parser::Addr<'_>| {
        let mut s = String::new();
        if let Some(n) = &addr.name {
            s.push_str(n);
            s.push(' ');
        }
        if let Some(e) = &addr.address {
            s.push('<');
            s.push_str(e);
            s.push('>');
        }
        out.push(s);
    };
    match a {
        Address::List(list) => list.iter().for_each(&mut push),
        Address::Group(groups) => groups
            .iter()
            .flat_map(|g| g.addresses.iter())
            .for_each(&mut push),
    }
    out.join(", ")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryError {
    /// RFC 3516 §4.2: the encoding is unknown (`[UNKNOWN-CTE]`).
    UnknownCte,
    /// BINARY of a multipart part is meaningless.
    Multipart,
}

enum Spec<'s> {
    Body,
    Header,
    Text,
    Mime,
    Fields(&'s [imap_codec::imap_types::core::AString<'s>], bool),
}

fn split_section<'s>(section: &'s Section<'s>) -> (Vec<u32>, Spec<'s>) {
    fn numbers(part: Option<&imap_codec::imap_types::fetch::Part>) -> Vec<u32> {
        part.map(|p| p.0.as_ref().iter().map(|n| n.get()).collect())
            .unwrap_or_default()
    }
    match section {
        Section::Part(p) => (numbers(Some(p)), Spec::Body),
        Section::Header(p) => (numbers(p.as_ref()), Spec::Header),
        Section::Text(p) => (numbers(p.as_ref()), Spec::Text),
        Section::Mime(p) => (numbers(Some(p)), Spec::Mime),
        Section::HeaderFields(p, f) => (numbers(p.as_ref()), Spec::Fields(f.as_ref(), false)),
        Section::HeaderFieldsNot(p, f) => (numbers(p.as_ref()), Spec::Fields(f.as_ref(), true)),
    }
}

/// Follows a part path (RFC 9051 §6.4.5): numbers index the parts of a multipart, descend
/// into an encapsulated message's body, and `1` names the body of a non-multipart.
fn locate<'m, 'a>(root: PartRef<'m, 'a>, path: &[u32]) -> Option<PartRef<'m, 'a>> {
    let mut current = root;
    for (depth, &n) in path.iter().enumerate() {
        let container = if depth == 0 {
            current
        } else if let Some(nested) = current.nested() {
            nested
        } else {
            current
        };
        match container.children() {
            Some(children) => current = *children.get(n as usize - 1)?,
            None => {
                // A non-multipart has only part 1, itself; but a leaf reached by an earlier
                // number has no sub-parts unless it encapsulates a message.
                if n != 1 || (depth > 0 && current.nested().is_none()) {
                    return None;
                }
                current = container;
            }
        }
    }
    Some(current)
}

fn message_spec<'m>(msg: PartRef<'m, '_>, spec: Spec<'_>) -> Option<Cow<'m, [u8]>> {
    match spec {
        Spec::Header => Some(Cow::Borrowed(msg.header_bytes())),
        Spec::Text => Some(Cow::Borrowed(msg.body_bytes())),
        Spec::Fields(fields, not) => {
            Some(Cow::Owned(filter_fields(msg.header_bytes(), fields, not)))
        }
        Spec::Body => Some(Cow::Borrowed(
            msg.slice(msg.part().offset_header, msg.part().offset_end),
        )),
        Spec::Mime => None,
    }
}

/// The header fields named (or, with `not`, not named) in `fields`, followed by the blank
/// line, as RFC 9051 §6.4.5 requires.
fn filter_fields(
    header: &[u8],
    fields: &[imap_codec::imap_types::core::AString<'_>],
    not: bool,
) -> Vec<u8> {
    let wanted: Vec<&[u8]> = fields.iter().map(|f| f.as_ref()).collect();
    let mut out = Vec::new();
    for field in split_fields(header) {
        let name_end = field.iter().position(|b| *b == b':').unwrap_or(field.len());
        let name = trim_bytes(&field[..name_end]);
        if name.is_empty() {
            continue;
        }
        let listed = wanted.iter().any(|w| w.eq_ignore_ascii_case(name));
        if listed != not {
            out.extend_from_slice(field);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Splits a header block into fields, each with its continuation lines and line ending.
fn split_fields(header: &[u8]) -> Vec<&[u8]> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < header.len() {
        let line_end = header[i..]
            .iter()
            .position(|b| *b == b'\n')
            .map(|p| i + p + 1)
            .unwrap_or(header.len());
        let line = &header[i..line_end];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        let continuation = matches!(line.first(), Some(b' ') | Some(b'\t'));
        if !continuation && i > start {
            fields.push(&header[start..i]);
            start = i;
        }
        i = line_end;
    }
    if i > start {
        fields.push(&header[start..i]);
    }
    fields
}

fn trim_bytes(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map(|p| p + 1)
        .unwrap_or(start);
    &b[start..end.max(start)]
}

/// Removes folding line breaks and surrounding whitespace from a raw header value.
fn unfold(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    for &b in value {
        if b != b'\r' && b != b'\n' {
            out.push(b);
        }
    }
    trim_bytes(&out).to_vec()
}

/// Header block of an unparseable message: up to and including the first empty line.
fn header_block(raw: &[u8]) -> &[u8] {
    if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
        return &raw[..p + 4];
    }
    if let Some(p) = raw.windows(2).position(|w| w == b"\n\n") {
        return &raw[..p + 2];
    }
    raw
}

fn istring(bytes: impl Into<Vec<u8>>) -> IString<'static> {
    let mut v: Vec<u8> = bytes.into();
    // Literals cannot carry NUL (RFC 9051 §4.3); such bytes cannot be in a valid header.
    v.retain(|b| *b != 0);
    IString::try_from(v).unwrap_or_else(|_| IString::try_from("").expect("empty quoted"))
}

fn nstring(bytes: Option<Vec<u8>>) -> NString<'static> {
    match bytes {
        Some(b) => NString(Some(istring(b))),
        None => NString(None),
    }
}

fn envelope(root: PartRef<'_, '_>) -> Envelope<'static> {
    let addresses = |name: &str| -> Vec<ImapAddress<'static>> {
        root.header(name)
            .map(|raw| {
                crate::address::parse_address_list(&raw)
                    .into_iter()
                    .map(imap_address)
                    .collect()
            })
            .unwrap_or_default()
    };
    let from = addresses("From");
    let mut sender = addresses("Sender");
    if sender.is_empty() {
        sender = from.clone();
    }
    let mut reply_to = addresses("Reply-To");
    if reply_to.is_empty() {
        reply_to = from.clone();
    }
    Envelope {
        date: nstring(root.header("Date")),
        subject: nstring(root.header("Subject")),
        from,
        sender,
        reply_to,
        to: addresses("To"),
        cc: addresses("Cc"),
        bcc: addresses("Bcc"),
        in_reply_to: nstring(root.header("In-Reply-To")),
        message_id: nstring(root.header("Message-ID")),
    }
}

fn empty_envelope() -> Envelope<'static> {
    Envelope {
        date: NString(None),
        subject: NString(None),
        from: Vec::new(),
        sender: Vec::new(),
        reply_to: Vec::new(),
        to: Vec::new(),
        cc: Vec::new(),
        bcc: Vec::new(),
        in_reply_to: NString(None),
        message_id: NString(None),
    }
}

/// RFC 2047 encoded word for display names mail-parser has decoded to non-ASCII, so the
/// envelope stays 7-bit like the header it came from.
fn display_name(name: &str) -> Vec<u8> {
    if name.is_ascii() {
        name.as_bytes().to_vec()
    } else {
        use base64::Engine;
        format!(
            "=?utf-8?b?{}?=",
            base64::engine::general_purpose::STANDARD.encode(name)
        )
        .into_bytes()
    }
}

/// RFC 3501 §7.4.2 structure; a display name in raw 8-bit UTF-8 is sent as an encoded word.
fn imap_address(a: crate::address::EnvelopeAddress) -> ImapAddress<'static> {
    let name = a.name.map(|n| match String::from_utf8(n) {
        Ok(text) => display_name(&text),
        Err(e) => display_name(&String::from_utf8_lossy(e.as_bytes())),
    });
    ImapAddress {
        name: nstring(name),
        adl: nstring(a.adl),
        mailbox: nstring(a.mailbox),
        host: nstring(a.host),
    }
}

fn count_lines(body: &[u8]) -> u32 {
    let n = body.iter().filter(|b| **b == b'\n').count();
    let extra = usize::from(!body.is_empty() && !body.ends_with(b"\n"));
    (n + extra) as u32
}

fn params(list: Vec<(String, String)>) -> Vec<(IString<'static>, IString<'static>)> {
    list.into_iter()
        .map(|(k, v)| (istring(k.into_bytes()), istring(v.into_bytes())))
        .collect()
}

fn disposition(part: PartRef<'_, '_>) -> Option<Disposition<'static>> {
    let language = part.header("Content-Language").map(|l| {
        String::from_utf8_lossy(&l)
            .split(',')
            .map(|s| istring(s.trim().as_bytes().to_vec()))
            .filter(|s| !s.as_ref().is_empty())
            .collect::<Vec<_>>()
    });
    let location = part.header("Content-Location");
    let disposition = match part.header_value("Content-Disposition") {
        Some(HeaderValue::ContentType(cd)) => Some((
            istring(cd.c_type.as_bytes().to_vec()),
            params(
                cd.attributes
                    .as_ref()
                    .map(|a| {
                        a.iter()
                            .map(|a| (a.name.to_string(), a.value.to_string()))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
        )),
        _ => None,
    };
    Some(Disposition {
        disposition,
        tail: Some(Language {
            language: language.unwrap_or_default(),
            tail: Some(Location {
                location: nstring(location),
                extensions: Vec::new(),
            }),
        }),
    })
}

fn structure(part: PartRef<'_, '_>, extended: bool, in_digest: bool) -> BodyStructure<'static> {
    let (ctype, subtype, ct_params) = part.content_type(in_digest);
    if let Some(children) = part.children() {
        let digest = subtype.eq_ignore_ascii_case("digest");
        let bodies: Vec<BodyStructure<'static>> = children
            .into_iter()
            .map(|c| structure(c, extended, digest))
            .collect();
        let bodies =
            Vec1::try_from(bodies).unwrap_or_else(|_| Vec1::from(basic_text_structure(b"")));
        return BodyStructure::Multi {
            bodies,
            subtype: istring(subtype.into_bytes()),
            extension_data: extended.then(|| MultiPartExtensionData {
                parameter_list: params(ct_params),
                tail: disposition(part),
            }),
        };
    }
    let body = part.body_bytes();
    let basic = BasicFields {
        parameter_list: params(ct_params),
        id: nstring(part.header("Content-ID")),
        description: nstring(part.header("Content-Description")),
        content_transfer_encoding: istring(
            part.header("Content-Transfer-Encoding")
                .unwrap_or_else(|| b"7bit".to_vec()),
        ),
        size: body.len() as u32,
    };
    let specific = match (part.nested(), ctype.eq_ignore_ascii_case("text")) {
        (Some(nested), _) => SpecificFields::Message {
            envelope: Box::new(envelope(nested)),
            body_structure: Box::new(structure(nested, extended, false)),
            number_of_lines: count_lines(body),
        },
        (None, true) => SpecificFields::Text {
            subtype: istring(subtype.into_bytes()),
            number_of_lines: count_lines(body),
        },
        (None, false) => SpecificFields::Basic {
            r#type: istring(ctype.into_bytes()),
            subtype: istring(subtype.into_bytes()),
        },
    };
    BodyStructure::Single {
        body: Body { basic, specific },
        extension_data: extended.then(|| SinglePartExtensionData {
            md5: nstring(part.header("Content-MD5")),
            tail: disposition(part),
        }),
    }
}

fn basic_text_structure(body: &[u8]) -> BodyStructure<'static> {
    BodyStructure::Single {
        body: Body {
            basic: BasicFields {
                parameter_list: params(vec![("charset".into(), "us-ascii".into())]),
                id: NString(None),
                description: NString(None),
                content_transfer_encoding: istring(b"7bit".to_vec()),
                size: body.len() as u32,
            },
            specific: SpecificFields::Text {
                subtype: istring(b"plain".to_vec()),
                number_of_lines: count_lines(body),
            },
        },
        extension_data: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::imap_types::fetch::Part;

    const MULTI: &[u8] = b"From: Alice <alice@example.test>\r\n\
To: bob@example.test, \"Carol C\" <carol@example.test>\r\n\
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\
Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n\
Message-ID: <m1@example.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\
\r\n\
preamble\r\n\
--XX\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
hello world\r\n\
--XX\r\n\
Content-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
AAECAw==\r\n\
--XX\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
Subject: inner\r\n\
\r\n\
inner body\r\n\
--XX--\r\n";

    fn part(numbers: &[u32]) -> Part {
        let v: Vec<NonZeroU32> = numbers
            .iter()
            .map(|n| NonZeroU32::new(*n).unwrap())
            .collect();
        Part(Vec1::try_from(v).unwrap())
    }

    #[test]
    fn sections_are_exact_slices() {
        let p = Parsed::new(MULTI);
        assert!(p.header().starts_with(b"From: Alice"));
        assert!(p.header().ends_with(b"\r\n\r\n"));
        assert_eq!(
            p.section(Some(&Section::Part(part(&[1]))))
                .unwrap()
                .as_ref(),
            b"hello world"
        );
        assert_eq!(
            p.section(Some(&Section::Mime(part(&[1]))))
                .unwrap()
                .as_ref(),
            b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        );
        assert_eq!(
            p.section(Some(&Section::Header(Some(part(&[3])))))
                .unwrap()
                .as_ref(),
            b"Subject: inner\r\n\r\n"
        );
        assert_eq!(
            p.section(Some(&Section::Text(Some(part(&[3])))))
                .unwrap()
                .as_ref(),
            b"inner body"
        );
        assert_eq!(
            p.binary(&[NonZeroU32::new(2).unwrap()]).unwrap().unwrap(),
            [0, 1, 2, 3]
        );
        assert!(p.section(Some(&Section::Part(part(&[4])))).is_none());
        let fields =
            Vec1::from(imap_codec::imap_types::core::AString::try_from("subject").unwrap());
        assert_eq!(
            p.section(Some(&Section::HeaderFields(None, fields)))
                .unwrap()
                .as_ref(),
            b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\n"
        );
    }

    /// RFC 3501 §6.4.5: TEXT of a message/rfc822 part is its body up to the end of that
    /// part, so a nested multipart's epilogue is included; the top-level TEXT likewise runs
    /// to the end of the message.
    #[test]
    fn text_of_an_encapsulated_message_runs_to_the_end_of_the_part() {
        const NESTED: &[u8] = b"Subject: outer\r\n\
Content-Type: multipart/mixed; boundary=\"O\"\r\n\
\r\n\
--O\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
Subject: inner\r\n\
Content-Type: multipart/alternative; boundary=\"I\"\r\n\
\r\n\
inner preamble\r\n\
--I\r\n\
\r\n\
one\r\n\
--I--\r\n\
inner epilogue\r\n\
--O--\r\n\
outer epilogue\r\n";
        let p = Parsed::new(NESTED);
        let text = p.section(Some(&Section::Text(Some(part(&[1]))))).unwrap();
        assert_eq!(
            std::str::from_utf8(&text).unwrap(),
            "inner preamble\r\n--I\r\n\r\none\r\n--I--\r\ninner epilogue"
        );
        let whole = p.section(Some(&Section::Part(part(&[1])))).unwrap();
        let header = p.section(Some(&Section::Header(Some(part(&[1]))))).unwrap();
        assert_eq!([header.as_ref(), text.as_ref()].concat(), whole.as_ref());
        let top = p.section(Some(&Section::Text(None))).unwrap();
        assert!(top.ends_with(b"--O--\r\nouter epilogue\r\n"), "{top:?}");
        assert_eq!(p.text(), top.as_ref());
    }

    #[test]
    fn envelope_keeps_raw_subject_and_splits_addresses() {
        let env = Parsed::new(MULTI).envelope();
        assert_eq!(
            env.subject.0.unwrap().as_ref(),
            b"=?utf-8?q?Gr=C3=BC=C3=9Fe?="
        );
        assert_eq!(env.to.len(), 2);
        assert_eq!(env.to[1].mailbox.0.as_ref().unwrap().as_ref(), b"carol");
        assert_eq!(env.sender, env.from);
    }

    #[test]
    fn single_part_message_has_part_one() {
        let raw = b"Subject: x\r\n\r\nbody\r\n";
        let p = Parsed::new(raw);
        assert_eq!(
            p.section(Some(&Section::Part(part(&[1]))))
                .unwrap()
                .as_ref(),
            b"body\r\n"
        );
        assert_eq!(p.section(None).unwrap().as_ref(), raw);
        assert!(matches!(
            p.body_structure(false),
            BodyStructure::Single { .. }
        ));
    }
}
