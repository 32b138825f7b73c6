//! Review over a small fleet of sealed records: two hosts (db-7, web-1),
//! alice working on both from one laptop (one of her commands through
//! sudo), bob on db-7 from elsewhere, a denial, a grant and its use, a
//! host whose heartbeats stop; then tampered, forged and broken copies.

use std::path::Path;

use serde_json::{Map, Value, json};

use super::*;
use crate::record::{seal::Sealer, verify::trust::TrustedKeys};

/// `t` seconds after 2026-03-02T10:00:00Z.
fn at(t: u64) -> String {
    format!("2026-03-02T10:{:02}:{:02}.000000000Z", t / 60, t % 60)
}

fn rec(host: &str, t: u64, kind: &str, body: Value) -> Map<String, Value> {
    let mut m = json!({
        "schema": 1, "time": at(t), "monotonic_ns": (t + 1) * 1_000_000_000,
        "host": {"name": host, "id": format!("id-{host}"), "boot_id": "b1"}, "kind": kind,
    });
    for (k, v) in body.as_object().unwrap() {
        m[k] = v.clone();
    }
    match m {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

/// An actor: `user` acting, `login` logged in from `ip` in `session`.
fn actor(user: &str, login: &str, ip: &str, session: u64, comm: &str) -> Value {
    json!({"pid": 4000 + session, "uid": 1000, "user": user, "login_user": login,
        "session_id": session, "ssh": {"src_ip": ip, "src_port": 50000}, "comm": comm,
        "argv": [comm, "-p", "1234"]})
}

fn pg() -> Value {
    json!({"pid": 1234, "comm": "postgres", "exe": "/usr/bin/postgres",
        "unit": "postgresql.service"})
}

fn decision(action: &str, rule: &str, grant: Option<&str>) -> Value {
    json!({"action": action, "rule": rule, "severity": "critical", "enforced": null,
        "grant_id": grant, "tags": ["attack.t1055.008"]})
}

/// Seals `recs` for `host`; returns the lines and the host's key.
fn seal(dir: &Path, host: &str, recs: Vec<Map<String, Value>>) -> (Vec<Vec<u8>>, String) {
    let mut s = Sealer::open(&dir.join(host), &dir.join(format!("{host}.key"))).unwrap();
    let pk = s.public_key_hex();
    let mut lines = vec![
        s.seal(rec(
            host,
            0,
            "agent",
            json!({"detail": {"event": "started", "heartbeat_s": 5, "public_key": pk}}),
        ))
        .unwrap()
        .line,
    ];
    for r in recs {
        lines.push(s.seal(r).unwrap().line);
    }
    (lines, pk)
}

struct Fleet {
    lines: Vec<Vec<u8>>,
    keys: TrustedKeys,
}

fn fleet(dir: &Path) -> Fleet {
    let alice = |host: &str, t, kind, session, extra: Value| {
        let mut body = json!({"actor": actor("alice", "alice", "10.0.0.5", session, "gdb")});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        rec(host, t, kind, body)
    };
    let grant = json!({"id": "g-1", "user": "alice", "target": "unit:postgresql.service",
        "reason": "INC-42", "created": at(30), "expires": at(90),
        "requested_by": {"uid": 0, "login_user": "alice"}});
    let db = vec![
        alice(
            "db-7",
            10,
            "ptrace",
            7,
            json!({"target": pg(),
            "detail": {"ptrace_request": "ATTACH"}, "decision": decision("deny", "attach-db", None)}),
        ),
        rec(
            "db-7",
            20,
            "ptrace",
            json!({"actor": actor("bob", "bob", "10.9.9.9", 9, "strace"),
            "target": pg(), "detail": {"ptrace_request": "SEIZE"},
            "decision": decision("alert", "watch-db", None)}),
        ),
        rec(
            "db-7",
            30,
            "grant",
            json!({"detail": {"event": "created", "grant": grant}}),
        ),
        // Through sudo: root acting, alice's login session kept.
        rec(
            "db-7",
            40,
            "ptrace",
            json!({"actor": actor("root", "alice", "10.0.0.5", 7, "gdb"),
            "target": pg(), "detail": {"ptrace_request": "ATTACH"},
            "decision": decision("allow", "attach-db", Some("g-1"))}),
        ),
        rec(
            "db-7",
            45,
            "agent",
            json!({"detail": {"event": "heartbeat", "interval_s": 5}}),
        ),
        rec(
            "db-7",
            100,
            "agent",
            json!({"detail": {"event": "heartbeat", "interval_s": 5}}),
        ),
    ];
    let web = vec![
        alice(
            "web-1",
            15,
            "exec",
            3,
            json!({"detail": {"debugger": "gdb"}}),
        ),
        alice(
            "web-1",
            50,
            "mem_access",
            3,
            json!({"target": {"pid": 77, "comm": "nginx",
            "unit": "nginx.service"}, "detail": {"via": "proc_mem", "access": "read"}}),
        ),
        rec(
            "web-1",
            60,
            "agent",
            json!({"detail": {"event": "heartbeat", "interval_s": 5}}),
        ),
    ];
    let (mut lines, db_pk) = seal(dir, "db-7", db);
    let (web_lines, web_pk) = seal(dir, "web-1", web);
    lines.extend(web_lines);
    let mut keys = TrustedKeys::default();
    keys.add("db-7", &db_pk).unwrap();
    keys.add("web-1", &web_pk).unwrap();
    Fleet { lines, keys }
}

fn review(lines: &[Vec<u8>], keys: &TrustedKeys) -> Reviewed {
    let mut r = Review::new(
        Trust::File {
            keys: keys.clone(),
            tofu: false,
        },
        None,
    )
    .unwrap();
    for l in lines {
        r.push_line(l);
    }
    r.finish()
}

fn shown(r: &Reviewed, f: &Filter) -> Vec<(String, u64)> {
    r.entries
        .iter()
        .filter(|e| f.matches(e))
        .map(|e| {
            (
                fields::host(&e.record).to_owned(),
                fields::seq(&e.record).unwrap_or(0),
            )
        })
        .collect()
}

fn ns(t: u64) -> i64 {
    fields::time_ns(&json!({"time": at(t)})).unwrap()
}

#[test]
fn an_intact_fleet_verifies_and_filters_combine() {
    let d = tempfile::tempdir().unwrap();
    let f = fleet(d.path());
    let r = review(&f.lines, &f.keys);
    assert_eq!(r.entries.len(), 11);
    assert!(r.entries.iter().all(|e| e.status.ok()), "{:?}", r.entries);
    let db = |seqs: &[u64]| {
        seqs.iter()
            .map(|s| ("db-7".to_owned(), *s))
            .collect::<Vec<_>>()
    };
    let f = |f: Filter| shown(&r, &f);
    // A login user matches through sudo; the acting user too.
    let alice = f(Filter {
        users: vec!["alice".into()],
        hosts: vec!["db-7".into()],
        ..Filter::default()
    });
    assert_eq!(alice, db(&[2, 4, 5]));
    assert_eq!(
        f(Filter {
            users: vec!["root".into()],
            ..Filter::default()
        }),
        db(&[5])
    );
    assert_eq!(
        f(Filter {
            decisions: vec!["deny".into(), "alert".into()],
            ..Filter::default()
        }),
        db(&[2, 3])
    );
    assert_eq!(
        f(Filter {
            targets: vec!["postgresql.service".into()],
            kinds: vec!["ptrace".into()],
            since_ns: Some(ns(15)),
            until_ns: Some(ns(40)),
            ..Filter::default()
        }),
        db(&[3]),
        "since inclusive, until exclusive"
    );
    for tag in ["T1055", "attack.t1055.008", "t1055.008"] {
        assert_eq!(
            f(Filter {
                tags: vec![tag.into()],
                rules: vec!["attach-db".into()],
                ..Filter::default()
            }),
            db(&[2, 5]),
            "{tag}"
        );
    }
    assert!(
        f(Filter {
            tags: vec!["t105".into()],
            ..Filter::default()
        })
        .is_empty(),
        "a tag matches whole ids, not prefixes of them"
    );
    assert_eq!(
        f(Filter {
            decisions: vec!["none".into()],
            hosts: vec!["id-web-1".into()],
            ..Filter::default()
        })
        .len(),
        4
    );
}

#[test]
fn a_tampered_record_is_shown_failing_never_dropped() {
    let d = tempfile::tempdir().unwrap();
    let mut f = fleet(d.path());
    // Someone turns alice's denial into an allow.
    let mut v: Value = serde_json::from_slice(&f.lines[1]).unwrap();
    v["decision"]["action"] = json!("allow");
    f.lines[1] = serde_json::to_vec(&v).unwrap();
    f.lines.push(b"{not json".to_vec());
    let r = review(&f.lines, &f.keys);
    assert_eq!(r.entries.len(), 12, "every line is an entry");
    let bad: Vec<(u64, &Status)> = r
        .entries
        .iter()
        .filter(|e| !e.status.ok())
        .map(|e| (e.line, &e.status))
        .collect();
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(
        matches!(bad[0], (2, Status::Failed(why)) if why.iter().any(|w| w.contains("edited: seq 2"))),
        "{bad:?}"
    );
    assert!(matches!(bad[1], (12, Status::Malformed(_))), "{bad:?}");
    // The edited record still matches what it now claims, marked; the
    // broken line is shown whatever the filters.
    let allow = Filter {
        decisions: vec!["allow".into()],
        hosts: vec!["db-7".into()],
        ..Filter::default()
    };
    let out = render(&r, &allow, None, false, Format::Table);
    let row = out.lines().find(|l| l.contains(" 2 ")).expect(&out);
    assert!(row.contains("FAILED: edited: seq 2"), "{out}");
    assert!(out.contains("MALFORMED"), "{out}");
    let failed = Filter {
        failed_only: true,
        ..Filter::default()
    };
    assert_eq!(shown(&r, &failed).len(), 2);
    // JSON lines keep the record as it was read, beside the verdict.
    let json = render(&r, &failed, None, false, Format::Json);
    let first: Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(first["record"], v);
    assert!(first["verified"].as_str().unwrap().starts_with("FAILED"));
}

#[test]
fn a_host_signing_with_another_key_is_untrusted() {
    let d = tempfile::tempdir().unwrap();
    let f = fleet(d.path());
    // web-1's records as a forger re-sealed them with its own key.
    let (forged, _) = seal(
        &d.path().join("forger"),
        "web-1",
        vec![rec("web-1", 5, "exec", json!({"detail": {}}))],
    );
    let mut lines: Vec<Vec<u8>> = f.lines[..7].to_vec();
    lines.extend(forged);
    let r = review(&lines, &f.keys);
    let web: Vec<&Status> = r
        .entries
        .iter()
        .filter(|e| fields::host(&e.record) == "web-1")
        .map(|e| &e.status)
        .collect();
    assert_eq!(web.len(), 2);
    // Its start record announces a key the file does not give web-1; the
    // signatures, made with that key, do not verify with web-1's.
    for s in &web {
        let text = s.text();
        assert!(
            matches!(s, Status::Failed(_)) && text.contains("bad signature"),
            "{text}"
        );
    }
    // A host the file does not name: its chain holds, but nobody vouches
    // for its key.
    let mut only_db = TrustedKeys::default();
    let db_key = f.keys.keys_of("db-7").unwrap()[0].clone();
    only_db.add("db-7", &db_key).unwrap();
    let r2 = review(&f.lines, &only_db);
    let web_status = |r: &Reviewed| -> Vec<String> {
        r.entries
            .iter()
            .filter(|e| fields::host(&e.record) == "web-1")
            .map(|e| e.status.text())
            .collect()
    };
    let texts = web_status(&r2);
    assert_eq!(texts.len(), 4);
    assert!(
        texts
            .iter()
            .all(|t| t.starts_with("UNTRUSTED: untrusted: host \"web-1\" is not in")),
        "{texts:?}"
    );
    let untrusted = HostVerdict::of(&r.report.hosts["id-web-1"].problems);
    assert!(
        untrusted
            .untrusted
            .as_deref()
            .is_some_and(|u| u.contains("announces key")),
        "{untrusted:?}"
    );
    assert!(
        r.entries
            .iter()
            .filter(|e| fields::host(&e.record) == "db-7")
            .all(|e| e.status.ok())
    );
}

#[test]
fn sessions_join_across_hosts_when_login_and_origin_match() {
    let d = tempfile::tempdir().unwrap();
    let f = fleet(d.path());
    let r = review(&f.lines, &f.keys);
    let entries: Vec<&Entry> = r.entries.iter().collect();
    let labels = session::assign(&entries);
    let by_host_seq = |h: &str, s: u64| {
        let i = entries
            .iter()
            .position(|e| fields::host(&e.record) == h && fields::seq(&e.record) == Some(s))
            .unwrap();
        labels[i].clone()
    };
    let alice = by_host_seq("db-7", 2).expect("alice's ssh session");
    assert_eq!(alice, "alice from 10.0.0.5: db-7/7+web-1/3");
    assert_eq!(
        by_host_seq("db-7", 5).as_deref(),
        Some(alice.as_str()),
        "sudo"
    );
    assert_eq!(by_host_seq("web-1", 3).as_deref(), Some(alice.as_str()));
    assert_eq!(
        by_host_seq("db-7", 3).as_deref(),
        Some("bob from 10.9.9.9: db-7/9")
    );
    assert_eq!(by_host_seq("db-7", 1), None, "agent records: no session");
    // Grouped output: one heading per session, alice's records together.
    let out = render(&r, &Filter::default(), None, true, Format::Table);
    assert_eq!(out.matches("== session").count(), 3, "{out}");
    let alice_rows: Vec<usize> = out
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with("==") && l.ends_with(&alice))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(alice_rows.len(), 4);
    assert_eq!(alice_rows[3] - alice_rows[0], 3, "contiguous: {out}");
}

#[test]
fn summaries_answer_the_auditors_questions() {
    let d = tempfile::tempdir().unwrap();
    let f = fleet(d.path());
    let r = review(&f.lines, &f.keys);
    let rows = |s: Summary| -> Vec<Value> {
        render(&r, &Filter::default(), Some(s), false, Format::Json)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let who = rows(Summary::Who);
    let alice_db = who
        .iter()
        .find(|w| w["user"] == "alice" && w["host"] == "db-7")
        .unwrap();
    assert_eq!(alice_db["target"], "postgresql.service");
    assert_eq!(
        (alice_db["records"].clone(), alice_db["denied"].clone()),
        (json!(2), json!(1))
    );
    assert!(
        who.iter()
            .any(|w| w["user"] == "alice" && w["target"] == "(gdb run)")
    );
    assert!(who.iter().any(|w| w["user"] == "bob"));
    assert!(who.iter().all(|w| w["verified"] == "ok"));

    let denials = rows(Summary::Denials);
    assert_eq!(denials.len(), 1);
    assert_eq!(denials[0]["user"], "alice");
    assert_eq!(denials[0]["then_asked"], json!(["g-1"]));

    let grants = rows(Summary::Grants);
    assert_eq!(grants.len(), 1);
    let g = &grants[0];
    assert_eq!(
        (g["grant"].clone(), g["reason"].clone()),
        (json!("g-1"), json!("INC-42"))
    );
    assert_eq!(
        (g["requested_by"].clone(), g["seqs"].clone()),
        (json!("alice"), json!([5]))
    );

    // db-7 went quiet for 55 s between two heartbeats; web-1's last is
    // 40 s before db-7's: silent at the end. Neither breaks a chain.
    let hosts = rows(Summary::Hosts);
    let host = |n: &str| hosts.iter().find(|h| h["host"] == n).unwrap().clone();
    assert_eq!(host("db-7")["chain"], "ok");
    let silent = host("db-7")["silent"][0].as_str().unwrap().to_owned();
    assert!(
        silent.contains("silent for 55s between seq 6 and seq 7"),
        "{silent}"
    );
    assert_eq!(host("web-1")["chain"], "ok");
    let web = host("web-1");
    assert_eq!(web["last_heartbeat"], at(60));
    let silent = web["silent"].as_array().unwrap();
    assert!(
        silent
            .iter()
            .any(|s| s.as_str().unwrap().starts_with("ends open")),
        "{silent:?}"
    );
    // Filters narrow the records a summary counts.
    let only_bob = Filter {
        users: vec!["bob".into()],
        ..Filter::default()
    };
    let csv = render(&r, &only_bob, Some(Summary::Who), false, Format::Csv);
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.starts_with("user,host,target,records,kinds,denied,first,last,verified\r\n"));
}
