//! The delivery stage end to end without the kernel: builder-like lines in,
//! sealed, redacted, spooled and verifiable lines out.

use std::{
    io,
    sync::{Arc, Mutex},
    time::Instant,
};

use serde_json::{Value, json};

use super::*;
use crate::record::{redact::RedactConfig, verify::Verifier};

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);
impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn cfg(dir: &Path) -> DeliveryConfig {
    DeliveryConfig {
        state_dir: dir.join("state"),
        key_path: dir.join("state/host.key"),
        spool: SpoolConfig {
            dir: dir.join("state/spool"),
            ..SpoolConfig::default()
        },
        // Every group signed, as a quiet host has it; the signing cadence
        // under load has tests of its own.
        sign_interval: Duration::ZERO,
        ..DeliveryConfig::default()
    }
}

/// A line as the record builder writes it (with its provisional seq).
fn builder_line(i: u64, argv: &[&str]) -> Vec<u8> {
    let mut l = serde_json::to_vec(&json!({
        "schema": 1, "seq": i, "time": "2026-05-01T12:00:00Z", "monotonic_ns": i,
        "host": {"name": "h", "id": "m", "boot_id": "b"},
        "kind": "exec", "actor": {"pid": i, "argv": argv},
    }))
    .unwrap();
    l.push(b'\n');
    l
}

fn lines(buf: &Shared) -> Vec<Value> {
    buf.0
        .lock()
        .unwrap()
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

fn verify(buf: &Shared, key: &str) -> crate::record::verify::VerifyReport {
    let mut v = Verifier::new(&[key.to_owned()]).unwrap();
    v.read(io::Cursor::new(buf.0.lock().unwrap().clone()), "buffer")
        .unwrap();
    v.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_redacted_sealed_released_and_verifiable() {
    const N: u64 = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let out = Shared::default();
    let d = Delivery::start_with(cfg(dir.path()), Some(Box::new(out.clone()))).unwrap();
    let key = d.public_key().to_owned();
    let start = Instant::now();
    let mut batch = Vec::new();
    for i in 1..=N {
        batch.extend(builder_line(i, &["mysql", "-uroot", "-phunter2", "db"]));
        if i % 50 == 0 {
            d.send(std::mem::take(&mut batch)).await.unwrap();
        }
    }
    d.send(b"not json\n".to_vec()).await.unwrap();
    d.flushed().await.unwrap();
    let elapsed = start.elapsed();
    eprintln!(
        "delivery stage: {N} records in {elapsed:?} = {:.0} records/s (redact + seal + spool fsync + stdout)",
        N as f64 / elapsed.as_secs_f64()
    );
    let stats = d.stats();
    assert_eq!(stats.records, N);
    assert_eq!(stats.invalid, 1);
    // No NATS: released once written, at the latest with the next fsync.
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.stats().spool_pending > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(d.stats().spool_pending, 0, "no NATS: released once written");
    d.close().await.unwrap();

    let recs = lines(&out);
    assert_eq!(recs.len() as u64, N);
    assert_eq!(recs[0]["seq"], 1);
    assert_eq!(recs[0]["chain"]["start"], "genesis");
    assert_eq!(recs[N as usize - 1]["seq"], N);
    let argv = recs[7]["actor"]["argv"].as_array().unwrap();
    assert!(!argv[2].as_str().unwrap().contains("hunter2"), "{argv:?}");
    assert_eq!(argv[3], "db");
    let report = verify(&out, &key);
    assert!(report.ok(), "{report}");
}

#[tokio::test]
async fn configured_redaction_applies_and_a_bad_pattern_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Shared::default();
    let mut c = cfg(dir.path());
    c.redact = RedactConfig {
        patterns: vec![r"pin:(?P<secret>\d+)".to_owned()],
        secret_flags: vec!["--pin".to_owned()],
        ..RedactConfig::default()
    };
    let d = Delivery::start_with(c, Some(Box::new(out.clone()))).unwrap();
    d.send(builder_line(
        1,
        &["app", "pin:4242", "--pin", "77", "password=x"],
    ))
    .await
    .unwrap();
    d.close().await.unwrap();
    let recs = lines(&out);
    assert_eq!(
        recs[0]["actor"]["argv"],
        json!([
            "app",
            "pin:[REDACTED]",
            "--pin",
            "[REDACTED]",
            "password=[REDACTED]"
        ]),
        "configured pattern and flag, and the built-in defaults"
    );

    let mut bad = cfg(dir.path());
    bad.redact.patterns = vec!["(unclosed".to_owned()];
    let Err(e) = Delivery::start_with(bad, None) else {
        panic!("a pattern that does not compile must stop the start")
    };
    assert!(e.to_string().contains("(unclosed"), "{e}");
}

#[tokio::test]
async fn a_restart_continues_the_chain_with_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let first = Shared::default();
    let d = Delivery::start_with(cfg(dir.path()), Some(Box::new(first.clone()))).unwrap();
    let key = d.public_key().to_owned();
    for i in 1..=3 {
        d.send(builder_line(i, &["true"])).await.unwrap();
    }
    d.close().await.unwrap();
    let second = Shared::default();
    let d = Delivery::start_with(cfg(dir.path()), Some(Box::new(second.clone()))).unwrap();
    assert_eq!(d.public_key(), key);
    d.send(builder_line(1, &["true"])).await.unwrap();
    d.close().await.unwrap();
    let recs = lines(&second);
    assert_eq!(recs[0]["seq"], 4, "the builder's own seq gives way");
    assert_eq!(recs[0]["chain"]["start"], "clean");
    first
        .0
        .lock()
        .unwrap()
        .extend(second.0.lock().unwrap().iter());
    assert!(verify(&first, &key).ok());
}

#[test]
fn an_unwritable_state_dir_is_named_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let mut c = cfg(dir.path());
    c.state_dir = file.join("state");
    let e = Delivery::start_with(c, None).err().expect("must fail");
    let msg = e.to_string();
    assert!(matches!(e, DeliveryError::StateDir { .. }), "{msg}");
    assert!(
        msg.contains(&file.join("state").display().to_string()),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_sheds_oldest_first_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.spool.max_bytes = 64 * 1024;
    c.spool.segment_bytes = 16 * 1024;
    // Nothing listens there: every record stays spooled.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    c.nats = Some(NatsConfig {
        urls: vec![format!("nats://127.0.0.1:{port}")],
        connect_timeout_ms: 200,
        ..NatsConfig::default()
    });
    c.nats_grace = Duration::from_millis(200);
    let d = Delivery::start_with(c, None).unwrap();
    assert_eq!(d.sink_names(), ["nats"]);
    for i in 1..=2_000 {
        d.send(builder_line(i, &["true", "x"])).await.unwrap();
    }
    d.flushed().await.unwrap();
    let s = d.stats();
    assert!(s.spool_shed > 0, "{s:?}");
    assert_eq!(s.spool_shed + s.spool_pending, 2_000, "{s:?}");
    d.close().await.unwrap();
}

#[test]
fn a_lost_record_with_shedding_becomes_an_alert() {
    let r = Redactor::default();
    let line = br#"{"seq":3,"kind":"lost","detail":{"counts":{"exec":0,"spool_shed":5}}}"#;
    let m = prepare_line(&r, line).unwrap();
    assert!(!m.contains_key("seq"));
    assert_eq!(m["decision"]["action"], "alert");
    assert_eq!(m["decision"]["severity"], "high");
    let quiet = br#"{"kind":"lost","detail":{"counts":{"exec":2,"spool_shed":0}}}"#;
    assert!(!prepare_line(&r, quiet).unwrap().contains_key("decision"));
    assert!(prepare_line(&r, b"[1,2]").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_fsynced_at_once_and_the_rest_within_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let out = Shared::default();
    let d = Delivery::start_with(
        DeliveryConfig {
            sync_interval: Duration::from_millis(300),
            ..cfg(dir.path())
        },
        Some(Box::new(out.clone())),
    )
    .unwrap();
    // The start of the chain, then quiet: synced when the interval ends.
    d.send(builder_line(1, &["true"])).await.unwrap();
    d.flushed().await.unwrap();
    assert_eq!(lines(&out).len(), 1, "written before it is fsync'd");
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(
        !d.spool.lock().unsynced(),
        "fsync'd once the interval passed"
    );

    // Ordinary records within the interval wait for it ...
    d.send(builder_line(2, &["true"])).await.unwrap();
    d.flushed().await.unwrap();
    assert!(d.spool.lock().unsynced(), "an exec waits for the interval");
    // ... an alert does not, and takes them along.
    let mut alert: Value = serde_json::from_slice(&builder_line(3, &["gdb", "-p", "1"])).unwrap();
    alert["decision"] = json!({"action": "alert", "severity": "high", "rule": "r"});
    let mut line = serde_json::to_vec(&alert).unwrap();
    line.push(b'\n');
    d.send(line).await.unwrap();
    d.flushed().await.unwrap();
    assert!(
        !d.spool.lock().unsynced(),
        "an alert is fsync'd before release"
    );
    d.close().await.unwrap();
    assert_eq!(lines(&out).len(), 3);
}

#[test]
fn the_canonical_fast_path_seals_exactly_what_the_slow_path_seals() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("host.key");
    let redactor = Redactor::default();
    let mut lines = vec![
        builder_line(1, &["mysql", "-uroot", "-phunter2", "db"]),
        builder_line(2, &["/bin/true", "é\u{1}\"\\"]),
    ];
    let mut alert: Value = serde_json::from_slice(&builder_line(3, &["gdb", "-p", "1"])).unwrap();
    alert["decision"] =
        json!({"action": "deny", "severity": "critical", "rule": "r", "enforced": "lsm"});
    lines.push(crate::record::canonical::to_vec(&alert));
    let mut fast = crate::record::seal::Sealer::open(&dir.path().join("a"), &key).unwrap();
    let mut slow = crate::record::seal::Sealer::open(&dir.path().join("b"), &key).unwrap();
    for line in &lines {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let f = prepare_canonical(&redactor, line).expect("canonical input takes the fast path");
        let s = crate::record::seal::Unsealed::Map(prepare_line(&redactor, line).unwrap());
        let (f, s) = (
            fast.seal_group(vec![f], true).unwrap().remove(0),
            slow.seal_group(vec![s], true).unwrap().remove(0),
        );
        assert_eq!(
            String::from_utf8_lossy(&f.line),
            String::from_utf8_lossy(&s.line)
        );
        assert_eq!((f.kind, f.severity), (s.kind, s.severity));
    }
    // Not canonical at the top level, or a lost record: the slow path.
    assert!(prepare_canonical(&redactor, b"{\"seq\":1,\"kind\":\"exec\"}").is_none());
    assert!(prepare_canonical(&redactor, b"{\"kind\":\"lost\",\"seq\":1}").is_none());
}

#[test]
fn captured_environment_values_are_redacted_on_both_paths() {
    let r = Redactor::default();
    let line = br#"{"detail":{"argv_bytes":5,"argv_truncated":false,"env":{"JAVA_TOOL_OPTIONS":"-Dpassword=hunter2 -agentlib:jdwp=server=y","LD_PRELOAD":"/tmp/x.so"}},"kind":"exec","seq":1}"#;
    let m = prepare_line(&r, line).unwrap();
    let env = &m["detail"]["env"];
    assert_eq!(
        env["JAVA_TOOL_OPTIONS"],
        "-Dpassword=[REDACTED] -agentlib:jdwp=server=y"
    );
    assert_eq!(env["LD_PRELOAD"], "/tmp/x.so");
    let Some(crate::record::seal::Unsealed::Canonical { members, .. }) =
        prepare_canonical(&r, line)
    else {
        panic!("a canonical line takes the fast path");
    };
    let detail = members
        .iter()
        .find(|(k, _)| k == "detail")
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .unwrap();
    assert!(detail.contains("-Dpassword=[REDACTED]"), "{detail}");
    assert!(!detail.contains("hunter2"), "{detail}");
}

/// Whether each record in `buf` carries `sig`.
fn signed(buf: &Shared) -> Vec<bool> {
    lines(buf).iter().map(|r| r.get("sig").is_some()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn within_the_sign_interval_groups_go_unsigned_until_a_signed_record() {
    let dir = tempfile::tempdir().unwrap();
    let out = Shared::default();
    let d = Delivery::start_with(
        DeliveryConfig {
            sign_interval: Duration::from_secs(3600),
            ..cfg(dir.path())
        },
        Some(Box::new(out.clone())),
    )
    .unwrap();
    let key = d.public_key().to_owned();
    // The chain's first group is signed; the next two come within the
    // interval and are not.
    d.send(builder_line(1, &["a"])).await.unwrap();
    d.flushed().await.unwrap();
    let mut two = builder_line(2, &["b"]);
    two.extend(builder_line(3, &["c"]));
    d.send(two).await.unwrap();
    d.flushed().await.unwrap();
    d.send(builder_line(4, &["d"])).await.unwrap();
    d.flushed().await.unwrap();
    assert_eq!(signed(&out), [true, false, false, false]);
    // The driver is told once the tip has waited longer than the interval.
    let now = crate::sys::host::boottime_ns();
    assert_eq!(d.unsigned_tip_since(now), None, "not yet an interval");
    let since = d
        .unsigned_tip_since(now + 3_600_000_000_000)
        .expect("unsigned tip");
    assert!(since <= now, "{since} > {now}");
    // Unproven until a signed record links to them: verify says so.
    let r = verify(&out, &key);
    assert!(r.to_string().contains("unsigned: seqs 2..=4"), "{r}");
    // The driver's checkpoint is an `agent` record: always signed.
    let mut cp = builder_line(5, &[]);
    cp = String::from_utf8(cp)
        .unwrap()
        .replace("\"kind\":\"exec\"", "\"kind\":\"agent\"")
        .into_bytes();
    d.send(cp).await.unwrap();
    d.flushed().await.unwrap();
    assert_eq!(signed(&out), [true, false, false, false, true]);
    assert_eq!(d.unsigned_tip_since(u64::MAX), None, "the tip is signed");
    let r = verify(&out, &key);
    assert!(r.ok(), "{r}");
    d.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_after_the_sign_interval_is_signed() {
    let dir = tempfile::tempdir().unwrap();
    let out = Shared::default();
    let d = Delivery::start_with(
        DeliveryConfig {
            sign_interval: Duration::from_millis(50),
            ..cfg(dir.path())
        },
        Some(Box::new(out.clone())),
    )
    .unwrap();
    d.send(builder_line(1, &["a"])).await.unwrap();
    d.flushed().await.unwrap();
    // Sleeping guarantees at least the interval passed (never less).
    tokio::time::sleep(Duration::from_millis(60)).await;
    let mut two = builder_line(2, &["b"]);
    two.extend(builder_line(3, &["c"]));
    d.send(two).await.unwrap();
    d.flushed().await.unwrap();
    assert_eq!(signed(&out), [true, false, true], "the group's last record");
    assert_eq!(d.unsigned_tip_since(u64::MAX), None);
    d.close().await.unwrap();
}
