//! Mailbox quotas written as Kubernetes quantities (`1Gi`, `500Mi`, `2G`).
//!
//! Only the byte-sized subset is accepted: no milli (`m`), no exponents, no signs. The same
//! grammar is published as the CRD's `pattern`, so the API server and `postbay apply` agree.

/// Pattern for the CRD schema; must accept exactly what [`parse_quota`] accepts, bar the zero
/// and overflow checks.
pub const QUOTA_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?([kMGTPE]|[KMGTPE]i)?$";

/// Why a quota string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    #[error("quota is empty")]
    Empty,
    #[error("quota {0:?} is not a number with an optional suffix (k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei)")]
    Syntax(String),
    #[error("quota {input:?} has unknown suffix {suffix:?} (use k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi or Ei)")]
    UnknownSuffix { input: String, suffix: String },
    /// Zero is refused because Dovecot reads a zero limit as "unlimited"; omit the quota to
    /// mean that.
    #[error("quota {0:?} is zero; omit the quota for an unlimited mailbox")]
    Zero(String),
    #[error("quota {0:?} exceeds 2^64 bytes")]
    TooLarge(String),
}

/// Parses a quantity into bytes, rounding a fractional byte count up as Kubernetes does.
pub fn parse_quota(input: &str) -> Result<u64, QuotaError> {
    if input.is_empty() {
        return Err(QuotaError::Empty);
    }
    let syntax = || QuotaError::Syntax(input.to_string());

    let number_end = input
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(input.len());
    let (number, suffix) = input.split_at(number_end);
    if number.is_empty() {
        return Err(syntax());
    }
    let multiplier = multiplier(suffix).ok_or_else(|| QuotaError::UnknownSuffix {
        input: input.to_string(),
        suffix: suffix.to_string(),
    })?;

    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || !digits_only(whole)
        || !digits_only(fraction)
        || (number.contains('.') && fraction.is_empty())
    {
        return Err(syntax());
    }

    // value = (whole.fraction) * multiplier, computed exactly in u128 as
    // mantissa * multiplier / 10^len(fraction), rounded up.
    let too_large = || QuotaError::TooLarge(input.to_string());
    let mantissa: u128 = format!("{whole}{fraction}")
        .trim_start_matches('0')
        .parse::<u128>()
        .or_else(|_| {
            if whole.bytes().chain(fraction.bytes()).all(|b| b == b'0') {
                Ok(0)
            } else {
                Err(too_large())
            }
        })?;
    let scale = u32::try_from(fraction.len())
        .ok()
        .and_then(|n| 10u128.checked_pow(n))
        .ok_or_else(too_large)?;
    let scaled = mantissa.checked_mul(multiplier).ok_or_else(too_large)?;
    let bytes = scaled.div_ceil(scale);

    if bytes == 0 {
        return Err(QuotaError::Zero(input.to_string()));
    }
    u64::try_from(bytes).map_err(|_| too_large())
}

fn multiplier(suffix: &str) -> Option<u128> {
    Some(match suffix {
        "" => 1,
        "k" => 1000,
        "M" => 1000u128.pow(2),
        "G" => 1000u128.pow(3),
        "T" => 1000u128.pow(4),
        "P" => 1000u128.pow(5),
        "E" => 1000u128.pow(6),
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kubernetes_byte_quantities() {
        let table: &[(&str, u64)] = &[
            ("1", 1),
            ("1024", 1024),
            ("1k", 1_000),
            ("1Ki", 1_024),
            ("500Mi", 500 * 1024 * 1024),
            ("1Gi", 1 << 30),
            ("2G", 2_000_000_000),
            ("1.5Gi", 3 << 29),
            ("0.5Ki", 512),
            ("1T", 1_000_000_000_000),
            ("1Ti", 1 << 40),
            ("1P", 1_000_000_000_000_000),
            ("1Pi", 1 << 50),
            ("1E", 1_000_000_000_000_000_000),
            ("15Ei", 15 << 60),
            ("0.1", 1),        // fractional bytes round up
            ("1.0001k", 1001), // 1000.1 rounds up
            ("007M", 7_000_000),
        ];
        for (input, want) in table {
            assert_eq!(parse_quota(input), Ok(*want), "{input}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_byte_quantity() {
        let syntax = |s: &str| QuotaError::Syntax(s.into());
        let suffix = |s: &str, x: &str| QuotaError::UnknownSuffix {
            input: s.into(),
            suffix: x.into(),
        };
        let table: Vec<(&str, QuotaError)> = vec![
            ("", QuotaError::Empty),
            ("Gi", syntax("Gi")),
            (".5Gi", syntax(".5Gi")),
            ("1.Gi", syntax("1.Gi")),
            ("1.2.3", syntax("1.2.3")),
            ("1K", suffix("1K", "K")), // Kubernetes spells kilo with a lowercase k
            ("1GB", suffix("1GB", "GB")),
            ("100m", suffix("100m", "m")),
            ("1e9", suffix("1e9", "e9")),
            ("-1Gi", syntax("-1Gi")),
            (" 1Gi", syntax(" 1Gi")),
            ("1Gi ", suffix("1Gi ", "Gi ")),
            ("0", QuotaError::Zero("0".into())),
            ("0.0Gi", QuotaError::Zero("0.0Gi".into())),
            ("16Ei", QuotaError::TooLarge("16Ei".into())),
            (
                "18446744073709551616",
                QuotaError::TooLarge("18446744073709551616".into()),
            ),
        ];
        for (input, want) in table {
            assert_eq!(parse_quota(input), Err(want), "{input}");
        }
    }

    #[test]
    fn the_largest_quota_fits() {
        assert_eq!(parse_quota("18446744073709551615"), Ok(u64::MAX));
    }
}
