//! Commands valid in any state: CAPABILITY, NOOP, ID (RFC 2971), and ENABLE (RFC 5161);
//! COMPRESS (RFC 4978) once authenticated.

use imap_codec::imap_types::core::{Atom, IString, NString, Vec1};
use imap_codec::imap_types::extensions::enable::CapabilityEnable;
use imap_codec::imap_types::response::{Capability, Code, Data};

use crate::protocol::{no, ok, OpResult, Outcome, Protocol};
use crate::response;

/// Advertised after login: everything this server implements.
const AUTHENTICATED: &[&str] = &[
    "IMAP4rev1",
    "IMAP4rev2",
    "LITERAL+",
    "ENABLE",
    "IDLE",
    "ID",
    "NAMESPACE",
    "UNSELECT",
    "UIDPLUS",
    "MULTIAPPEND",
    "CATENATE",
    "MOVE",
    "CHILDREN",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "SPECIAL-USE",
    "ESEARCH",
    "SEARCHRES",
    "BINARY",
    "STATUS=SIZE",
    "QUOTA",
    "QUOTA=RES-STORAGE",
    "CONDSTORE",
    "QRESYNC",
    "SORT",
    "SORT=DISPLAY",
    "ESORT",
    "CONTEXT=SEARCH",
    "CONTEXT=SORT",
    "THREAD=ORDEREDSUBJECT",
    "THREAD=REFERENCES",
    "COMPRESS=DEFLATE",
    "NOTIFY",
];

/// The capability list for the session's state (RFC 9051 §6.1.1).
pub fn capabilities(p: &Protocol) -> Vec<Capability<'static>> {
    let mut names: Vec<&str> = Vec::new();
    if p.user.is_some() {
        names.extend_from_slice(AUTHENTICATED);
    } else {
        names.extend_from_slice(&[
            "IMAP4rev1",
            "IMAP4rev2",
            "LITERAL+",
            "SASL-IR",
            "ENABLE",
            "IDLE",
            "ID",
        ]);
        if p.starttls_available {
            names.push("STARTTLS");
        }
        if p.tls_active || p.ctx.limits.allow_plaintext_auth {
            names.extend_from_slice(&["AUTH=PLAIN", "AUTH=LOGIN"]);
        } else {
            names.push("LOGINDISABLED");
        }
    }
    names
        .into_iter()
        .filter_map(|n| Atom::try_from(n).ok().map(Capability::from))
        .collect()
}

/// `[CAPABILITY ...]` for greetings and login replies, saving clients a round trip.
pub fn capability_code(p: &Protocol) -> Option<Code<'static>> {
    Vec1::try_from(capabilities(p)).ok().map(Code::Capability)
}

pub fn capability(p: &mut Protocol) -> OpResult {
    if let Ok(caps) = Vec1::try_from(capabilities(p)) {
        response::data(&mut p.out, Data::Capability(caps));
    }
    ok("")
}

/// COMPRESS DEFLATE (RFC 4978 §3; DEFLATE is the only algorithm the grammar has). The
/// session switches after writing the tagged OK. Each compressed session holds a permit of
/// `imap.max_compressed_sessions` until it closes; without one the answer is `NO [LIMIT]`
/// (RFC 5530 §3) and the client goes on uncompressed, which §3 allows.
pub fn compress(p: &mut Protocol) -> OpResult {
    if p.compressed {
        return Err(no(Some("COMPRESSIONACTIVE"), "DEFLATE is active already"));
    }
    let Ok(permit) = p.ctx.compress_permits.clone().try_acquire_owned() else {
        tracing::debug!(peer = %p.peer, "COMPRESS refused: max_compressed_sessions reached");
        return Err(no(
            Some("LIMIT"),
            "Too many compressed sessions, continue uncompressed",
        ));
    };
    p.compress_permit = Some(permit);
    Ok(Outcome::Compress)
}

pub fn noop(_p: &mut Protocol) -> OpResult {
    // The dispatcher reports pending changes after every command; NOOP exists for that.
    ok("")
}

pub fn id(p: &mut Protocol, parameters: Option<Vec<(IString<'_>, NString<'_>)>>) -> OpResult {
    if let Some(params) = parameters {
        let described: Vec<String> = params
            .iter()
            .take(30)
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    String::from_utf8_lossy(k.as_ref()),
                    v.0.as_ref()
                        .map(|v| String::from_utf8_lossy(v.as_ref()).into_owned())
                        .unwrap_or_default()
                )
            })
            .collect();
        tracing::debug!(peer = %p.peer, client = ?described, "client ID");
    }
    let ours = vec![
        (
            IString::try_from("name").expect("quoted"),
            NString::try_from("Postbay").expect("quoted"),
        ),
        (
            IString::try_from("version").expect("quoted"),
            NString::try_from(env!("CARGO_PKG_VERSION")).expect("quoted"),
        ),
    ];
    response::data(
        &mut p.out,
        Data::Id {
            parameters: Some(ours),
        },
    );
    ok("")
}

pub fn enable(p: &mut Protocol, capabilities: Vec1<CapabilityEnable<'_>>) -> OpResult {
    let mut enabled = Vec::new();
    for cap in capabilities.as_ref() {
        let name = cap.to_string().to_ascii_uppercase();
        match name.as_str() {
            "CONDSTORE" if !p.enabled.condstore => {
                p.enable_condstore();
                enabled.push(CapabilityEnable::CondStore);
            }
            "QRESYNC" if !p.enabled.qresync => {
                p.enable_qresync();
                if let Ok(atom) = Atom::try_from("QRESYNC") {
                    enabled.push(CapabilityEnable::from(atom));
                }
            }
            "IMAP4REV2" if !p.enabled.rev2 => {
                p.enabled.rev2 = true;
                if let Ok(atom) = Atom::try_from("IMAP4rev2") {
                    enabled.push(CapabilityEnable::from(atom));
                }
            }
            _ => {}
        }
    }
    response::data(
        &mut p.out,
        Data::Enabled {
            capabilities: enabled,
        },
    );
    ok("")
}
