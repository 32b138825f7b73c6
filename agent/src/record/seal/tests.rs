//! Tests of the sealer: chain links, signatures, restarts, key handling.

use std::os::unix::fs::PermissionsExt as _;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde_json::json;

use super::*;

fn rec(kind: &str) -> Map<String, Value> {
    match json!({"schema": 1, "kind": kind, "host": {"name": "h", "id": "m", "boot_id": "b"}}) {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fn parse(s: &Sealed) -> Map<String, Value> {
    serde_json::from_slice(&s.line).unwrap()
}

/// Recomputes hash and signature the way a verifier does.
fn check(s: &Sealed, public_hex: &str) {
    let mut m = parse(s);
    let hash = m.remove("hash").unwrap();
    let sig = m.remove("sig").unwrap();
    let digest: [u8; 32] = Sha256::digest(canonical::to_vec(&Value::Object(m))).into();
    assert_eq!(hash, hex::encode(digest));
    let key_bytes: [u8; 32] = hex::decode(public_hex).unwrap().try_into().unwrap();
    let key = VerifyingKey::from_bytes(&key_bytes).unwrap();
    let sig_bytes = base64::engine::general_purpose::STANDARD
        .decode(sig.as_str().unwrap())
        .unwrap();
    let sig = Signature::from_slice(&sig_bytes).unwrap();
    key.verify(&digest, &sig).unwrap();
}

fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let key = d.path().join("keys/host.key");
    (d, state, key)
}

#[test]
fn records_are_numbered_linked_hashed_and_signed() {
    let (_d, state, key) = dirs();
    let mut s = Sealer::open(&state, &key).unwrap();
    let a = s.seal(rec("agent")).unwrap();
    let b = s.seal(rec("exec")).unwrap();
    assert_eq!((a.seq, b.seq), (1, 2));
    let (ma, mb) = (parse(&a), parse(&b));
    assert_eq!(ma["prev_hash"], GENESIS_HASH);
    assert_eq!(ma["chain"]["start"], "genesis");
    assert_eq!(mb["prev_hash"], a.hash.as_str());
    assert!(
        mb.get("chain").is_none(),
        "only the first record after open"
    );
    assert_eq!(a.line.last(), Some(&b'\n'));
    // The line itself is canonical.
    let line = &a.line[..a.line.len() - 1];
    assert_eq!(canonical::to_vec(&Value::Object(ma)), line);
    check(&a, &s.public_key_hex());
    check(&b, &s.public_key_hex());
    assert_eq!(b.kind, "exec");
}

#[test]
fn a_clean_restart_continues_the_chain() {
    let (_d, state, key) = dirs();
    let mut s = Sealer::open(&state, &key).unwrap();
    let pk = s.public_key_hex();
    let last = (0..3).map(|_| s.seal(rec("exec")).unwrap()).last().unwrap();
    s.close().unwrap();
    let mut s = Sealer::open(&state, &key).unwrap();
    assert_eq!(s.public_key_hex(), pk, "same key file, same key");
    let next = s.seal(rec("agent")).unwrap();
    let m = parse(&next);
    assert_eq!(next.seq, 4);
    assert_eq!(m["prev_hash"], last.hash.as_str());
    assert_eq!(m["chain"]["start"], "clean");
}

#[test]
fn a_killed_sealer_recovers_its_exact_tip() {
    let (_d, state, key) = dirs();
    let mut s = Sealer::open(&state, &key).unwrap();
    let last = (0..10)
        .map(|_| s.seal(rec("exec")).unwrap())
        .last()
        .unwrap();
    s.persist_tip().unwrap();
    // Sealed after the last persist: never released, so its seq is free.
    s.seal(rec("exec")).unwrap();
    drop(s); // no close(): as after kill -9
    let mut s = Sealer::open(&state, &key).unwrap();
    let next = s.seal(rec("agent")).unwrap();
    let m = parse(&next);
    assert_eq!(next.seq, 11);
    assert_eq!(m["prev_hash"], last.hash.as_str());
    assert_eq!(m["chain"]["start"], "recovered");
}

#[test]
fn a_kill_then_a_reboot_never_reuses_a_seq() {
    let (_d, state, key) = dirs();
    let mut s = Sealer::open_in_boot(&state, &key, None, "boot-1".into()).unwrap();
    let sealed: Vec<Sealed> = (0..10).map(|_| s.seal(rec("exec")).unwrap()).collect();
    s.persist_tip().unwrap();
    drop(s); // killed; then the machine lost power
    // The spool that survived ends at seq 6: 7..=10 may have been released.
    let survived = ChainTip {
        seq: sealed[5].seq,
        hash: sealed[5].hash.clone(),
    };
    let s = Sealer::open_in_boot(&state, &key, Some(survived.clone()), "boot-2".into()).unwrap();
    // Killed again before its first record: the next start must still
    // declare the record it really links to, not the skipped bound.
    drop(s);
    let mut s =
        Sealer::open_in_boot(&state, &key, Some(survived.clone()), "boot-2".into()).unwrap();
    let next = s.seal(rec("agent")).unwrap();
    let m = parse(&next);
    assert_eq!(next.seq, 2 * RESERVE_BLOCK + 1);
    assert_eq!(m["chain"]["start"], "skipped");
    // It links back to the oldest surviving tip, which every copy holds:
    // seal.state's (written at the first open: seq 0), not the spool's (6)
    // or seal.tip's (10).
    assert_eq!(m["chain"]["prev_seq"], 0);
    assert_eq!(m["chain"]["skipped"], json!([1, 2 * RESERVE_BLOCK]));
    assert_eq!(m["prev_hash"], GENESIS_HASH);

    // A clean stop, then a reboot: nothing was lost, the chain continues.
    let last = s.tip();
    s.close().unwrap();
    let mut s = Sealer::open_in_boot(&state, &key, None, "boot-3".into()).unwrap();
    let next = s.seal(rec("agent")).unwrap();
    assert_eq!(next.seq, last.seq + 1);
    assert_eq!(parse(&next)["chain"]["start"], "clean");

    // Same boot (a kill, no reboot): the released tip is exact and wins.
    s.persist_tip().unwrap();
    drop(s);
    let mut s = Sealer::open_in_boot(&state, &key, None, "boot-3".into()).unwrap();
    assert_eq!(s.seal(rec("exec")).unwrap().seq, last.seq + 2);
}

#[test]
fn a_lost_tip_skips_the_reserved_block_and_says_so() {
    let (_d, state, key) = dirs();
    let mut s = Sealer::open(&state, &key).unwrap();
    for _ in 0..5 {
        s.seal(rec("exec")).unwrap();
    }
    s.persist_tip().unwrap();
    drop(s);
    fs::remove_file(state.join(TIP_FILE)).unwrap();
    let mut s = Sealer::open(&state, &key).unwrap();
    let next = s.seal(rec("agent")).unwrap();
    let m = parse(&next);
    // The state written at open said "tip 0, reserved up to RESERVE_BLOCK".
    assert_eq!(next.seq, RESERVE_BLOCK + 1);
    assert_eq!(m["chain"]["start"], "skipped");
    assert_eq!(m["chain"]["prev_seq"], 0);
    assert_eq!(m["chain"]["skipped"], json!([1, RESERVE_BLOCK]));
    assert_eq!(m["prev_hash"], GENESIS_HASH);
}

#[test]
fn the_released_tip_wins_over_sealed_but_unreleased_records() {
    let (_d, state, key) = dirs();
    let mut s = Sealer::open(&state, &key).unwrap();
    let sealed: Vec<Sealed> = (0..6).map(|_| s.seal(rec("exec")).unwrap()).collect();
    drop(s);
    let released = ChainTip {
        seq: sealed[3].seq,
        hash: sealed[3].hash.clone(),
    };
    let mut s = Sealer::open_with_tip(&state, &key, Some(released)).unwrap();
    let next = s.seal(rec("exec")).unwrap();
    assert_eq!(next.seq, 5);
    assert_eq!(parse(&next)["prev_hash"], sealed[3].hash.as_str());
}

#[test]
fn seqs_cross_reservation_blocks() {
    let (_d, state, key) = dirs();
    let mut s = Sealer::open(&state, &key).unwrap();
    for _ in 0..RESERVE_BLOCK + 2 {
        s.seal(rec("exec")).unwrap();
    }
    assert_eq!(s.next_seq(), RESERVE_BLOCK + 3);
    let st: State = serde_json::from_slice(&fs::read(state.join(STATE_FILE)).unwrap()).unwrap();
    assert!(st.reserved >= RESERVE_BLOCK + 2 && !st.clean);
}

#[test]
fn the_key_is_created_private_and_a_readable_key_is_refused() {
    let (_d, state, key) = dirs();
    drop(Sealer::open(&state, &key).unwrap());
    let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(fs::read(&key).unwrap().len(), 32);
    fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
    let err = Sealer::open(&state, &key).unwrap_err();
    assert!(
        matches!(err, SealError::KeyPermissions { mode: 0o640, .. }),
        "{err}"
    );
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&key, b"short").unwrap();
    let err = Sealer::open(&state, &key).unwrap_err();
    assert!(matches!(err, SealError::KeyLength { len: 5, .. }), "{err}");
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let (_d, state, key) = dirs();
    let mut s = Sealer::open(&state, &key).unwrap();
    let mut r = rec("exec");
    r.insert("hash".into(), json!("x"));
    assert!(matches!(s.seal(r), Err(SealError::ReservedField("hash"))));
    let mut r = rec("exec");
    r.remove("kind");
    assert!(matches!(s.seal(r), Err(SealError::NoKind)));
    // Failed seals use no seq.
    assert_eq!(s.seal(rec("exec")).unwrap().seq, 1);
    fs::write(state.join(STATE_FILE), b"{not json").unwrap();
    drop(s);
    assert!(matches!(
        Sealer::open(&state, &key),
        Err(SealError::CorruptState { .. })
    ));
}

#[test]
fn alerts_and_denials_carry_a_severity() {
    let mut r = rec("ptrace");
    assert_eq!(alert_severity(&r), None);
    r.insert("decision".into(), json!({"action": "allow"}));
    assert_eq!(alert_severity(&r), None);
    r.insert(
        "decision".into(),
        json!({"action": "deny", "severity": "critical"}),
    );
    assert_eq!(alert_severity(&r).as_deref(), Some("critical"));
    r.insert("decision".into(), json!({"action": "alert"}));
    assert_eq!(alert_severity(&r).as_deref(), Some("unspecified"));
}

#[test]
fn a_sealed_line_is_canonical_wherever_hash_and_sig_fall() {
    let (_d, state, key) = dirs();
    let mut s = Sealer::open(&state, &key).unwrap();
    // Keys that put `hash` and `sig` first, between others, together, and
    // last; signed and not.
    let records = [
        json!({"kind": "a"}),
        json!({"a": 1, "kind": "exec", "z": [1, {"y": "x"}]}),
        json!({"host": "h", "kind": "exec", "schema": 1}),
        json!({"aa": "x", "kind": "exec"}),
        json!({"kind": "exec", "sh": 1, "si": 2}),
        json!({"ha": 1, "kind": "exec", "hb": 2, "zz": null}),
    ];
    for (i, r) in records.into_iter().enumerate() {
        let Value::Object(m) = r else { unreachable!() };
        for sign in [false, true] {
            let sealed = s
                .seal_group(vec![Unsealed::Map(m.clone())], sign)
                .unwrap()
                .remove(0);
            let mut again = canonical::to_vec(&Value::Object(parse(&sealed)));
            again.push(b'\n');
            assert_eq!(
                String::from_utf8_lossy(&sealed.line),
                String::from_utf8_lossy(&again),
                "record {i}, signed {sign}"
            );
            if sealed.signed {
                check(&sealed, &s.public_key_hex());
            }
        }
    }
}
