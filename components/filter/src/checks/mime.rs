//! MIME sanity: an HTML part without a plain-text alternative, and attachments whose names
//! say they run when opened (executables, scripts, installers, disk images), as Rspamd's
//! `mime_types` module scores them.

use futures::future::BoxFuture;
use mail_parser::{MessagePart, MimeHeaders, PartType};

use super::{Check, Outcome, Scan};

pub struct MimeSanity;

/// Extensions that run or install something when opened on a common desktop.
const DANGEROUS: &[&str] = &[
    "exe", "scr", "com", "pif", "bat", "cmd", "vbs", "vbe", "js", "jse", "wsf", "wsh", "hta",
    "msi", "msp", "cpl", "jar", "ps1", "lnk", "reg", "iso", "img", "vhd", "apk", "dll", "sys",
    "chm", "docm", "xlsm", "pptm",
];

impl Check for MimeSanity {
    fn name(&self) -> &'static str {
        "mime"
    }

    fn run<'a>(&'a self, scan: &'a Scan<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let mut out = Outcome::default();
            let Some(message) = scan.message else {
                return out;
            };
            let mut has_plain = false;
            let mut has_html = false;
            let mut bad = Vec::new();
            let mut double = Vec::new();
            for part in &message.parts {
                let name = part.attachment_name();
                match (&part.body, name) {
                    (PartType::Text(_), None) => has_plain = true,
                    (PartType::Html(_), None) => has_html = true,
                    _ => {}
                }
                if let Some(name) = name.or_else(|| fallback_name(part)) {
                    if let Some(ext) = dangerous_extension(name) {
                        if has_decoy_extension(name) {
                            double.push(name.to_string());
                        } else {
                            bad.push(format!("{name} ({ext})"));
                        }
                    }
                }
            }
            if has_html && !has_plain {
                out.add(
                    "MIME_HTML_ONLY",
                    0.2,
                    "Message has only an HTML part",
                    vec![],
                );
            }
            if !bad.is_empty() {
                out.add(
                    "MIME_BAD_EXTENSION",
                    4.0,
                    "Attachment with a dangerous file type",
                    bad,
                );
            }
            if !double.is_empty() {
                out.add(
                    "MIME_DOUBLE_BAD_EXTENSION",
                    6.0,
                    "Dangerous attachment disguised with a second extension",
                    double,
                );
            }
            out
        })
    }
}

/// `name=` on Content-Type when there is no Content-Disposition filename.
fn fallback_name<'x>(part: &'x MessagePart<'_>) -> Option<&'x str> {
    part.content_type()?.attribute("name")
}

fn dangerous_extension(name: &str) -> Option<&'static str> {
    let ext = name.trim().trim_end_matches('.').rsplit_once('.')?.1;
    DANGEROUS
        .iter()
        .copied()
        .find(|d| d.eq_ignore_ascii_case(ext))
}

/// `invoice.pdf.exe`: a harmless-looking extension before the dangerous one.
fn has_decoy_extension(name: &str) -> bool {
    let mut parts = name.trim().rsplit('.');
    parts.next();
    matches!(
        parts.next().map(str::to_ascii_lowercase).as_deref(),
        Some("pdf" | "doc" | "docx" | "xls" | "xlsx" | "jpg" | "png" | "txt" | "zip")
    ) && name.matches('.').count() >= 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixture;
    use crate::protocol::Envelope;

    fn multipart(parts: &[(&str, &str)]) -> String {
        let mut s = String::from(
            "From: a@example.org\nSubject: t\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n",
        );
        for (headers, body) in parts {
            s.push_str(&format!("--b\n{headers}\n\n{body}\n"));
        }
        s.push_str("--b--\n");
        s
    }

    #[test]
    fn fixture_cases() {
        let cases: Vec<(String, Vec<&str>)> = vec![
            ("From: a@example.org\n\nplain\n".into(), vec![]),
            (
                "From: a@example.org\nContent-Type: text/html\n\n<p>hi</p>\n".into(),
                vec!["MIME_HTML_ONLY"],
            ),
            (
                multipart(&[
                    ("Content-Type: text/plain", "hi"),
                    (
                        "Content-Type: application/octet-stream\nContent-Disposition: attachment; filename=\"run.exe\"",
                        "MZ",
                    ),
                ]),
                vec!["MIME_BAD_EXTENSION"],
            ),
            (
                multipart(&[
                    ("Content-Type: text/plain", "hi"),
                    (
                        "Content-Type: application/octet-stream; name=\"invoice.pdf.exe\"",
                        "MZ",
                    ),
                ]),
                vec!["MIME_DOUBLE_BAD_EXTENSION"],
            ),
            (
                multipart(&[
                    ("Content-Type: text/plain", "hi"),
                    (
                        "Content-Type: application/pdf\nContent-Disposition: attachment; filename=\"invoice.pdf\"",
                        "%PDF",
                    ),
                ]),
                vec![],
            ),
        ];
        for (raw, expected) in cases {
            let out = fixture::symbols(&MimeSanity, &raw, &Envelope::default());
            assert_eq!(fixture::names(&out), expected, "{raw}");
        }
    }
}
