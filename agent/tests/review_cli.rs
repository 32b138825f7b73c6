//! `debugmon review` as an auditor runs it, the real binary on a records
//! file sealed by the agent's own sealer, its host key added with
//! `debugmon key add`: filters, the three output forms, a summary, and a
//! copy with one edited record, which is shown marked and makes the exit
//! status 1.

use std::{path::Path, process::Command};

use agent::record::seal::Sealer;
use serde_json::{Map, Value, json};

fn debugmon(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_debugmon"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn record(t: u64, kind: &str, body: Value) -> Map<String, Value> {
    let mut m = json!({
        "schema": 1,
        "time": format!("2026-01-01T00:00:{t:02}.000000000Z"),
        "monotonic_ns": (t + 1) * 1_000_000_000,
        "host": {"name": "db-1", "id": "machine-db-1", "boot_id": "boot-1"},
        "kind": kind,
    });
    for (k, v) in body.as_object().unwrap() {
        m[k] = v.clone();
    }
    match m {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

/// db-1's records: start, alice's denied attach, her grant, her attach
/// under it, a heartbeat.
fn records(dir: &Path) -> (String, String) {
    let mut s = Sealer::open(&dir.join("state"), &dir.join("host.key")).unwrap();
    let pk = s.public_key_hex();
    let actor = json!({"pid": 42, "uid": 1000, "user": "alice", "login_user": "alice",
        "session_id": 3, "ssh": {"src_ip": "10.0.0.5", "src_port": 5000}, "comm": "gdb",
        "argv": ["gdb", "-p", "7"]});
    let target = json!({"pid": 7, "comm": "postgres", "unit": "postgresql.service"});
    let grant = json!({"id": "g-9", "user": "alice", "target": "unit:postgresql.service",
        "reason": "INC-7", "requested_by": {"uid": 0, "login_user": "alice"}});
    let recs = vec![
        record(
            0,
            "agent",
            json!({"detail": {"event": "started", "heartbeat_s": 5, "public_key": pk}}),
        ),
        record(
            2,
            "ptrace",
            json!({"actor": actor, "target": target, "detail": {"ptrace_request": "ATTACH"},
            "decision": {"action": "deny", "rule": "attach-db", "severity": "critical",
                "enforced": "lsm", "tags": ["attack.t1055.008"]}}),
        ),
        record(
            3,
            "grant",
            json!({"detail": {"event": "created", "grant": grant}}),
        ),
        record(
            4,
            "ptrace",
            json!({"actor": actor, "target": target, "detail": {"ptrace_request": "ATTACH"},
            "decision": {"action": "allow", "rule": "attach-db", "grant_id": "g-9"}}),
        ),
        record(
            5,
            "agent",
            json!({"detail": {"event": "heartbeat", "interval_s": 5}}),
        ),
    ];
    let mut text = String::new();
    for r in recs {
        text.push_str(std::str::from_utf8(&s.seal(r).unwrap().line).unwrap());
    }
    (text, pk)
}

#[test]
fn review_filters_summarises_and_marks_a_tampered_record() {
    let d = tempfile::tempdir().unwrap();
    let (text, pk) = records(d.path());
    let file = d.path().join("records.jsonl");
    std::fs::write(&file, &text).unwrap();
    let keys = d.path().join("trusted-keys");
    let (f, k) = (file.to_str().unwrap(), keys.to_str().unwrap());
    let (code, _, err) = debugmon(&["key", "add", "db-1", &pk, "--trusted-keys", k]);
    assert_eq!(code, Some(0), "{err}");
    let review = |extra: &[&str]| {
        let mut args = vec!["review", "--file", f, "--trusted-keys", k];
        args.extend(extra);
        debugmon(&args)
    };

    let (code, out, err) = review(&[]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("TIME "), "{out}");
    assert_eq!(lines.len(), 6, "{out}");
    assert!(lines[1..].iter().all(|l| l.contains(" ok")), "{out}");

    let (code, out, err) = review(&["--user", "alice", "--decision", "deny", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let rows: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0]["verified"], "ok");
    assert_eq!(rows[0]["record"]["seq"], 2);

    let (code, out, err) = review(&["--summary", "grants", "--csv"]);
    assert_eq!(code, Some(0), "{err}");
    let csv: Vec<&str> = out.split("\r\n").collect();
    assert!(
        csv[0].starts_with("host,grant,user,target,reason,requested_by"),
        "{out}"
    );
    assert!(
        csv[1].starts_with("db-1,g-9,alice,unit:postgresql.service,INC-7,alice,"),
        "{out}"
    );
    assert!(csv[1].ends_with(",1,ptrace,4,ok"), "{out}");

    let (code, _, err) = review(&["--since", "yesterday"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--since \"yesterday\""), "{err}");

    // The denial rewritten as an allow: still shown, marked, exit 1.
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[1] = lines[1].replace("\"deny\"", "\"allow\"");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let (code, out, err) = review(&["--decision", "allow"]);
    assert_eq!(code, Some(1), "{out}{err}");
    let edited = out.lines().find(|l| l.contains("  2  ")).expect(&out);
    assert!(edited.contains("FAILED: edited: seq 2"), "{out}");
    assert!(err.contains("1 of 5 input lines did not verify"), "{err}");
    let (_, out, _) = review(&["--failed", "--json"]);
    assert_eq!(out.lines().count(), 1, "{out}");
}
