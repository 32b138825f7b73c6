//! Drop-ins: `config.d/*.toml` beside the config file merge over it in
//! file-name order, table by table; environment variables and flags still
//! win over them; a bad drop-in is reported at its own line.

use std::{collections::HashMap, fs, path::Path};

use super::*;

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

#[test]
fn drop_ins_merge_over_the_file_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("config.toml");
    write(
        &base,
        "[agent]\nring_mib = 8\nancestry_depth = 4\n[nats]\nurls = [\"nats://a:1\"]\n",
    );
    let d = dir.path().join(DROP_IN_DIR);
    // Sorted: 10 before 20; `20` wins where both set a key.
    write(&d.join("20-late.toml"), "[agent]\nring_mib = 32\n");
    write(
        &d.join("10-early.toml"),
        "[agent]\nring_mib = 16\n[nats]\nurls = [\"nats://b:2\", \"nats://c:3\"]\n",
    );
    // Not drop-ins: another extension, an editor's backup.
    write(&d.join("30-off.toml.disabled"), "[agent]\nring_mib = 64\n");
    write(&d.join("30-off.toml~"), "[agent]\nring_mib = 64\n");

    let (c, source) = load(Some(&base), &HashMap::<String, String>::new(), &[]).unwrap();
    assert_eq!(c.agent.ring_mib, 32);
    // A table merges key by key: the file's other [agent] key stays.
    assert_eq!(c.agent.ancestry_depth, 4);
    // An array is replaced whole, not appended to.
    assert_eq!(c.nats.urls, ["nats://b:2", "nats://c:3"]);
    assert_eq!(
        source,
        ConfigSource::File {
            path: base.clone(),
            drop_ins: vec![d.join("10-early.toml"), d.join("20-late.toml")],
        }
    );
    assert!(source.to_string().ends_with("20-late.toml"), "{source}");

    // Environment variables, then flags, override the drop-ins.
    let env = HashMap::from([("DEBUGMON_AGENT_RING_MIB".to_owned(), "2".to_owned())]);
    let (c, _) = load(Some(&base), &env, &[]).unwrap();
    assert_eq!(c.agent.ring_mib, 2);
    let flags = [Flag {
        key: "agent.ring_mib",
        flag: "--ring-mib",
        value: "1".into(),
    }];
    let (c, _) = load(Some(&base), &env, &flags).unwrap();
    assert_eq!(c.agent.ring_mib, 1);
}

#[test]
fn a_bad_drop_in_is_located_in_itself() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("config.toml");
    write(&base, "[agent]\nring_mib = 8\n");
    let bad = dir.path().join(DROP_IN_DIR).join("50-bad.toml");
    write(&bad, "# site\n[agent]\nring_mbi = 8\n");
    let e = load(Some(&base), &HashMap::<String, String>::new(), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("{}:3:1: agent.ring_mbi: ", bad.display())),
        "{e}"
    );

    // A value that parses but is invalid is located in the drop-in that
    // set it last, not in the file it overrode.
    write(&bad, "[agent]\n\nring_mib = 3\n");
    let e = load(Some(&base), &HashMap::<String, String>::new(), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("{}:3:12: agent.ring_mib: ", bad.display())),
        "{e}"
    );
}

#[test]
fn drop_in_files_lists_the_toml_files_of_config_d() {
    let dir = tempfile::tempdir().unwrap();
    // An explicit path must exist; the drop-ins of a missing *default*
    // path still apply (checked through drop_in_files, which load uses).
    let base = dir.path().join("config.toml");
    assert!(load::drop_in_files(&base).unwrap().is_empty());
    write(
        &dir.path().join(DROP_IN_DIR).join("a.toml"),
        "[agent]\nring_mib = 16\n",
    );
    assert_eq!(
        load::drop_in_files(&base).unwrap(),
        [dir.path().join(DROP_IN_DIR).join("a.toml")]
    );
}
