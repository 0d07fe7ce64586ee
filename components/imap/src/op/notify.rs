//! NOTIFY (RFC 5465 §3): NONE turns notifications off, SET replaces what the session is
//! told of between commands ([`crate::notify`]).

use crate::ext_syntax::Notify;
use crate::protocol::{ok, OpError, OpResult, Protocol};
use crate::response;

/// The events this server reports, as §3.2's BADEVENT response code lists them (§5).
const BADEVENT: &str =
    "BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)";

pub async fn notify(p: &mut Protocol, request: Notify) -> OpResult {
    p.user()?;
    if request.bad_event {
        // §3.2: an unsupported event leaves the earlier NOTIFY in force.
        return Err(OpError::No(
            Some(response::code(BADEVENT)),
            "Unsupported event in NOTIFY".into(),
        ));
    }
    // §3.1: NONE, or a SET that replaces the previous one.
    p.notify = None;
    let Some(set) = request.set else {
        return ok("NOTIFY NONE completed");
    };
    let state = crate::notify::start(p, set).await?;
    p.notify = Some(Box::new(state));
    ok("NOTIFY completed")
}
