//! The metrics endpoint: a deliberately small HTTP/1.1 server on a tokio
//! `TcpListener` that answers `GET /metrics` (Prometheus text) and
//! `GET /status` (the [`StatusReport`] as JSON), 404 otherwise. One request
//! per connection; the request head is bounded in size and time, and the
//! number of connections served at once is bounded, so a slow or hostile
//! client cannot hold the agent's memory or tasks.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use thiserror::Error;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    task::JoinSet,
};

use super::{Metrics, status::StatusReport};

/// Largest request head read; anything longer is answered 431.
pub(crate) const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its request, and then to take the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; further ones wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 16;

#[derive(Debug, Error)]
pub enum HttpError {
    #[error("binding the metrics endpoint to {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        io_error: io::Error,
    },
}

/// A bound endpoint, not yet serving.
pub struct MetricsServer {
    listener: TcpListener,
}

impl MetricsServer {
    /// Binds now, so that a taken port is a startup error.
    pub async fn bind(addr: SocketAddr) -> Result<Self, HttpError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|io_error| HttpError::Bind { addr, io_error })?;
        Ok(Self { listener })
    }

    /// The address actually bound (the port, when 0 was asked for).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the returned handle is dropped; in-flight connections
    /// end with it (they live in the serving task's `JoinSet`).
    pub fn serve(self, metrics: Arc<Metrics>) -> Serving {
        Serving(tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
            let mut conns = JoinSet::new();
            loop {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    return;
                };
                while conns.try_join_next().is_some() {}
                match self.listener.accept().await {
                    Ok((stream, _)) => {
                        let m = Arc::clone(&metrics);
                        conns.spawn(async move {
                            if let Err(e) = handle(stream, &m).await {
                                tracing::debug!(error = %e, "metrics connection failed");
                            }
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        // E.g. EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "accepting a metrics connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }))
    }
}

/// The serving task; dropping it stops the endpoint.
pub struct Serving(tokio::task::JoinHandle<()>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a request asked for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    Status,
    NotFound,
    MethodNotAllowed,
    BadRequest,
    TooLarge,
}

/// Routes a request head (everything before the blank line).
fn route(head: &[u8]) -> (Route, bool) {
    let Ok(text) = std::str::from_utf8(head) else {
        return (Route::BadRequest, false);
    };
    let mut parts = text.lines().next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return (Route::BadRequest, false);
    };
    if !version.starts_with("HTTP/1.") {
        return (Route::BadRequest, false);
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return (Route::MethodNotAllowed, false);
    }
    let path = target.split('?').next().unwrap_or_default();
    let r = match path {
        "/metrics" => Route::Metrics,
        "/status" => Route::Status,
        _ => Route::NotFound,
    };
    (r, head_only)
}

/// Reads up to the end of the request head, bounded by [`MAX_HEAD`]
/// (`None` past it); the `review --serve` page reads its requests so too.
pub(crate) async fn read_head<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end);
            return Ok(Some(buf));
        }
        if buf.len() >= MAX_HEAD {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn handle(mut stream: TcpStream, m: &Metrics) -> io::Result<()> {
    let head = tokio::time::timeout(IO_TIMEOUT, read_head(&mut stream))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    let (route, head_only) = match head {
        Some(h) => route(&h),
        None => (Route::TooLarge, false),
    };
    let (status, ctype, body) = match route {
        Route::Metrics => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            m.render(),
        ),
        Route::Status => match serde_json::to_string(&StatusReport::from_metrics(m)) {
            Ok(json) => ("200 OK", "application/json", json),
            Err(e) => (
                "500 Internal Server Error",
                "text/plain; charset=utf-8",
                format!("{e}\n"),
            ),
        },
        Route::NotFound => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: try /metrics or /status\n".into(),
        ),
        Route::MethodNotAllowed => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET\n".into(),
        ),
        Route::BadRequest => (
            "400 Bad Request",
            "text/plain; charset=utf-8",
            "bad request\n".into(),
        ),
        Route::TooLarge => (
            "431 Request Header Fields Too Large",
            "text/plain; charset=utf-8",
            "request head too large\n".into(),
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
        body.len(),
        if route == Route::MethodNotAllowed {
            "Allow: GET, HEAD\r\n"
        } else {
            ""
        }
    );
    if !head_only {
        out.push_str(&body);
    }
    tokio::time::timeout(IO_TIMEOUT, async {
        stream.write_all(out.as_bytes()).await?;
        stream.shutdown().await
    })
    .await
    .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, req: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(req).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    async fn server() -> (SocketAddr, Arc<Metrics>, Serving) {
        let srv = MetricsServer::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = srv.local_addr().unwrap();
        let m = Arc::new(Metrics::new());
        let task = srv.serve(Arc::clone(&m));
        (addr, m, task)
    }

    #[tokio::test]
    async fn serves_metrics_status_and_404() {
        let (addr, m, task) = server().await;
        m.event(&crate::metrics::EventLabel::Exec);
        let r = get(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: text/plain; version=0.0.4"), "{r}");
        assert!(
            r.contains("debugmon_events_total{kind=\"exec\"} 1\n"),
            "{r}"
        );

        let r = get(addr, b"GET /status?x=1 HTTP/1.1\r\n\r\n").await;
        let body = r.split_once("\r\n\r\n").unwrap().1;
        let report: StatusReport = serde_json::from_str(body).unwrap();
        assert_eq!(report.counters.events["exec"], 1);

        let r = get(addr, b"GET / HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
        let r = get(addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            r.starts_with("HTTP/1.1 405 ") && r.contains("Allow: GET"),
            "{r}"
        );
        let r = get(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(r.ends_with("\r\n\r\n"), "{r}");
        let r = get(addr, b"garbage\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
        drop(task);
    }

    #[tokio::test]
    async fn oversized_request_is_refused() {
        let (addr, _m, task) = server().await;
        let mut req = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        req.resize(MAX_HEAD + 100, b'a');
        let r = get(addr, &req).await;
        assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
        drop(task);
    }

    #[tokio::test]
    async fn status_client_reads_the_report() {
        let (addr, _m, task) = server().await;
        let url = format!("http://{addr}");
        let report = tokio::task::spawn_blocking(move || {
            super::super::status::fetch(&url, Duration::from_secs(5))
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(report.pid, std::process::id());
        let url = format!("http://{addr}/");
        drop(task);
        tokio::task::yield_now().await;
        let e = tokio::task::spawn_blocking(move || {
            super::super::status::fetch(&url, Duration::from_secs(2))
        })
        .await
        .unwrap()
        .unwrap_err();
        assert!(
            matches!(e, super::super::status::StatusError::Connect { .. }),
            "{e:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn silent_client_is_dropped_after_the_timeout() {
        let (addr, _m, task) = server().await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut out = Vec::new();
        // With the clock paused, the server's 5 s timeout fires as soon as
        // everything is idle; the connection is then closed without an answer.
        let n = s.read_to_end(&mut out).await.unwrap();
        assert_eq!(n, 0);
        drop(task);
    }
}
