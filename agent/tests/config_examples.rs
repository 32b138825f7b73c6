//! The example configs in `packaging/examples/` are real: each, merged
//! over the shipped `packaging/config.toml` as the agent merges a
//! `config.d` drop-in, loads and validates, and turns on what it says.

use std::path::Path;

use agent::config::load::{from_text, merge};

const SHIPPED: &str = include_str!("../../packaging/config.toml");
const NATS_TLS: &str = include_str!("../../packaging/examples/50-nats-tls.toml");

#[test]
fn the_nats_tls_drop_in_turns_on_tls_and_credentials() {
    let mut table: toml::Table = toml::from_str(SHIPPED).unwrap();
    merge(&mut table, toml::from_str(NATS_TLS).unwrap());
    let text = toml::to_string(&table).unwrap();
    let cfg = from_text(Path::new("config.toml + 50-nats-tls.toml"), &text)
        .unwrap_or_else(|e| panic!("the example does not load: {e}"));
    let n = &cfg.nats;
    assert!(n.enabled);
    assert!(!n.urls.is_empty());
    assert!(
        n.urls.iter().all(|u| u.starts_with("tls://")),
        "{:?}",
        n.urls
    );
    assert!(n.tls.required);
    assert!(n.tls.ca.is_some() && n.tls.cert.is_some() && n.tls.key.is_some());
    assert!(n.creds_file.is_some());
    // Nothing else of the shipped file changed: the stream and its
    // retention stay the defaults.
    let shipped: toml::Table = toml::from_str(SHIPPED).unwrap();
    let base = from_text(
        Path::new("config.toml"),
        &toml::to_string(&shipped).unwrap(),
    )
    .unwrap();
    assert_eq!(n.stream, base.nats.stream);
    assert_eq!(n.max_age, base.nats.max_age);
}
