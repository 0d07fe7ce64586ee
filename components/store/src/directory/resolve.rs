//! Recipient resolution, the way Postfix's virtual maps would: mailbox, alias (recursively,
//! fanning out), `user+tag` to `user`, then the domain's catch-all.

use super::{canonical_address, split_address};
use crate::{Result, Store};

/// Alias expansion stops this deep, so a loop in the data cannot hang a delivery.
const MAX_ALIAS_DEPTH: usize = 8;

/// Where mail for one address goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Recipient {
    /// A local mailbox, by its canonical address.
    Local(String),
    /// An address on another domain (alias forwarding); the outbound queue carries it.
    Remote(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The domain is not ours: accepting would make us a relay.
    NonLocalDomain,
    /// The domain is ours but nobody by that name lives here.
    Unknown,
    /// Deliver to these (aliases fan out; duplicates removed).
    Deliver(Vec<Recipient>),
}

impl Store {
    /// Resolves an envelope recipient the way Postfix's virtual maps would: mailbox, alias
    /// (recursively, fanning out), `user+tag` to `user`, then the domain's catch-all.
    pub async fn resolve(&self, address: &str) -> Result<Resolution> {
        let address = canonical_address(address);
        let Some((_, domain)) = split_address(&address) else {
            return Ok(Resolution::Unknown);
        };
        if !self.is_local_domain(&domain).await? {
            return Ok(Resolution::NonLocalDomain);
        }
        // The common case, a mailbox by its own address, in one more query.
        if let Some(mb) = self.mailbox(&address).await? {
            if mb.enabled {
                return Ok(Resolution::Deliver(vec![Recipient::Local(mb.address)]));
            }
        }
        let mut found = Vec::new();
        if self.expand(&address, 0, &mut found).await? {
            found.sort();
            found.dedup();
            Ok(Resolution::Deliver(found))
        } else {
            Ok(Resolution::Unknown)
        }
    }

    /// Appends the targets of `address` to `out`; false when the address names nobody.
    async fn expand(&self, address: &str, depth: usize, out: &mut Vec<Recipient>) -> Result<bool> {
        if depth > MAX_ALIAS_DEPTH {
            tracing::warn!(address, "alias expansion too deep, stopping");
            return Ok(false);
        }
        let Some((local, domain)) = split_address(address) else {
            return Ok(false);
        };
        if !self.is_local_domain(&domain).await? {
            out.push(Recipient::Remote(address.to_string()));
            return Ok(true);
        }
        if self.expand_exact(address, depth, out).await? {
            return Ok(true);
        }
        if let Some((base, _tag)) = local.split_once('+') {
            let stripped = format!("{base}@{domain}");
            if self.expand_exact(&stripped, depth, out).await? {
                return Ok(true);
            }
        }
        if let Some(catch_all) = self.domain(&domain).await?.and_then(|d| d.catch_all) {
            let target = if catch_all.contains('@') {
                canonical_address(&catch_all)
            } else {
                format!("{}@{domain}", catch_all.to_lowercase())
            };
            if target != address {
                return Box::pin(self.expand(&target, depth + 1, out)).await;
            }
        }
        Ok(false)
    }

    async fn expand_exact(
        &self,
        address: &str,
        depth: usize,
        out: &mut Vec<Recipient>,
    ) -> Result<bool> {
        if let Some(mb) = self.mailbox(address).await? {
            if mb.enabled {
                out.push(Recipient::Local(mb.address));
                return Ok(true);
            }
        }
        let destinations = self.alias_destinations(address).await?;
        let mut any = false;
        for destination in destinations {
            if destination == address {
                continue;
            }
            any |= Box::pin(self.expand(&destination, depth + 1, out)).await?;
        }
        Ok(any)
    }
}
