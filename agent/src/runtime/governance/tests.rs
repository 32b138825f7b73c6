//! Governance against a real grants store, control socket and user
//! database in a temporary directory: what it asks of the pipeline when
//! the user database changes under an installed policy.

use std::{path::Path, sync::Arc, time::Duration};

use super::*;

const POLICY: &str = r#"
roles: { oncall: { groups: [sre] } }
rules:
  - name: protect
    on: [ptrace_attach]
    target: { comm: [sleep] }
    unless: { role: [oncall] }
    action: deny
"#;

fn write_users(etc: &Path, sre: &str) {
    std::fs::write(
        etc.join("passwd"),
        "alice:x:1000:1000::/home/alice:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(etc.join("group"), format!("sre:x:2000:{sre}\n")).unwrap();
}

fn exempt(effects: &[Effect]) -> Option<Vec<u32>> {
    effects.iter().find_map(|e| match e {
        Effect::Install { kernel, .. } => {
            Some(kernel.rules[0].exempt.iter().map(|e| e.0).collect())
        }
        _ => None,
    })
}

#[tokio::test]
async fn a_user_joining_an_exempt_role_reaches_the_kernel_rules() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    write_users(&etc, "alice");
    let set = Arc::new(PolicySet::from_texts(&[("t.yaml", POLICY)]).expect("valid"));
    let (mut gov, _) = Governance::start(
        &GovernanceConfig {
            policy_dirs: Vec::new(),
            grants_path: dir.path().join("grants.json"),
            grants_max: Duration::from_secs(3600),
            control_socket: dir.path().join("control.sock"),
            etc: etc.clone(),
        },
        &set,
        Arc::new(ed25519_dalek::SigningKey::from_bytes(&[7; 32])),
        Arc::new(crate::grants::control::Approvals::Off("off".to_owned())),
        std::future::pending(),
    )
    .expect("governance starts");
    gov.users.check_always();
    assert_eq!(exempt(&gov.install(Arc::clone(&set))), Some(vec![1000]));
    assert!(gov.poll_users().is_empty(), "nothing changed");
    // The same names written again: re-read, same uids, nothing to do.
    write_users(&etc, "alice");
    assert!(gov.poll_users().is_empty());
    write_users(&etc, "alice,bob");
    let effects = gov.poll_users();
    assert_eq!(exempt(&effects), Some(vec![1000, 1001]));
    let record = effects.iter().find_map(|e| match e {
        Effect::Record {
            kind: Kind::Policy,
            detail,
        } => Some(detail.clone()),
        _ => None,
    });
    let record = record.expect("a policy record says why the rules changed");
    assert_eq!(record["event"], "reinstalled", "{record}");
    assert_eq!(record["reason"], "users or groups changed", "{record}");
    assert!(
        effects.iter().any(|e| matches!(e, Effect::Grants(_))),
        "grants are reinstalled with the rules"
    );
}

#[tokio::test]
async fn a_replaced_program_is_looked_up_again() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    write_users(&etc, "alice");
    let prog = dir.path().join("db-server");
    std::fs::write(&prog, "v1").unwrap();
    let policy = format!(
        "rules:\n  - name: protect\n    on: [ptrace_attach]\n    target: {{ exe: [{}] }}\n    action: deny\n",
        prog.display()
    );
    let set = Arc::new(PolicySet::from_texts(&[("t.yaml", &policy)]).expect("valid"));
    let (mut gov, _) = Governance::start(
        &GovernanceConfig {
            policy_dirs: Vec::new(),
            grants_path: dir.path().join("grants.json"),
            grants_max: Duration::from_secs(3600),
            control_socket: dir.path().join("control.sock"),
            etc,
        },
        &set,
        Arc::new(ed25519_dalek::SigningKey::from_bytes(&[7; 32])),
        Arc::new(crate::grants::control::Approvals::Off("off".to_owned())),
        std::future::pending(),
    )
    .expect("governance starts");
    gov.install(Arc::clone(&set));
    assert!(gov.poll_programs().is_empty(), "nothing changed");
    // Written in place: the same inode, which the kernel still knows.
    std::fs::write(&prog, "v1 patched").unwrap();
    assert!(gov.poll_programs().is_empty());
    // An upgrade: a new file renamed over the old one.
    let new = dir.path().join("db-server.new");
    std::fs::write(&new, "v2").unwrap();
    std::fs::rename(&new, &prog).unwrap();
    let effects = gov.poll_programs();
    assert!(effects.iter().any(|e| matches!(e, Effect::Install { .. })));
    let record = effects
        .iter()
        .find_map(|e| match e {
            Effect::Record {
                kind: Kind::Policy,
                detail,
            } => Some(detail.clone()),
            _ => None,
        })
        .expect("a policy record");
    assert_eq!(record["event"], "reinstalled", "{record}");
    let reason = record["reason"].as_str().unwrap();
    assert!(reason.contains("db-server"), "{reason}");
    assert!(gov.poll_programs().is_empty(), "once per change");
}

#[tokio::test]
async fn a_grants_file_that_does_not_verify_is_an_alert_and_grants_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let grants = dir.path().join("grants.json");
    // An unsigned grant for mallory, as an intruder would write it.
    std::fs::write(
        &grants,
        r#"{"version":1,"grants":[{"id":"g-20240301-00000001","user":"mallory","target":"any","mode":"full","reason":"x","created":"2099-01-01T00:00:00Z","expires":"2099-01-01T01:00:00Z"}]}"#,
    )
    .unwrap();
    let set = Arc::new(PolicySet::from_texts(&[("t.yaml", POLICY)]).expect("valid"));
    let (gov, effects) = Governance::start(
        &GovernanceConfig {
            policy_dirs: Vec::new(),
            grants_path: grants.clone(),
            grants_max: Duration::from_secs(3600),
            control_socket: dir.path().join("control.sock"),
            etc: dir.path().to_owned(),
        },
        &set,
        Arc::new(ed25519_dalek::SigningKey::from_bytes(&[7; 32])),
        Arc::new(crate::grants::control::Approvals::Off("off".to_owned())),
        std::future::pending(),
    )
    .expect("governance starts without the refused grants");
    assert!(gov.store().lock().unwrap().list().is_empty());
    let [
        Effect::Alert {
            kind,
            detail,
            verdict,
        },
    ] = effects.as_slice()
    else {
        panic!("one alert expected");
    };
    assert_eq!(*kind, Kind::Grant);
    assert_eq!(detail["event"], "file_rejected");
    assert!(
        detail["reason"].as_str().unwrap().contains("unsigned"),
        "{detail}"
    );
    let moved = detail["moved_to"].as_str().unwrap();
    assert!(std::path::Path::new(moved).exists(), "{moved}");
    assert!(!grants.exists());
    assert_eq!(verdict.action, "alert");
    assert_eq!(verdict.severity.as_deref(), Some("high"));
}
