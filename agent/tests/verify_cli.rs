//! `debugmon key` and `debugmon verify` as an investigator runs them: the
//! trusted-keys file made with `key add` / `key trust-self`, a forged
//! stream of the same host signed with another key refused, a key bound
//! to one host refused for another, no file without
//! `--trust-on-first-use` refused, and a chain cut at its tail reported.

use std::{path::Path, process::Command};

use agent::record::seal::Sealer;
use serde_json::{Map, Value, json};

fn debugmon(args: &[&str], env: &[(&str, &Path)]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_debugmon"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn record(kind: &str, t: u64, detail: Value) -> Map<String, Value> {
    match json!({
        "schema": 1,
        "time": format!("2026-01-01T00:{:02}:{:02}.000000000Z", t / 60, t % 60),
        "monotonic_ns": (t + 1) * 1_000_000_000,
        "host": {"name": "db-1", "id": "machine-db-1", "boot_id": "boot-1"},
        "kind": kind,
        "detail": detail,
    }) {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

/// Host db-1's records sealed with the key at `key`: a start record
/// declaring 5 s heartbeats, heartbeats every 5 s up to `beats_upto`, exec
/// records every other second, up to `end` s, and a stop if `stop`.
fn stream(dir: &Path, key: &Path, beats_upto: u64, end: u64, stop: bool) -> (String, String) {
    let stem = key.file_stem().unwrap().to_str().unwrap();
    let mut s = Sealer::open(&dir.join(format!("state-{stem}")), key).unwrap();
    let pk = s.public_key_hex();
    let mut recs = vec![record(
        "agent",
        0,
        json!({"event": "started", "heartbeat_s": 5, "public_key": pk}),
    )];
    for t in 1..=end {
        if t % 5 == 0 && t <= beats_upto {
            recs.push(record(
                "agent",
                t,
                json!({"event": "heartbeat", "interval_s": 5}),
            ));
        } else if t % 2 == 0 {
            recs.push(record("exec", t, json!({"t": t})));
        }
    }
    if stop {
        recs.push(record("agent", end, json!({"event": "stopped"})));
    }
    let mut text = String::new();
    for r in recs {
        text.push_str(std::str::from_utf8(&s.seal(r).unwrap().line).unwrap());
    }
    (text, pk)
}

#[test]
fn verify_trusts_only_the_keys_bound_to_each_host() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    let (real, real_pk) = stream(d.path(), &p("real.key"), 30, 30, true);
    let (forged, _) = stream(&p("forger"), &p("forger/other.key"), 30, 30, true);
    std::fs::write(p("real.jsonl"), &real).unwrap();
    std::fs::write(p("forged.jsonl"), &forged).unwrap();
    let file = p("etc/trusted-keys");
    let file_s = file.to_str().unwrap();
    let verify = |name: &str, extra: &[&str]| {
        let path = p(name);
        let mut args = vec![
            "verify",
            "--file",
            path.to_str().unwrap(),
            "--trusted-keys",
            file_s,
        ];
        args.extend(extra);
        debugmon(&args, &[])
    };

    // No file yet: verify will not guess whom to trust.
    let (code, out) = verify("real.jsonl", &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("no trusted-keys file"), "{out}");
    // Trust on first use, asked for: the forgery passes, which is why it
    // must be asked for.
    assert_eq!(verify("forged.jsonl", &["--trust-on-first-use"]).0, Some(0));

    let (code, out) = debugmon(
        &["key", "add", "db-1", &real_pk, "--trusted-keys", file_s],
        &[],
    );
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = verify("real.jsonl", &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("proven to seq"), "{out}");
    for extra in [&[][..], &["--trust-on-first-use"][..]] {
        let (code, out) = verify("forged.jsonl", extra);
        assert_eq!(code, Some(1), "a forged db-1 passed with {extra:?}: {out}");
        assert!(out.contains("untrusted: seq 1 announces key"), "{out}");
        assert!(out.contains("bad signature"), "{out}");
    }
    // The key is db-1's: it cannot be trusted for another host.
    let (code, out) = debugmon(
        &["key", "add", "web-2", &real_pk, "--trusted-keys", file_s],
        &[],
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("already trusted for host \"db-1\""), "{out}");

    // `key trust-self` binds this host's key (from host.key_path) to its name.
    let own = p("own/host.key");
    let env = [("DEBUGMON_HOST_KEY_PATH", own.as_path())];
    let (code, shown) = debugmon(&["key", "show"], &env);
    assert_eq!(code, Some(0), "{shown}");
    let (code, out) = debugmon(&["key", "trust-self", "--trusted-keys", file_s], &env);
    assert_eq!(code, Some(0), "{out}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(shown.trim()), "{shown} not in:\n{text}");
}

#[test]
fn verify_reports_a_chain_cut_at_its_tail() {
    let d = tempfile::tempdir().unwrap();
    let (full, pk) = stream(d.path(), &d.path().join("h.key"), 60, 60, true);
    let lines: Vec<&str> = full.lines().collect();
    let file = d.path().join("full.jsonl");
    std::fs::write(&file, &full).unwrap();
    let run = |path: &Path, extra: &[&str]| {
        let mut args = vec!["verify", "--file", path.to_str().unwrap(), "--key", &pk];
        args.extend(extra);
        debugmon(&args, &[])
    };
    let (code, out) = run(&file, &["--now", "2026-01-01T01:00:00Z"]);
    assert_eq!(code, Some(0), "a clean stop is never open: {out}");
    // Cut after the record at 40 s: the heartbeats stop at 40 s, with
    // nothing to say the agent stopped.
    let at_40 = lines
        .iter()
        .position(|l| l.contains("\"time\":\"2026-01-01T00:00:40"))
        .unwrap();
    let cut = &lines[..=at_40];
    let cut_file = d.path().join("cut.jsonl");
    std::fs::write(&cut_file, cut.join("\n") + "\n").unwrap();
    let (code, out) = run(&cut_file, &[]);
    assert_eq!(code, Some(0), "the input itself ends at a heartbeat: {out}");
    let (code, out) = run(&cut_file, &["--now", "2026-01-01T00:02:00Z"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("ends open"), "{out}");
    assert!(
        out.contains("2026-01-01T00:00:40"),
        "names the last heartbeat: {out}"
    );
    assert!(out.contains("proven to seq"), "{out}");
}
