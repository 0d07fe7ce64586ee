//! Prints the CRDs: `cargo run -p postbay-api --example crds > crds.yaml`.

fn main() {
    print!("{}", postbay_api::crds_yaml());
}
