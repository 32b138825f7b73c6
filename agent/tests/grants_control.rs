//! The control socket over a real unix socket in a temp dir: grant, list,
//! revoke from the client, events reported to the caller, and refusal of a
//! peer that is not root (a thread that drops to uid 65534 with a raw
//! setresuid, which changes only that thread's credentials).

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::{fs::PermissionsExt, net::UnixStream},
    sync::{Arc, Mutex},
    time::Duration,
};

use agent::grants::{
    GrantEventKind, GrantStore, SystemClock,
    control::{self, ControlEvent, GrantFields, Request},
    store::DEFAULT_MAX,
};
use tokio::sync::{mpsc, oneshot};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_list_revoke_and_refuse_non_root() {
    if !is_root() {
        eprintln!("skipped: the server only serves uid 0, and this test is not root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("run/control.sock");
    let (store, expired) = GrantStore::open(
        dir.path().join("grants.json"),
        DEFAULT_MAX,
        Arc::new(SystemClock),
        Arc::new(ed25519_dalek::SigningKey::from_bytes(&[7; 32])),
    )
    .unwrap();
    assert!(expired.is_empty());
    let store = Arc::new(Mutex::new(store));
    let listener = control::bind(&sock).unwrap();
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (tx, mut events) = mpsc::channel(16);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(control::serve(listener, store.clone(), tx, async {
        let _ = stopped.await;
    }));

    let r = control::request(
        &sock,
        &Request::Grant(GrantFields {
            user: "alice".into(),
            target: "unit:postgresql.service".into(),
            duration: "30m".into(),
            reason: "INC-1234".into(),
            mode: None,
        }),
    )
    .await
    .unwrap();
    assert!(r.ok, "{r:?}");
    let g = r.grant.unwrap();
    assert_eq!(g.user, "alice");
    assert_eq!(g.target.to_string(), "unit:postgresql.service");
    assert_eq!((g.expires - g.created).num_minutes(), 30);
    assert_eq!(
        g.mode,
        agent::grants::AccessMode::Full,
        "full is the default"
    );
    // The grant names who asked: this process, by SO_PEERCRED, and its
    // login uid as the kernel keeps it.
    let asked = g.requested_by.clone().expect("requested_by");
    assert_eq!(asked.uid, 0);
    assert_eq!(asked.pid, Some(i32::try_from(std::process::id()).unwrap()));
    let own_login = std::fs::read_to_string("/proc/self/loginuid")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|&u| u != u32::MAX);
    assert_eq!(asked.login_uid, own_login);
    match events.recv().await.unwrap() {
        ControlEvent::Grant(e) => assert_eq!(
            (e.event, e.grant.id),
            (GrantEventKind::Created, g.id.clone())
        ),
        other => panic!("{other:?}"),
    }

    let too_long = control::request(
        &sock,
        &Request::Grant(GrantFields {
            user: "alice".into(),
            target: "any".into(),
            duration: "5h".into(),
            reason: "x".into(),
            mode: None,
        }),
    )
    .await
    .unwrap();
    assert!(!too_long.ok);
    assert_eq!(
        too_long.error.as_deref(),
        Some("grant of 5h refused: longer than the maximum of 4h")
    );

    let bad_mode = control::request(
        &sock,
        &Request::Grant(GrantFields {
            user: "alice".into(),
            target: "any".into(),
            duration: "5m".into(),
            reason: "x".into(),
            mode: Some("write".into()),
        }),
    )
    .await
    .unwrap();
    assert!(!bad_mode.ok);
    assert_eq!(
        bad_mode.error.as_deref(),
        Some("bad access mode `write`: expected read or full")
    );

    let read = control::request(
        &sock,
        &Request::Grant(GrantFields {
            user: "bob".into(),
            target: "unit:postgresql.service".into(),
            duration: "10m".into(),
            reason: "INC-1235".into(),
            mode: Some("read".into()),
        }),
    )
    .await
    .unwrap();
    assert!(read.ok, "{read:?}");
    assert_eq!(read.grant.unwrap().mode, agent::grants::AccessMode::Read);
    let _ = events.recv().await.unwrap();

    let list = control::request(&sock, &Request::List).await.unwrap();
    assert_eq!(list.grants.unwrap().len(), 2);
    control::request(
        &sock,
        &Request::Revoke {
            id: read_id(&store),
        },
    )
    .await
    .unwrap();
    let _ = events.recv().await.unwrap();

    let rev = control::request(&sock, &Request::Revoke { id: g.id.clone() })
        .await
        .unwrap();
    assert!(rev.ok);
    match events.recv().await.unwrap() {
        ControlEvent::Grant(e) => assert_eq!(e.event, GrantEventKind::Revoked),
        other => panic!("{other:?}"),
    }
    assert!(store.lock().unwrap().list().is_empty());

    // A socket left world-writable by mistake still refuses non-root peers.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(
        dir.path().join("run"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = sock.clone();
    let answer = tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || {
            // SAFETY: a raw syscall (unlike glibc's setresuid) changes only
            // this thread's credentials; the thread ends right after.
            let rc = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
            assert_eq!(rc, 0, "setresuid");
            let mut s = UnixStream::connect(&path).unwrap();
            // The server answers a refused peer without reading, and may
            // have closed before the request is written.
            let _ = s.write_all(b"{\"op\":\"list\"}\n");
            let mut line = String::new();
            BufReader::new(s).read_line(&mut line).unwrap();
            line
        })
        .join()
        .unwrap()
    })
    .await
    .unwrap();
    let resp: control::Response = serde_json::from_str(&answer).unwrap();
    assert!(!resp.ok);
    assert_eq!(
        resp.error.as_deref(),
        Some("control socket refused uid 65534: only root may use it")
    );
    match tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
    {
        Some(ControlEvent::Refused { uid, pid }) => {
            assert_eq!(uid, 65534);
            assert_eq!(pid, Some(i32::try_from(std::process::id()).unwrap()));
        }
        other => panic!("{other:?}"),
    }

    stop.send(()).unwrap();
    server.await.unwrap();
}

/// The id of the one read-only grant in the store.
fn read_id(store: &Mutex<agent::grants::GrantStore>) -> String {
    let store = store.lock().unwrap();
    let g = store.list();
    let read: Vec<_> = g
        .iter()
        .filter(|g| g.mode == agent::grants::AccessMode::Read)
        .collect();
    assert_eq!(read.len(), 1);
    read[0].id.clone()
}
