//! Table tests for address and domain syntax, and agreement of the CRD patterns with them.

use postbay_api::validate::{
    validate_address, validate_address_or_local_part, validate_domain, validate_selector, Problem,
    ADDRESS_OR_LOCAL_PART_PATTERN, ADDRESS_PATTERN, DOMAIN_PATTERN, SELECTOR_PATTERN,
};
use regex::Regex;

const GOOD_ADDRESSES: &[&str] = &[
    "user@local",
    "user@example.com",
    "first.last@example.com",
    "user+tag@example.com",
    "User.Name@example.com", // local parts are case-sensitive and may carry capitals
    "o'brien@example.ie",
    "a@b.c0",
    "x_y-z@sub.example.co.uk",
    "#$&*/=?^`{|}~@example.com",
    "postmaster@xn--bcher-kva.example",
    "1234@123.example.com",
];

#[test]
fn good_addresses_pass() {
    for address in GOOD_ADDRESSES {
        assert_eq!(validate_address(address), Ok(()), "{address}");
    }
}

fn long(n: usize) -> String {
    "a".repeat(n)
}

fn bad_addresses() -> Vec<(String, Problem)> {
    let s = |x: &str| x.to_string();
    vec![
        // The relay tricks.
        (s("user%other@local"), Problem::RelayCharacter('%')),
        (s("other!user@local"), Problem::RelayCharacter('!')),
        (
            s("#!$&*/=?^`{|}~@example.com"),
            Problem::RelayCharacter('!'),
        ),
        (s("@route:user@other"), Problem::RoutePrefix),
        (s("@a,@b:user@other"), Problem::RoutePrefix),
        (s("\"user@other\"@local"), Problem::QuotedLocalPart),
        (s("\"john doe\"@example.com"), Problem::QuotedLocalPart),
        (s("user@other@local"), Problem::MultipleAt),
        // Plain malformations.
        (s(""), Problem::Empty),
        (s("user"), Problem::MissingAt),
        (s("@"), Problem::RoutePrefix),
        (s("user@"), Problem::Empty),
        (s("@example.com"), Problem::RoutePrefix),
        (s(".user@example.com"), Problem::LocalPartDots),
        (s("user.@example.com"), Problem::LocalPartDots),
        (s("us..er@example.com"), Problem::LocalPartDots),
        (s("us er@example.com"), Problem::LocalPartCharacter(' ')),
        (s("user<x>@example.com"), Problem::LocalPartCharacter('<')),
        (
            s("route:user@example.com"),
            Problem::LocalPartCharacter(':'),
        ),
        (s("usér@example.com"), Problem::LocalPartCharacter('é')),
        (s("user@Example.com"), Problem::Uppercase),
        (s("user@example..com"), Problem::EmptyLabel),
        (s("user@example.com."), Problem::EmptyLabel),
        (s("user@-example.com"), Problem::LabelHyphen),
        (s("user@exa_mple.com"), Problem::LabelCharacter('_')),
        (s("user@[192.0.2.1]"), Problem::LabelCharacter('[')),
        (s("user@192.0.2.1"), Problem::TopLevelNotAlphabetic),
        (s("user@bücher.example"), Problem::LabelCharacter('ü')),
        (
            format!("{}@example.com", long(65)),
            Problem::TooLong {
                part: "local part",
                len: 65,
                max: 64,
            },
        ),
        (
            format!("{}@{}.com", long(64), long(64)),
            Problem::TooLong {
                part: "label",
                len: 64,
                max: 63,
            },
        ),
        (
            // 64 + 1 + 63*3 + 3 dots + 3 = 260 > 254, every part within its own limit.
            format!("{}@{}.{}.{}.com", long(64), long(63), long(63), long(63)),
            Problem::TooLong {
                part: "address",
                len: 260,
                max: 254,
            },
        ),
    ]
}

#[test]
fn bad_addresses_fail_with_the_right_problem() {
    for (address, problem) in bad_addresses() {
        let err = validate_address(&address).expect_err(&address);
        assert_eq!(err.problem(), &problem, "{address}");
        assert_eq!(err.field(), "address");
        assert_eq!(err.value(), address);
    }
}

#[test]
fn errors_name_the_field_they_are_relabelled_with() {
    let err = validate_address("user%other@local")
        .unwrap_err()
        .at("spec.aliases[2]");
    assert_eq!(
        err.to_string(),
        "spec.aliases[2]: \"user%other@local\" has '%' in the local part, which old MTAs treat as a relay instruction"
    );
}

#[test]
fn domains() {
    let good = [
        "local",
        "example.com",
        "a.b.c.d.e",
        "xn--p1ai",
        "1.example",
        "a-b.c0m",
        &format!("{}.com", long(63)),
    ];
    for domain in good {
        assert_eq!(validate_domain(domain), Ok(()), "{domain}");
    }
    let bad: Vec<(String, Problem)> = vec![
        ("".into(), Problem::Empty),
        ("Example.com".into(), Problem::Uppercase),
        ("example.com.".into(), Problem::EmptyLabel),
        (".example.com".into(), Problem::EmptyLabel),
        ("exa mple.com".into(), Problem::LabelCharacter(' ')),
        ("example-.com".into(), Problem::LabelHyphen),
        ("example.123".into(), Problem::TopLevelNotAlphabetic),
        ("example.-com".into(), Problem::LabelHyphen),
        ("*.example.com".into(), Problem::LabelCharacter('*')),
        (
            format!("{}.com", long(64)),
            Problem::TooLong {
                part: "label",
                len: 64,
                max: 63,
            },
        ),
        (
            format!("{0}.{0}.{0}.{0}.com", long(62)),
            Problem::TooLong {
                part: "domain",
                len: 255,
                max: 253,
            },
        ),
    ];
    for (domain, problem) in bad {
        let err = validate_domain(&domain).expect_err(&domain);
        assert_eq!(err.problem(), &problem, "{domain}");
        assert_eq!(err.field(), "domain");
    }
}

#[test]
fn catch_all_takes_an_address_or_a_local_part() {
    for ok in ["postmaster", "first.last", "someone@example.org"] {
        assert_eq!(validate_address_or_local_part(ok), Ok(()), "{ok}");
    }
    for bad in ["user%other", "\"quoted\"", "a@b@c", "", ".dot"] {
        assert!(validate_address_or_local_part(bad).is_err(), "{bad}");
    }
}

#[test]
fn selectors() {
    for ok in ["default", "2024", "ed.2024", "s1-rsa"] {
        assert_eq!(validate_selector(ok), Ok(()), "{ok}");
    }
    for bad in ["", "Default", "_dkim", "a..b", "-a", &long(64)] {
        assert!(validate_selector(bad).is_err(), "{bad}");
    }
}

/// The API server checks the CRD `pattern`s (Go RE2, same syntax as `regex` here) while
/// `postbay apply` runs the validators: both must draw the line in the same place. Length
/// limits are `maxLength` in the schema, so over-long cases are left out.
#[test]
fn crd_patterns_agree_with_the_validators() {
    let address = Regex::new(ADDRESS_PATTERN).unwrap();
    let domain = Regex::new(DOMAIN_PATTERN).unwrap();
    let either = Regex::new(ADDRESS_OR_LOCAL_PART_PATTERN).unwrap();
    let selector = Regex::new(SELECTOR_PATTERN).unwrap();

    let not_length = |p: &Problem| !matches!(p, Problem::TooLong { part, .. } if *part != "label");
    for good in GOOD_ADDRESSES {
        let valid = validate_address(good).is_ok();
        assert_eq!(address.is_match(good), valid, "address pattern on {good}");
        assert_eq!(either.is_match(good), valid, "catch-all pattern on {good}");
    }
    for (bad, problem) in bad_addresses().iter().filter(|(_, p)| not_length(p)) {
        assert!(
            !address.is_match(bad),
            "address pattern accepts {bad} ({problem:?})"
        );
    }
    for value in [
        "example.com",
        "local",
        "Example.com",
        "example.123",
        "a..b",
        "-a.com",
        "a_b.com",
        "xn--p1ai",
    ] {
        assert_eq!(
            domain.is_match(value),
            validate_domain(value).is_ok(),
            "domain pattern on {value}"
        );
    }
    for value in ["postmaster", "a.b", "user%x", ".a", "a@b.com", "a@B.com"] {
        assert_eq!(
            either.is_match(value),
            validate_address_or_local_part(value).is_ok(),
            "catch-all pattern on {value}"
        );
    }
    for value in ["default", "2024", "ed.2024", "Default", "_d", "a..b"] {
        assert_eq!(
            selector.is_match(value),
            validate_selector(value).is_ok(),
            "selector pattern on {value}"
        );
    }
}
