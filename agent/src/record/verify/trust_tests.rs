//! Tests of `verify` with the trusted-keys file (a forged stream signed
//! with its own key, a host signing with another host's key, an unknown
//! host with and without trust on first use) and of a chain cut at its
//! tail (ends open, how far it is proven).

use serde_json::{Value, json};

use super::{
    Problem, Proven, Verifier, VerifyReport,
    tests::{beat, chain, record, started, timeline},
    trust::{Trust, TrustedKeys},
};
use crate::record::seal::Sealer;

fn verify_with(lines: &[Vec<u8>], trust: Trust, now_ns: Option<i64>) -> VerifyReport {
    let mut v = Verifier::with_trust(trust).unwrap().with_now(now_ns);
    for l in lines {
        v.push_line(l);
    }
    v.finish()
}

fn file(pairs: &[(&str, &str)]) -> TrustedKeys {
    let mut t = TrustedKeys::default();
    for (h, k) in pairs {
        t.add(h, k).unwrap();
    }
    t
}

#[test]
fn a_forged_stream_signed_with_its_own_key_fails_and_the_real_one_passes() {
    let real = tempfile::tempdir().unwrap();
    let forger = tempfile::tempdir().unwrap();
    let (lines, pk) = chain(real.path(), "db-1", 4);
    let (forged, forged_pk) = chain(forger.path(), "db-1", 4);
    let keys = file(&[("db-1", &pk)]);
    let strict = |tofu| Trust::File {
        keys: keys.clone(),
        tofu,
    };
    let r = verify_with(&lines, strict(false), None);
    assert!(r.ok(), "{r}");
    for tofu in [false, true] {
        let r = verify_with(&forged, strict(tofu), None);
        assert!(!r.ok(), "a forged db-1 passed (tofu {tofu}): {r}");
        let h = &r.hosts["id-db-1"];
        assert!(
            h.problems.contains(&Problem::UntrustedKey {
                seq: 1,
                key: forged_pk.clone(),
                owner: None
            }),
            "{r}"
        );
        // Every signature is checked with the trusted key, not the forged one.
        assert!(
            h.problems.contains(&Problem::BadSignature { seq: 4 }),
            "{r}"
        );
        assert_eq!(h.proven_to, None, "{r}");
    }
    // Trust on first use alone, as before the file: the forgery passes.
    assert!(verify_with(&forged, Trust::FirstUse, None).ok());
}

#[test]
fn a_key_under_another_hosts_name_fails() {
    let d = tempfile::tempdir().unwrap();
    let (db, db_pk) = chain(d.path(), "db-1", 3);
    let (_, web_pk) = chain(d.path(), "web-2", 1);
    // web-2's records made with db-1's key (say, a copied key file).
    let mut s = Sealer::open(&d.path().join("stolen"), &d.path().join("db-1.key")).unwrap();
    let stolen: Vec<Vec<u8>> = [
        record(
            "agent",
            "web-2",
            json!({"event": "started", "public_key": db_pk}),
        ),
        record("exec", "web-2", json!({"i": 1})),
    ]
    .into_iter()
    .map(|m| s.seal(m).unwrap().line)
    .collect();
    let keys = file(&[("db-1", &db_pk), ("web-2", &web_pk)]);
    let trust = Trust::File { keys, tofu: true };
    assert!(verify_with(&db, trust.clone(), None).ok());
    let r = verify_with(&stolen, trust, None);
    let text = r.to_string();
    assert!(!r.ok(), "{text}");
    assert!(
        text.contains("which is trusted for host \"db-1\", not this one"),
        "{text}"
    );
}

#[test]
fn an_unknown_host_fails_unless_trusted_on_first_use() {
    let d = tempfile::tempdir().unwrap();
    let (lines, _) = chain(d.path(), "new-host", 3);
    let keys = TrustedKeys::default();
    let r = verify_with(
        &lines,
        Trust::File {
            keys: keys.clone(),
            tofu: false,
        },
        None,
    );
    assert_eq!(
        r.hosts["id-new-host"].problems,
        vec![Problem::UnknownHost {
            host: "new-host".into()
        }]
    );
    let r = verify_with(&lines, Trust::File { keys, tofu: true }, None);
    assert!(r.ok(), "{r}");
    assert!(
        r.hosts["id-new-host"].notes[0].contains("trusted on first use"),
        "{r}"
    );
}

const T0_NS: i64 = 1_767_225_600 * 1_000_000_000; // 2026-01-01T00:00:00Z

fn exec(t: u64) -> (&'static str, Value, u64, &'static str) {
    ("exec", json!({"t": t}), t, "b")
}

#[test]
fn a_chain_cut_at_its_tail_ends_open_and_says_how_far_it_is_proven() {
    let d = tempfile::tempdir().unwrap();
    // Heartbeats every 5 s up to 30 s, records up to 60 s, then the file
    // was cut: the heartbeats at 35..60 s and the rest are gone.
    let mut events = vec![started(0, "b")];
    for t in 1..=60 {
        events.push(if t % 5 == 0 && t <= 30 {
            beat(t, "b")
        } else {
            exec(t)
        });
    }
    let lines = timeline(d.path(), "h", &events);
    let r = verify_with(&lines, Trust::FirstUse, None);
    let h = &r.hosts["id-h"];
    assert_eq!(
        h.problems,
        vec![Problem::EndsOpen {
            seq: 31,
            time: "2026-01-01T00:00:30.000000000Z".into(),
            seconds: 30,
            interval_s: 5
        }],
        "{r}"
    );
    assert_eq!(
        h.proven_to,
        Some(Proven {
            seq: 61,
            time: Some("2026-01-01T00:01:00.000000000Z".into())
        })
    );
    assert!(r.to_string().contains("ends open"), "{r}");

    // Cut right after a heartbeat: nothing is wrong within the input, but
    // `--now` a minute later shows the chain stops there.
    let cut = &lines[..=30];
    assert!(verify_with(cut, Trust::FirstUse, None).ok());
    let later = Some(T0_NS + 90 * 1_000_000_000);
    let r = verify_with(cut, Trust::FirstUse, later);
    assert!(
        matches!(
            r.hosts["id-h"].problems[..],
            [Problem::EndsOpen {
                seq: 31,
                seconds: 60,
                ..
            }]
        ),
        "{r}"
    );
    let soon = Some(T0_NS + 40 * 1_000_000_000);
    assert!(verify_with(cut, Trust::FirstUse, soon).ok());

    // A clean stop at the end is never open, however late `--now` is.
    let mut stopped = events[..=30].to_vec();
    stopped.push(("agent", json!({"event": "stopped"}), 31, "b"));
    let lines = timeline(d.path(), "s", &stopped);
    assert!(verify_with(&lines, Trust::FirstUse, later).ok());
}
