//! crds/postbay.dev.yaml is generated and must match the types: regenerate with
//! `cargo run -p postbay -- crds > crds/postbay.dev.yaml`.

use std::path::Path;
use std::process::Command;

#[test]
fn checked_in_crds_match_the_generated_ones() {
    let out = Command::new(env!("CARGO_BIN_EXE_postbay"))
        .arg("crds")
        .output()
        .expect("postbay crds runs");
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    assert!(generated.contains("name: maildomains.postbay.dev"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds/postbay.dev.yaml");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "crds/postbay.dev.yaml is stale or missing: run \
         `cargo run -p postbay -- crds > crds/postbay.dev.yaml` and commit the result"
    );
}
