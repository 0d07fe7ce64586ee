//! Hashes written by Dovecot 2.3.19 (`doveadm pw`, Debian 12 package 1:2.3.19.1+dfsg1-2.1+deb12u7)
//! must verify, which proves we read what Dovecot writes. All for the password `secret`
//! unless stated otherwise.

use postbay_passwd::{verify, PasswdError};

/// `doveadm pw -s SCHEME -p secret` (with `-r` where noted).
const DOVEADM: &[&str] = &[
    "{SHA512-CRYPT}$6$aRuTm4ns3Rjdn4.N$IohLFIMPFtXVZRG/OGWyqqBzIJlaKco/0J1.s7sbjvG/hFmOP6pApmx1e1oqbXaSyCVsaaTGtvH4N0zfmQ7ZQ0",
    // -r 10000
    "{SHA512-CRYPT}$6$rounds=10000$3.KXPCvzkM69KQ9x$hWI63T0gtnA9TBZEeAUq8JckWKhDCdPZNBwszm58atp.TRLLTQAia9lAdCjTe4sfJuzMC/GGO6ZBGF55f3z.z0",
    "{SHA256-CRYPT}$5$FzWMJW7Jnolp/RE.$Tj0SiJCQ7H8LBDEH3vPyI3e9HTU4wqIBs9lX4fbY2WC",
    "{BLF-CRYPT}$2y$05$sw6oK9yeWd.9iDB/DdzzvuBGcXz6ObIG4CRIDJNz8M5EatelwoF5a",
    // Dovecot's CRYPT is libxcrypt's preferred method, bcrypt on Debian 12.
    "{CRYPT}$2y$05$HQO84rF.nsrDa5ppzwR.EumoE0nTRHsAh0m0XSORQSk/QhNMGbRE.",
    "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$d9AJkDeRu1szzA3JJbcYJA$lhlPtfU/AW5iUa68ENqHPdiAW4V3ZA9b6A6dYhNz/jU",
    "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$f4xB/XEtR06xM1Yl8R+VhQ$Q83EcoPs+xzk5M5j4gqn9Zq4vlLGDcJeb3cBJn9ne2I",
    "{PLAIN}secret",
    "{CLEARTEXT}secret",
    "{PLAIN.B64}c2VjcmV0",
    "{PLAIN.HEX}736563726574",
    "{SCRAM-SHA-256}4096,zNzvWQjtVbdcxs2XRkqsfA==,LGcqP8abY6z9/f2myCqSCrhMxQaSZ2GGjOTe4MzLQHM=,63fGebJKnTdtaaXkOxsi79ks28p6AgF5G1TOfRo9Hoc=",
];

#[test]
fn doveadm_hashes_verify() {
    for stored in DOVEADM {
        assert_eq!(verify(b"secret", stored), Ok(true), "{stored}");
    }
}

#[test]
fn doveadm_hashes_reject_other_passwords() {
    // Skips the two Argon2 vectors here: each check costs 64 MiB and a noticeable fraction
    // of a second in debug builds, and the argon2 mismatch path is covered in round_trip.rs.
    for stored in DOVEADM.iter().filter(|s| !s.contains("argon2")) {
        assert_eq!(verify(b"Secret", stored), Ok(false), "{stored}");
        assert_eq!(verify(b"", stored), Ok(false), "{stored}");
    }
}

#[test]
fn other_spellings_of_the_same_hashes_verify() {
    let sha512 = "$6$aRuTm4ns3Rjdn4.N$IohLFIMPFtXVZRG/OGWyqqBzIJlaKco/0J1.s7sbjvG/hFmOP6pApmx1e1oqbXaSyCVsaaTGtvH4N0zfmQ7ZQ0";
    let bcrypt = "$2y$05$sw6oK9yeWd.9iDB/DdzzvuBGcXz6ObIG4CRIDJNz8M5EatelwoF5a";
    let spellings = [
        sha512.to_string(),                    // bare crypt string
        format!("{{CRYPT}}{sha512}"),          // crypt(3) with SHA-512
        format!("{{sha512-crypt}}{sha512}"),   // scheme names are case-insensitive
        format!("{{SHA512-CRYPT}}{sha512}\n"), // Secret made with --from-file
        bcrypt.to_string(),
        bcrypt.replacen("$2y$", "$2b$", 1), // same algorithm, OpenBSD's id
        format!("{{CRYPT}}{}", bcrypt.replacen("$2y$", "$2b$", 1)),
        "$5$FzWMJW7Jnolp/RE.$Tj0SiJCQ7H8LBDEH3vPyI3e9HTU4wqIBs9lX4fbY2WC".to_string(),
    ];
    for stored in &spellings {
        assert_eq!(verify(b"secret", stored), Ok(true), "{stored}");
    }
}

#[test]
fn doveadm_hashes_of_unusual_passwords_verify() {
    // doveadm pw -s SHA512-CRYPT -p ''
    let empty = "{SHA512-CRYPT}$6$jr3N3h7Q25lvFpiX$mEgzda3qlm3rFskefJu4LCdgzEAZJy.21kGVj5bESgrxEeE88a22D.ApJ3Xvo6OkWqDCi6qj.v6RMcbvBzBxM0";
    assert_eq!(verify(b"", empty), Ok(true));
    assert_eq!(verify(b"secret", empty), Ok(false));

    // doveadm pw -s BLF-CRYPT -r 6 -p 'pässwörd with spaces' (UTF-8 bytes)
    let utf8 = "{BLF-CRYPT}$2y$06$oIXTKyMAWXpck9QM6uZmtu9d1mQZEmu6C.ffnKtXTEmI5WXfFeSsy";
    assert_eq!(verify("pässwörd with spaces".as_bytes(), utf8), Ok(true));
    assert_eq!(verify("passwörd with spaces".as_bytes(), utf8), Ok(false));

    // doveadm pw -s SCRAM-SHA-256 -p '' and -p 'pässwörd with spaces'
    let empty = "{SCRAM-SHA-256}4096,p4feZWpYjxe4lLUlOMRH7A==,ULiScW3jfx6dks3GLkP+Z9U1lZZEzE5SYGaz2kOxuBk=,HJQ1wicTrh99nVwTI6svR1eJ0poLjfLZNBC1PTCuMtE=";
    assert_eq!(verify(b"", empty), Ok(true));
    assert_eq!(verify(b"secret", empty), Ok(false));
    let utf8 = "{SCRAM-SHA-256}4096,MP7sybTt8zB2E7DQMDrefQ==,z/1L4p40wfPJJcA4YD+yWEPMtHFDHcs3IMuq6KkwNd8=,xpgNXajlJgfn96Q+mt2yKr9Pv63UiW+U5jYqmpols5M=";
    assert_eq!(verify("pässwörd with spaces".as_bytes(), utf8), Ok(true));
    assert_eq!(verify("passwörd with spaces".as_bytes(), utf8), Ok(false));
}

#[test]
fn damaged_hashes_are_errors_not_mismatches() {
    let damaged = [
        // digest cut short
        "{SHA512-CRYPT}$6$aRuTm4ns3Rjdn4.N$IohLFIMPFtXVZRG",
        // no digest at all
        "{SHA256-CRYPT}$5$FzWMJW7Jnolp/RE.",
        "{SHA512-CRYPT}$6$rounds=many$salt$IohLFIMPFtXVZRG/OGWyqqBzIJlaKco/0J1.s7sbjvG/hFmOP6pApmx1e1oqbXaSyCVsaaTGtvH4N0zfmQ7ZQ0",
        "{BLF-CRYPT}$2y$05$sw6oK9yeWd.9iDB/DdzzvuBGcXz6ObIG4CR",
        "{BLF-CRYPT}$2y$99$sw6oK9yeWd.9iDB/DdzzvuBGcXz6ObIG4CRIDJNz8M5EatelwoF5a",
        "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$not base64!$x",
        "{ARGON2ID}$argon2id$",
        // StoredKey cut short, iterations below RFC 7677's 4096, a field missing
        "{SCRAM-SHA-256}4096,zNzvWQjtVbdcxs2XRkqsfA==,LGcqP8abY6z9/f2myCqSCrhMxQaSZ2GGjOTe4MzL,63fGebJKnTdtaaXkOxsi79ks28p6AgF5G1TOfRo9Hoc=",
        "{SCRAM-SHA-256}1000,zNzvWQjtVbdcxs2XRkqsfA==,LGcqP8abY6z9/f2myCqSCrhMxQaSZ2GGjOTe4MzLQHM=,63fGebJKnTdtaaXkOxsi79ks28p6AgF5G1TOfRo9Hoc=",
        "{SCRAM-SHA-256}4096,zNzvWQjtVbdcxs2XRkqsfA==,LGcqP8abY6z9/f2myCqSCrhMxQaSZ2GGjOTe4MzLQHM=",
    ];
    for stored in damaged {
        let result = verify(b"secret", stored);
        assert!(
            matches!(result, Err(PasswdError::Malformed { .. })),
            "{stored}: {result:?}"
        );
    }
}

#[test]
fn unknown_schemes_are_errors_not_mismatches() {
    let cases = [
        ("{MD5-CRYPT}$1$abcdefgh$XxQbrmwnh5y8bzE/nH0D2.", "MD5-CRYPT"),
        ("{SSHA512}aGFzaA==", "SSHA512"),
        ("{CRYPT}$1$abcdefgh$XxQbrmwnh5y8bzE/nH0D2.", "CRYPT ($1$)"),
    ];
    for (stored, scheme) in cases {
        assert_eq!(
            verify(b"secret", stored),
            Err(PasswdError::UnknownScheme(scheme.into())),
            "{stored}"
        );
    }
    assert_eq!(verify(b"secret", "secret"), Err(PasswdError::Unrecognized));
    assert_eq!(
        verify(b"secret", "{BLF-CRYPT}$6$aRuTm4ns3Rjdn4.N$x"),
        Err(PasswdError::SchemeMismatch {
            scheme: "BLF-CRYPT".into()
        })
    );
}

/// One [`postbay_passwd::Scratch`] serves hashes of different costs in turn (64 MiB, then
/// 32 MiB with another variant, then 64 MiB again) without stale blocks changing a result:
/// what the hashing pool does when users' hashes were written with different parameters.
#[test]
fn a_reused_scratch_gives_the_same_answers() {
    use postbay_passwd::{verify_in, Scratch};
    let argon: Vec<&str> = DOVEADM
        .iter()
        .copied()
        .filter(|s| s.contains("argon2"))
        .collect();
    assert_eq!(argon.len(), 2);
    let mut scratch = Scratch::default();
    for stored in [argon[0], argon[1], argon[0]] {
        assert_eq!(
            verify_in(b"secret", stored, &mut scratch),
            Ok(true),
            "{stored}"
        );
        assert_eq!(
            verify_in(b"Secret", stored, &mut scratch),
            Ok(false),
            "{stored}"
        );
    }
    assert_eq!(scratch.held_bytes(), 64 << 20);
}
