//! The page's HTTP/1.1 server, small on purpose like the metrics endpoint:
//! GET (and HEAD) only, one request per connection, a bounded request head
//! and a bounded number of connections. With a token every request must
//! carry it (`Authorization: Bearer T`, or HTTP Basic with T as the
//! password, which browsers ask for and send to `/events` too), compared
//! in constant time; with a certificate every connection is TLS. Every
//! answer carries a Content-Security-Policy that lets the page load only
//! its own script and style.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt as _},
    net::TcpListener,
    sync::{Semaphore, watch},
};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    },
};

use super::{
    Guard, ServeError,
    live::Snapshot,
    page::{self, Selector},
    query::Params,
};

/// Time a client has to send its request, and to take each write.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once (each open page holds one for its events).
const MAX_CONNECTIONS: usize = 64;
/// A comment down an idle event stream, so proxies and the browser keep it.
const KEEPALIVE: Duration = Duration::from_secs(15);

const LIVE_JS: &str = include_str!("assets/live.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Sent with every answer: only the page's own script and style, no
/// framing, no referrer, nothing cached (records are sensitive).
const SECURITY_HEADERS: &str = "Content-Security-Policy: default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: \
     no-referrer\r\nX-Frame-Options: DENY\r\nCache-Control: no-store\r\n";

/// A TLS acceptor from PEM files: the certificate chain and its key.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ServeError> {
    let read = |what, path: &Path| {
        std::fs::read(path).map_err(|io_error| ServeError::Read {
            what,
            path: path.to_owned(),
            io_error,
        })
    };
    let pem = |path: &Path, e: &dyn std::fmt::Display| ServeError::Pem {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let certs = CertificateDer::pem_slice_iter(&read("the TLS certificate", cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(cert, &e))?;
    if certs.is_empty() {
        return Err(pem(cert, &"no certificate in the file"));
    }
    let key_der =
        PrivateKeyDer::from_pem_slice(&read("the TLS key", key)?).map_err(|e| pem(key, &e))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(ServeError::Tls)?
    .with_no_client_auth()
    .with_single_cert(certs, key_der)
    .map_err(ServeError::Tls)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|io_error| ServeError::Bind { addr, io_error })
}

/// Serves until the task is dropped or the snapshots end.
pub async fn serve(listener: TcpListener, guard: Guard, snapshots: watch::Receiver<Arc<Snapshot>>) {
    let guard = Arc::new(guard);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection to the review page failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (guard, rx) = (Arc::clone(&guard), snapshots.clone());
        tokio::spawn(async move {
            let r = match &guard.tls {
                Some(tls) => match tokio::time::timeout(IO_TIMEOUT, tls.accept(tcp)).await {
                    Ok(Ok(s)) => handle(s, guard.token.as_deref(), rx).await,
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
                },
                None => handle(tcp, guard.token.as_deref(), rx).await,
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, "review page connection ended");
            }
            drop(permit);
        });
    }
}

/// What the client asked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
}

/// The request line and the one header the server reads; `None` when the
/// head is not HTTP/1.x.
pub(crate) fn parse_head(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut parts = lines.next()?.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return None;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let authorization = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("authorization")
            .then(|| v.trim().to_owned())
    });
    Some(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        authorization,
    })
}

/// Whether the request carries the token (always, without one). Both
/// sides are hashed first, so neither the content nor the length of the
/// token shows in the time the comparison takes.
pub(crate) fn authorized(token: Option<&str>, header: Option<&str>) -> bool {
    let Some(token) = token else { return true };
    let Some(h) = header else { return false };
    let given: Vec<u8> = if let Some(t) = h.strip_prefix("Bearer ") {
        t.trim().as_bytes().to_vec()
    } else if let Some(b) = h.strip_prefix("Basic ") {
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b.trim()) else {
            return false;
        };
        match raw.iter().position(|&c| c == b':') {
            Some(i) => raw[i + 1..].to_vec(),
            None => return false,
        }
    } else {
        return false;
    };
    let (a, b) = (Sha256::digest(&given), Sha256::digest(token.as_bytes()));
    a.ct_eq(&b).into()
}

async fn write_all<S: AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    tokio::time::timeout(IO_TIMEOUT, s.write_all(bytes))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// One complete answer, then the connection closes.
async fn respond<S: AsyncWrite + Unpin>(
    s: &mut S,
    status: &str,
    ctype: &str,
    extra: &str,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{SECURITY_HEADERS}{extra}Connection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.push_str(body);
    }
    write_all(s, out.as_bytes()).await?;
    let _ = tokio::time::timeout(IO_TIMEOUT, s.shutdown()).await;
    Ok(())
}

const HTML: &str = "text/html; charset=utf-8";

async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    token: Option<&str>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
) -> std::io::Result<()> {
    let head = tokio::time::timeout(IO_TIMEOUT, crate::metrics::http::read_head(&mut s))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let Some(head) = head else {
        let body = page::message("Request too large", "The request head is too large.");
        return respond(
            &mut s,
            "431 Request Header Fields Too Large",
            HTML,
            "",
            &body,
            false,
        )
        .await;
    };
    let Some(req) = parse_head(&head) else {
        let body = page::message("Bad request", "Not an HTTP/1 request.");
        return respond(&mut s, "400 Bad Request", HTML, "", &body, false).await;
    };
    let head_only = req.method == "HEAD";
    if req.method != "GET" && !head_only {
        let body = page::message("Read-only", "This page is read-only: only GET.");
        return respond(
            &mut s,
            "405 Method Not Allowed",
            HTML,
            "Allow: GET, HEAD\r\n",
            &body,
            false,
        )
        .await;
    }
    if !authorized(token, req.authorization.as_deref()) {
        let body = page::message("Token needed", "This page needs its token.");
        return respond(
            &mut s,
            "401 Unauthorized",
            HTML,
            "WWW-Authenticate: Basic realm=\"debugmon review\", charset=\"UTF-8\"\r\n",
            &body,
            head_only,
        )
        .await;
    }
    let params = match Params::parse(&req.query) {
        Ok(p) => p,
        Err(e) => {
            let body = page::message("Bad query", &e);
            return respond(&mut s, "400 Bad Request", HTML, "", &body, head_only).await;
        }
    };
    match req.path.as_str() {
        "/" | "/events" => {
            let filter = match params.filter(chrono::Utc::now()) {
                Ok(f) => f,
                Err(e) => {
                    let body = page::message("Bad filter", &e);
                    return respond(&mut s, "400 Bad Request", HTML, "", &body, head_only).await;
                }
            };
            if req.path == "/events" {
                return events(s, &params, snapshots, head_only).await;
            }
            let snap = Arc::clone(&snapshots.borrow());
            let body = page::index(&snap, &params, &filter);
            respond(&mut s, "200 OK", HTML, "", &body, head_only).await
        }
        "/record" => {
            let snap = Arc::clone(&snapshots.borrow());
            let found =
                Selector::of(&params).map(|sel| page::detail(&snap, &sel, params.first("back")));
            match found {
                Ok(Some(body)) => respond(&mut s, "200 OK", HTML, "", &body, head_only).await,
                Ok(None) => {
                    let body = page::message("Not found", "The input has no such record (yet).");
                    respond(&mut s, "404 Not Found", HTML, "", &body, head_only).await
                }
                Err(e) => {
                    let body = page::message("Bad request", &e);
                    respond(&mut s, "400 Bad Request", HTML, "", &body, head_only).await
                }
            }
        }
        "/live.js" => {
            let ctype = "text/javascript; charset=utf-8";
            respond(&mut s, "200 OK", ctype, "", LIVE_JS, head_only).await
        }
        // Browsers ask for it unprompted; nothing, rather than a 404.
        "/favicon.ico" => {
            respond(&mut s, "204 No Content", "image/x-icon", "", "", head_only).await
        }
        "/style.css" => {
            respond(
                &mut s,
                "200 OK",
                "text/css; charset=utf-8",
                "",
                STYLE_CSS,
                head_only,
            )
            .await
        }
        _ => {
            let body = page::message("Not found", "No such page.");
            respond(&mut s, "404 Not Found", HTML, "", &body, head_only).await
        }
    }
}

/// One Server-Sent Event: each line of `data` its own `data:` field (the
/// browser joins them with newlines). A carriage return would end a line
/// early, so none is sent.
pub(crate) fn event(name: &str, data: &str) -> String {
    let mut out = format!("event: {name}\n");
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(&line.replace('\r', " "));
        out.push('\n');
    }
    out.push('\n');
    out
}

/// The live part for this view, sent now and after every new snapshot,
/// until the client goes away.
async fn events<S: AsyncWrite + Unpin>(
    mut s: S,
    params: &Params,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    head_only: bool,
) -> std::io::Result<()> {
    let start = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n{SECURITY_HEADERS}Connection: close\r\n\r\n"
    );
    write_all(&mut s, start.as_bytes()).await?;
    if head_only {
        return Ok(());
    }
    // Ask the browser to come back soon after a drop.
    write_all(&mut s, b"retry: 2000\n\n").await?;
    loop {
        let snap = Arc::clone(&snapshots.borrow_and_update());
        // A relative `since` moves with the clock.
        let Ok(filter) = params.filter(chrono::Utc::now()) else {
            return Ok(());
        };
        let data = page::fragment(&snap, params, &filter);
        write_all(&mut s, event("update", &data).as_bytes()).await?;
        s.flush().await?;
        // Once the source has ended (stdin read to its end) nothing more
        // comes: the stream stays open, so the browser does not reconnect
        // in a loop for the same page.
        let mut ended = false;
        loop {
            tokio::select! {
                r = snapshots.changed(), if !ended => {
                    if r.is_err() {
                        ended = true;
                        continue;
                    }
                    break;
                }
                () = tokio::time::sleep(KEEPALIVE) => {
                    write_all(&mut s, b": keepalive\n\n").await?;
                    s.flush().await?;
                }
            }
        }
    }
}
