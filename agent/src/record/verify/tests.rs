//! Tests of `verify` on sealed records and tampered copies.

use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use super::*;
use crate::record::seal::Sealer;

pub(super) fn record(kind: &str, host: &str, detail: Value) -> Map<String, Value> {
    match json!({"schema": 1, "kind": kind, "host": {"name": host, "id": format!("id-{host}"), "boot_id": "b"}, "detail": detail})
    {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

/// A chain: a start record with the key, then `n - 1` exec records.
pub(super) fn chain(dir: &std::path::Path, host: &str, n: usize) -> (Vec<Vec<u8>>, String) {
    let mut s = Sealer::open(&dir.join(host), &dir.join(format!("{host}.key"))).unwrap();
    let pk = s.public_key_hex();
    let mut lines = vec![
        s.seal(record(
            "agent",
            host,
            json!({"event": "started", "public_key": pk}),
        ))
        .unwrap()
        .line,
    ];
    for i in 1..n {
        lines.push(s.seal(record("exec", host, json!({"i": i}))).unwrap().line);
    }
    (lines, pk)
}

pub(super) fn verify(lines: &[Vec<u8>], keys: &[String]) -> VerifyReport {
    let mut v = Verifier::new(keys).unwrap();
    for l in lines {
        v.push_line(l);
    }
    v.finish()
}

pub(super) fn problems(r: &VerifyReport) -> Vec<Problem> {
    r.problems().map(|(_, p)| p.clone()).collect()
}

#[test]
fn an_intact_chain_passes_with_and_without_a_pinned_key() {
    let d = tempfile::tempdir().unwrap();
    let (lines, pk) = chain(d.path(), "h", 5);
    let r = verify(&lines, &[]);
    assert!(r.ok(), "{r}");
    let h = &r.hosts["id-h"];
    assert_eq!((h.records, h.first_seq, h.last_seq), (5, Some(1), Some(5)));
    assert_eq!(h.keys, vec![pk.clone()]);
    assert!(verify(&lines, &[pk]).ok());
}

#[test]
fn ecs_documents_are_verified_on_the_record_they_carry() {
    let d = tempfile::tempdir().unwrap();
    let (lines, pk) = chain(d.path(), "h", 4);
    // The shape the sinks' ECS format writes (sink::ecs): mapped fields
    // beside the sealed record under `debugmon`.
    let ecs: Vec<Vec<u8>> = lines
        .iter()
        .map(|l| {
            let rec: Value = serde_json::from_slice(l).unwrap();
            let doc =
                json!({"ecs": {"version": "8.11.0"}, "event": {"kind": "event"}, "debugmon": rec});
            serde_json::to_vec(&doc).unwrap()
        })
        .collect();
    let r = verify(&ecs, std::slice::from_ref(&pk));
    assert!(r.ok(), "{r}");
    assert_eq!(r.hosts["id-h"].records, 4);
    // An edit of the carried record is caught; the ECS view is not evidence.
    let mut doc: Value = serde_json::from_slice(&ecs[2]).unwrap();
    doc["debugmon"]["detail"]["i"] = json!(99);
    let mut forged = ecs.clone();
    forged[2] = serde_json::to_vec(&doc).unwrap();
    assert!(!verify(&forged, &[pk]).ok());
}

#[test]
fn each_kind_of_tampering_is_named_with_its_seq() {
    let d = tempfile::tempdir().unwrap();
    let (lines, _) = chain(d.path(), "h", 6);

    // Edit a field but keep hash and sig.
    let mut edited = lines.clone();
    let text = String::from_utf8(edited[2].clone())
        .unwrap()
        .replace("\"i\":2", "\"i\":9");
    edited[2] = text.into_bytes();
    assert_eq!(
        problems(&verify(&edited, &[])),
        vec![
            Problem::HashMismatch { seq: 3 },
            Problem::BadSignature { seq: 3 }
        ]
    );

    // Delete one.
    let mut deleted = lines.clone();
    deleted.remove(3);
    assert_eq!(
        problems(&verify(&deleted, &[])),
        vec![Problem::Gap { from: 4, to: 4 }]
    );

    // Swap two.
    let mut swapped = lines.clone();
    swapped.swap(1, 2);
    assert_eq!(
        problems(&verify(&swapped, &[])),
        vec![Problem::Reordered { seq: 2, after: 3 }]
    );

    // Duplicate one.
    let mut dup = lines.clone();
    dup.push(lines[4].clone());
    assert_eq!(
        problems(&verify(&dup, &[])),
        vec![Problem::Duplicate { seq: 5 }]
    );
}

#[test]
fn a_record_re_sealed_with_another_key_is_caught() {
    let d = tempfile::tempdir().unwrap();
    let (lines, pk) = chain(d.path(), "h", 3);
    // A forger with their own key rewrites record 2 consistently.
    let (forged, _) = chain(d.path(), "h-forger", 3);
    let mut m: Map<String, Value> = serde_json::from_slice(&forged[1]).unwrap();
    m.insert(
        "host".into(),
        json!({"name": "h", "id": "id-h", "boot_id": "b"}),
    );
    let mut mixed = lines.clone();
    mixed[1] = serde_json::to_vec(&m).unwrap();
    let p = problems(&verify(&mixed, &[pk]));
    assert!(p.contains(&Problem::HashMismatch { seq: 2 }), "{p:?}");
    assert!(p.contains(&Problem::BadSignature { seq: 2 }), "{p:?}");
    assert!(
        p.contains(&Problem::BrokenLink {
            seq: 2,
            prev_seq: 1
        }),
        "{p:?}"
    );
}

#[test]
fn hosts_are_checked_separately() {
    let d = tempfile::tempdir().unwrap();
    let (mut a, _) = chain(d.path(), "a", 3);
    let (b, _) = chain(d.path(), "b", 3);
    a.remove(1);
    let interleaved: Vec<Vec<u8>> = a.into_iter().chain(b).collect();
    let r = verify(&interleaved, &[]);
    assert!(!r.ok());
    assert_eq!(
        r.hosts["id-a"].problems,
        vec![Problem::Gap { from: 2, to: 2 }]
    );
    assert!(r.hosts["id-b"].problems.is_empty());
    assert!(r.to_string().contains("gap: seq 2 is missing"), "{r}");
}

#[test]
fn a_declared_skip_is_a_note_not_a_problem() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("s");
    let key = d.path().join("k");
    let mut s = Sealer::open(&state, &key).unwrap();
    let pk = s.public_key_hex();
    let mut lines = vec![
        s.seal(record(
            "agent",
            "h",
            json!({"event": "started", "public_key": pk}),
        ))
        .unwrap()
        .line,
    ];
    lines.push(s.seal(record("exec", "h", json!({}))).unwrap().line);
    drop(s);
    std::fs::remove_file(state.join("seal.tip")).unwrap();
    let mut s = Sealer::open(&state, &key).unwrap();
    lines.push(
        s.seal(record(
            "agent",
            "h",
            json!({"event": "started", "public_key": pk}),
        ))
        .unwrap()
        .line,
    );
    // The state said "tip 0" at open, so the first record is re-linked to
    // genesis and seq 1..=RESERVE_BLOCK is declared skipped: records 1 and
    // 2 were released before the tip was lost. They verify, and so does
    // the link back to genesis.
    let r = verify(&lines, &[]);
    assert!(r.ok(), "{r}");
    assert!(
        r.hosts["id-h"]
            .notes
            .iter()
            .any(|n| n.contains("seqs 1..=2 were released before an unclean restart")),
        "{r}"
    );
    // Without the overlapping records, the skip is only a note.
    let r = verify(&lines[2..], &[]);
    assert!(r.ok(), "{r}");
    assert!(
        r.hosts["id-h"]
            .notes
            .iter()
            .any(|n| n.contains("starts at seq")),
        "{r}"
    );
}

#[test]
fn a_power_loss_restart_links_back_and_tampering_around_it_shows() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("s");
    let key = d.path().join("k");
    let mut s = Sealer::open_in_boot(&state, &key, None, "boot-1".into()).unwrap();
    let pk = s.public_key_hex();
    let start = json!({"event": "started", "public_key": pk});
    let exec = |i: i32| crate::record::seal::Unsealed::Map(record("exec", "h", json!({"i": i})));
    // Two delivered groups: seqs 1..=3 (3 signed) and 4..=6 (only 6 signed).
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for group in [
        vec![
            crate::record::seal::Unsealed::Map(record("agent", "h", start.clone())),
            exec(1),
            exec(2),
        ],
        vec![exec(3), exec(4), exec(5)],
    ] {
        lines.extend(
            s.seal_group(group, true)
                .unwrap()
                .into_iter()
                .map(|r| r.line),
        );
    }
    drop(s);
    // Killed, then a power loss: only seqs 1..=3 survived in the spool,
    // while 4..=6 had reached NATS.
    let survived = crate::record::seal::ChainTip {
        seq: 3,
        hash: serde_json::from_slice::<Value>(&lines[2]).unwrap()["hash"]
            .as_str()
            .unwrap()
            .to_owned(),
    };
    let _ = std::fs::remove_file(state.join("seal.tip"));
    let mut s = Sealer::open_in_boot(&state, &key, Some(survived), "boot-2".into()).unwrap();
    lines.push(s.seal(record("agent", "h", start)).unwrap().line);
    let r = verify(&lines, &[]);
    assert!(r.ok(), "{r}");
    assert!(
        r.hosts["id-h"].notes.iter().any(|n| n.contains(
            "seqs 1..=6 were released before an unclean restart that lost the agent's tip"
        ) && n.contains("links back to seq 0")),
        "{r}"
    );
    // The restart's signature vouches only for what it links back to:
    // without the signed seq 6, nothing vouches for 4..=5 (they could be
    // forged, hashes and links recomputed).
    let mut cut = lines.clone();
    cut.remove(5);
    let r = verify(&cut, &[]);
    assert!(!r.ok(), "{r}");
    assert!(r.to_string().contains("unsigned: seqs 4..=5"), "{r}");
    // Deleting a record of the released range is a gap.
    let mut cut = lines.clone();
    cut.remove(2);
    let r = verify(&cut, &[]);
    assert!(r.to_string().contains("gap: seq 3 is missing"), "{r}");
}

#[test]
fn malformed_lines_and_empty_input_fail() {
    let d = tempfile::tempdir().unwrap();
    let (mut lines, _) = chain(d.path(), "h", 2);
    lines.push(b"not json\n".to_vec());
    lines.push(b"{\"host\":{\"name\":\"h\"}}\n".to_vec());
    lines.push(b"\n".to_vec());
    let r = verify(&lines, &[]);
    assert!(!r.ok());
    assert_eq!(
        r.malformed.iter().map(|m| m.line).collect::<Vec<_>>(),
        vec![3, 4]
    );
    assert!(!verify(&[], &[]).ok(), "nothing verified is not a pass");
    assert!(Verifier::new(&["zz".to_owned()]).is_err());
    // Records without a start record and without --key cannot be trusted.
    let (lines, _) = chain(d.path(), "k", 3);
    assert_eq!(problems(&verify(&lines[1..], &[])), vec![Problem::NoKey]);
}

#[test]
fn a_group_signature_vouches_for_the_unsigned_records_before_it() {
    let d = tempfile::tempdir().unwrap();
    let mut s = Sealer::open(&d.path().join("s"), &d.path().join("k")).unwrap();
    let pk = s.public_key_hex();
    let start = record("agent", "h", json!({"event": "started", "public_key": pk}));
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for g in 0..3 {
        let group = (0..4).map(|i| record("exec", "h", json!({"g": g, "i": i})));
        let group: Vec<_> = if g == 0 {
            std::iter::once(start.clone()).chain(group).collect()
        } else {
            group.collect()
        };
        lines.extend(
            s.seal_group(
                group
                    .into_iter()
                    .map(crate::record::seal::Unsealed::Map)
                    .collect(),
                true,
            )
            .unwrap()
            .into_iter()
            .map(|r| r.line),
        );
    }
    let has_sig = |l: &Vec<u8>| {
        serde_json::from_slice::<Value>(l)
            .unwrap()
            .get("sig")
            .is_some()
    };
    // Signed: the start record and the last of each group, nothing else.
    let signed: Vec<usize> = (0..lines.len()).filter(|&i| has_sig(&lines[i])).collect();
    assert_eq!(signed, [0, 4, 8, 12]);
    let r = verify(&lines, &[]);
    assert!(r.ok(), "{r}");

    // Cut after an unsigned record: nothing vouches for the tail.
    let r = verify(&lines[..11], &[]);
    assert!(!r.ok());
    assert!(r.to_string().contains("unsigned: seqs 10..=11"), "{r}");

    // An unsigned record edited: its hash no longer matches.
    let mut edited = lines.clone();
    edited[6] = String::from_utf8(edited[6].clone())
        .unwrap()
        .replace("\"i\":1", "\"i\":9")
        .into_bytes();
    let r = verify(&edited, &[]);
    assert!(r.to_string().contains("edited: seq 7"), "{r}");

    // An unsigned record forged whole (hash recomputed): the next link breaks,
    // and the records before the break have no signature left to vouch for them.
    let mut forged: Map<String, Value> = serde_json::from_slice(&lines[6]).unwrap();
    forged.insert("detail".into(), json!({"g": 1, "i": 9}));
    forged.remove("hash");
    let digest = Sha256::digest(canonical::to_vec(&Value::Object(forged.clone())));
    forged.insert("hash".into(), Value::from(hex::encode(digest)));
    let mut lines2 = lines.clone();
    lines2[6] = canonical::to_vec(&Value::Object(forged));
    let r = verify(&lines2, &[]);
    assert!(!r.ok());
    let text = r.to_string();
    assert!(text.contains("broken chain: prev_hash of seq 8"), "{r}");
    assert!(text.contains("unsigned: seqs 6..=7"), "{r}");
}

/// Sealed records of one host at times `t` (seconds) on boot `boot`; the
/// first is the start record (with the key and a 5 s heartbeat).
pub(super) fn timeline(
    dir: &std::path::Path,
    host: &str,
    events: &[(&str, Value, u64, &str)],
) -> Vec<Vec<u8>> {
    const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
    let mut s = Sealer::open(&dir.join(host), &dir.join(format!("{host}.key"))).unwrap();
    let pk = s.public_key_hex();
    let mut lines = Vec::new();
    for (i, (kind, detail, t, boot)) in events.iter().enumerate() {
        let mut detail = detail.clone();
        if i == 0 {
            detail["public_key"] = Value::from(pk.clone());
        }
        let mut m = record(kind, host, detail);
        m.insert(
            "time".into(),
            Value::from(silence::rfc3339((T0 + *t as i64) * 1_000_000_000)),
        );
        // Each boot's clock starts at its first record.
        let boot_start = events.iter().find(|e| e.3 == *boot).map_or(0, |e| e.2);
        m.insert(
            "monotonic_ns".into(),
            Value::from((t - boot_start + 1) * 1_000_000_000),
        );
        m.insert(
            "host".into(),
            json!({"name": host, "id": format!("id-{host}"), "boot_id": boot}),
        );
        lines.push(s.seal(m).unwrap().line);
    }
    lines
}

pub(super) fn started(t: u64, boot: &'static str) -> (&'static str, Value, u64, &'static str) {
    (
        "agent",
        json!({"event": "started", "heartbeat_s": 5}),
        t,
        boot,
    )
}

pub(super) fn beat(t: u64, boot: &'static str) -> (&'static str, Value, u64, &'static str) {
    (
        "agent",
        json!({"event": "heartbeat", "interval_s": 5, "uptime_s": t, "events": 0, "records": 1, "lost": 0}),
        t,
        boot,
    )
}

#[test]
fn a_silent_host_fails_and_a_clean_restart_across_a_reboot_does_not() {
    let d = tempfile::tempdir().unwrap();
    let stopped = ("agent", json!({"event": "stopped"}), 70, "b1");
    let events = vec![
        started(0, "b1"),
        beat(5, "b1"),
        beat(10, "b1"),
        beat(15, "b1"),
        // An event record does not cover the gap: a frozen agent's backlog
        // carries the times its events happened.
        ("exec", json!({}), 16, "b1"),
        // Frozen for 48 s between heartbeats.
        beat(63, "b1"),
        beat(68, "b1"),
        stopped.clone(),
        // Rebooted: a new boot's clock, compared on wall time.
        started(400, "b2"),
        beat(405, "b2"),
    ];
    let r = verify(&timeline(d.path(), "h", &events), &[]);
    assert!(!r.ok(), "{r}");
    let h = &r.hosts["id-h"];
    assert_eq!(
        h.problems,
        [Problem::Silent {
            from: 4,
            to: 6,
            seconds: 48,
            interval_s: 5
        }]
    );
    assert_eq!(
        h.last_heartbeat,
        Some(Heartbeat {
            seq: 10,
            time: Some("2026-01-01T00:06:45.000000000Z".into()),
            interval_s: 5
        })
    );
    let text = r.to_string();
    assert!(
        text.contains("host went silent for 48s between seq 4 and seq 6"),
        "{text}"
    );
    assert!(
        text.contains("last heartbeat: seq 10 at 2026-01-01T00:06:45.000000000Z (every 5s)"),
        "{text}"
    );

    // Without the freeze, the clean stop and start explain the reboot.
    let calm = vec![
        started(0, "b1"),
        beat(5, "b1"),
        beat(10, "b1"),
        ("agent", json!({"event": "stopped"}), 12, "b1"),
        started(400, "b2"),
        beat(405, "b2"),
    ];
    let r = verify(&timeline(d.path(), "calm", &calm), &[]);
    assert!(r.ok(), "{r}");

    // Killed instead of stopped: the reboot is silence, the longest one,
    // and the freeze is still named in a note.
    let mut killed = events.clone();
    killed.retain(|e| e.1 != stopped.1);
    let r = verify(&timeline(d.path(), "killed", &killed), &[]);
    let h = &r.hosts["id-killed"];
    assert_eq!(
        h.problems,
        [Problem::Silent {
            from: 7,
            to: 8,
            seconds: 332,
            interval_s: 5
        }]
    );
    assert!(
        h.notes
            .iter()
            .any(|n| n.contains("1 more silences") && n.contains("48s after seq 4")),
        "{r}"
    );
}

#[test]
fn a_host_silent_at_the_end_of_the_input_ends_open() {
    let d = tempfile::tempdir().unwrap();
    let busy: Vec<_> = (0..=20)
        .map(|i| {
            if i == 0 {
                started(0, "b")
            } else {
                beat(i * 5, "b")
            }
        })
        .collect();
    let quiet = vec![started(0, "b"), beat(5, "b"), beat(10, "b")];
    let mut lines = timeline(d.path(), "busy", &busy);
    lines.extend(timeline(d.path(), "quiet", &quiet));
    let r = verify(&lines, &[]);
    assert!(!r.ok(), "{r}");
    assert_eq!(
        r.hosts["id-quiet"].problems,
        vec![Problem::EndsOpen {
            seq: 3,
            time: "2026-01-01T00:00:10.000000000Z".into(),
            seconds: 90,
            interval_s: 5
        }],
        "{r}"
    );
    assert!(r.hosts["id-busy"].problems.is_empty(), "{r}");
    // Hosts without heartbeats are not judged at all.
    let (plain, _) = chain(d.path(), "plain", 3);
    let r = verify(&plain, &[]);
    assert!(r.ok(), "{r}");
    assert_eq!(r.hosts["id-plain"].last_heartbeat, None);
}
