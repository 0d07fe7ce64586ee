//! What we write, we read back; with the shapes and defaults Dovecot writes.

use postbay_passwd::{hash, hash_with, verify, Params, PasswdError, Scheme};

#[test]
fn default_hashes_have_dovecots_shape_and_verify() {
    let shapes = [
        (
            Scheme::Argon2id,
            "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$",
        ),
        (Scheme::BlfCrypt, "{BLF-CRYPT}$2y$05$"),
        (Scheme::Sha512Crypt, "{SHA512-CRYPT}$6$"),
        (Scheme::ScramSha256, "{SCRAM-SHA-256}4096,"),
    ];
    for (scheme, prefix) in shapes {
        let stored = hash(b"secret", scheme).unwrap();
        assert!(stored.starts_with(prefix), "{stored}");
        assert_eq!(verify(b"secret", &stored), Ok(true), "{stored}");
        assert_eq!(verify(b"secreT", &stored), Ok(false), "{stored}");
    }
}

#[test]
fn sha512_crypt_default_has_no_rounds_field_and_a_16_char_salt() {
    let stored = hash(b"secret", Scheme::Sha512Crypt).unwrap();
    let fields: Vec<&str> = stored.split('$').collect();
    assert_eq!(fields.len(), 4, "{stored}");
    assert_eq!(fields[2].len(), 16, "{stored}");
    assert_eq!(fields[3].len(), 86, "{stored}");
}

#[test]
fn salts_differ_between_hashes() {
    let a = hash(b"secret", Scheme::Sha512Crypt).unwrap();
    let b = hash(b"secret", Scheme::Sha512Crypt).unwrap();
    assert_ne!(a, b);
}

#[test]
fn explicit_parameters_are_written_and_honoured() {
    let params = Params {
        argon2_memory_kib: 1024,
        argon2_iterations: 1,
        argon2_parallelism: 2,
        bcrypt_cost: 4,
        sha_crypt_rounds: 6000,
        scram_iterations: 5000,
    };
    let shapes = [
        (Scheme::Argon2id, "{ARGON2ID}$argon2id$v=19$m=1024,t=1,p=2$"),
        (Scheme::BlfCrypt, "{BLF-CRYPT}$2y$04$"),
        (Scheme::Sha512Crypt, "{SHA512-CRYPT}$6$rounds=6000$"),
        (Scheme::ScramSha256, "{SCRAM-SHA-256}5000,"),
    ];
    for (scheme, prefix) in shapes {
        let stored = hash_with("pässwörd".as_bytes(), scheme, &params).unwrap();
        assert!(stored.starts_with(prefix), "{stored}");
        assert_eq!(verify("pässwörd".as_bytes(), &stored), Ok(true), "{stored}");
        assert_eq!(verify(b"passwoerd", &stored), Ok(false), "{stored}");
    }
}

#[test]
fn out_of_range_parameters_are_refused() {
    let base = Params::default();
    let bad = [
        (
            Scheme::Argon2id,
            Params {
                argon2_memory_kib: 4,
                ..base
            },
        ),
        (
            Scheme::Argon2id,
            Params {
                argon2_iterations: 0,
                ..base
            },
        ),
        (
            Scheme::BlfCrypt,
            Params {
                bcrypt_cost: 3,
                ..base
            },
        ),
        (
            Scheme::BlfCrypt,
            Params {
                bcrypt_cost: 32,
                ..base
            },
        ),
        (
            Scheme::Sha512Crypt,
            Params {
                sha_crypt_rounds: 999,
                ..base
            },
        ),
        (
            Scheme::ScramSha256,
            Params {
                scram_iterations: 4095,
                ..base
            },
        ),
    ];
    for (scheme, params) in bad {
        let result = hash_with(b"secret", scheme, &params);
        assert!(
            matches!(result, Err(PasswdError::Params { .. })),
            "{scheme} {params:?}: {result:?}"
        );
    }
}

#[test]
fn bcrypt_truncates_at_72_bytes_like_crypt() {
    let params = Params {
        bcrypt_cost: 4,
        ..Params::default()
    };
    let long = [b'a'; 100];
    let stored = hash_with(&long, Scheme::BlfCrypt, &params).unwrap();
    assert_eq!(verify(&long[..72], &stored), Ok(true));
    assert_eq!(verify(&long[..71], &stored), Ok(false));
}

#[test]
fn plain_compares_exactly() {
    assert_eq!(verify(b"secret", "{PLAIN}secret"), Ok(true));
    assert_eq!(verify(b"secret ", "{PLAIN}secret"), Ok(false));
    assert_eq!(verify(b"secre", "{PLAIN}secret"), Ok(false));
    assert_eq!(verify(b"", "{PLAIN}"), Ok(true));
}

#[test]
fn scheme_names_are_dovecots() {
    let names: Vec<String> = Scheme::ALL.iter().map(Scheme::to_string).collect();
    assert_eq!(
        names,
        ["ARGON2ID", "BLF-CRYPT", "SHA512-CRYPT", "SCRAM-SHA-256"]
    );
    assert_eq!("scram-sha-256".parse::<Scheme>(), Ok(Scheme::ScramSha256));
    assert_eq!("blf-crypt".parse::<Scheme>(), Ok(Scheme::BlfCrypt));
    assert_eq!(
        "MD5".parse::<Scheme>(),
        Err(PasswdError::UnknownScheme("MD5".into()))
    );
}

#[test]
fn scram_credential_has_dovecots_field_sizes() {
    let stored = hash(b"secret", Scheme::ScramSha256).unwrap();
    let body = stored.strip_prefix("{SCRAM-SHA-256}").unwrap();
    let fields: Vec<&str> = body.split(',').collect();
    // 16-byte salt and two 32-byte keys, padded base64 like doveadm's.
    let lengths: Vec<usize> = fields.iter().map(|f| f.len()).collect();
    assert_eq!(lengths, [4, 24, 44, 44], "{stored}");
    assert_ne!(stored, hash(b"secret", Scheme::ScramSha256).unwrap());
}
