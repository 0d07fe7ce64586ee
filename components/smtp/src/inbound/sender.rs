//! Who a logged-in user may send as: the envelope sender (MAIL FROM) and every `From:`
//! address must be the login's own address, an address that forwards to it (its aliases and
//! MailAliases whose destinations include it), an address listed in the mailbox's `sendAs`,
//! or, for the envelope only, the null sender of a bounce. Anything else is refused, so a
//! stolen or shared login cannot send as somebody else (Postfix's
//! `reject_authenticated_sender_login_mismatch`).

/// The addresses one login may use, lowercased. A `sendAs` entry `@domain` allows every
/// address of that domain (for role accounts that answer as the whole domain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderRights {
    login: String,
    addresses: Vec<String>,
}

impl SenderRights {
    pub fn new(login: &str, others: impl IntoIterator<Item = String>) -> SenderRights {
        let login = login.to_lowercase();
        let mut addresses: Vec<String> = others.into_iter().map(|a| a.to_lowercase()).collect();
        addresses.push(login.clone());
        addresses.sort();
        addresses.dedup();
        SenderRights { login, addresses }
    }

    pub fn login(&self) -> &str {
        &self.login
    }

    /// Whether `address` (a path from MAIL FROM or a `From:` address) belongs to the login.
    pub fn allows(&self, address: &str) -> bool {
        let address = address.to_lowercase();
        let domain = address.rsplit_once('@').map(|(_, d)| d);
        self.addresses.iter().any(|a| {
            *a == address
                || a.strip_prefix('@')
                    .is_some_and(|d| Some(d) == domain && !d.is_empty())
        })
    }

    /// Whether the envelope sender is acceptable: one of ours, or `<>` (RFC 5321 §4.5.5).
    pub fn allows_envelope(&self, mail_from: &str) -> bool {
        mail_from.is_empty() || self.allows(mail_from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_its_aliases_and_send_as_are_allowed_nothing_else() {
        let rights = SenderRights::new(
            "Alice@Example.test",
            [
                "postmaster@example.test".to_string(),
                "Sales@Example.test".to_string(),
                "@support.example.test".to_string(),
            ],
        );
        for ok in [
            "alice@example.test",
            "ALICE@example.test",
            "postmaster@example.test",
            "sales@example.test",
            "anyone@support.example.test",
        ] {
            assert!(rights.allows(ok), "{ok}");
        }
        for bad in [
            "bob@example.test",
            "alice@example.test.evil",
            "alice@other.test",
            "anyone@sub.support.example.test",
            "support.example.test",
            "",
        ] {
            assert!(!rights.allows(bad), "{bad:?}");
        }
        assert!(
            rights.allows_envelope(""),
            "bounces may use the null sender"
        );
        assert!(!rights.allows_envelope("bob@example.test"));
    }
}
