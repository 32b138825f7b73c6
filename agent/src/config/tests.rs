//! Loading end to end: file errors located by line and column, overrides
//! in precedence order, validation located at its source, secrets masked,
//! and the shipped `packaging/config.toml` equal to the built-in defaults.

use std::{collections::HashMap, io::Write as _, path::PathBuf};

use super::*;

const SHIPPED: &str = include_str!("../../../packaging/config.toml");

/// A config file in a fresh temporary directory.
struct TempFile(PathBuf);

impl TempFile {
    fn new(text: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "debugmon-config-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
    }
}

fn no_env() -> HashMap<String, String> {
    HashMap::new()
}

fn load_text(text: &str, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
    let f = TempFile::new(text);
    load(Some(&f.0), env, &[]).map(|(c, _)| c)
}

#[test]
fn shipped_file_is_the_defaults() {
    let c: Config = toml::from_str(SHIPPED).unwrap();
    assert_eq!(c, Config::default());
}

#[test]
fn shipped_file_documents_every_key() {
    for key in overrides::KEYS {
        let leaf = key.rsplit('.').next().unwrap();
        assert!(
            SHIPPED.lines().any(|l| {
                let l = l.trim_start_matches(['#', ' ']);
                l.starts_with(&format!("{leaf} ="))
            }),
            "packaging/config.toml does not document {key}"
        );
    }
}

#[test]
fn unknown_key_is_refused_with_its_line() {
    let text = "[agent]\nring_mib = 8\n\n[nats]\nenabled = false\nurl = \"nats://x:4222\"\n";
    let e = load_text(text, &no_env()).unwrap_err();
    let ConfigError::Parse {
        line, column, key, ..
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!((*line, *column), (6, 1), "{e}");
    assert_eq!(key.as_deref(), Some("nats.url"), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("config.toml:6:1: nats.url: unknown field `url`"),
        "{msg}"
    );
}

#[test]
fn wrong_type_names_key_and_position() {
    let text = "[agent]\nring_mib = \"eight\"\n";
    let msg = load_text(text, &no_env()).unwrap_err().to_string();
    assert!(
        msg.contains("config.toml:2:12: agent.ring_mib: invalid type"),
        "{msg}"
    );
}

#[test]
fn bad_duration_names_key_and_position() {
    let text = "[grants]\nmax_duration = \"4 hours\"\n";
    let msg = load_text(text, &no_env()).unwrap_err().to_string();
    assert!(msg.contains(":2:16: grants.max_duration: "), "{msg}");
    assert!(msg.contains("unknown unit"), "{msg}");
}

#[test]
fn syntax_error_is_located() {
    let msg = load_text("[agent\nring_mib = 8\n", &no_env())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("config.toml:1:"), "{msg}");
}

#[test]
fn invalid_value_is_located_in_the_file() {
    let text = "# ring\n[agent]\nancestry_depth = 4\nring_mib = 3\n";
    let e = load_text(text, &no_env()).unwrap_err();
    let ConfigError::Invalid(list) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(list.len(), 1);
    assert!(list[0].location.ends_with("config.toml:4:12"), "{e}");
    assert_eq!(list[0].key, "agent.ring_mib");
    assert!(list[0].reason.contains("power of two"), "{e}");
}

#[test]
fn redact_section_reaches_delivery_and_a_bad_pattern_is_located() {
    let text = "[redact]\npatterns = ['pin:(?P<secret>\\d+)']\nsecret_flags = [\"--pin\"]\n";
    let c = load_text(text, &no_env()).unwrap();
    assert_eq!(c.redact.patterns, ["pin:(?P<secret>\\d+)"]);
    assert!(c.redact.defaults, "defaults stay on unless turned off");
    let bad = "[redact]\npatterns = ['(unclosed']\n";
    let e = load_text(bad, &no_env()).unwrap_err();
    let ConfigError::Invalid(list) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(list[0].key, "redact.patterns");
    assert!(list[0].reason.contains("(unclosed"), "{e}");
}

#[test]
fn env_overrides_file_and_flags_override_env() {
    let text = "[agent]\nring_mib = 4\nancestry_depth = 2\n[nats]\nurls = [\"nats://a:1\"]\n";
    let env = HashMap::from([
        ("DEBUGMON_AGENT_RING_MIB".to_owned(), "16".to_owned()),
        ("DEBUGMON_AGENT_ANCESTRY_DEPTH".to_owned(), "5".to_owned()),
        (
            "DEBUGMON_NATS_URLS".to_owned(),
            "nats://b:2,tls://c:3".to_owned(),
        ),
        ("DEBUGMON_NATS_TLS_REQUIRED".to_owned(), "true".to_owned()),
        ("DEBUGMON_AGENT_READ_INTERVAL_MS".to_owned(), "8".to_owned()),
    ]);
    let f = TempFile::new(text);
    let flags = [Flag {
        key: "agent.ring_mib",
        flag: "--ring-mib",
        value: "32".into(),
    }];
    let (c, source) = load(Some(&f.0), &env, &flags).unwrap();
    assert_eq!(
        source,
        ConfigSource::File {
            path: f.0.clone(),
            drop_ins: Vec::new()
        }
    );
    assert_eq!(c.agent.ring_mib, 32);
    assert_eq!(c.agent.ancestry_depth, 5);
    assert_eq!(c.nats.urls, ["nats://b:2", "tls://c:3"]);
    assert!(c.nats.tls.required);
    let run = c.to_settings().unwrap();
    assert_eq!(run.ring_bytes, 32 << 20);
    assert_eq!(run.read_interval, std::time::Duration::from_millis(8));
    assert_eq!(run.metrics_listen, Some("127.0.0.1:7464".parse().unwrap()));
}

#[test]
fn invalid_override_names_its_variable() {
    let env = HashMap::from([("DEBUGMON_AGENT_RING_MIB".to_owned(), "3".to_owned())]);
    let msg = load_text("", &env).unwrap_err().to_string();
    assert_eq!(
        msg.lines().next().unwrap(),
        "environment variable DEBUGMON_AGENT_RING_MIB: agent.ring_mib: 3 is not a power of two \
         between 1 and 1024 (the kernel requires a power-of-two ring buffer)"
    );
    let env = HashMap::from([("DEBUGMON_SINKS_STDOUT".to_owned(), "maybe".to_owned())]);
    let msg = load_text("", &env).unwrap_err().to_string();
    assert!(
        msg.starts_with("environment variable DEBUGMON_SINKS_STDOUT: sinks.stdout: "),
        "{msg}"
    );
}

#[test]
fn missing_explicit_file_is_an_error() {
    let e = load(
        Some(std::path::Path::new("/nonexistent-debugmon/config.toml")),
        &no_env(),
        &[],
    )
    .unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
    assert!(e.to_string().contains("/nonexistent-debugmon/config.toml"));
}

#[test]
fn secrets_are_masked_in_debug_and_printout() {
    let text = "[nats]\nuser = \"debugmon\"\npassword = \"hunter2-pw\"\n";
    let env = HashMap::from([("DEBUGMON_NATS_TOKEN".to_owned(), String::new())]);
    let c = load_text(text, &env).unwrap();
    assert_eq!(c.nats.password.as_ref().unwrap().expose(), "hunter2-pw");
    let debug = format!("{c:?}");
    let printed = c.to_toml().unwrap();
    for out in [&debug, &printed] {
        assert!(!out.contains("hunter2-pw"), "{out}");
        assert!(out.contains(units::MASK), "{out}");
    }
    let mut c = c;
    c.nats.user = None;
    c.nats.password = None;
    c.nats.token = Some(Secret::new("tok-secret"));
    assert!(!format!("{c:?}").contains("tok-secret"));
    assert!(!c.to_toml().unwrap().contains("tok-secret"));
}

#[test]
fn empty_metrics_listen_disables_the_endpoint() {
    let c = load_text("[metrics]\nlisten = \"\"\n", &no_env()).unwrap();
    assert_eq!(c.to_settings().unwrap().metrics_listen, None);
}

#[test]
fn heartbeat_is_set_by_file_and_environment_and_zero_turns_it_off() {
    let run = Config::default().to_settings().unwrap();
    assert_eq!(run.heartbeat, Some(std::time::Duration::from_secs(5)));
    let c = load_text("[agent]\nheartbeat_secs = 30\n", &no_env()).unwrap();
    assert_eq!(
        c.to_settings().unwrap().heartbeat,
        Some(std::time::Duration::from_secs(30))
    );
    let env = HashMap::from([("DEBUGMON_AGENT_HEARTBEAT_SECS".to_owned(), "0".to_owned())]);
    let c = load_text("[agent]\nheartbeat_secs = 30\n", &env).unwrap();
    assert_eq!(c.to_settings().unwrap().heartbeat, None);
    let env = HashMap::from([(
        "DEBUGMON_AGENT_HEARTBEAT_SECS".to_owned(),
        "7200".to_owned(),
    )]);
    let msg = load_text("", &env).unwrap_err().to_string();
    assert!(
        msg.starts_with(
            "environment variable DEBUGMON_AGENT_HEARTBEAT_SECS: agent.heartbeat_secs: 7200"
        ),
        "{msg}"
    );
}

#[test]
fn inventory_interval_is_set_by_file_and_environment_and_zero_turns_it_off() {
    let secs = std::time::Duration::from_secs;
    let run = Config::default().to_settings().unwrap();
    assert_eq!(run.inventory, Some(secs(3600)));
    let c = load_text("[inventory]\ninterval_secs = 600\n", &no_env()).unwrap();
    assert_eq!(c.to_settings().unwrap().inventory, Some(secs(600)));
    let env = HashMap::from([(
        "DEBUGMON_INVENTORY_INTERVAL_SECS".to_owned(),
        "0".to_owned(),
    )]);
    let c = load_text("[inventory]\ninterval_secs = 600\n", &env).unwrap();
    assert_eq!(c.to_settings().unwrap().inventory, None);
    let env = HashMap::from([(
        "DEBUGMON_INVENTORY_INTERVAL_SECS".to_owned(),
        "604801".to_owned(),
    )]);
    let msg = load_text("", &env).unwrap_err().to_string();
    assert!(
        msg.contains("inventory.interval_secs: 604801 is out of range"),
        "{msg}"
    );
}

#[test]
fn printout_parses_back() {
    let printed = Config::default().to_toml().unwrap();
    let back: Config = toml::from_str(&printed).unwrap();
    assert_eq!(back, Config::default());
}

#[test]
fn approvers_reach_the_settings_and_a_bad_one_is_located() {
    let key = hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&[2; 32])
            .verifying_key()
            .as_bytes(),
    );
    let text = format!("[grants]\napprovers = [\"carol:{key}\"]\ntwo_person = false\n");
    let c = load_text(&text, &no_env()).unwrap();
    let s = c.to_settings().unwrap();
    assert!(!s.approvals.approvers.is_empty());
    assert!(!s.approvals.two_person);
    let bad = "[grants]\napprovers = [\"carol\"]\n";
    let e = load_text(bad, &no_env()).unwrap_err();
    let ConfigError::Invalid(list) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(list[0].key, "grants.approvers", "{e}");
    assert!(list[0].reason.contains("NAME:HEXKEY"), "{e}");
}
