//! MIME sanity: an HTML part without a plain-text alternative, and attachments whose names
//! say they run when opened (executables, scripts, installers, disk images), also inside a
//! zip archive (names from its central directory; nothing is decompressed), as Rspamd's
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
            let mut nested = Vec::new();
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
                    if is_zip(name, part) {
                        for inner in zip_names(part.contents()) {
                            if let Some(ext) = dangerous_extension(&inner) {
                                bad.push(format!("{name}:{inner} ({ext})"));
                            } else if inner.rsplit_once('.').is_some_and(|(_, e)| {
                                ARCHIVES.iter().any(|a| a.eq_ignore_ascii_case(e))
                            }) {
                                nested.push(format!("{name}:{inner}"));
                            }
                        }
                    }
                }
            }
            if !nested.is_empty() {
                out.add(
                    "MIME_ARCHIVE_IN_ARCHIVE",
                    5.0,
                    "An archive inside a zip attachment",
                    nested,
                );
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

/// Archive types: one inside a zip hides what it holds from this check.
const ARCHIVES: &[&str] = &[
    "zip", "rar", "7z", "gz", "tgz", "bz2", "xz", "cab", "arj", "ace",
];

/// Names looked at in one archive at most (a central directory can list millions).
const MAX_ZIP_ENTRIES: usize = 1000;

fn is_zip(name: &str, part: &MessagePart<'_>) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, e)| e.eq_ignore_ascii_case("zip"))
        || part.content_type().is_some_and(|ct| {
            ct.subtype().is_some_and(|s| {
                s.eq_ignore_ascii_case("zip") || s.eq_ignore_ascii_case("x-zip-compressed")
            })
        })
}

/// The file names of a zip archive's central directory (PKWARE APPNOTE §4.3.12), at most
/// [`MAX_ZIP_ENTRIES`]; an unreadable archive has none (encrypted ones still list theirs).
fn zip_names(bytes: &[u8]) -> Vec<String> {
    match zip::ZipArchive::new(std::io::Cursor::new(bytes)) {
        Ok(archive) => archive
            .file_names()
            .take(MAX_ZIP_ENTRIES)
            .filter_map(Result::ok)
            .map(|n| n.rsplit('/').next().unwrap_or(&n).to_string())
            .collect(),
        Err(error) => {
            tracing::debug!(%error, "attachment is not a readable zip archive");
            Vec::new()
        }
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

    /// Zip archives made with Python's zipfile (stored entries): `setup.exe` + `readme.txt`,
    /// `inner.zip`, `notes.txt`.
    const ZIP_EXE: &str = "UEsDBBQAAAAAAAAAIVxdm7CPAgAAAAIAAAAJAAAAc2V0dXAuZXhlTVpQSwMEFAAAAAAAAAAhXKwqk9gCAAAAAgAAAAoAAAByZWFkbWUudHh0aGlQSwECFAMUAAAAAAAAACFcXZuwjwIAAAACAAAACQAAAAAAAAAAAAAAgAEAAAAAc2V0dXAuZXhlUEsBAhQDFAAAAAAAAAAhXKwqk9gCAAAAAgAAAAoAAAAAAAAAAAAAAIABKQAAAHJlYWRtZS50eHRQSwUGAAAAAAIAAgBvAAAAUwAAAAAA";
    const ZIP_NESTED: &str = "UEsDBBQAAAAAAAAAIVwAAAAAAAAAAAAAAAAJAAAAaW5uZXIuemlwUEsBAhQDFAAAAAAAAAAhXAAAAAAAAAAAAAAAAAkAAAAAAAAAAAAAAIABAAAAAGlubmVyLnppcFBLBQYAAAAAAQABADcAAAAnAAAAAAA=";
    const ZIP_PLAIN: &str = "UEsDBBQAAAAAAAAAIVyGphA2BQAAAAUAAAAJAAAAbm90ZXMudHh0aGVsbG9QSwECFAMUAAAAAAAAACFchqYQNgUAAAAFAAAACQAAAAAAAAAAAAAAgAEAAAAAbm90ZXMudHh0UEsFBgAAAAABAAEANwAAACwAAAAAAA==";

    fn zipped(name: &str, b64: &str) -> String {
        multipart(&[
            ("Content-Type: text/plain", "see attached"),
            (
                &format!("Content-Type: application/zip\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"{name}\""),
                b64,
            ),
        ])
    }

    #[test]
    fn zip_contents() {
        let out = fixture::symbols(
            &MimeSanity,
            &zipped("invoice.zip", ZIP_EXE),
            &Envelope::default(),
        );
        assert_eq!(fixture::names(&out), vec!["MIME_BAD_EXTENSION"]);
        assert_eq!(out.symbols[0].options, vec!["invoice.zip:setup.exe (exe)"]);
        let out = fixture::symbols(
            &MimeSanity,
            &zipped("a.zip", ZIP_NESTED),
            &Envelope::default(),
        );
        assert_eq!(fixture::names(&out), vec!["MIME_ARCHIVE_IN_ARCHIVE"]);
        let out = fixture::symbols(
            &MimeSanity,
            &zipped("notes.zip", ZIP_PLAIN),
            &Envelope::default(),
        );
        assert!(out.symbols.is_empty(), "{:?}", out.symbols);
        // Not a zip at all, under a zip name: nothing found, nothing fails.
        let out = fixture::symbols(
            &MimeSanity,
            &zipped("broken.zip", "bm90IGEgemlw"),
            &Envelope::default(),
        );
        assert!(out.symbols.is_empty(), "{:?}", out.symbols);
    }
}
