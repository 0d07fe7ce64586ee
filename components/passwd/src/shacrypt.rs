//! `{SHA512-CRYPT}` and `{SHA256-CRYPT}`: Drepper's SHA-crypt, `$6$`/`$5$`, as glibc writes it.

use rand::Rng;
use sha_crypt::{Sha256Params, Sha512Params, ROUNDS_DEFAULT, ROUNDS_MAX, ROUNDS_MIN};
use subtle::ConstantTimeEq;

use crate::PasswdError;

/// The crypt(3) salt alphabet.
const SALT_CHARS: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SALT_LEN: usize = 16;

pub(crate) fn hash512(password: &[u8], rounds: u32) -> Result<String, PasswdError> {
    let params = Sha512Params::new(rounds as usize).map_err(|_| {
        PasswdError::params(
            "SHA512-CRYPT",
            format!("rounds must be {ROUNDS_MIN}..={ROUNDS_MAX}"),
        )
    })?;
    let mut rng = rand::rngs::OsRng;
    let salt: String = (0..SALT_LEN)
        .map(|_| char::from(SALT_CHARS[rng.gen_range(0..SALT_CHARS.len())]))
        .collect();
    let digest = sha_crypt::sha512_crypt_b64(password, salt.as_bytes(), &params)
        .map_err(|e| PasswdError::params("SHA512-CRYPT", format!("{e:?}")))?;
    // glibc leaves the default round count implicit; an explicit one is part of the setting.
    let rounds = if rounds as usize == ROUNDS_DEFAULT {
        String::new()
    } else {
        format!("rounds={rounds}$")
    };
    Ok(format!("$6${rounds}{salt}${digest}"))
}

pub(crate) fn verify512(password: &[u8], crypt: &str) -> Result<bool, PasswdError> {
    let setting = Setting::parse(crypt, "6", "SHA512-CRYPT")?;
    let params = Sha512Params::new(setting.rounds).map_err(|_| bad_rounds("SHA512-CRYPT"))?;
    let digest = sha_crypt::sha512_crypt_b64(password, setting.salt.as_bytes(), &params)
        .map_err(|e| PasswdError::malformed("SHA512-CRYPT", format!("{e:?}")))?;
    Ok(digest.as_bytes().ct_eq(setting.digest.as_bytes()).into())
}

pub(crate) fn verify256(password: &[u8], crypt: &str) -> Result<bool, PasswdError> {
    let setting = Setting::parse(crypt, "5", "SHA256-CRYPT")?;
    let params = Sha256Params::new(setting.rounds).map_err(|_| bad_rounds("SHA256-CRYPT"))?;
    let digest = sha_crypt::sha256_crypt_b64(password, setting.salt.as_bytes(), &params)
        .map_err(|e| PasswdError::malformed("SHA256-CRYPT", format!("{e:?}")))?;
    Ok(digest.as_bytes().ct_eq(setting.digest.as_bytes()).into())
}

/// Unreachable after clamping, but the library's constructor is fallible.
fn bad_rounds(scheme: &'static str) -> PasswdError {
    PasswdError::malformed(scheme, "rounds out of range")
}

/// `$id$[rounds=N$]salt$digest`, split up.
struct Setting<'a> {
    rounds: usize,
    salt: &'a str,
    digest: &'a str,
}

impl<'a> Setting<'a> {
    fn parse(crypt: &'a str, id: &str, scheme: &'static str) -> Result<Setting<'a>, PasswdError> {
        let malformed = |reason: &str| PasswdError::malformed(scheme, reason);
        let mut fields = crypt.split('$');
        if fields.next() != Some("") || fields.next() != Some(id) {
            return Err(malformed("wrong $id$"));
        }
        let mut field = fields.next().ok_or_else(|| malformed("no salt"))?;
        let mut rounds = ROUNDS_DEFAULT;
        if let Some(count) = field.strip_prefix("rounds=") {
            let count: u64 = count
                .parse()
                .map_err(|_| malformed("rounds= is not a number"))?;
            // glibc clamps rather than refuses out-of-range counts; so must we to agree.
            rounds = count.clamp(ROUNDS_MIN as u64, ROUNDS_MAX as u64) as usize;
            field = fields.next().ok_or_else(|| malformed("no salt"))?;
        }
        let salt = field;
        let digest = fields.next().ok_or_else(|| malformed("no digest"))?;
        if fields.next().is_some() {
            return Err(malformed("trailing fields"));
        }
        let expected_len = if id == "6" { 86 } else { 43 };
        if digest.len() != expected_len {
            return Err(malformed("digest has the wrong length"));
        }
        Ok(Setting {
            rounds,
            salt,
            digest,
        })
    }
}
