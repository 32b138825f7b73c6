//! Requests and approvals signed and checked: every way an approval can
//! be wrong is refused with its reason, and a good one passes once.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, TimeZone as _, Utc};
use ed25519_dalek::SigningKey;

use super::{
    pending::{Ask, Dropped, PendingBook},
    *,
};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).unwrap()
}

fn host_key() -> Arc<SigningKey> {
    Arc::new(SigningKey::from_bytes(&[1; 32]))
}

fn carol() -> SigningKey {
    SigningKey::from_bytes(&[2; 32])
}

fn approvers() -> Approvers {
    let line = |name: &str, k: &SigningKey| {
        format!("{name}:{}", hex::encode(k.verifying_key().as_bytes()))
    };
    Approvers::parse(&[
        line("carol", &carol()),
        line("alice", &SigningKey::from_bytes(&[3; 32])),
    ])
    .unwrap()
}

fn requester(login: Option<&str>) -> Requester {
    Requester {
        uid: 0,
        pid: Some(42),
        login_uid: login.map(|_| 1000),
        login_user: login.map(str::to_owned),
    }
}

/// A book on host `db-1` with one open request by login user alice for bob.
fn book(dir: &std::path::Path) -> (PendingBook, SignedRequest, RequestBody) {
    let (mut b, dropped) = PendingBook::open(
        dir.join("requests.json"),
        "db-1",
        host_key(),
        Duration::from_secs(3600),
        Duration::from_secs(4 * 3600),
        t0(),
    )
    .unwrap();
    assert!(dropped.is_empty());
    let signed = b
        .ask(
            Ask {
                user: "bob",
                target: "unit:payments.service".parse().unwrap(),
                mode: AccessMode::Read,
                duration: Duration::from_secs(1800),
                reason: "INC-7",
                requester: requester(Some("alice")),
            },
            t0(),
        )
        .unwrap();
    let body = signed.verify(&host_key().verifying_key()).unwrap();
    (b, signed, body)
}

fn ctx(approvers: &Approvers, now: DateTime<Utc>) -> Context<'_> {
    Context {
        host: "db-1",
        approvers,
        two_person: true,
        now,
    }
}

fn approve(signed: &SignedRequest, body: &RequestBody, name: &str, key: &SigningKey) -> Vec<u8> {
    serde_json::to_vec(&SignedApproval::sign(signed, body, name, key, t0())).unwrap()
}

#[test]
fn a_good_approval_passes_and_names_the_approver() {
    let dir = tempfile::tempdir().unwrap();
    let (b, signed, body) = book(dir.path());
    let a = approvers();
    let (approval, req) = check(
        &approve(&signed, &body, "carol", &carol()),
        &ctx(&a, t0()),
        &b,
    )
    .unwrap();
    assert_eq!(req, &body);
    assert_eq!(approval.approver, "carol");
    assert_eq!(approval.request, body.id);
    assert_eq!(
        approval.key,
        hex::encode(carol().verifying_key().as_bytes())
    );
    assert_eq!(
        (body.user.as_str(), body.duration_secs, body.host.as_str()),
        ("bob", 1800, "db-1")
    );
}

#[test]
fn an_unknown_key_is_refused_as_an_attack() {
    let dir = tempfile::tempdir().unwrap();
    let (b, signed, body) = book(dir.path());
    let a = approvers();
    let mallory = SigningKey::from_bytes(&[9; 32]);
    let e = check(
        &approve(&signed, &body, "carol", &mallory),
        &ctx(&a, t0()),
        &b,
    )
    .unwrap_err();
    assert!(matches!(e, Refusal::UnknownKey(_)), "{e}");
    assert!(e.is_attack());
}

#[test]
fn a_tampered_approval_or_request_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (b, signed, body) = book(dir.path());
    let a = approvers();
    // The approval's body changed after signing (another host named).
    let mut msg = SignedApproval::sign(&signed, &body, "carol", &carol(), t0());
    msg.body = msg.body.replace("db-1", "db-2");
    let raw = serde_json::to_vec(&msg).unwrap();
    let e = check(&raw, &ctx(&a, t0()), &b).unwrap_err();
    assert_eq!(e, Refusal::BadSignature("carol".into()));
    // An approval of other content (a longer grant) under the same id.
    let mut longer = body.clone();
    longer.duration_secs = 4 * 3600;
    let forged = SignedRequest::sign(&longer, &SigningKey::from_bytes(&[5; 32]));
    let e = check(
        &approve(&forged, &longer, "carol", &carol()),
        &ctx(&a, t0()),
        &b,
    )
    .unwrap_err();
    assert_eq!(e, Refusal::HashMismatch(body.id.clone()));
    assert!(e.is_attack());
    // A host signature over a changed body does not verify.
    let mut t = signed.clone();
    t.body = t.body.replace("\"bob\"", "\"eve\"");
    assert!(t.verify(&host_key().verifying_key()).is_err());
    assert!(t.verify_self().is_err());
    // Garbage.
    assert!(matches!(
        check(b"{", &ctx(&a, t0()), &b),
        Err(Refusal::Malformed(_))
    ));
}

#[test]
fn a_name_other_than_the_keys_owner_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (b, signed, body) = book(dir.path());
    let a = approvers();
    let e = check(
        &approve(&signed, &body, "dave", &carol()),
        &ctx(&a, t0()),
        &b,
    )
    .unwrap_err();
    assert_eq!(
        e,
        Refusal::NameMismatch {
            key_owner: "carol".into(),
            named: "dave".into()
        }
    );
}

#[test]
fn an_approval_for_another_host_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (b, signed, mut body) = book(dir.path());
    let a = approvers();
    body.host = "db-2".into();
    let e = check(
        &approve(&signed, &body, "carol", &carol()),
        &ctx(&a, t0()),
        &b,
    )
    .unwrap_err();
    assert_eq!(e, Refusal::WrongHost("db-2".into()));
}

#[test]
fn a_replayed_approval_finds_its_request_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut b, signed, body) = book(dir.path());
    let a = approvers();
    let raw = approve(&signed, &body, "carol", &carol());
    assert!(check(&raw, &ctx(&a, t0()), &b).is_ok());
    b.close(&body.id).unwrap();
    let e = check(&raw, &ctx(&a, t0()), &b).unwrap_err();
    assert_eq!(e, Refusal::UnknownRequest(body.id.clone()));
    assert!(!e.is_attack());
    // And after a restart: the closed request stays closed.
    let (b2, _) = PendingBook::open(
        dir.path().join("requests.json"),
        "db-1",
        host_key(),
        Duration::from_secs(3600),
        Duration::from_secs(4 * 3600),
        t0(),
    )
    .unwrap();
    assert!(check(&raw, &ctx(&a, t0()), &b2).is_err());
}

#[test]
fn an_expired_request_cannot_be_approved() {
    let dir = tempfile::tempdir().unwrap();
    let (mut b, signed, body) = book(dir.path());
    let a = approvers();
    let later = t0() + chrono::Duration::hours(1);
    let e = check(
        &approve(&signed, &body, "carol", &carol()),
        &ctx(&a, later),
        &b,
    )
    .unwrap_err();
    assert!(matches!(e, Refusal::Expired { .. }), "{e}");
    assert_eq!(b.expire(later).unwrap(), vec![body]);
    assert!(b.signed().is_empty());
}

#[test]
fn two_person_rule_refuses_the_requester_and_the_grantee() {
    let dir = tempfile::tempdir().unwrap();
    let (b, signed, body) = book(dir.path());
    let alice = SigningKey::from_bytes(&[3; 32]);
    let a = approvers();
    // alice asked (her login user): she may not approve.
    let e = check(
        &approve(&signed, &body, "alice", &alice),
        &ctx(&a, t0()),
        &b,
    )
    .unwrap_err();
    assert_eq!(e, Refusal::SelfApproval("alice".into()));
    // Without the rule she may.
    let mut c = ctx(&a, t0());
    c.two_person = false;
    assert!(check(&approve(&signed, &body, "alice", &alice), &c, &b).is_ok());
}

#[test]
fn open_requests_survive_a_restart_and_a_forged_one_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (_, signed, body) = book(dir.path());
    let path = dir.path().join("requests.json");
    let reopen = || {
        PendingBook::open(
            &path,
            "db-1",
            host_key(),
            Duration::from_secs(3600),
            Duration::from_secs(4 * 3600),
            t0(),
        )
        .unwrap()
    };
    let (b, dropped) = reopen();
    assert!(dropped.is_empty());
    assert_eq!(b.open_request(&body.id).map(|(s, _)| s), Some(&signed));
    // Someone who can write the file stretches the grant.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("1800", "14400")).unwrap();
    let (b, dropped) = reopen();
    assert!(
        matches!(&dropped[..], [Dropped::Forged { .. }]),
        "{dropped:?}"
    );
    assert!(b.open_request(&body.id).is_none());
    let kept = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("requests.json.rejected-")
        })
        .expect("the refused file is kept");
    assert!(
        std::fs::read_to_string(kept.path())
            .unwrap()
            .contains("14400")
    );
}

#[test]
fn requests_longer_than_the_maximum_or_empty_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut b, _, _) = book(dir.path());
    let ask = |user: &'static str, secs| Ask {
        user,
        target: GrantTarget::Any,
        mode: AccessMode::Full,
        duration: Duration::from_secs(secs),
        reason: "INC-8",
        requester: requester(None),
    };
    assert!(b.ask(ask("bob", 5 * 3600), t0()).is_err());
    assert!(b.ask(ask(" ", 60), t0()).is_err());
    assert!(b.ask(ask("bob", 60), t0()).is_ok());
}

#[test]
fn approver_lists_are_checked() {
    let k = hex::encode(carol().verifying_key().as_bytes());
    assert!(Approvers::parse(&[format!("carol:{k}")]).is_ok());
    for bad in ["carol", "carol:zz", ":00", &format!("a b:{k}")] {
        assert!(Approvers::parse(&[bad.to_owned()]).is_err(), "{bad}");
    }
    let twice = Approvers::parse(&[format!("carol:{k}"), format!("dave:{k}")]);
    assert!(matches!(twice, Err(ApprovalError::DuplicateApprover(_))));
}
