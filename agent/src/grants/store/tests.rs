//! Unit tests of the grant store: persistence, expiry, the maximum, and
//! the seal on the file.

use chrono::TimeZone;

use super::*;

#[test]
fn the_system_clock_moves_with_boot_time_from_the_wall_time_it_started_at() {
    let (a, boot_a) = (SystemClock.now(), host::boottime_ns());
    std::thread::sleep(Duration::from_millis(20));
    let (b, boot_b) = (SystemClock.now(), host::boottime_ns());
    let moved = (b - a).num_nanoseconds().unwrap();
    let booted = i64::try_from(boot_b - boot_a).unwrap();
    // Each pair is read back to back (a preempted pair may lag a little).
    assert!((moved - booted).abs() < 100_000_000, "{moved} vs {booted}");
    // Anchored at the wall clock: on a host whose clock is not being
    // set, the two agree.
    assert!((Utc::now() - b).num_seconds().abs() < 5, "{b}");
}

/// This host's key in the tests.
fn key() -> Arc<dyn GrantSigner> {
    Arc::new(ed25519_dalek::SigningKey::from_bytes(&[7; 32]))
}

fn open(
    path: impl Into<PathBuf>,
    max: Duration,
    clock: Arc<dyn Clock>,
) -> Result<(GrantStore, Vec<GrantEvent>), GrantError> {
    GrantStore::open(path, max, clock, key())
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap(),
    ))
}

fn unit(u: &str) -> Target {
    Target {
        unit: Some(u.into()),
        ..Target::default()
    }
}

#[test]
fn a_grant_longer_than_the_maximum_is_rejected_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grants.json");
    let c = clock();
    let (mut s, _) = open(&path, DEFAULT_MAX, c.clone()).unwrap();
    let t = GrantTarget::Unit("pg.service".into());
    let ok = s
        .grant(
            "alice",
            t.clone(),
            AccessMode::Full,
            Duration::from_secs(1800),
            "INC-1",
        )
        .unwrap();
    s.grant(
        "bob",
        t,
        AccessMode::Full,
        Duration::from_secs(3 * 3600),
        "INC-2",
    )
    .unwrap();
    drop(s);
    // The maximum is lowered under bob's (signed) 3h grant: a file signed
    // by this host is still checked against the maximum in force.
    let max = Duration::from_secs(3600);
    let (s, ev) = open(&path, max, c.clone()).unwrap();
    assert!(s.file_rejection().is_none());
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].event, GrantEventKind::Rejected);
    assert_eq!(ev[0].grant.user, "bob");
    let left: Vec<&str> = s.list().iter().map(|g| g.user.as_str()).collect();
    assert_eq!(left, ["alice"]);
    assert_eq!(s.list()[0].id, ok.grant.id);
    // And it is gone from the file: the next load finds nothing to reject.
    let (s, again) = open(&path, max, c).unwrap();
    assert!(again.is_empty(), "{again:?}");
    assert!(s.file_rejection().is_none());
}

#[test]
fn grants_persist_expire_and_never_outlive_their_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/grants.json");
    let c = clock();
    let (mut s, ev) = open(&path, DEFAULT_MAX, c.clone()).unwrap();
    assert!(ev.is_empty());
    let t = GrantTarget::Unit("pg.service".into());
    let created = s
        .grant(
            "alice",
            t.clone(),
            AccessMode::Full,
            Duration::from_secs(1800),
            "INC-1",
        )
        .unwrap();
    assert_eq!(created.event, GrantEventKind::Created);
    let id = created.grant.id.clone();
    assert!(id.starts_with("g-20240301-"), "{id}");
    assert_eq!(
        s.active_for("alice", Some(&unit("pg.service")))
            .map(|g| &g.id),
        Some(&id)
    );
    assert!(s.active_for("bob", Some(&unit("pg.service"))).is_none());
    assert!(s.active_for("alice", Some(&unit("other"))).is_none());
    assert_eq!(s.used(&id).unwrap().event, GrantEventKind::Used);

    // Persisted with mode 0600 and reloaded.
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (s2, ev) = open(&path, DEFAULT_MAX, c.clone()).unwrap();
    assert!(ev.is_empty());
    assert_eq!(s2.list().len(), 1);

    // At the expiry instant the grant is already gone from lookups,
    // before `expire` runs.
    c.advance(Duration::from_secs(1800));
    assert!(s.active_for("alice", Some(&unit("pg.service"))).is_none());
    assert!(s.list().is_empty());
    let gone = s.expire().unwrap();
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].event, GrantEventKind::Expired);
    assert_eq!(gone[0].grant.id, id);
    assert!(s.expire().unwrap().is_empty());

    // A store opened after expiry drops and reports it too.
    let (s3, ev) = open(&path, DEFAULT_MAX, c).unwrap();
    assert!(ev.is_empty(), "already removed from the file");
    assert!(s3.list().is_empty());
}

#[test]
fn expired_grants_are_dropped_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grants.json");
    let c = clock();
    let (mut s, _) = open(&path, DEFAULT_MAX, c.clone()).unwrap();
    s.grant(
        "alice",
        GrantTarget::Any,
        AccessMode::Full,
        Duration::from_secs(60),
        "x",
    )
    .unwrap();
    s.grant(
        "bob",
        GrantTarget::Pid(7),
        AccessMode::Full,
        Duration::from_secs(3600),
        "y",
    )
    .unwrap();
    drop(s);
    c.advance(Duration::from_secs(61));
    let (s, ev) = open(&path, DEFAULT_MAX, c).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].grant.user, "alice");
    assert_eq!(s.list().len(), 1);
}

#[test]
fn too_long_empty_and_unknown_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = open(dir.path().join("g.json"), DEFAULT_MAX, clock()).unwrap();
    let e = s
        .grant(
            "alice",
            GrantTarget::Any,
            AccessMode::Full,
            Duration::from_secs(5 * 3600),
            "x",
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "grant of 5h refused: longer than the maximum of 4h"
    );
    assert!(matches!(
        s.grant(
            "alice",
            GrantTarget::Any,
            AccessMode::Full,
            Duration::from_secs(60),
            " "
        ),
        Err(GrantError::Empty("reason"))
    ));
    assert!(matches!(s.revoke("nope"), Err(GrantError::UnknownGrant(_))));
    let g = s
        .grant(
            "alice",
            GrantTarget::Any,
            AccessMode::Full,
            Duration::from_secs(60),
            "x",
        )
        .unwrap();
    assert_eq!(
        s.revoke(&g.grant.id).unwrap().event,
        GrantEventKind::Revoked
    );
    assert!(s.active_for("alice", None).is_none());
}

/// A file that is not a grants file at all is refused like one whose seal
/// fails (moved aside, alerted, no grants): it does not keep the agent
/// from starting, and its bytes are kept for whoever investigates.
#[test]
fn a_corrupt_grants_file_is_refused_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grants.json");
    fs::write(&path, "{not json").unwrap();
    assert_refused(&path, clock(), "not a grants file");
}

/// A store at `path` holding grants for alice and bob (30m each).
fn two_grants(path: &Path, c: Arc<ManualClock>) {
    let (mut s, _) = open(path, DEFAULT_MAX, c).unwrap();
    for user in ["alice", "bob"] {
        s.grant(
            user,
            GrantTarget::Unit("pg.service".into()),
            AccessMode::Full,
            Duration::from_secs(1800),
            "INC-1",
        )
        .unwrap();
    }
}

/// Opens `path`, expecting its file refused for `why`: no grant used,
/// the file moved aside unchanged.
fn assert_refused(path: &Path, c: Arc<ManualClock>, why: &str) {
    let before = fs::read(path).unwrap();
    let (s, ev) = open(path, DEFAULT_MAX, c).unwrap();
    assert!(ev.is_empty(), "{ev:?}");
    assert!(s.list().is_empty(), "no grant from a refused file is used");
    for user in ["alice", "bob", "mallory"] {
        assert!(s.active_for(user, Some(&unit("pg.service"))).is_none());
    }
    let r = s.file_rejection().expect("the file is refused");
    assert!(r.reason.contains(why), "{}", r.reason);
    assert_eq!(r.path, path.display().to_string());
    assert!(
        r.moved_to
            .starts_with(&format!("{}.rejected-", path.display())),
        "{}",
        r.moved_to
    );
    assert!(!path.exists(), "moved away, not read again");
    assert_eq!(fs::read(&r.moved_to).unwrap(), before, "kept as it was");
}

/// Rewrites the grants of the sealed file at `path`, keeping its seal.
fn edit(path: &Path, f: impl FnOnce(&mut Vec<Grant>)) {
    let mut file: SealedFile = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    assert!(file.sig.is_some());
    f(&mut file.grants);
    fs::write(path, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
}

#[test]
fn a_sealed_file_round_trips_its_grants() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grants.json");
    let c = clock();
    two_grants(&path, c.clone());
    let file: SealedFile = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(file.version, seal::SEALED_VERSION);
    assert_eq!(file.key.as_deref(), Some(key().public_key_hex().as_str()));
    let (s, ev) = open(&path, DEFAULT_MAX, c).unwrap();
    assert!(ev.is_empty(), "{ev:?}");
    assert!(s.file_rejection().is_none());
    let users: Vec<&str> = s.list().iter().map(|g| g.user.as_str()).collect();
    assert_eq!(users, ["alice", "bob"]);
    assert!(s.active_for("bob", Some(&unit("pg.service"))).is_some());
}

#[test]
fn an_edited_grants_file_is_refused_and_moved_aside() {
    type Edit = fn(&mut Vec<Grant>);
    let edits: [(&str, Edit); 4] = [
        // Ten more minutes: within the maximum, so only the seal sees it.
        ("stretched", |g| {
            g[1].expires += chrono::Duration::minutes(10)
        }),
        ("added", |g| {
            let mut extra = g[0].clone();
            extra.user = "mallory".into();
            g.push(extra);
        }),
        ("user changed", |g| g[1].user = "mallory".into()),
        ("removed", |g| {
            g.remove(0);
        }),
    ];
    for (what, f) in edits {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grants.json");
        let c = clock();
        two_grants(&path, c.clone());
        edit(&path, f);
        eprintln!("{what}");
        assert_refused(
            &path,
            c.clone(),
            "does not match its grants: the file was edited",
        );
        // The store works on: a new grant is sealed and loads again.
        let (mut s, _) = open(&path, DEFAULT_MAX, c.clone()).unwrap();
        s.grant(
            "carol",
            GrantTarget::Any,
            AccessMode::Read,
            Duration::from_secs(60),
            "INC-2",
        )
        .unwrap();
        let (s, _) = open(&path, DEFAULT_MAX, c).unwrap();
        assert!(s.file_rejection().is_none());
        assert_eq!(s.list().len(), 1);
    }
}

#[test]
fn a_grants_file_signed_with_another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grants.json");
    let c = clock();
    let other = Arc::new(ed25519_dalek::SigningKey::from_bytes(&[9; 32]));
    let (mut s, _) = GrantStore::open(&path, DEFAULT_MAX, c.clone(), other.clone()).unwrap();
    s.grant(
        "mallory",
        GrantTarget::Any,
        AccessMode::Full,
        Duration::from_secs(600),
        "mine",
    )
    .unwrap();
    drop(s);
    assert_refused(&path, c.clone(), "was signed by key");
    // Naming this host's key in the file does not help: the check uses
    // the key, not the name.
    let (mut s, _) = GrantStore::open(
        dir.path().join("x.json"),
        DEFAULT_MAX,
        c.clone(),
        other.clone(),
    )
    .unwrap();
    s.grant(
        "mallory",
        GrantTarget::Any,
        AccessMode::Full,
        Duration::from_secs(600),
        "mine",
    )
    .unwrap();
    let forged = SealedFile {
        key: Some(key().public_key_hex()),
        ..seal::seal(s.list().into_iter().cloned().collect(), &*other)
    };
    fs::write(&path, serde_json::to_vec(&forged).unwrap()).unwrap();
    assert_refused(&path, c, "does not match its grants");
}

#[test]
fn an_unsigned_grants_file_from_an_earlier_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grants.json");
    let c = clock();
    two_grants(&path, c.clone());
    // The format before the seal: version 1, the grants, nothing else.
    let file: SealedFile = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    let legacy = serde_json::json!({ "version": 1, "grants": file.grants });
    fs::write(&path, serde_json::to_vec_pretty(&legacy).unwrap()).unwrap();
    assert_refused(&path, c.clone(), "unsigned");
    // A sealed file with its signature cut out is the same.
    two_grants(&path, c.clone());
    let mut file: SealedFile = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    file.sig = None;
    fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
    let first = fs::read_dir(dir.path()).unwrap().count();
    assert_refused(&path, c, "unsigned");
    // Two refusals in the same second keep both files.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), first);
}

/// A grant from an approved `pid:N` request covers the process the
/// request named: if the pid has a new process since, no grant is made.
#[test]
fn an_approved_pid_grant_is_for_the_process_the_request_named_only() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let (mut store, _) = open(dir.path().join("grants.json"), DEFAULT_MAX, c.clone()).unwrap();
    let me = std::process::id();
    let req = super::super::approval::RequestBody {
        id: "r-1".into(),
        host: "db-1".into(),
        user: "bob".into(),
        target: GrantTarget::Pid(me),
        mode: AccessMode::Full,
        duration_secs: 600,
        reason: "INC-9".into(),
        requester: Requester {
            uid: 0,
            pid: None,
            login_uid: None,
            login_user: None,
        },
        start_tick: Some(process_start(me).unwrap()),
        created: c.now(),
        expires: c.now(),
    };
    let approval = Approval {
        request: "r-1".into(),
        approver: "carol".into(),
        key: "00".repeat(32),
        approved_at: c.now(),
    };
    let mut reused = req.clone();
    reused.start_tick = req.start_tick.map(|t| t + 1);
    let e = store.grant_approved(&reused, approval.clone()).unwrap_err();
    assert!(matches!(e, GrantError::PidReused(p) if p == me), "{e}");
    assert!(store.list().is_empty());
    let ev = store.grant_approved(&req, approval.clone()).unwrap();
    assert_eq!(ev.grant.start_tick, req.start_tick);
    assert_eq!(ev.grant.approved, Some(approval));
    assert_eq!(ev.grant.reason, "INC-9");
}
