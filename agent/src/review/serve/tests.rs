//! `review --serve` over plain HTTP on loopback, against a file of sealed
//! records that grows while the page is served: refusals (an exposed
//! address without TLS and token, a missing or wrong token, POST), the
//! page escaping an argv that carries `<script>`, filters parsed as the
//! command parses them, the detail view's verdict, live updates over
//! Server-Sent Events, and the same page over TLS with a token.

use std::{io::Write as _, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use serde_json::{Map, Value, json};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    sync::watch,
};

use super::{
    Exposure, ServeError, http,
    live::{self, LiveSource, Snapshot},
    query::{Params, decode, encode},
};
use crate::record::{seal::Sealer, verify::trust::Trust};

const EVIL: &str = "<script>alert('x')</script>";

fn rec(t: u64, kind: &str, body: Value) -> Map<String, Value> {
    let mut m = json!({
        "schema": 1, "time": format!("2026-03-02T10:00:{t:02}.000000000Z"),
        "monotonic_ns": (t + 1) * 1_000_000_000,
        "host": {"name": "db-7", "id": "id-db-7", "boot_id": "b1"}, "kind": kind,
    });
    for (k, v) in body.as_object().unwrap() {
        m[k] = v.clone();
    }
    let Value::Object(m) = m else { unreachable!() };
    m
}

/// A ptrace alert by `comm` whose argv carries `<script>`.
fn ptrace(t: u64, comm: &str) -> Map<String, Value> {
    rec(
        t,
        "ptrace",
        json!({
            "actor": {"pid": 4000 + t, "uid": 0, "user": "root", "comm": comm,
                "argv": [comm, EVIL]},
            "target": {"pid": 1234, "comm": "postgres", "unit": "postgresql.service"},
            "detail": {"ptrace_request": "ATTACH"},
            "decision": {"action": "alert", "rule": "debugger-other-user", "severity": "high",
                "enforced": null, "tags": ["attack.t1055.008"]},
        }),
    )
}

struct Fixture {
    _dir: tempfile::TempDir,
    file: std::path::PathBuf,
    sealer: Sealer,
    key: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut sealer = Sealer::open(&dir.path().join("state"), &dir.path().join("host.key")).unwrap();
    let key = sealer.public_key_hex();
    let start = rec(
        0,
        "agent",
        json!({"detail": {"event": "started", "heartbeat_s": 5, "public_key": key}}),
    );
    let mut text = sealer.seal(start).unwrap().line;
    text.push(b'\n');
    text.extend(sealer.seal(ptrace(1, "gdb")).unwrap().line);
    text.push(b'\n');
    let file = dir.path().join("records.jsonl");
    std::fs::write(&file, text).unwrap();
    Fixture {
        _dir: dir,
        file,
        sealer,
        key,
    }
}

impl Fixture {
    fn append(&mut self, r: Map<String, Value>) {
        let mut line = self.sealer.seal(r).unwrap().line;
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.file)
            .unwrap();
        f.write_all(&line).unwrap();
    }
}

/// Serves `file` on a free loopback port; the task ends with the test.
async fn serve(
    file: &Path,
    key: &str,
    token: Option<&str>,
) -> (SocketAddr, watch::Receiver<Arc<Snapshot>>) {
    let snaps = live::start(
        LiveSource::File(file.to_owned()),
        Trust::Pinned(vec![key.to_owned()]),
        live::End::Newest,
    )
    .unwrap();
    let exposure = Exposure {
        token_env: token.map(str::to_owned),
        ..Exposure::default()
    };
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let guard = exposure.check(addr).unwrap();
    let listener = http::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(http::serve(listener, guard, snaps.clone()));
    (addr, snaps)
}

/// Waits until the snapshot holds `n` entries.
async fn until_lines(snaps: &mut watch::Receiver<Arc<Snapshot>>, n: usize) {
    let wait = async {
        while snaps.borrow_and_update().reviewed.entries.len() < n {
            snaps.changed().await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("the followed file's lines reach the snapshot");
}

async fn request(addr: SocketAddr, req: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

async fn get(addr: SocketAddr, target: &str) -> String {
    request(addr, &format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n")).await
}

/// Reads the event stream until `needle` has come.
async fn read_until(es: &mut TcpStream, needle: &str, seen: &mut String) {
    let mut buf = [0u8; 4096];
    let wait = async {
        while !seen.contains(needle) {
            let n = es.read(&mut buf).await.unwrap();
            assert!(n > 0, "the event stream ended: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("the event arrives");
}

#[test]
fn an_exposed_address_needs_tls_and_a_token() {
    let addr: SocketAddr = "0.0.0.0:7465".parse().unwrap();
    let none = Exposure::default();
    assert!(matches!(none.check(addr), Err(ServeError::Exposed { .. })));
    let token_only = Exposure {
        token_env: Some("s3cret".into()),
        ..Exposure::default()
    };
    assert!(matches!(
        token_only.check(addr),
        Err(ServeError::Exposed { .. })
    ));
    let half = Exposure {
        tls_cert: Some("/nonexistent.pem".into()),
        ..Exposure::default()
    };
    assert!(matches!(half.check(addr), Err(ServeError::HalfTls)));
    let empty = Exposure {
        token_env: Some("  ".into()),
        ..Exposure::default()
    };
    assert!(matches!(
        empty.check("127.0.0.1:1".parse().unwrap()),
        Err(ServeError::EmptyToken { .. })
    ));
    let v6: SocketAddr = "[::1]:7465".parse().unwrap();
    assert!(
        Exposure::default().check(v6).is_ok(),
        "loopback needs nothing"
    );
}

#[test]
fn tokens_compare_whole() {
    use http::authorized;
    assert!(authorized(None, None));
    assert!(!authorized(Some("s3cret"), None));
    assert!(authorized(Some("s3cret"), Some("Bearer s3cret")));
    assert!(!authorized(Some("s3cret"), Some("Bearer s3cre")));
    assert!(!authorized(Some("s3cret"), Some("Bearer s3cret2")));
    // Basic: any user, the token as the password ("u:s3cret").
    assert!(authorized(Some("s3cret"), Some("Basic dTpzM2NyZXQ=")));
    assert!(!authorized(Some("s3cret"), Some("Basic dTp3cm9uZw==")));
    assert!(!authorized(Some("s3cret"), Some("Basic !!!")));
    assert!(!authorized(Some("s3cret"), Some("s3cret")));
}

#[test]
fn queries_parse_as_the_flags_do() {
    assert_eq!(decode("a+b%3Cc%3e").unwrap(), "a b<c>");
    assert!(decode("%zz").is_err());
    assert!(decode("%ff").is_err(), "not UTF-8");
    assert_eq!(decode(&encode("unit:a b/<&>")).unwrap(), "unit:a b/<&>");
    let now = chrono::Utc::now();
    let p = Params::parse("kind=ptrace&kind=exec&host=&since=2h&failed").unwrap();
    let f = p.filter(now).unwrap();
    assert_eq!(f.kinds, ["ptrace", "exec"]);
    assert!(f.hosts.is_empty(), "an empty field is no condition");
    assert!(f.failed_only);
    let cli = crate::review::filter::instant_ns("since", "2h", now).unwrap();
    assert_eq!(f.since_ns, Some(cli));
    let e = Params::parse("since=yesterday")
        .unwrap()
        .filter(now)
        .unwrap_err();
    assert!(e.starts_with("--since \"yesterday\""), "{e}");
    assert!(Params::parse("colour=red").unwrap().filter(now).is_err());
    assert!(
        Params::parse("since=1h&since=2h")
            .unwrap()
            .filter(now)
            .is_err()
    );
}

#[test]
fn events_cannot_be_split_by_record_text() {
    let e = http::event("update", "a\nb\rc");
    assert_eq!(e, "event: update\ndata: a\ndata: b c\n\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_read_only_escaped_and_follows_the_file() {
    let mut fx = fixture();
    let (addr, mut snaps) = serve(&fx.file, &fx.key, None).await;
    until_lines(&mut snaps, 2).await;

    let page = get(addr, "/").await;
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(
        page.contains("Content-Security-Policy: default-src 'none'; script-src 'self';"),
        "{page}"
    );
    assert!(!page.contains(EVIL), "the argv is shown inert: {page}");
    let body = page.split_once("\r\n\r\n").unwrap().1;
    assert!(!body.contains("<script>alert"), "{body}");
    assert_eq!(body.matches("<script").count(), 1, "only /live.js: {body}");
    assert!(body.contains("debugger-other-user"), "{body}");
    assert!(body.contains("<svg id=\"chart\""), "{body}");

    for req in [
        "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        "PUT /record?host=id-db-7&seq=1 HTTP/1.1\r\n\r\n",
        "DELETE / HTTP/1.1\r\n\r\n",
    ] {
        let r = request(addr, req).await;
        assert!(
            r.starts_with("HTTP/1.1 405 ") && r.contains("Allow: GET, HEAD"),
            "{r}"
        );
    }
    let r = get(addr, "/?colour=red").await;
    assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
    let r = get(addr, "/nowhere").await;
    assert!(r.starts_with("HTTP/1.1 404 "), "{r}");

    // The detail: the record whole (its argv escaped) and its verdict.
    let d = get(addr, "/record?host=id-db-7&seq=2").await;
    assert!(d.starts_with("HTTP/1.1 200 OK"), "{d}");
    assert!(d.contains("class=\"verdict v-ok\">ok</strong>"), "{d}");
    assert!(
        d.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
        "{d}"
    );
    assert!(!d.contains(EVIL), "{d}");
    let r = get(addr, "/record?host=id-db-7&seq=99").await;
    assert!(r.starts_with("HTTP/1.1 404 "), "{r}");

    // Live: an event stream, then a new record appended to the file.
    let mut es = TcpStream::connect(addr).await.unwrap();
    es.write_all(b"GET /events?kind=ptrace HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let mut seen = String::new();
    read_until(&mut es, "gdb[4001]", &mut seen).await;
    assert!(seen.contains("Content-Type: text/event-stream"), "{seen}");
    fx.append(ptrace(3, "<i>evil</i>"));
    read_until(&mut es, "&lt;i&gt;evil&lt;/i&gt;[4003]", &mut seen).await;
    assert!(!seen.contains("<i>evil"), "escaped in events too: {seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_asked_for_and_checked() {
    let fx = fixture();
    let (addr, mut snaps) = serve(&fx.file, &fx.key, Some("s3cret")).await;
    until_lines(&mut snaps, 2).await;
    let r = get(addr, "/").await;
    assert!(r.starts_with("HTTP/1.1 401 "), "{r}");
    assert!(r.contains("WWW-Authenticate: Basic"), "{r}");
    assert!(!r.contains("gdb"), "{r}");
    let r = get(addr, "/events").await;
    assert!(r.starts_with("HTTP/1.1 401 "), "{r}");
    let r = request(
        addr,
        "GET / HTTP/1.1\r\nAuthorization: Bearer wrong\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 401 "), "{r}");
    let r = request(
        addr,
        "GET / HTTP/1.1\r\nauthorization: Bearer s3cret\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
    assert!(r.contains("gdb[4001]"), "{r}");
    // Refused before the token is even looked at.
    let r = request(
        addr,
        "POST / HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_a_token_the_page_serves_only_tls() {
    use tokio_rustls::{
        TlsConnector,
        rustls::{self, RootCertStore, pki_types::ServerName},
    };
    let fx = fixture();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, token) = (
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
        dir.path().join("token"),
    );
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    std::fs::write(&token, "s3cret\n").unwrap();
    let exposure = Exposure {
        tls_cert: Some(cert),
        tls_key: Some(key.clone()),
        token_file: Some(token.clone()),
        token_env: None,
    };
    // Secrets other users can read are refused, each by name, as long as
    // either is.
    let exposed: std::net::SocketAddr = "0.0.0.0:7465".parse().unwrap();
    for (path, what) in [(&key, "the TLS key"), (&token, "the token file")] {
        for mode in [0o644, 0o640, 0o604] {
            chmod(path, mode);
            let e = exposure.check(exposed).err().expect("refused");
            let text = e.to_string();
            assert!(text.contains(what) && text.contains("chmod 600"), "{text}");
            chmod(path, 0o600);
        }
    }
    // What an exposed address would accept: checked, then bound on
    // loopback for the test.
    let guard = exposure.check("0.0.0.0:7465".parse().unwrap()).unwrap();
    assert_eq!(guard.token.as_deref(), Some("s3cret"));
    let snaps = live::start(
        LiveSource::File(fx.file.clone()),
        Trust::Pinned(vec![fx.key.clone()]),
        live::End::Newest,
    )
    .unwrap();
    let listener = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(http::serve(listener, guard, snaps.clone()));
    let mut snaps = snaps;
    until_lines(&mut snaps, 2).await;

    let r = get(addr, "/").await;
    assert!(!r.contains("gdb"), "plain HTTP gets no page: {r:?}");

    let mut roots = RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));
    let tls_get = async |auth: &str| {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut s = connector.connect(name, tcp).await.unwrap();
        s.write_all(format!("GET / HTTP/1.1\r\n{auth}\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = Vec::new();
        // The server closes without a TLS close_notify on some paths; what
        // was read until then is the answer.
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    };
    let r = tls_get("").await;
    assert!(r.starts_with("HTTP/1.1 401 "), "{r}");
    let r = tls_get("Authorization: Bearer s3cret\r\n").await;
    assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
    assert!(r.contains("gdb[4001]"), "{r}");
}

#[test]
fn the_timeline_takes_any_times_records_claim() {
    use crate::review::{Entry, Status, serve::chart::timeline};
    let at = |time: &str, rule: &str| Entry {
        line: 1,
        record: json!({"time": time, "host": {"name": "<b>h</b>"}, "kind": "ptrace",
            "decision": {"action": "alert", "rule": rule}}),
        status: Status::Failed(vec!["edited".into()]),
    };
    let entries = [
        at("1677-09-22T00:12:44Z", "r1"),
        at("2262-04-11T23:47:16Z", "r2"),
        at("not a time", "r3"),
    ];
    let refs: Vec<&Entry> = entries.iter().collect();
    let svg = timeline(&refs);
    assert!(svg.contains("host &lt;b&gt;h&lt;/b&gt;"), "{svg}");
    assert!(!svg.contains("<b>"), "{svg}");
    assert!(svg.contains("rule r1") && svg.contains("rule r2"), "{svg}");
    assert!(svg.contains("1 lines without a time left out"), "{svg}");
    assert_eq!(timeline(&[]), "<p>No records with a time to chart.</p>");
}

fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
